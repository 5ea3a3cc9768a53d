"""Orbax checkpoints of a stage: train state + data-iterator position, latest N and the best.

The best checkpoint is the one with the highest selection accuracy (paper Algorithm 1), kept
besides the latest `keep_latest`. Saves are asynchronous; restores go into an abstract target
that carries the CURRENT shardings, so a checkpoint written on one mesh restores on another.
"""

from __future__ import annotations

import contextlib
import os

import grain
import jax
from absl import logging
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

from amfi_jax.errors import ConfigError

SELECTION_METRIC = "selection_top1"


def _selection_metric(metrics: dict) -> float:
  return metrics[SELECTION_METRIC]


class StageCheckpoints:

  def __init__(self, directory: str, *, keep_latest: int, asynchronous: bool = True,
               select_last: bool = False):
    """`select_last`: the `final` protocol, whose reported checkpoint is the last one (saved
    without a selection metric); `best_step` then returns the latest step."""
    self.directory = os.path.abspath(directory)
    latest = checkpoint_managers.LatestN(n=max(1, keep_latest))
    if select_last:
      # No metric to track (a `best_fn` would make Orbax warn at every save that none was
      # given); without one, Orbax's best step is the latest.
      policy, tracking = latest, {}
    else:
      policy = checkpoint_managers.AnyPreservationPolicy([
          latest, checkpoint_managers.BestN(get_metric_fn=_selection_metric, reverse=False, n=1,
                                            keep_checkpoints_without_metrics=False)])
      tracking = {"best_fn": _selection_metric, "best_mode": "max"}
    options = ocp.CheckpointManagerOptions(preservation_policy=policy,
                                           enable_async_checkpointing=asynchronous, create=True,
                                           **tracking)
    self.manager = ocp.CheckpointManager(self.directory, options=options)

  def save(self, step: int, state, data_iterator=None, *, metrics: dict | None = None,
           force: bool = False) -> bool:
    items = {"state": ocp.args.StandardSave(state)}
    if data_iterator is not None:
      items["data"] = grain.checkpoint.CheckpointSave(data_iterator)
    return self.manager.save(step, args=ocp.args.Composite(**items), metrics=metrics, force=force)

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def best_step(self) -> int | None:
    return self.manager.best_step()

  def restore(self, step: int, abstract_state, shardings, data_iterator=None):
    """Restores `step` onto `shardings` (any mesh); refills `data_iterator` in place.

    The iterator's saved position is per process. When the checkpoint was written by another
    number of processes, `data_iterator` is moved to batch `step` instead: every process
    consumes one batch per step and the processes' blocks make up one global stream, so
    after `step` steps the job has consumed exactly the first `step` global batches whatever the
    process count, and continuing at batch `step` of the new slices yields the same examples
    per step, in the same order, as an uninterrupted run.
    """
    target = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                          abstract_state, shardings)
    with self._names_a_misfit(step):
      restored = self.manager.restore(
          step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))
    if data_iterator is not None:
      self.restore_position(step, data_iterator)
    return restored["state"]

  def restore_position(self, step: int, data_iterator) -> None:
    """Refills `data_iterator` in place with its position at `step` (see `restore`)."""
    if self._has_iterator_of_this_layout(step):
      self.manager.restore(step, args=ocp.args.Composite(
          data=grain.checkpoint.CheckpointRestore(data_iterator)))
      return
    logging.warning("Checkpoint %d holds no data position for %d processes; continuing the "
                    "input at global batch %d", step, jax.process_count(), step)
    data_iterator.set_state({**data_iterator.get_state(), "next_index": int(step)})

  def restore_weights(self, step: int, abstract_weights: dict, shardings: dict) -> dict:
    """Restores only the `params` and `frozen` subtrees of the saved state (inference): the
    optimiser state and data position stay on disk, so no optimiser needs to be built."""
    target = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                          abstract_weights, shardings)
    restore_args = jax.tree.map(lambda s: ocp.ArrayRestoreArgs(sharding=s.sharding), target)
    with self._names_a_misfit(step):
      restored = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
          item=target, restore_args=restore_args, partial_restore=True)))
    return restored["state"]

  @contextlib.contextmanager
  def _names_a_misfit(self, step: int):
    """A checkpoint that does not fit the model the config builds (another width, class count,
    layer list...) raises a ConfigError naming the checkpoint and the config section, instead of
    Orbax's error deep in a traceback."""
    try:
      yield
    except (ValueError, KeyError, TypeError) as e:
      lines = [line for line in str(e).splitlines() if line.strip()]
      raise ConfigError(
          f"checkpoint {step} in {self.directory} does not fit the model that config.model "
          f"builds (was it trained with other config.model.* values? run.json records the "
          f"run's config): {' '.join(lines[:3])[:600]}") from e

  def _has_iterator_of_this_layout(self, step: int) -> bool:
    name = f"process_{jax.process_index()}-of-{jax.process_count()}.json"
    return os.path.exists(os.path.join(self.directory, str(step), "data", name))

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()
