"""The fusion stage on cached stream features (`config.train.fusion.cache_features`).

With frozen streams and no augmentation in the fusion stage, each sample's stream features are
the same at every step, so they are computed once per split (one inference pass of both
streams) and the head trains on them: seconds instead of a stream forward per step. The cached
stage keeps the state, parameters and loss of the uncached one (`stages.on_cached_features`)
and the training pipeline visits the records in the same order (same length, seed and
pipeline), so it trains the same head as the uncached path.

`Shared` hands the features of one run's frozen streams to several fusion-head trainings in one
process (the ablations), so that they are computed once instead of once per head.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable

import numpy as np

from amfi_jax.training import evaluation


@dataclasses.dataclass(frozen=True)
class FeatureSource:
  """A random-access source of records {rgb_features, skeleton_features, label}."""

  rgb: np.ndarray  # (N, C) float32
  skeleton: np.ndarray  # (N, C) float32
  labels: np.ndarray  # (N,)

  def __len__(self) -> int:
    return len(self.labels)

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    return {"rgb_features": self.rgb[index], "skeleton_features": self.skeleton[index],
            "label": np.int64(self.labels[index])}


def compute(eval_step, state, source, **eval_kwargs) -> FeatureSource:
  """The frozen streams' features of every record of `source`, in record order.

  `eval_step` is the uncached fusion stage's (`make_eval_step`), which returns the pooled stream
  features besides the logits.
  """
  result = evaluation.in_record_order(eval_step, state, source, **eval_kwargs)
  return FeatureSource(rgb=result.features["rgb"], skeleton=result.features["skeleton"],
                       labels=result.labels)


@dataclasses.dataclass
class Shared:
  """Cached splits {name: FeatureSource | None} kept between fusion-stage trainings.

  The features depend on the stream weights the stage loads, the data settings, the streams'
  model settings, the evaluation batch and the mesh, and not on the fusion head: `key_of` writes
  exactly those, and a training whose key differs computes (and keeps) its own.
  """

  key: str | None = None
  sources: dict | None = None

  @staticmethod
  def key_of(config, stream_paths: dict[str, str], mesh) -> str:
    """`stream_paths`: {stream: the checkpoint directory its weights are loaded from}."""
    model = {k: v for k, v in config.model.to_dict().items() if k != "fusion"}
    paths = {stream: os.path.abspath(path) for stream, path in stream_paths.items()}
    return json.dumps({"streams": paths, "data": config.data.to_dict(), "model": model,
                       "eval_batch_size": config.train.fusion.eval_batch_size,
                       "mesh": dict(mesh.shape)}, sort_keys=True, default=str)

  def get(self, key: str, compute_sources: Callable[[], dict]) -> dict:
    """The sources cached under `key`, or `compute_sources()` (then cached under `key`)."""
    if key != self.key:
      self.sources, self.key = compute_sources(), key
    return self.sources
