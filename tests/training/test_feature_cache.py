"""The fusion stage on cached stream features trains the same head as the uncached stage; shared
features are reused only for the same streams and data."""

from __future__ import annotations

import types

import numpy as np
import pytest

from amfi_jax import configlib
from amfi_jax.evaluation import reports
from amfi_jax.training import feature_cache, loop
from amfi_jax.workdir import RunDir

from tests.training.conftest import tiny_run_config


def _fusion_only(tiny_dataset, streams: RunDir, cache: bool):
  """The fusion stage alone, 4 steps, on the trained streams of `streams`."""
  config = tiny_run_config(tiny_dataset)
  config.train.fusion.num_steps = 4
  config.stages = ("fusion",)
  config.init_from.rgb = streams.stage("rgb").best_stream
  config.init_from.skeleton = streams.stage("skeleton").best_stream
  config.train.fusion.augment = False
  config.train.fusion.cache_features = cache
  config.train.fusion.eval_every_epochs = 0.5  # two selection passes inside the 4 steps
  # 4 of the 8 stored frames, as 2 views (every stored frame once): the clips are reduced and
  # the RGB stream averages its views' features; the cached feature vectors are left whole.
  config.data.clip_frames = 4
  config.data.clip_views = 2
  return config


def test_cached_and_uncached_fusion_agree(tiny_dataset, tiny_trained_run, tmp_path):
  streams = RunDir(tiny_trained_run)  # read only: the fusion runs load its streams
  results, scores = {}, {}
  for cache in (False, True):
    run = RunDir(tmp_path / f"fusion_cache_{cache}")
    results[cache] = loop.train_and_evaluate(_fusion_only(tiny_dataset, streams, cache),
                                             run.path)["fusion"]
    scores[cache] = reports.read_per_sample_scores(run.stage("fusion").test_scores)
  uncached, cached = results[False], results[True]
  assert cached["best_step"] == uncached["best_step"]
  for split in ("validation", "test"):
    for metric in ("top1", "top5", "mean_class_accuracy", "num_samples"):
      assert cached[split][metric] == uncached[split][metric], (split, metric)
    assert cached[split]["loss"] == pytest.approx(uncached[split]["loss"], rel=1e-4, abs=1e-5)
  assert scores[True].keys() == scores[False].keys()
  for name, row in scores[False].items():
    np.testing.assert_allclose(scores[True][name]["scores"], row["scores"],
                               atol=1e-4)


def test_cache_needs_frozen_unaugmented_streams():
  config = configlib.base_config(("rgb", "skeleton", "fusion"))
  config.train.fusion.cache_features = True
  with pytest.raises(ValueError, match="config.train.fusion.augment"):
    configlib.validate(config)
  config.train.fusion.augment = False
  config.model.fusion.freeze_backbones = False
  with pytest.raises(ValueError, match="freeze_backbones"):
    configlib.validate(config)


def test_shared_features_are_recomputed_only_for_another_key():
  shared, calls = feature_cache.Shared(), []

  def compute():
    calls.append(len(calls))
    return {"train": len(calls)}

  assert shared.get("a", compute) == {"train": 1}
  assert shared.get("a", compute) == {"train": 1} and len(calls) == 1
  assert shared.get("b", compute) == {"train": 2} and len(calls) == 2


def test_shared_features_key_ignores_the_head_and_names_the_streams():
  config = configlib.base_config(("fusion",))
  mesh = types.SimpleNamespace(shape={"data": 1, "model": 1})
  paths = {"rgb": "runs/a/rgb/best_stream", "skeleton": "runs/a/skeleton/best_stream"}
  key = feature_cache.Shared.key_of(config, paths, mesh)
  config.model.fusion.kind = "max"
  config.model.fusion.gate_weight = 3.0
  assert feature_cache.Shared.key_of(config, paths, mesh) == key
  other_run = dict(paths, skeleton="runs/b/skeleton/best_stream")
  assert feature_cache.Shared.key_of(config, other_run, mesh) != key
  config.data.skeleton_frames = 32
  assert feature_cache.Shared.key_of(config, paths, mesh) != key
