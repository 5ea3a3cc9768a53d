"""Suite-wide: one persistent XLA compilation cache for every test, worker and subprocess of a run,
XLA flags for tiny programs, the long modules first, and directories built once per run
(`build_once`). docs/testing.md has the measured effect of each.

Most of the suite's time is compilation, and many tests compile the same tiny programs: a
training run in a subprocess and its resumption after SIGKILL, the one- and two-process runs of
the same config, the same tiny models built by several tests. JAX reads its cache settings from
the environment when it is imported, so setting them here (before any test module imports jax)
reaches this process, the pytest-xdist workers `make test` starts (they inherit the
environment) and every subprocess a test starts with `dict(os.environ, ...)`. The cache lives in
a fresh directory per run, removed at the end, so a run on a clean clone measures what CI
measures; set JAX_COMPILATION_CACHE_DIR yourself to keep one across runs (JAX keys its entries
by program, jax/XLA version, flags and devices, so a kept cache never serves a stale program).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Callable

# The XLA_FLAGS the run started with, kept for the pytest-xdist workers, which inherit the
# XLA_FLAGS set below.
_USER_XLA_FLAGS = os.environ.setdefault("AMFI_TESTS_USER_XLA_FLAGS",
                                        os.environ.get("XLA_FLAGS", ""))


# The tests' programs are tiny, so compiling them well costs more than it saves. In-process tests
# mostly compile and run a step or two: without LLVM's optimisations (level 0)
# tests/models/test_models.py runs in 66 s instead of 90 s at level 1. The `amfi_jax.main` runs
# in subprocesses train tens of steps, where level 1 pays for itself (a 24-step tiny RGB run:
# 33 s instead of 42 s at level 0; the skeleton run is the same either way). XLA's older CPU
# fusion emitters (instead of its MLIR ones) halve the compile time of a tiny train step
# (skeleton 7.8 -> 3.7 s, RGB 8.4 -> 3.9 s) everywhere. These flags change how the arithmetic is
# generated and scheduled, not what is computed (floating-point rounding aside, which every
# numerical check allows for). Set either flag in XLA_FLAGS yourself to test the code the
# product compiles by default.
def _xla_flags(optimization_level: int) -> str:
  flags = {"xla_backend_optimization_level": str(optimization_level),
           "xla_cpu_use_fusion_emitters": "false"}
  return " ".join([_USER_XLA_FLAGS] + [f"--{k}={v}" for k, v in flags.items()
                                       if k not in _USER_XLA_FLAGS]).strip()


os.environ["XLA_FLAGS"] = _xla_flags(0)
_SUBPROCESS_XLA_FLAGS = _xla_flags(1)

# The host allocator of the command-line entry points (amfi_jax/host_memory.py), so steps run in
# a test process as they do under `python -m amfi_jax...` (whose subprocesses set it themselves).
from amfi_jax import host_memory  # pylint: disable=wrong-import-position

host_memory.reuse_freed_memory()


def cpu_env(devices: int | None = None, **extra: str) -> dict[str, str]:
  """The environment for a subprocess a test starts: this one's (the compilation cache
  included), on CPU, with the subprocesses' XLA flags above, `devices` fake CPU devices if given,
  and `extra` on top."""
  xla = _SUBPROCESS_XLA_FLAGS
  if devices is not None:
    xla += f" --xla_force_host_platform_device_count={devices}"
  return dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=xla, **extra)


_OWN_CACHE = None
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  _OWN_CACHE = tempfile.mkdtemp(prefix="amfi_jax_test_xla_cache_")
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _OWN_CACHE
  # Cache every program, however small or quick to compile: the per-operation programs of eager
  # model builds are the ones each subprocess would otherwise compile again.
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")


def pytest_collection_modifyitems(session, config, items):
  """Modules marked `slow` (minutes of subprocess runs each) first, the rest in their order.

  With `make test`'s `--dist=loadscope --no-loadscope-reorder` each pytest-xdist worker then
  starts with one of the long modules while the short ones fill the gaps; otherwise the
  long modules, which have few tests, came last (xdist orders modules by test count) and one
  worker ran them alone at the end. `-m "not slow"` leaves them out for a quick run.
  """
  del session, config
  items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable sort


def pytest_sessionfinish(session, exitstatus):
  del session, exitstatus
  if _OWN_CACHE is not None:
    shutil.rmtree(_OWN_CACHE, ignore_errors=True)


def build_once(tmp_path_factory, name: str, build: Callable[[str], None]) -> str:
  """The directory `name`, made by `build(path)` once per test run and shared by the pytest-xdist
  workers: the first worker to ask builds it under a file lock, the others wait for it and read
  it (without xdist: once per session). For deterministic builds that no test writes to.

  A build that failed leaves no completion mark, so the next worker builds it again (and fails
  with the same error rather than reading half a directory)."""
  root = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):
    root = root.parent  # the run's folder, above every worker's own
  path, done = root / name, root / f"{name}.complete"
  with open(root / f"{name}.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if not done.exists():
      shutil.rmtree(path, ignore_errors=True)
      path.mkdir()
      build(str(path))
      done.touch()
  return str(path)
