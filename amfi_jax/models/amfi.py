"""AMFI-Net: the RGB and skeleton streams joined by a fusion head, and the per-stage models."""

from __future__ import annotations

import jax
from flax import nnx

from amfi_jax.models import layers
from amfi_jax.workdir import STAGES
from amfi_jax.models.agcn import AGCN
from amfi_jax.models.fusion import build_fusion_head
from amfi_jax.models.outputs import ModelOutput
from amfi_jax.models.resnet3d import ResNet3D



class AMFINet(nnx.Module):
  """Both streams plus a fusion head.

  The streams are full single-stream models (with their own classifiers), so the best RGB and
  skeleton stage checkpoints load into `self.rgb` and `self.skeleton` unchanged. With
  `freeze_backbones` (the paper's stage 3) the streams run in inference mode — BatchNorm uses and
  keeps its running statistics — and no gradient flows into them.
  """

  def __init__(self, rgb: ResNet3D, skeleton: AGCN, head: nnx.Module, *, freeze_backbones: bool):
    if rgb.feature_dim != skeleton.feature_dim:
      raise ValueError(
          f"The fusion head needs equal feature widths, got RGB {rgb.feature_dim} and skeleton "
          f"{skeleton.feature_dim}: set model.skeleton.layers (the `amfi` preset ends at 512) or the "
          "width multipliers so both streams end at the same width")
    self.rgb = rgb
    self.skeleton = skeleton
    self.head = head
    self.freeze_backbones = freeze_backbones

  def __call__(self, rgb: jax.Array, skeleton: jax.Array,
               feature_dropout: tuple[jax.Array, float] | None = None) -> ModelOutput:
    """`feature_dropout`: (key, rate) of a dropout of both streams' features before the head
    (training only; `config.train.fusion.feature_dropout`)."""
    rgb_net, skeleton_net = self.rgb, self.skeleton
    if self.freeze_backbones:
      rgb_net = nnx.view(rgb_net, use_running_average=True)
      skeleton_net = nnx.view(skeleton_net, use_running_average=True)
    r = rgb_net(rgb)
    s = skeleton_net(skeleton)
    r_feat, s_feat = r.rgb_features, s.skeleton_features
    if self.freeze_backbones:
      r_feat, s_feat = jax.lax.stop_gradient(r_feat), jax.lax.stop_gradient(s_feat)
    fused = self._fuse(r_feat, s_feat, feature_dropout)
    return ModelOutput(logits=fused.logits, rgb_features=r_feat, skeleton_features=s_feat,
                       fused_features=fused.features, gate=fused.gate, rgb_logits=r.logits,
                       skeleton_logits=s.logits)

  def from_features(self, rgb_features: jax.Array, skeleton_features: jax.Array,
                    feature_dropout: tuple[jax.Array, float] | None = None) -> ModelOutput:
    """The fusion head alone on the streams' pooled features (N, C): with frozen streams this
    is what `__call__` computes after them, so features computed once can be reused."""
    if not self.freeze_backbones:
      raise ValueError("from_features needs frozen streams (model.fusion.freeze_backbones)")
    fused = self._fuse(rgb_features, skeleton_features, feature_dropout)
    return ModelOutput(logits=fused.logits, rgb_features=rgb_features,
                       skeleton_features=skeleton_features, fused_features=fused.features,
                       gate=fused.gate)

  def _fuse(self, rgb_features, skeleton_features, feature_dropout):
    if feature_dropout is not None:
      key, rate = feature_dropout
      rgb_key, skeleton_key = jax.random.split(key)
      rgb_features = layers.dropout(rgb_features, rate, rgb_key)
      skeleton_features = layers.dropout(skeleton_features, rate, skeleton_key)
    return self.head(skeleton_features, rgb_features)


def build_rgb(model_cfg, rngs: nnx.Rngs) -> ResNet3D:
  c = model_cfg.rgb
  return ResNet3D(model_cfg.num_classes, width_multiplier=c.width_multiplier,
                  blocks_per_stage=tuple(c.blocks_per_stage), in_channels=c.in_channels,
                  input_normalization=c.input_normalization,
                  dtype=layers.to_dtype(model_cfg.dtype), rngs=rngs)


def build_skeleton(model_cfg, rngs: nnx.Rngs) -> AGCN:
  c = model_cfg.skeleton
  return AGCN(model_cfg.num_classes, layers=c.layers, width_multiplier=c.width_multiplier,
              in_channels=c.in_channels, graph=c.graph, num_persons=c.num_persons,
              dtype=layers.to_dtype(model_cfg.dtype), rngs=rngs)


def build_model(model_cfg, stage: str, *, seed: int = 0) -> nnx.Module:
  """The model trained in `stage` (`rgb`, `skeleton` or `fusion`) from a `config.model` dict."""
  if stage not in STAGES:
    raise ValueError(f"Unknown stage {stage!r}; expected one of {STAGES}")
  rngs = nnx.Rngs(seed)
  if stage == "rgb":
    return build_rgb(model_cfg, rngs)
  if stage == "skeleton":
    return build_skeleton(model_cfg, rngs)
  rgb, skeleton = build_rgb(model_cfg, rngs), build_skeleton(model_cfg, rngs)
  f = model_cfg.fusion
  head = build_fusion_head(f.kind, rgb.feature_dim, model_cfg.num_classes,
                           association=f.association, element_width=f.element_width,
                           se_reduction=f.se_reduction, decision=f.decision,
                           dtype=layers.to_dtype(model_cfg.dtype), rngs=rngs)
  return AMFINet(rgb, skeleton, head, freeze_backbones=f.freeze_backbones)
