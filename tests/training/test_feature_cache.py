"""The fusion stage on cached stream features trains the same head as the uncached stage."""

from __future__ import annotations

import numpy as np
import pytest

from amfi_jax import configlib
from amfi_jax.evaluation import reports
from amfi_jax.training import loop
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
