"""Orbax checkpoints of one stream's parameters and batch statistics (`config.init_from`).

Layout: `DIR/state/` (Orbax, a nested dict of the stream's Param and BatchStat leaves) and
`DIR/stream.json` (what wrote it and the architecture, for error messages).
"""

from __future__ import annotations

import json
import os

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from amfi_jax.errors import MissingFileError
from amfi_jax.weights.common import WeightImportError, stream_state

CLASSIFIER = "fc"


def save_stream(directory: str, model: nnx.Module, *, info: dict) -> str:
  """Writes `model`'s parameters and statistics to `directory` (created; must not exist)."""
  directory = os.path.abspath(directory)
  if os.path.exists(os.path.join(directory, "state")):
    raise FileExistsError(f"{directory} already holds a stream checkpoint; choose a new --output")
  os.makedirs(directory, exist_ok=True)
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(os.path.join(directory, "state"), stream_state(model).to_pure_dict())
  checkpointer.wait_until_finished()
  if jax.process_index() == 0:  # every process saves its shards above; one writes the summary
    with open(os.path.join(directory, "stream.json"), "w") as f:
      json.dump({"model": type(model).__name__, **info}, f, indent=2)
  return directory


def require_stream_checkpoint(directory: str, field: str | None = None) -> str:
  """`directory`'s Orbax state directory, or MissingFileError naming `field` (the config field
  that gave the path, if any)."""
  directory = os.path.abspath(directory)
  state_dir = os.path.join(directory, "state")
  if not os.path.isdir(state_dir):
    where = f"{field}: " if field else ""
    raise MissingFileError(f"{where}no stream checkpoint at {directory} (expected {state_dir}); "
                           "create one with `python -m amfi_jax.convert`, or name a run's "
                           "<stage>/best_stream")
  return state_dir


def load_stream(directory: str, model: nnx.Module, *, allow_new_classifier: bool = True) -> list[str]:
  """Loads a stream checkpoint into `model` in place; returns the paths it left as initialised.

  With `allow_new_classifier` a classifier of another class count (e.g. Kinetics-400 weights for
  a 60-class model) is skipped and keeps its fresh initialisation; every other leaf must exist
  with the same shape, otherwise WeightImportError lists the differences.
  """
  directory = os.path.abspath(directory)
  state_dir = require_stream_checkpoint(directory)
  saved = _restore_on_host(state_dir)
  saved_flat = {tuple(str(k) for k in path): np.asarray(v)
                for path, v in _flatten(saved)}
  skipped, problems, updates = [], [], []
  for path, variable in nnx.to_flat_state(stream_state(model)):
    key = tuple(str(p) for p in path)
    name = ".".join(key)
    if key not in saved_flat:
      problems.append(f"missing {name}")
      continue
    value = saved_flat.pop(key)
    if value.shape != variable.shape:
      if allow_new_classifier and key[0] == CLASSIFIER:
        skipped.append(name)
        continue
      problems.append(f"{name}: checkpoint {value.shape}, model {tuple(variable.shape)}")
      continue
    updates.append((variable, value))
  problems.extend(f"unexpected {'.'.join(k)}" for k in sorted(saved_flat))
  if problems:
    raise WeightImportError(f"Stream checkpoint {directory} does not fit {type(model).__name__}: "
                            + "; ".join(problems))
  for variable, value in updates:
    variable[...] = value
  return skipped


def _restore_on_host(state_dir: str):
  """The saved tree as numpy arrays: the shardings it was written with (devices of the process
  that converted it) need not exist here, e.g. on process 1 of a multi-process job."""
  checkpointer = ocp.PyTreeCheckpointer()
  tree = checkpointer.metadata(state_dir).item_metadata.tree
  as_numpy = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree,
                          is_leaf=lambda x: not isinstance(x, dict))
  return checkpointer.restore(state_dir, args=ocp.args.PyTreeRestore(restore_args=as_numpy))


def _flatten(tree):
  leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
  for path, leaf in leaves:
    yield tuple(getattr(p, "key", getattr(p, "idx", p)) for p in path), leaf
