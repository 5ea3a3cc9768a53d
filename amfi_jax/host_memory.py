"""Host memory allocation that keeps XLA's CPU steps from paying for fresh pages on every run.

Why this exists: XLA's CPU runtime allocates the temporary buffer of every executable run (the
AGCN train step's is hundreds of MB) with `posix_memalign` on one of its worker threads. glibc
serves such a thread from a secondary arena, whose heaps are at most 64 MB, so every larger block
is a fresh `mmap` and its `free` an `munmap`: each step faults in every page of its temporaries
again (about 36,000 minor faults, 150 MB, for one graph-convolution layer's forward and backward)
— a quarter of that layer's step time on the 2-core CPU of docs/benchmarks.md. With a single
arena that never returns memory to the system and never maps blocks separately, freed buffers are
reused by the next step and the faults disappear.

`reuse_freed_memory()` sets that with `mallopt`; command-line entry points call it first (through
`amfi_jax.cli.run`), before JAX starts its thread pools, so their threads share the main arena.
It changes where memory comes from, never what is computed. The process keeps the peak of its
heap for its lifetime instead of returning it, which suits a training process (a batch-1
exported model gains nothing: docs/deployment.md). It does nothing where the C library is not
glibc; AMFI_JAX_MALLOC=system keeps the C library's defaults.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

from amfi_jax import errors

MALLOC_ENV = "AMFI_JAX_MALLOC"

# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
# mallopt takes an int but glibc stores the trim threshold as a size_t, so -1 means "never": a
# paper-size train step frees more than the 2 GiB of the largest positive int, and a trim would
# hand that back to be faulted in again by the next step.
_NEVER_TRIM = -1

_configured: bool | None = None


def reuse_freed_memory() -> bool:
  """One malloc arena, no separately mapped blocks, no trimming; True if it took effect.

  Call before any thread that will allocate large buffers has started (idempotent). A value of
  AMFI_JAX_MALLOC other than 'system' is a UserError.
  """
  global _configured
  if _configured is not None:
    return _configured
  setting = os.environ.get(MALLOC_ENV, "")
  if setting not in ("", "system"):
    raise errors.UserError(f"{MALLOC_ENV}={setting!r}: set it to 'system' (the C library's "
                           "default allocation) or leave it unset")
  _configured = False
  if setting == "system" or not sys.platform.startswith("linux"):
    return False
  libc = _glibc()
  if libc is None:
    return False
  settings = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, _NEVER_TRIM))
  _configured = all(libc.mallopt(param, value) == 1 for param, value in settings)
  return _configured


def is_reused() -> bool:
  """Whether `reuse_freed_memory` has taken effect in this process."""
  return bool(_configured)


def _glibc():
  try:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    libc.gnu_get_libc_version  # only glibc has it (and mallopt with these parameters)
  except (OSError, AttributeError):
    return None
  libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
  libc.mallopt.restype = ctypes.c_int
  return libc
