"""RGB stream: ResNet3D-18, identical to torchvision's `r3d_18` (SPEC §1.1).

Layout inside JAX is (N, T, H, W, C). With the default settings the parameter tree maps one to
one onto torchvision's state_dict (see `amfi_jax.convert`).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from amfi_jax import parallel
from amfi_jax.models import layers
from amfi_jax.models.outputs import ModelOutput

# torchvision's Kinetics-400 statistics for frames scaled to [0, 1].
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)
INPUT_NORMALIZATIONS = ("minmax", "kinetics", "unit", "none")
# Logical axes of the activations between blocks (channels-last), for `parallel.constrain`.
_ACTIVATION_AXES = (parallel.BATCH, parallel.TIME, parallel.HEIGHT, parallel.WIDTH,
                    parallel.CHANNELS)


def normalize_clip(clip: jax.Array, mode: str, dtype) -> jax.Array:
  """Turns stored frames into network input on the device (frames are shipped as uint8).

  `minmax`: paper Eq. 3, each clip scaled to [0, 1] by its own min and max.
  `kinetics`: x/255 then torchvision's Kinetics mean/std (for converted torchvision weights).
  `unit`: x/255.  `none`: used as is (e.g. depth already in [0, 1]).
  """
  x = clip.astype(jnp.float32)
  if mode == "minmax":
    axes = tuple(range(1, x.ndim))
    lo = x.min(axis=axes, keepdims=True)
    hi = x.max(axis=axes, keepdims=True)
    x = (x - lo) / jnp.maximum(hi - lo, 1e-6)
  elif mode in ("kinetics", "unit"):
    if clip.dtype == jnp.uint8:
      x = x / 255.0
    if mode == "kinetics":
      x = (x - jnp.asarray(KINETICS_MEAN)) / jnp.asarray(KINETICS_STD)
  elif mode != "none":
    raise ValueError(f"input_normalization must be one of {INPUT_NORMALIZATIONS}, got {mode!r}")
  return x.astype(dtype)


class ConvBN(nnx.Module):
  """Conv3d (no bias) → BatchNorm, the unit torchvision wraps in `Sequential(conv, bn[, relu])`."""

  def __init__(self, in_ch, out_ch, kernel, stride, padding, *, dtype, rngs):
    self.conv = layers.conv(in_ch, out_ch, kernel, strides=stride, padding=padding,
                            use_bias=False, dtype=dtype, rngs=rngs)
    self.bn = layers.batch_norm(out_ch, dtype=dtype, rngs=rngs)

  def __call__(self, x):
    return self.bn(self.conv(x))


class BasicBlock(nnx.Module):
  """conv3×3×3 → BN → ReLU → conv3×3×3 → BN, plus shortcut, then ReLU."""

  def __init__(self, in_ch, out_ch, stride, *, dtype, rngs):
    self.conv1 = ConvBN(in_ch, out_ch, (3, 3, 3), stride, 1, dtype=dtype, rngs=rngs)
    self.conv2 = ConvBN(out_ch, out_ch, (3, 3, 3), 1, 1, dtype=dtype, rngs=rngs)
    needs_projection = stride != 1 or in_ch != out_ch
    self.downsample = (ConvBN(in_ch, out_ch, (1, 1, 1), stride, 0, dtype=dtype, rngs=rngs)
                       if needs_projection else None)

  def __call__(self, x):
    shortcut = x if self.downsample is None else self.downsample(x)
    y = nnx.relu(self.conv1(x))
    y = self.conv2(y)
    return nnx.relu(y + shortcut)


class ResNet3D(nnx.Module):
  """ResNet3D (r3d) with BasicBlocks; defaults give r3d_18.

  Args:
    num_classes: classifier outputs.
    width_multiplier: scales the stage widths 64/128/256/512 (tiny test and demo variants).
    blocks_per_stage: BasicBlocks in each of the four stages.
    in_channels: 3 for RGB, 1 for depth.
    input_normalization: see `normalize_clip`.
    dtype: compute dtype; parameters stay float32.
  """

  def __init__(
      self,
      num_classes: int,
      *,
      width_multiplier: float = 1.0,
      blocks_per_stage: Sequence[int] = (2, 2, 2, 2),
      in_channels: int = 3,
      input_normalization: str = "minmax",
      dtype=jnp.float32,
      rngs: nnx.Rngs,
  ):
    if len(blocks_per_stage) != 4 or min(blocks_per_stage) < 1:
      raise ValueError(f"blocks_per_stage must be four positive counts, got {blocks_per_stage}")
    if input_normalization not in INPUT_NORMALIZATIONS:
      raise ValueError(f"input_normalization must be one of {INPUT_NORMALIZATIONS}, "
                       f"got {input_normalization!r}")
    widths = [max(1, round(w * width_multiplier)) for w in (64, 128, 256, 512)]
    self.input_normalization = input_normalization
    self.dtype = dtype
    self.in_channels = in_channels
    self.stem = ConvBN(in_channels, widths[0], (3, 7, 7), (1, 2, 2), (1, 3, 3),
                       dtype=dtype, rngs=rngs)
    stages = []
    in_ch = widths[0]
    for stage, (width, blocks) in enumerate(zip(widths, blocks_per_stage)):
      stride = 1 if stage == 0 else 2
      blocks_list = []
      for b in range(blocks):
        blocks_list.append(BasicBlock(in_ch, width, stride if b == 0 else 1, dtype=dtype, rngs=rngs))
        in_ch = width
      stages.append(nnx.List(blocks_list))
    self.layer1, self.layer2, self.layer3, self.layer4 = stages
    self.feature_dim = widths[-1]
    self.fc = layers.classifier(self.feature_dim, num_classes, std=0.01, dtype=dtype, rngs=rngs)

  def features(self, clip: jax.Array) -> jax.Array:
    """(N, T, H, W, C) clip (uint8 or float) → (N, C_feat) pooled feature; (N, V, T, H, W, C),
    V views of each sample (multi-view testing, `config.data.clip_views`) → the mean of the V
    views' pooled features (so the logits are the mean of theirs too)."""
    if clip.ndim not in (5, 6) or clip.shape[-1] != self.in_channels:
      raise ValueError(f"ResNet3D expects clips shaped (N, T, H, W, {self.in_channels}) or "
                       f"(N, views, T, H, W, {self.in_channels}), got {clip.shape}")
    if clip.ndim == 6:
      n, views = clip.shape[:2]
      pooled = self.features(clip.reshape(n * views, *clip.shape[2:]))
      return pooled.reshape(n, views, -1).mean(axis=1)
    x = normalize_clip(clip, self.input_normalization, self.dtype)
    x = parallel.constrain(x, *_ACTIVATION_AXES)
    x = nnx.relu(self.stem(x))
    for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
      for block in stage:
        x = block(x)
      x = parallel.constrain(x, *_ACTIVATION_AXES)
    return x.mean(axis=(1, 2, 3))

  def __call__(self, clip: jax.Array,
               feature_dropout: tuple[jax.Array, float] | None = None) -> ModelOutput:
    """`feature_dropout`: (key, rate) of a dropout of the pooled feature before the classifier
    (training only, `config.train.rgb.feature_dropout`); the feature returned is not dropped."""
    feature = self.features(clip)
    logits = self.fc(layers.dropout_if(feature, feature_dropout))
    return ModelOutput(logits=logits.astype(jnp.float32), rgb_features=feature,
                       rgb_logits=logits.astype(jnp.float32))
