"""Dropout of the stream features the fusion head reads (`config.train.fusion.feature_dropout`)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from amfi_jax import configlib
from amfi_jax.models import amfi, layers
from amfi_jax.training import stages


def test_dropout_zeroes_the_rate_and_keeps_the_expectation():
  x = np.ones((400, 500), np.float32)
  y = np.asarray(layers.dropout(x, 0.3, jax.random.key(0)))
  assert set(np.unique(y)) == {0.0, np.float32(1 / 0.7)}
  assert (y == 0).mean() == pytest.approx(0.3, abs=0.005)
  assert y.mean() == pytest.approx(1.0, abs=0.01)
  np.testing.assert_array_equal(y, layers.dropout(x, 0.3, jax.random.key(0)))
  assert not np.array_equal(y, layers.dropout(x, 0.3, jax.random.key(1)))


@pytest.fixture(scope="module")
def fusion_model():
  config = configlib.base_config(("rgb", "skeleton", "fusion"))
  config.model.num_classes = 5
  config.model.rgb.width_multiplier = 1 / 16
  config.model.skeleton.width_multiplier = 1 / 16
  config.model.skeleton.layers = "amfi"
  return config, amfi.build_model(config.model, "fusion", seed=0)


def test_the_head_reads_dropped_out_features_in_training_only(fusion_model):
  config, model = fusion_model
  dim = model.rgb.feature_dim
  rng = np.random.default_rng(0)
  feats = {"rgb_features": rng.random((16, dim), np.float32) + 0.1,
           "skeleton_features": rng.random((16, dim), np.float32) + 0.1}
  config.train.fusion.feature_dropout = 0.5
  stage = stages.on_cached_features(stages.make_stage("fusion", config))
  assert stage.feature_dropout == 0.5
  key = jax.random.key(3)
  out = stage.forward(model, feats, rng=key)
  rgb_key, skeleton_key = jax.random.split(key)
  expected = model.from_features(layers.dropout(feats["rgb_features"], 0.5, rgb_key),
                                 layers.dropout(feats["skeleton_features"], 0.5, skeleton_key))
  np.testing.assert_allclose(out.logits, expected.logits, rtol=1e-5, atol=1e-6)
  # The features it reports are the streams' own; without an rng (evaluation) no dropout.
  np.testing.assert_array_equal(out.rgb_features, feats["rgb_features"])
  plain = model.from_features(feats["rgb_features"], feats["skeleton_features"])
  np.testing.assert_array_equal(stage.forward(model, feats).logits, plain.logits)
  assert np.abs(np.asarray(out.logits) - np.asarray(plain.logits)).min() > 0
  # A stage without dropout ignores the rng.
  config.train.fusion.feature_dropout = 0.0
  plain_stage = stages.on_cached_features(stages.make_stage("fusion", config))
  np.testing.assert_array_equal(plain_stage.forward(model, feats, rng=key).logits, plain.logits)


@pytest.mark.parametrize("rate", [-0.1, 1.0])
def test_feature_dropout_out_of_range_is_a_config_error(rate):
  config = configlib.base_config(("rgb", "skeleton", "fusion"))
  config.train.fusion.feature_dropout = rate
  with pytest.raises(ValueError, match="config.train.fusion.feature_dropout"):
    configlib.validate(config)
