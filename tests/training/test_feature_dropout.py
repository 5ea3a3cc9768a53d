"""Dropout of the pooled stream features a classifier reads in training
(`config.train.<stage>.feature_dropout`): the fusion head's, or a stream's own."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from flax import nnx

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


@pytest.mark.parametrize("name", ["rgb", "skeleton"])
def test_a_stream_classifier_reads_its_dropped_out_feature_in_training_only(fusion_model, name):
  config, fusion = fusion_model
  config = config.copy_and_resolve_references()  # the fixture's config is shared by the module
  # BatchNorm in inference mode, so that repeated forwards agree; the dropout follows the rng.
  model = nnx.view(getattr(fusion, name), use_running_average=True)
  rng = np.random.default_rng(1)
  if name == "rgb":
    batch = {"rgb": rng.integers(0, 256, (4, 4, 16, 16, 3), dtype=np.uint8)}
  else:
    batch = {"skeleton": rng.normal(size=(4, 3, 8, 25, 2)).astype(np.float32)}
  config.train[name].feature_dropout = 0.5
  stage = stages.make_stage(name, config)
  assert stage.feature_dropout == 0.5
  key = jax.random.key(5)
  out = stage.forward(model, batch, rng=key)
  feature = model.features(batch[name])
  np.testing.assert_allclose(out.logits, model.fc(layers.dropout(feature, 0.5, key)),
                             rtol=1e-5, atol=1e-6)
  # The feature it reports (to distillation, the fusion head, caches) is not dropped, and the
  # evaluation forward (no rng) has no dropout.
  reported = out.rgb_features if name == "rgb" else out.skeleton_features
  np.testing.assert_array_equal(reported, feature)
  plain = model(batch[name])
  np.testing.assert_array_equal(stage.forward(model, batch).logits, plain.logits)
  assert np.abs(np.asarray(out.logits) - np.asarray(plain.logits)).max() > 1e-3


@pytest.mark.parametrize("name", ["rgb", "skeleton", "fusion"])
@pytest.mark.parametrize("rate", [-0.1, 1.0, float("nan")])
def test_feature_dropout_out_of_range_is_a_config_error(name, rate):
  config = configlib.base_config(("rgb", "skeleton", "fusion"))
  config.train[name].feature_dropout = rate
  with pytest.raises(ValueError,
                     match=rf"config.train.{name}.feature_dropout must be in \[0, 1\)"):
    configlib.validate(config)
