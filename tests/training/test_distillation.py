"""Cross-modal feature distillation (`training.distillation`): the loss, the config checks, and a
stream trained with the other stream's features as targets."""

from __future__ import annotations

import json
import os
import shutil

import jax.numpy as jnp
import numpy as np
import pytest

from amfi_jax import configlib
from amfi_jax.training import distillation, loop

from tests.training.conftest import tiny_run_config


def test_loss_is_one_minus_cosine_whatever_the_lengths():
  t = jnp.array([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]])
  np.testing.assert_allclose(distillation.loss(5.0 * t, t), 0.0, atol=1e-6)
  np.testing.assert_allclose(distillation.loss(-t, t), 2.0, atol=1e-6)
  orthogonal = jnp.array([[0.0, 1.0], [2.0, 0.0], [4.0, -3.0]])
  np.testing.assert_allclose(distillation.loss(orthogonal, t), 1.0, atol=1e-6)
  # Per-sample terms averaged: 0, 1, 2 → 1.
  mixed = jnp.stack([t[0], orthogonal[1], -t[2]])
  np.testing.assert_allclose(distillation.loss(mixed, t), 1.0, atol=1e-6)
  with pytest.raises(ValueError, match="teacher stream has 2 features, the student 3"):
    distillation.loss(jnp.ones((3, 3)), t, "config.train.rgb.distill_from")


def test_logit_loss_is_the_softened_kl_times_t_squared():
  t = jnp.array([[2.0, 0.0, -1.0], [0.0, 3.0, 1.0]])
  np.testing.assert_allclose(distillation.logit_loss(t, t, 4.0), 0.0, atol=1e-6)
  np.testing.assert_allclose(distillation.logit_loss(t + 7.0, t, 4.0), 0.0, atol=1e-5)  # shift
  s = jnp.zeros_like(t)
  p = np.exp(np.asarray(t) / 2.0)
  p /= p.sum(-1, keepdims=True)
  kl = (p * (np.log(p) - np.log(1.0 / 3.0))).sum(-1).mean()  # against the uniform student
  np.testing.assert_allclose(distillation.logit_loss(s, t, 2.0), 4.0 * kl, rtol=1e-5)
  assert float(distillation.logit_loss(s, t, 1.0)) > float(distillation.logit_loss(s, t, 8.0)) / 64


@pytest.mark.parametrize("stage, stages, fields, message", [
    ("fusion", ("skeleton", "rgb", "fusion"), {"distill_from": "skeleton"},
     r"config.train.fusion.distill_from='skeleton': only a stream stage"),
    ("rgb", ("rgb", "skeleton"), {"distill_from": "skeleton"},
     r"needs the skeleton stage to train first: list it before 'rgb'"),
    ("rgb", ("skeleton", "rgb"), {"distill_from": "rgb"}, r"only a stream stage"),
    ("rgb", ("skeleton", "rgb"), {"distill_from": "skeleton", "distill_weight": 0.0},
     r"config.train.rgb.distill_weight must be > 0 .* \(or config.train.rgb.distill_logits"),
    ("rgb", ("skeleton", "rgb"), {"distill_from": "skeleton", "distill_logits": -1.0},
     r"config.train.rgb.distill_logits must be a finite number ≥ 0, got -1.0"),
    ("rgb", ("skeleton", "rgb"), {"distill_from": "skeleton", "distill_temperature": 0.0},
     r"config.train.rgb.distill_temperature must be a finite number > 0"),
    ("rgb", ("skeleton", "rgb"), {"distill_from": "skeleton", "mixup": 0.2},
     r"config.train.rgb.mixup and config.train.rgb.distill_from do not combine"),
])
def test_config_errors_name_the_field(stage, stages, fields, message):
  config = configlib.base_config(stages)
  for key, value in fields.items():
    config.train[stage][key] = value
  with pytest.raises(ValueError, match=message):
    configlib.validate(config)


def test_a_teacher_not_listed_must_have_finished(tiny_dataset, tmp_path):
  config = tiny_run_config(tiny_dataset)
  config.stages = ("rgb",)
  config.train.rgb.distill_from = "skeleton"
  configlib.validate(config)  # may have finished in an earlier invocation
  with pytest.raises(ValueError, match=r"the skeleton stage of .* has not finished"):
    loop.train_and_evaluate(config, str(tmp_path))
  assert not os.path.exists(tmp_path / "rgb" / "checkpoints")


def _depth_stream_training_rows(tiny_dataset, tiny_trained_run, tmp_path, **fields) -> list:
  """Three steps of the depth stream distilled with `fields` from the session's tiny run's
  skeleton stage (its RGB and fusion stages left out); its metrics rows, after checking them."""
  workdir = tmp_path / "run"
  shutil.copytree(tiny_trained_run, workdir, ignore=shutil.ignore_patterns("rgb", "fusion"))
  config = tiny_run_config(tiny_dataset)
  config.stages = ("rgb",)
  config.train.rgb.update(distill_from="skeleton", num_steps=3, **fields)
  results = loop.train_and_evaluate(config, str(workdir), allow_config_change=True)
  assert np.isfinite(results["rgb"]["test"]["loss"])
  with open(workdir / "rgb" / "metrics.jsonl") as f:
    rows = [json.loads(line) for line in f if "train/loss" in line]
  assert [r["step"] for r in rows] == [1, 2, 3]
  return rows


def test_depth_stream_trains_towards_the_skeleton_features(tiny_dataset, tiny_trained_run,
                                                          tmp_path):
  for r in _depth_stream_training_rows(tiny_dataset, tiny_trained_run, tmp_path,
                                       distill_weight=3.0):
    assert 0.0 < r["train/distill_loss"] <= 2.0
    np.testing.assert_allclose(r["train/loss"], r["train/ce"] + 3.0 * r["train/distill_loss"],
                               rtol=1e-5)
    assert "train/distill_logit_loss" not in r  # off: not computed


def test_depth_stream_learns_the_skeleton_logits_alone(tiny_dataset, tiny_trained_run, tmp_path):
  for r in _depth_stream_training_rows(tiny_dataset, tiny_trained_run, tmp_path,
                                       distill_weight=0.0, distill_logits=2.0,
                                       distill_temperature=3.0):
    assert "train/distill_loss" not in r and r["train/distill_logit_loss"] > 0.0
    np.testing.assert_allclose(r["train/loss"],
                               r["train/ce"] + 2.0 * r["train/distill_logit_loss"], rtol=1e-5)
