"""What the models return: logits plus the features and gate values the reports need."""

from __future__ import annotations

import jax
from flax import struct


@struct.dataclass
class ModelOutput:
  """Outputs of a stream or of the full model (fields a model does not produce stay None).

  Attributes:
    logits: (B, classes) of the model being trained (the fused logits for AMFI-Net).
    rgb_features / skeleton_features: (B, C) stream features before their classifiers.
    fused_features: (B, C) fusion-head feature fed to the final classifier.
    gate: (B, C) confidence gate g of the AMFI head (paper Eq. 18).
    rgb_logits / skeleton_logits: the single-stream classifiers' logits.
  """

  logits: jax.Array
  rgb_features: jax.Array | None = None
  skeleton_features: jax.Array | None = None
  fused_features: jax.Array | None = None
  gate: jax.Array | None = None
  rgb_logits: jax.Array | None = None
  skeleton_logits: jax.Array | None = None
