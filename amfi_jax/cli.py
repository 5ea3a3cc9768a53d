"""What every command-line entry point shares: a user error (`errors.UserError`, or a flag or
config override that does not parse) is printed as a few lines and exits with status 2, without
a traceback; `--verbose` (or AMFI_JAX_VERBOSE=1) shows the traceback as well. Unexpected
exceptions keep their traceback.

  from amfi_jax import cli
  if __name__ == "__main__":
    cli.run(main)
"""

from __future__ import annotations

import atexit
import os
import sys
import threading

from absl import app, flags

from amfi_jax import errors, host_memory

VERBOSE_ENV = "AMFI_JAX_VERBOSE"
USER_ERROR_STATUS = 2

_VERBOSE = flags.DEFINE_bool("verbose", False,
                             f"Show tracebacks of user errors too (or set {VERBOSE_ENV}=1).")


def _verbose(argv) -> bool:
  # Read from argv as well: a flag-parsing failure happens before FLAGS.verbose has a value.
  return (os.environ.get(VERBOSE_ENV, "") not in ("", "0") or "--verbose" in argv
          or (flags.FLAGS.is_parsed() and _VERBOSE.value))


def _fail(message: str) -> None:
  print(f"Error: {message}", file=sys.stderr, flush=True)
  sys.exit(USER_ERROR_STATUS)


def _parse_flags(argv):
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    if _verbose(argv):
      raise
    _fail(f"{e}\n(--helpfull lists the flags)")
  except Exception as e:  # pylint: disable=broad-except
    # config_flags loads the config file and applies `--config.a.b=v` overrides while parsing:
    # a missing file, an unknown field or a value of the wrong type arrives here.
    if _verbose(argv):
      raise
    _fail(_flag_message(e, argv))


def _flag_message(error: Exception, argv) -> str:
  text = str(error).strip().strip("\"'")
  overrides = [a.split("=", 1)[0] for a in argv[1:] if a.startswith("--config.")]
  if isinstance(error, (KeyError, AttributeError)) and overrides:
    named = [o for o in overrides if o.split(".")[-1] == text] or overrides
    return (f"{', '.join(named)}: the config has no field {text!r} (misspelt? the fields and "
            "their defaults are in amfi_jax/configlib.py)")
  if isinstance(error, OSError) or "Failed loading config file" in text:
    return f"--config: {text.splitlines()[-1].strip() if text else error!r}"
  return f"while parsing the flags: {type(error).__name__}: {text}"


def config_value(holder: flags.FlagHolder, flag: str = "--config"):
  """The config of a `config_flags` flag; a config file that failed to load (config_flags
  defers that error to the first use) becomes a FlagError naming the flag."""
  config = holder.value
  try:
    config.keys()
  except OSError as e:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    raise errors.FlagError(f"{flag}: {lines[-1] if lines else e}") from None
  return config


def run(main) -> None:
  """`absl.app.run(main)` with user errors reported as messages (see the module docstring), the
  host allocator set up first (`host_memory.reuse_freed_memory`: before JAX starts its threads),
  and a quick exit once `main` returns (`_exit_skipping_teardown`)."""
  def guarded(argv):
    try:
      host_memory.reuse_freed_memory()  # JAX starts its threads in `main`, not before
      status = main(argv)
    except errors.UserError as e:
      if _verbose(sys.argv):
        raise
      _fail(str(e))
    _exit_skipping_teardown(status)
    return status

  app.run(guarded, flags_parser=_parse_flags)


def _exit_skipping_teardown(status) -> None:
  """Ends the process with `status` (as `sys.exit` would) after the exit handlers have run and
  the standard streams are flushed, but without the interpreter's teardown, which frees every
  module, array and the XLA runtime one by one: 1.5 s after each training run on this 2-core
  machine, for nothing. Everything the commands write is closed or flushed before `main` returns
  (checkpoints waited for, metric files flushed per line), and the exit handlers still run
  (logging, JAX's distributed shutdown). Returns instead — the normal exit — while another
  non-daemon thread is alive, which that exit would wait for."""
  if any(t.is_alive() and not t.daemon for t in threading.enumerate()
         if t is not threading.main_thread()):
    return
  if status is None:
    code = 0
  elif isinstance(status, int):
    code = status
  else:
    print(status, file=sys.stderr)
    code = 1
  atexit._run_exitfuncs()  # pylint: disable=protected-access
  for stream in (sys.stdout, sys.stderr):
    stream.flush()
  os._exit(code)  # pylint: disable=protected-access
