"""The data position of a checkpoint when the number of processes changes between runs."""

from __future__ import annotations

import os

import jax.numpy as jnp
import numpy as np

from amfi_jax.data import pipeline
from amfi_jax.training.checkpoints import StageCheckpoints
from tests.data.test_pipeline import _records

GLOBAL_BATCH, STEPS = 8, 5


def _iterator(records, process_index, process_count):
  return iter(pipeline.train_dataset(records, batch_size=GLOBAL_BATCH // process_count, seed=3,
                                     modalities=("skeleton",), process_index=process_index,
                                     process_count=process_count, num_threads=1))


def _global_batch(iterators):
  """The processes' next batches in process order, as `pipeline.global_batch` assembles them."""
  return np.concatenate([next(it)["index"] for it in iterators])


def test_global_batches_do_not_depend_on_the_process_count():
  """Step s of any process count consumes records [s*B, (s+1)*B) of the one shuffled stream, in
  the same order (feature dropout masks and mixup partners follow positions in the batch)."""
  records = _records(20, rgb=False)  # 2.5 global batches per epoch: steps cross epochs
  for count in (2, 4):
    many = [_iterator(records, p, count) for p in range(count)]
    reference = [_iterator(records, 0, 1)]
    for _ in range(STEPS):
      np.testing.assert_array_equal(_global_batch(many), _global_batch(reference))


def test_restore_with_another_process_count_continues_at_the_step(tmp_path):
  """A checkpoint written by 2 processes restored by 1: the next global batch is the one an
  uninterrupted run would take."""
  records = _records(20, rgb=False)
  state = {"step": jnp.asarray(STEPS, jnp.int32), "w": jnp.arange(4.0)}
  uninterrupted = _iterator(records, 0, 1)
  for _ in range(STEPS):
    next(uninterrupted)
  ckpts = StageCheckpoints(str(tmp_path), keep_latest=1, asynchronous=False)
  ckpts.save(STEPS, state, uninterrupted, force=True)
  ckpts.close()
  # Make it look written by two processes: their iterator files, none for a single process.
  data = tmp_path / str(STEPS) / "data"
  saved = (data / "process_0-of-1.json").read_text()
  for p in range(2):
    (data / f"process_{p}-of-2.json").write_text(saved)
  os.remove(data / "process_0-of-1.json")

  resumed = _iterator(records, 0, 1)
  ckpts = StageCheckpoints(str(tmp_path), keep_latest=1, asynchronous=False)
  abstract = {k: jnp.zeros_like(v) for k, v in state.items()}
  shardings = {k: v.sharding for k, v in state.items()}
  restored = ckpts.restore(STEPS, abstract, shardings, resumed)
  ckpts.close()
  np.testing.assert_array_equal(restored["w"], state["w"])
  for _ in range(3):
    np.testing.assert_array_equal(next(resumed)["index"], next(uninterrupted)["index"])
