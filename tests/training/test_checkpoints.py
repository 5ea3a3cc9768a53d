"""Which checkpoint a stage reports, and what saving it logs, under each protocol."""

from __future__ import annotations

import logging

import jax.numpy as jnp

from amfi_jax.training.checkpoints import SELECTION_METRIC, StageCheckpoints

_WARNING = "tracked_metric"


def _save_steps(ckpts, metrics_by_step):
  for step, metrics in metrics_by_step.items():
    ckpts.save(step, {"w": jnp.full((2,), float(step))}, metrics=metrics, force=True)
  ckpts.wait()


def test_final_protocol_reports_the_last_step_and_saves_without_metric_warnings(tmp_path,
                                                                                  caplog):
  ckpts = StageCheckpoints(str(tmp_path), keep_latest=1, asynchronous=False, select_last=True)
  with caplog.at_level(logging.WARNING):
    _save_steps(ckpts, {1: None, 2: None, 3: None})
  assert ckpts.best_step() == 3 and ckpts.latest_step() == 3
  assert sorted(ckpts.manager.all_steps()) == [3]  # keep_latest=1, nothing else kept
  assert not [r for r in caplog.records if _WARNING in r.getMessage()]
  ckpts.close()


def test_selection_keeps_the_best_checkpoint_besides_the_latest(tmp_path):
  ckpts = StageCheckpoints(str(tmp_path), keep_latest=1, asynchronous=False)
  _save_steps(ckpts, {1: {SELECTION_METRIC: 0.5}, 2: {SELECTION_METRIC: 0.9},
                      3: {SELECTION_METRIC: 0.7}})
  assert ckpts.best_step() == 2 and ckpts.latest_step() == 3
  assert sorted(ckpts.manager.all_steps()) == [2, 3]
  ckpts.close()
