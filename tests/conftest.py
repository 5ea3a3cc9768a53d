"""Suite-wide: one persistent XLA compilation cache for every test, worker and subprocess of a run,
and XLA's CPU backend without its LLVM optimisations.

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

import os
import shutil
import tempfile

# The tests' programs are tiny and most run a few steps, so compiling them well costs far more
# than it saves. Without LLVM's optimisations tests/models/test_models.py runs 1.6x faster here;
# XLA's older CPU fusion emitters (instead of its MLIR ones) halve the compile time of a tiny
# stage's train step again (skeleton 7.8 -> 3.7 s, RGB 8.4 -> 3.9 s). Both change how the
# arithmetic is generated and scheduled, not what is computed (floating-point rounding aside,
# which every numerical check allows for). Set either flag in XLA_FLAGS yourself to test the
# code the product compiles by default.
_TEST_FLAGS = {"xla_backend_optimization_level": "0", "xla_cpu_use_fusion_emitters": "false"}
for _flag, _value in _TEST_FLAGS.items():
  if _flag not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --{_flag}={_value}".strip()
_BASE_XLA_FLAGS = os.environ["XLA_FLAGS"]


def cpu_env(devices: int | None = None, **extra: str) -> dict[str, str]:
  """The environment for a subprocess a test starts: this one's (the compilation cache and the
  flag above included), on CPU, with `devices` fake CPU devices if given, and `extra` on top."""
  xla = _BASE_XLA_FLAGS
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


def pytest_sessionfinish(session, exitstatus):
  del session, exitstatus
  if _OWN_CACHE is not None:
    shutil.rmtree(_OWN_CACHE, ignore_errors=True)
