"""Building blocks shared by the streams, with PyTorch's numerics where they differ from Flax's."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from amfi_jax import parallel
from amfi_jax.models import conv as conv_impl

# PyTorch's kaiming_normal_(mode="fan_out", nonlinearity="relu"): untruncated normal, 2/fan_out.
kaiming_fan_out = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")


def batch_norm(features: int, *, dtype, rngs: nnx.Rngs, scale_init: float = 1.0) -> nnx.BatchNorm:
  """BatchNorm with PyTorch's defaults: eps 1e-5, running averages updated with momentum 0.1."""
  return nnx.BatchNorm(
      features,
      momentum=0.9,  # Flax keeps `momentum` of the old value; PyTorch's 0.1 is the new value's share.
      epsilon=1e-5,
      # Two-pass variance, like PyTorch's: E[x²] − E[x]² cancels catastrophically for channels
      # with a large mean and a small spread (skeleton coordinates), making results depend on
      # the reduction order, e.g. on how many devices share the batch.
      use_fast_variance=False,
      dtype=dtype,
      param_dtype=jnp.float32,
      scale_init=nnx.initializers.constant(scale_init),
      scale_metadata=parallel.param_axes(parallel.OUT_CHANNELS),
      bias_metadata=parallel.param_axes(parallel.OUT_CHANNELS),
      rngs=rngs,
  )


def conv(
    in_features: int,
    out_features: int,
    kernel_size: Sequence[int],
    *,
    strides: Sequence[int] | int = 1,
    padding: Sequence[int] | int = 0,
    use_bias: bool,
    dtype,
    rngs: nnx.Rngs,
    kernel_init=kaiming_fan_out,
) -> nnx.Conv:
  """N-d convolution, channels last, with explicit symmetric padding as PyTorch pads.

  (`'SAME'` pads asymmetrically for stride 2 and would not match PyTorch.) The convolution itself
  is `amfi_jax.models.conv.conv_general_dilated`: on CPU an exact rewrite into XLA's fast
  primitives, elsewhere the native one.
  """
  kernel_size = tuple(kernel_size)
  if isinstance(padding, int):
    padding = (padding,) * len(kernel_size)
  spatial = (None,) * len(kernel_size)
  return nnx.Conv(
      in_features,
      out_features,
      kernel_size,
      strides=strides,
      padding=tuple((p, p) for p in padding),
      use_bias=use_bias,
      dtype=dtype,
      param_dtype=jnp.float32,
      conv_general_dilated=conv_impl.conv_general_dilated,
      kernel_init=kernel_init,
      bias_init=nnx.initializers.zeros,
      kernel_metadata=parallel.param_axes(*spatial, parallel.IN_CHANNELS, parallel.OUT_CHANNELS),
      bias_metadata=parallel.param_axes(parallel.OUT_CHANNELS),
      rngs=rngs,
  )


def dense(
    in_features: int,
    out_features: int,
    *,
    dtype,
    rngs: nnx.Rngs,
    kernel_init=nnx.initializers.lecun_normal(),
    out_axis: str = parallel.OUT_CHANNELS,
) -> nnx.Linear:
  """Linear layer (also a 1×1 convolution on channels-last data) with a bias."""
  return nnx.Linear(
      in_features,
      out_features,
      dtype=dtype,
      param_dtype=jnp.float32,
      kernel_init=kernel_init,
      bias_init=nnx.initializers.zeros,
      kernel_metadata=parallel.param_axes(parallel.IN_CHANNELS, out_axis),
      bias_metadata=parallel.param_axes(out_axis),
      rngs=rngs,
  )


def classifier(in_features: int, num_classes: int, *, std: float | None, dtype, rngs: nnx.Rngs):
  """Final Linear to class logits; `std` None keeps Flax's default (LeCun normal) init."""
  init = nnx.initializers.normal(std) if std is not None else nnx.initializers.lecun_normal()
  return dense(in_features, num_classes, dtype=dtype, rngs=rngs, kernel_init=init,
               out_axis=parallel.CLASSES)


def to_dtype(name: str):
  try:
    return {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[name]
  except KeyError:
    raise ValueError(f"model.dtype must be 'float32' or 'bfloat16', got {name!r}") from None


def dropout(x: jax.Array, rate: float, key: jax.Array) -> jax.Array:
  """Inverted dropout: each element zeroed with probability `rate`, the rest scaled by
  1 / (1 − rate) so the expectation is unchanged (nothing to undo at evaluation)."""
  keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
  return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x))


def dropout_if(x: jax.Array, feature_dropout: tuple[jax.Array, float] | None) -> jax.Array:
  """`dropout` with (key, rate) as the models' `feature_dropout` argument passes it; None (the
  evaluation forward) leaves x as it is."""
  if feature_dropout is None:
    return x
  key, rate = feature_dropout
  return dropout(x, rate, key)
