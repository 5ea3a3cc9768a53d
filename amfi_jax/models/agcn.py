"""Skeleton stream: the adaptive graph convolutional network of 2s-AGCN (SPEC §1.2).

The network takes (N, C, T, V, M) skeletons like the reference and works channels-last
internally: (N·M, T, V, C). The three partition subsets k of every graph convolution are stacked
on a leading axis, so a unit runs as a few batched einsums instead of a Python loop over k.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from amfi_jax import parallel
from amfi_jax.models import conv
from amfi_jax.models import layers as blocks  # `layers` is also an AGCN argument
from amfi_jax.models.graphs import SkeletonGraph, get_graph
from amfi_jax.models.outputs import ModelOutput

# (out_channels, temporal stride) of each TCN-GCN unit. The first unit has no residual.
PRESETS: dict[str, tuple[tuple[int, int], ...]] = {
    # lshiwjx/2s-AGCN model/agcn.py, l1..l10.
    "reference": ((64, 1), (64, 1), (64, 1), (64, 1), (128, 2), (128, 1), (128, 1), (256, 2),
                  (256, 1), (256, 1)),
}
# AMFI-Net appends one adaptive unit of 512 channels so the skeleton feature matches C = 512.
PRESETS["amfi"] = PRESETS["reference"] + ((512, 1),)

NUM_SUBSETS = 3
# Logical axes of the activations between units (channels-last), for `parallel.constrain`.
_ACTIVATION_AXES = (parallel.BATCH, parallel.TIME, parallel.JOINTS, parallel.CHANNELS)


def parse_layers(spec: str) -> tuple[tuple[int, int], ...]:
  """A preset name, or units as `channels[/stride]` separated by commas: `64,128/2,256/2,512`."""
  if spec in PRESETS:
    return PRESETS[spec]
  units = []
  try:
    for item in spec.split(","):
      channels, _, stride = item.strip().partition("/")
      units.append((int(channels), int(stride or 1)))
  except ValueError:
    units = []
  if not units or any(c < 1 or s < 1 for c, s in units):
    raise ValueError(f"AGCN layers {spec!r} is neither a preset ({sorted(PRESETS)}) nor a list "
                     "of `channels[/stride]` units such as '64,128/2,256/2,512'")
  return tuple(units)


def _stacked_param(rngs, shape, init, *axes):
  return nnx.Param(init(rngs.params(), shape, jnp.float32), **parallel.param_axes(*axes))


class AdaptiveGraphConv(nnx.Module):
  """gcn of a TCN-GCN unit: y = ReLU(BN(Σ_k W_k x (A_k + B_k + C_k)) + down(x)).

  Parameter names follow the reference: `PA` is B_k; `conv_a`/`conv_b` embed x for C_k (θ, φ);
  `conv_d` is W_k; each stacked over the three subsets.
  """

  def __init__(self, in_ch: int, out_ch: int, graph: SkeletonGraph, *, dtype, rngs: nnx.Rngs):
    v = graph.num_joints
    self.graph = graph
    self.dtype = dtype
    self.inter = max(1, out_ch // 4)
    k = NUM_SUBSETS
    conv_init = nnx.initializers.variance_scaling(2.0, "fan_out", "normal", batch_axis=(0,))
    # Reference conv_branch_init: normal with std sqrt(2 / (out · in · 1 · subsets)).
    branch_init = nnx.initializers.normal(float(np.sqrt(2.0 / (out_ch * in_ch * k))))
    zeros = nnx.initializers.zeros
    self.PA = nnx.Param(jnp.full((k, v, v), 1e-6, jnp.float32),
                        **parallel.param_axes(parallel.SUBSETS, parallel.JOINTS, None))
    ax_in = (parallel.SUBSETS, parallel.IN_CHANNELS, parallel.OUT_CHANNELS)
    ax_b = (parallel.SUBSETS, parallel.OUT_CHANNELS)
    self.conv_a_kernel = _stacked_param(rngs, (k, in_ch, self.inter), conv_init, *ax_in)
    self.conv_a_bias = _stacked_param(rngs, (k, self.inter), zeros, *ax_b)
    self.conv_b_kernel = _stacked_param(rngs, (k, in_ch, self.inter), conv_init, *ax_in)
    self.conv_b_bias = _stacked_param(rngs, (k, self.inter), zeros, *ax_b)
    self.conv_d_kernel = _stacked_param(rngs, (k, in_ch, out_ch), branch_init, *ax_in)
    self.conv_d_bias = _stacked_param(rngs, (k, out_ch), zeros, *ax_b)
    self.bn = blocks.batch_norm(out_ch, dtype=dtype, rngs=rngs, scale_init=1e-6)
    if in_ch != out_ch:
      self.down = blocks.dense(in_ch, out_ch, dtype=dtype, rngs=rngs,
                               kernel_init=blocks.kaiming_fan_out)
      self.down_bn = blocks.batch_norm(out_ch, dtype=dtype, rngs=rngs)
    else:
      self.down = self.down_bn = None

  def __call__(self, x: jax.Array) -> jax.Array:
    """x: (N, T, V, C_in) → (N, T, V, C_out)."""
    t = x.shape[1]
    cast = lambda p: p[...].astype(self.dtype)
    theta = jnp.einsum("ntvc,kci->nktvi", x, cast(self.conv_a_kernel))
    theta = theta + cast(self.conv_a_bias)[None, :, None, None, :]
    phi = jnp.einsum("ntvc,kci->nktvi", x, cast(self.conv_b_kernel))
    phi = phi + cast(self.conv_b_bias)[None, :, None, None, :]
    # C_k: similarity of every joint pair over (inter channels × time), divided by inter·T (not its
    # square root) and normalised over the FIRST joint axis, as in the reference.
    scores = jnp.einsum("nktvi,nktwi->nkvw", theta, phi, preferred_element_type=jnp.float32)
    per_sample = jax.nn.softmax(scores / (self.inter * t), axis=-2)
    adjacency = jnp.asarray(self.graph.adjacency) + self.PA[...]
    graph = (per_sample + adjacency[None]).astype(self.dtype)
    kernel = cast(self.conv_d_kernel)
    if conv.uses_rewrite():
      z = _graph_conv_channels_last(x, graph, kernel)
    else:
      aggregated = jnp.einsum("ntvc,nkvw->nktwc", x, graph)
      z = jnp.einsum("nktwc,kcd->ntwd", aggregated, kernel)
    z = z + cast(self.conv_d_bias).sum(axis=0)
    y = self.bn(z)
    y = y + (x if self.down is None else self.down_bn(self.down(x)))
    return nnx.relu(y)


def _graph_conv_channels_last(x: jax.Array, graph: jax.Array, kernel: jax.Array) -> jax.Array:
  """Σ_k W_k x G_k, (N, T, V, C) × (N, K, V, W) × (K, C, D) → (N, T, W, D), without transposes.

  The CPU formulation (other backends keep the two einsums): XLA's CPU backend materialises every
  transpose its einsums need, and the einsums need the (N, K, T, W, C) product in two layouts,
  forward and backward. Projecting first is one matrix product whose output is already
  (N, T, V, K, D); the graph, broadcast over time (N·T·W·V·K values, about the size of one
  activation), then contracts (V, K) per (sample, frame) as a batched matrix product whose output
  is the (N, T, W, D) layout itself. (Aggregating first, on the smaller C of a widening unit,
  measured no faster in the whole network.) Measured in docs/benchmarks.md.
  """
  n, t, v, c = x.shape
  k, _, d = kernel.shape
  w = graph.shape[-1]
  projected = x.reshape(n * t * v, c) @ kernel.transpose(1, 0, 2).reshape(c, k * d)
  per_frame = jnp.broadcast_to(graph.transpose(0, 3, 2, 1).reshape(n, 1, w, v * k),
                               (n, t, w, v * k))
  return jax.lax.dot_general(per_frame, projected.reshape(n, t, v * k, d),
                             (((3,), (2,)), ((0, 1), (0, 1))))


class TemporalConv(nnx.Module):
  """unit_tcn: Conv over time (kernel k×1, padding (k−1)/2, stride s, with bias) → BN."""

  def __init__(self, in_ch, out_ch, kernel: int, stride: int, *, dtype, rngs):
    self.conv = blocks.conv(in_ch, out_ch, (kernel, 1), strides=(stride, 1),
                            padding=((kernel - 1) // 2, 0), use_bias=True, dtype=dtype, rngs=rngs)
    self.bn = blocks.batch_norm(out_ch, dtype=dtype, rngs=rngs)

  def __call__(self, x):
    return self.bn(self.conv(x))


class TCNGCNUnit(nnx.Module):
  """y = ReLU(tcn(gcn(x)) + residual(x))."""

  def __init__(self, in_ch, out_ch, stride, graph, *, residual: bool, dtype, rngs):
    self.gcn1 = AdaptiveGraphConv(in_ch, out_ch, graph, dtype=dtype, rngs=rngs)
    self.tcn1 = TemporalConv(out_ch, out_ch, 9, stride, dtype=dtype, rngs=rngs)
    self.has_residual = residual
    self.identity_residual = residual and in_ch == out_ch and stride == 1
    self.residual = (TemporalConv(in_ch, out_ch, 1, stride, dtype=dtype, rngs=rngs)
                     if residual and not self.identity_residual else None)

  def __call__(self, x):
    y = self.tcn1(self.gcn1(x))
    if self.identity_residual:
      y = y + x
    elif self.residual is not None:
      y = y + self.residual(x)
    return nnx.relu(y)


class AGCN(nnx.Module):
  """2s-AGCN skeleton network.

  Args:
    num_classes: classifier outputs.
    layers: a preset name (`reference`, `amfi`), a spec string (see `parse_layers`) or
      (out_channels, stride) pairs.
    width_multiplier: scales every unit's width (tiny test and demo variants).
    in_channels: 3 (joints) or 6 (joints and bones).
    graph: skeleton graph name (`ntu`, `utd_mhad`).
    num_persons: M.
    dtype: compute dtype; parameters stay float32.
  """

  def __init__(
      self,
      num_classes: int,
      *,
      layers: str | Sequence[Sequence[int]] = "amfi",
      width_multiplier: float = 1.0,
      in_channels: int = 3,
      graph: str = "ntu",
      num_persons: int = 2,
      dtype=jnp.float32,
      rngs: nnx.Rngs,
  ):
    layers_spec = parse_layers(layers) if isinstance(layers, str) else tuple(map(tuple, layers))
    self.graph = get_graph(graph)
    self.in_channels = in_channels
    self.num_persons = num_persons
    self.dtype = dtype
    v = self.graph.num_joints
    self.data_bn = blocks.batch_norm(num_persons * v * in_channels, dtype=dtype, rngs=rngs)
    units = []
    ch = in_channels
    for i, (width, stride) in enumerate(layers_spec):
      out = max(4, round(width * width_multiplier))
      units.append(TCNGCNUnit(ch, out, stride, self.graph, residual=i > 0, dtype=dtype, rngs=rngs))
      ch = out
    self.units = nnx.List(units)
    self.feature_dim = ch
    self.fc = _classifier(ch, num_classes, dtype=dtype, rngs=rngs)

  def features(self, skeleton: jax.Array) -> jax.Array:
    """(N, C, T, V, M) skeletons → (N, C_feat)."""
    n, c, t, v, m = skeleton.shape
    if (c, v, m) != (self.in_channels, self.graph.num_joints, self.num_persons):
      raise ValueError(
          f"AGCN expects skeletons shaped (N, {self.in_channels}, T, {self.graph.num_joints}, "
          f"{self.num_persons}) for graph {self.graph.name!r}, got {skeleton.shape}")
    # data_bn normalises every (person, joint, coordinate) channel; index m·V·C + v·C + c.
    x = jnp.transpose(skeleton.astype(jnp.float32), (0, 2, 4, 3, 1)).reshape(n, t, m * v * c)
    x = self.data_bn(x.astype(self.dtype))
    x = x.reshape(n, t, m, v, c).transpose(0, 2, 1, 3, 4).reshape(n * m, t, v, c)
    for unit in self.units:
      x = parallel.constrain(x, *_ACTIVATION_AXES)
      x = unit(x)
    feature = x.mean(axis=(1, 2)).reshape(n, m, -1).mean(axis=1)
    return feature

  def __call__(self, skeleton: jax.Array,
               feature_dropout: tuple[jax.Array, float] | None = None) -> ModelOutput:
    """`feature_dropout`: (key, rate) of a dropout of the pooled feature before the classifier
    (training only, `config.train.skeleton.feature_dropout`; the reference's `drop_out`); the
    feature returned is not dropped."""
    feature = self.features(skeleton)
    logits = self.fc(blocks.dropout_if(feature, feature_dropout)).astype(jnp.float32)
    return ModelOutput(logits=logits, skeleton_features=feature, skeleton_logits=logits)


def _classifier(features, num_classes, *, dtype, rngs):
  # Reference: normal with std sqrt(2 / num_classes), bias 0.
  return blocks.classifier(features, num_classes, std=float(np.sqrt(2.0 / num_classes)),
                           dtype=dtype, rngs=rngs)
