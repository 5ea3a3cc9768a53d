"""Mixup of a stage's training batches (`config.train.<stage>.mixup`), and label smoothing
(`config.train.<stage>.label_smoothing`)."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import optax
import pytest

from amfi_jax import configlib, parallel
from amfi_jax.models import ModelOutput, build_model
from amfi_jax.training import optim, stages
from amfi_jax.training.state import init_state, state_layout
from amfi_jax.training.steps import make_train_step


def test_mix_blends_each_sample_with_its_mirror_and_keeps_the_own_label_larger():
  stage = stages.Stage("rgb", ("depth",), None, mixup=0.4)
  rng = np.random.default_rng(0)
  clips = rng.integers(0, 256, (6, 2, 4, 4, 1), dtype=np.uint8)
  labels = np.arange(6, dtype=np.int32)
  weights = []
  for seed in range(20):
    mixed, partner, w = stage.mix({"depth": clips, "label": labels}, jax.random.key(seed))
    w = float(w)
    weights.append(w)
    assert 0.5 <= w <= 1.0
    assert mixed["depth"].dtype == np.float32 and mixed["depth"].shape == clips.shape
    np.testing.assert_allclose(
        mixed["depth"], w * clips.astype(np.float32) + (1 - w) * clips[::-1].astype(np.float32),
        rtol=1e-6, atol=1e-4)
    np.testing.assert_array_equal(mixed["label"], labels)  # the batch's own labels stay
    np.testing.assert_array_equal(partner, labels[::-1])
  # Beta(0.4, 0.4) folded onto [0.5, 1]: draws spread over the range, the same for a key.
  assert min(weights) < 0.75 < max(weights)
  _, _, again = stage.mix({"depth": clips, "label": labels}, jax.random.key(0))
  assert float(again) == weights[0]


def test_mixed_loss_weighs_both_labels():
  stage = stages.Stage("skeleton", ("skeleton",), None, mixup=1.0)
  logits = np.random.default_rng(1).normal(size=(4, 5)).astype(np.float32)
  out = ModelOutput(logits=logits)
  labels, partner = np.array([0, 1, 2, 3]), np.array([3, 2, 1, 0])
  loss, metrics = stage.loss(out, labels, partner, 0.7)
  ce = lambda y: optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
  assert float(loss) == pytest.approx(0.7 * float(ce(labels)) + 0.3 * float(ce(partner)), rel=1e-6)
  assert float(metrics["accuracy"]) == float((logits.argmax(-1) == labels).mean())
  plain, _ = stage.loss(out, labels)
  assert float(plain) == pytest.approx(float(ce(labels)), rel=1e-6)


def test_train_step_trains_on_the_mixed_batch():
  config = configlib.make_config(("skeleton",), "demo", ("demo",))
  config.model.skeleton.layers = "64"  # × 0.125: one 8-channel unit compiles in seconds
  config.train.skeleton.mixup = 0.5
  stage = stages.make_stage("skeleton", config)
  assert stage.mixup == 0.5
  tx = optim.make_optimizer(config.train.skeleton,
                            optim.resolve_schedule(config.train.skeleton, 64, "skeleton"),
                            "skeleton")
  mesh = parallel.make_mesh(1, 1)
  rng = np.random.default_rng(0)
  channels = config.model.skeleton.in_channels  # the demo's skeleton stream
  batch = {"skeleton": rng.normal(size=(8, channels, 16, 25, 2)).astype(np.float32),
           "label": rng.integers(0, 8, 8).astype(np.int32)}
  build = lambda: build_model(config.model, "skeleton")
  layout = state_layout(build, stage, tx, mesh, parallel.rules_from(dict(config.mesh.rules)))

  # What the step must compute: its mixup key is split off the dropout key of the state's rng.
  state = init_state(build, stage, tx, layout, 0)
  _, dropout_key = jax.random.split(jax.random.wrap_key_data(state.rng))
  _, mixup_key = jax.random.split(dropout_key)
  mixed, partner, w = stage.mix(batch, mixup_key)
  expected, _ = stage.loss(stage.forward(layout.model(state.params, state.frozen), mixed),
                           batch["label"], partner, w)

  _, metrics = make_train_step(stage, layout, tx)(state, batch)
  assert float(metrics["ce"]) == pytest.approx(float(expected), rel=1e-4)
  plain_stage = dataclasses.replace(stage, mixup=0.0)
  plain = init_state(build, plain_stage, tx, layout, 0)
  _, plain_metrics = make_train_step(plain_stage, layout, tx)(plain, batch)
  assert abs(float(plain_metrics["ce"]) - float(expected)) > 1e-3


@pytest.mark.parametrize("value", [-0.2, float("nan")])
def test_bad_mixup_is_a_config_error(value):
  config = configlib.base_config(("rgb",))
  config.train.rgb.mixup = value
  with pytest.raises(ValueError, match=r"config.train.rgb.mixup"):
    configlib.validate(config)


def test_label_smoothing_targets_the_smoothed_one_hot():
  logits = np.random.default_rng(2).normal(size=(4, 5)).astype(np.float32)
  labels = np.array([0, 4, 2, 2])
  smoothed = optax.smooth_labels(jax.nn.one_hot(labels, 5), 0.1)
  expected = optax.softmax_cross_entropy(logits, smoothed).mean()
  assert float(stages.cross_entropy(logits, labels, 0.1)) == pytest.approx(float(expected),
                                                                          rel=1e-6)
  # Off, the loss is the plain cross entropy bit for bit (runs without it reproduce).
  assert float(stages.cross_entropy(logits, labels)) == float(
      optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean())
  config = configlib.base_config(("rgb", "skeleton", "fusion"))
  config.train.skeleton.label_smoothing = 0.1
  stage = stages.make_stage("skeleton", config)
  assert stage.label_smoothing == 0.1 and stages.make_stage("rgb", config).label_smoothing == 0.0
  loss, metrics = stage.loss(ModelOutput(logits=logits), labels)
  assert float(loss) == pytest.approx(float(expected), rel=1e-6)
  assert float(metrics["ce"]) == pytest.approx(float(expected), rel=1e-6)


@pytest.mark.parametrize("value", [-0.1, 1.0, float("nan")])
def test_bad_label_smoothing_is_a_config_error(value):
  config = configlib.base_config(("rgb",))
  config.train.rgb.label_smoothing = value
  with pytest.raises(ValueError, match=r"config.train.rgb.label_smoothing must be in \[0, 1\)"):
    configlib.validate(config)
