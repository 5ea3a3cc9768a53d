"""Learning-rate schedules and the resolution of epochs to steps."""

from __future__ import annotations

import numpy as np
import pytest

from amfi_jax import configlib
from amfi_jax.training import optim


def _stage(**overrides):
  stage = configlib.stage_config(batch_size=10, num_epochs=4, learning_rate=0.1,
                                 weight_decay=0.0, decay_epochs=(2, 3))
  stage.update(overrides)
  return stage


def test_step_schedule_decays_at_the_resolved_steps():
  stage = _stage()
  schedule = optim.resolve_schedule(stage, num_train_examples=100, stage="rgb")
  assert (schedule.steps_per_epoch, schedule.total_steps, schedule.decay_steps) == (10, 40, (20, 30))
  lr = optim.learning_rate_schedule(stage, schedule)
  np.testing.assert_allclose([lr(0), lr(19), lr(20), lr(30), lr(39)],
                             [0.1, 0.1, 0.01, 0.001, 0.001], rtol=1e-6)


def test_cosine_schedule_falls_from_the_rate_to_zero_over_the_stage():
  stage = _stage(schedule="cosine")
  schedule = optim.resolve_schedule(stage, num_train_examples=100, stage="rgb")
  lr = optim.learning_rate_schedule(stage, schedule)
  np.testing.assert_allclose([lr(0), lr(10), lr(20), lr(40)],
                             [0.1, 0.05 * (1 + np.cos(np.pi / 4)), 0.05, 0.0], atol=1e-7)


def test_unknown_schedule_names_the_field():
  config = configlib.make_config(("rgb",), None, ())
  config.unlock()
  config.train.rgb.schedule = "linear"
  with pytest.raises(ValueError, match=r"config\.train\.rgb\.schedule must be one of"):
    configlib.validate(config)
