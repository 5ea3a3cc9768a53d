"""The fusion stage on cached stream features (`config.train.fusion.cache_features`).

With frozen streams and no augmentation in the fusion stage, each sample's stream features are
the same at every step, so they are computed once per split (one inference pass of both
streams) and the head trains on them: seconds instead of a stream forward per step. The cached
stage keeps the state, parameters and loss of the uncached one (`stages.on_cached_features`)
and the training pipeline visits the records in the same order (same length, seed and
pipeline), so it trains the same head as the uncached path.
"""

from __future__ import annotations

import dataclasses

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
  result = evaluation.evaluate(eval_step, state, source, keep_features=True, **eval_kwargs)
  if not np.array_equal(result.indices, np.arange(len(source))):
    raise RuntimeError("feature cache: the evaluation did not visit every record once in order")
  return FeatureSource(rgb=result.features["rgb"], skeleton=result.features["skeleton"],
                       labels=result.labels)
