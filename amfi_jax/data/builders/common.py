"""What the TFDS builders share: the error policy, logging, the worker pool, `code_path`."""

from __future__ import annotations

import inspect
import multiprocessing
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from etils import epath
import tensorflow_datasets as tfds

from amfi_jax.data.errors import DataFormatError

# Errors that mean "this sample's files are bad", as opposed to a bug in the builder. Only these
# are subject to the `skip` policy; anything else always stops the build.
RECOVERABLE_ERRORS: tuple[type[BaseException], ...] = (DataFormatError, ValueError, OSError,
                                                        EOFError, IndexError)
ERROR_POLICIES = ("raise", "skip")
# Set by `python -m amfi_jax.data.build --error_policy=...`: the policy of this build whatever
# the builder config says, so a published config name (ntu60_xsub, skeleton_depth) can be built
# with `skip` without inventing a renamed custom config. An environment variable, so that the
# build's worker processes see it too.
ERROR_POLICY_ENV = "AMFI_JAX_ERROR_POLICY"


def error_policy(config) -> str:
  """The malformed-sample policy of a build: the --error_policy flag, else the config's."""
  policy = os.environ.get(ERROR_POLICY_ENV) or config.error_policy
  if policy not in ERROR_POLICIES:
    raise ValueError(f"error policy must be one of {ERROR_POLICIES}, got {policy!r}")
  return policy

def tfds_code_path():
  """A `code_path` class property that does not need the `importlib_resources` backport.

  tfds 4.9.10's own `code_path` type-checks against `importlib_resources`, which it declares only
  for Python < 3.9, so it fails for any builder outside the tensorflow_datasets package. The file
  defining the builder class is exactly what it would return.
  """
  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path | None:
    try:
      return epath.Path(inspect.getfile(cls))
    except (TypeError, OSError):  # defined interactively
      return None
  return code_path


def apply_error_policy(config, metadata: dict, errors: Sequence[tuple[str, str, str]], *,
                       reason_names_sample: bool = False) -> None:
  """(sample, path, reason) triples under the build's error policy: 'raise' stops at the first,
  'skip' records them all in `metadata`. `reason_names_sample`: the reasons already say which
  sample (the pose-pickle reader's do), so the error does not repeat it."""
  if error_policy(config) == "raise":
    name, path, reason = errors[0]
    where = "" if reason_names_sample else f"sample {name}: "
    raise DataFormatError(path, f"{where}{reason} (error_policy='raise'; build with "
                          "--error_policy=skip to drop malformed samples and record them)")
  record_skips(metadata, errors)


def record_skips(metadata: dict, errors: Sequence[tuple[str, str, str]]) -> None:
  for name, path, reason in errors:
    metadata["skipped"].append({"sample": name, "path": path, "reason": reason})
  metadata["num_skipped"] = len(metadata["skipped"])


def print_skip_summary(title: str, metadata: dict) -> None:
  skipped = metadata.get("skipped", [])
  log(f"[{title}] skipped {len(skipped)} malformed sample(s)"
       + (":" if skipped else "."))
  for entry in skipped[:20]:
    log(f"  {entry['sample']}: {entry['reason']}")
  if len(skipped) > 20:
    log(f"  ... and {len(skipped) - 20} more (all listed in metadata.json)")


def log(message: str) -> None:
  # Build progress goes to stderr next to TFDS's own progress bars, not to absl logging, so it
  # shows without --logtostderr.
  print(message, file=sys.stderr, flush=True)


def map_jobs(fn, jobs: Sequence[Any], num_workers: int) -> Iterator[tuple[str, str, Any]]:
  """`map(fn, jobs)` in order, in worker processes when num_workers != 1.

  Decoding 1080p video dominates an RGB build, so it runs in a process pool. 'spawn' (not fork)
  because the parent may have started JAX / grain threads, which fork would copy mid-flight.
  """
  workers = num_workers or os.cpu_count() or 1
  workers = min(workers, len(jobs))
  if workers <= 1:
    yield from map(fn, jobs)
    return
  # One BLAS thread per worker: N workers x N BLAS threads oversubscribe the cores (the resize
  # GEMMs made a 2-worker UTD-MHAD build 4x slower). Spawned children read these variables when
  # they import numpy, so they only need to be set while the pool starts.
  saved = {k: os.environ.get(k) for k in THREAD_VARS}
  os.environ.update({k: "1" for k in THREAD_VARS})
  try:
    pool = multiprocessing.get_context("spawn").Pool(workers)
  finally:
    for key, value in saved.items():
      if value is None:
        os.environ.pop(key, None)
      else:
        os.environ[key] = value
  with pool:
    yield from pool.imap(fn, jobs, chunksize=2)


THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
