"""Fusion heads: the AMFI head of the paper (§3.3) and the ablation fusions of its Table 3.

Every head maps (skeleton feature S, RGB feature R), each (B, C), to a `FusionOutput`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx, struct

from amfi_jax.models import layers

ASSOCIATIONS = ("tokens", "elements")
DECISION_MODALITIES = ("skeleton", "rgb")
FUSIONS = ("amfi", "average", "multiply", "max", "concat")


@struct.dataclass
class FusionOutput:
  logits: jax.Array
  features: jax.Array
  gate: jax.Array | None = None


def gate_loss(gate: jax.Array, eps: float = 1e-6) -> jax.Array:
  """L_gate = mean(−log(1 − g)) exactly as printed (paper Eq. 21).

  As printed it pushes g towards 0, i.e. towards the non-decision modality; 1 − g is clamped to
  [eps, 1] so a saturated gate gives a large finite loss instead of inf.
  """
  return jnp.mean(-jnp.log(jnp.clip(1.0 - gate.astype(jnp.float32), eps, 1.0)))


class NonLocalAssociation(nnx.Module):
  """Feature association (paper Eqs. 7–11): an embedded-Gaussian non-local block on X = [S, R].

  y_i = Σ_j softmax_j(θ(x_i)ᵀ β(x_j)) g(x_j);  z_i = W_z y_i + x_i.

  The paper does not say what a "position" of a feature vector is, so both readings exist:
  `tokens`: the two modality vectors are the two positions, C channels each (inter width C/2);
  `elements`: each of the 2C scalars is a position, embedded in `element_width` channels.
  """

  def __init__(self, feature_dim: int, mode: str, *, element_width: int, dtype=jnp.float32,
               rngs: nnx.Rngs):
    if mode not in ASSOCIATIONS:
      raise ValueError(f"fusion.association must be one of {ASSOCIATIONS}, got {mode!r}")
    self.mode = mode
    channels = feature_dim if mode == "tokens" else 1
    inter = max(1, feature_dim // 2) if mode == "tokens" else element_width
    make = lambda i, o: layers.dense(i, o, dtype=dtype, rngs=rngs)
    self.theta, self.beta, self.g = make(channels, inter), make(channels, inter), make(channels, inter)
    self.w_z = make(inter, channels)
    self.feature_dim = feature_dim

  def __call__(self, x: jax.Array) -> jax.Array:
    """x: (B, 2C) → z: (B, 2C)."""
    b = x.shape[0]
    positions = x.reshape(b, 2, self.feature_dim) if self.mode == "tokens" else x[..., None]
    affinity = jnp.einsum("bic,bjc->bij", self.theta(positions), self.beta(positions),
                          preferred_element_type=jnp.float32)
    attention = jax.nn.softmax(affinity, axis=-1).astype(positions.dtype)
    y = jnp.einsum("bij,bjc->bic", attention, self.g(positions))
    return (self.w_z(y) + positions).reshape(b, -1)


class FeatureWeighting(nnx.Module):
  """Squeeze-and-excitation over the associated feature: Y = Z ⊙ sigmoid(FC(ReLU(FC(Z))))."""

  def __init__(self, features: int, reduction: int, *, dtype=jnp.float32, rngs: nnx.Rngs):
    if reduction < 1 or features // reduction < 1:
      raise ValueError(f"fusion.se_reduction must be in [1, {features}], got {reduction}")
    self.squeeze = layers.dense(features, features // reduction, dtype=dtype, rngs=rngs)
    self.excite = layers.dense(features // reduction, features, dtype=dtype, rngs=rngs)

  def __call__(self, z):
    return z * jax.nn.sigmoid(self.excite(nnx.relu(self.squeeze(z))))


class AMFIHead(nnx.Module):
  """Association → weighting → confidence gate (Eqs. 18–19) → classifier."""

  def __init__(self, feature_dim: int, num_classes: int, *, association: str = "tokens",
               element_width: int = 8, se_reduction: int = 16, decision: str = "skeleton",
               dtype=jnp.float32, rngs: nnx.Rngs):
    if decision not in DECISION_MODALITIES:
      raise ValueError(f"fusion.decision must be one of {DECISION_MODALITIES}, got {decision!r}")
    self.decision = decision
    self.feature_dim = feature_dim
    self.association = NonLocalAssociation(feature_dim, association, element_width=element_width,
                                           dtype=dtype, rngs=rngs)
    self.weighting = FeatureWeighting(2 * feature_dim, se_reduction, dtype=dtype, rngs=rngs)
    self.gate = layers.dense(feature_dim, feature_dim, dtype=dtype, rngs=rngs)
    self.classifier = layers.classifier(feature_dim, num_classes, std=None, dtype=dtype, rngs=rngs)

  def __call__(self, skeleton: jax.Array, rgb: jax.Array) -> FusionOutput:
    weighted = self.weighting(self.association(jnp.concatenate([skeleton, rgb], axis=-1)))
    y_s, y_r = weighted[:, :self.feature_dim], weighted[:, self.feature_dim:]
    decisive, other = (y_s, y_r) if self.decision == "skeleton" else (y_r, y_s)
    g = jax.nn.sigmoid(self.gate(decisive))
    fused = decisive * g + other * (1.0 - g)
    return FusionOutput(logits=self.classifier(fused).astype(jnp.float32), features=fused,
                        gate=g.astype(jnp.float32))


class SimpleFusionHead(nnx.Module):
  """Ablation fusions (Table 3): element-wise average / product / max, or concatenation."""

  def __init__(self, feature_dim: int, num_classes: int, *, kind: str, dtype=jnp.float32,
               rngs: nnx.Rngs):
    if kind not in FUSIONS or kind == "amfi":
      raise ValueError(f"Unknown simple fusion {kind!r}")
    self.kind = kind
    width = 2 * feature_dim if kind == "concat" else feature_dim
    self.classifier = layers.classifier(width, num_classes, std=None, dtype=dtype, rngs=rngs)

  def __call__(self, skeleton: jax.Array, rgb: jax.Array) -> FusionOutput:
    combine = {
        "average": lambda: (skeleton + rgb) / 2,
        "multiply": lambda: skeleton * rgb,
        "max": lambda: jnp.maximum(skeleton, rgb),
        "concat": lambda: jnp.concatenate([skeleton, rgb], axis=-1),
    }[self.kind]
    fused = combine()
    return FusionOutput(logits=self.classifier(fused).astype(jnp.float32), features=fused)


def build_fusion_head(kind: str, feature_dim: int, num_classes: int, *, association="tokens",
                      element_width=8, se_reduction=16, decision="skeleton", dtype=jnp.float32,
                      rngs: nnx.Rngs):
  if kind not in FUSIONS:
    raise ValueError(f"fusion.kind must be one of {FUSIONS}, got {kind!r}")
  if kind == "amfi":
    return AMFIHead(feature_dim, num_classes, association=association, element_width=element_width,
                    se_reduction=se_reduction, decision=decision, dtype=dtype, rngs=rngs)
  return SimpleFusionHead(feature_dim, num_classes, kind=kind, dtype=dtype, rngs=rngs)
