"""The three stages of AMFI-Net training: what each feeds the model, trains and minimises.

A stage is data, not a branch in the loop: the loop asks its `Stage` for the modalities to load,
the forward pass, the loss and which parameters the optimiser may change.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from amfi_jax.models import ModelOutput, gate_loss
from amfi_jax.training import distillation


@dataclasses.dataclass(frozen=True)
class Stage:
  """How one stage trains.

  Attributes:
    name: `rgb`, `skeleton` or `fusion`.
    inputs: batch keys the model consumes, in call order (`rgb` stands for the RGB stream's
      input, which is the `depth` modality when `config.data.rgb_modality` says so).
    trainable: nnx filter of the parameters the optimiser updates; every other variable
      (frozen parameters, BatchNorm statistics) is carried unchanged or updated by the forward.
    gate_weight: λ of L_total = CE + λ·L_gate (fusion with an AMFI head).
    method: the model method the inputs go to (`from_features`: the fusion head on cached
      stream features).
    feature_dropout: dropout rate, in training, of the stream features the classifier reads:
      the stream's own (rgb, skeleton) or the fusion head (`config.train.<stage>.
      feature_dropout`).
    mixup: α of the mixup blend in training (`config.train.<stage>.mixup`; 0 = off).
    label_smoothing: ε of the cross entropy's smoothed target (`config.train.<stage>.
      label_smoothing`; 0 = off).
    teacher_features: (N, C) the other stream's features of every training record, which this
      stream's features learn to point along (`training.distillation`); None = off.
    distill_weight: the distillation loss's weight.
    teacher_logits: (N, classes) the other stream's logits of every training record, whose
      softened class probabilities this stream's learn (`distillation.logit_loss`); None = off.
    distill_logits: that loss's weight; distill_temperature: its temperature.
  """

  name: str
  inputs: tuple[str, ...]
  trainable: nnx.filterlib.Filter
  gate_weight: float = 0.0
  method: str = "__call__"
  feature_dropout: float = 0.0
  mixup: float = 0.0
  label_smoothing: float = 0.0
  teacher_features: np.ndarray | None = dataclasses.field(default=None, repr=False)
  distill_weight: float = 0.0
  teacher_logits: np.ndarray | None = dataclasses.field(default=None, repr=False)
  distill_logits: float = 0.0
  distill_temperature: float = 1.0

  @property
  def distills(self) -> bool:
    """Whether the loss reads a teacher's per-record targets (so batches carry record indices)."""
    return self.teacher_features is not None or self.teacher_logits is not None

  def mix(self, batch: dict[str, jax.Array], rng: jax.Array
          ) -> tuple[dict[str, jax.Array], jax.Array, jax.Array]:
    """Mixup: (blended batch, the partner labels, the weight of the batch's own labels).

    Each sample is blended with the sample at the mirrored batch position (the batch is
    shuffled, so this is a random pairing without drawing a permutation) by one factor
    w ~ Beta(α, α) per batch, folded to w ≥ 0.5 so a sample's own label stays the larger part
    (its accuracy is counted against it). Stored uint8 clips are blended as float32, before
    the model's input normalisation, which then applies to the blend as to any clip.
    """
    w = jax.random.beta(rng, self.mixup, self.mixup)
    w = jnp.maximum(w, 1.0 - w)
    mixed = dict(batch)
    for k in self.inputs:
      x = batch[k].astype(jnp.float32)
      mixed[k] = w * x + (1.0 - w) * x[::-1]
    return mixed, batch["label"][::-1], w

  def forward(self, model: nnx.Module, batch: dict[str, jax.Array],
              rng: jax.Array | None = None) -> ModelOutput:
    """The model on the batch; `rng` (training only) draws the feature dropout."""
    inputs = [batch[k] for k in self.inputs]
    if rng is None or not self.feature_dropout:
      return getattr(model, self.method)(*inputs)
    return getattr(model, self.method)(*inputs, feature_dropout=(rng, self.feature_dropout))

  def loss(self, out: ModelOutput, labels: jax.Array, mixed_with: jax.Array | None = None,
           weight: jax.Array | float = 1.0, indices: jax.Array | None = None
           ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Mean loss over the batch and its parts (for logging); with mixup (`mix`) the cross
    entropy is `weight` on `labels` and the rest on the partner labels `mixed_with`; with
    `teacher_features` / `teacher_logits`, plus the distillation losses of the records
    `indices`."""
    ce = cross_entropy(out.logits, labels, self.label_smoothing)
    if mixed_with is not None:
      ce = weight * ce + (1.0 - weight) * cross_entropy(out.logits, mixed_with,
                                                        self.label_smoothing)
    metrics = {"ce": ce, "accuracy": (out.logits.argmax(-1) == labels).mean()}
    total = ce
    if out.gate is not None:
      lg = gate_loss(out.gate)
      metrics["gate_loss"] = lg
      metrics["gate_mean"] = out.gate.mean()
      total = ce + self.gate_weight * lg
    if self.teacher_features is not None:
      student = out.rgb_features if self.name == "rgb" else out.skeleton_features
      teacher = jnp.asarray(self.teacher_features)[indices]
      ld = distillation.loss(student, teacher, f"config.train.{self.name}.distill_from")
      metrics["distill_loss"] = ld
      total = total + self.distill_weight * ld
    if self.teacher_logits is not None:
      lk = distillation.logit_loss(out.logits, jnp.asarray(self.teacher_logits)[indices],
                                   self.distill_temperature)
      metrics["distill_logit_loss"] = lk
      total = total + self.distill_logits * lk
    metrics["loss"] = total
    return total, metrics


def cross_entropy(logits: jax.Array, labels: jax.Array, smoothing: float = 0.0) -> jax.Array:
  """Mean cross entropy against integer labels; with `smoothing` ε > 0 against the target
  (1 - ε)·one_hot + ε / classes (`optax.smooth_labels`), computed without the one-hot."""
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  if smoothing:
    uniform = -jax.nn.log_softmax(logits).mean(-1)
    ce = (1.0 - smoothing) * ce + smoothing * uniform
  return ce.mean()


def make_stage(name: str, config) -> Stage:
  rgb_input = config.data.rgb_modality
  t = config.train[name] if name in config.train else {}
  regularised = {field: float(t.get(field, 0.0))
                 for field in ("mixup", "label_smoothing", "feature_dropout")}
  if name == "rgb":
    return Stage("rgb", (rgb_input,), nnx.Param, **regularised)
  if name == "skeleton":
    return Stage("skeleton", ("skeleton",), nnx.Param, **regularised)
  if name == "fusion":
    f = config.model.fusion
    trainable: Callable | type = nnx.All(nnx.Param, nnx.PathContains("head")) \
        if f.freeze_backbones else nnx.Param
    return Stage("fusion", (rgb_input, "skeleton"), trainable,
                 gate_weight=float(f.gate_weight) if f.kind == "amfi" else 0.0, **regularised)
  raise ValueError(f"Unknown stage {name!r} in config.stages")


def on_cached_features(stage: Stage) -> Stage:
  """The fusion stage reading cached stream features instead of clips and skeletons: the same
  parameters, loss and trainable filter, so the state and its checkpoints are the same."""
  return dataclasses.replace(stage, inputs=("rgb_features", "skeleton_features"),
                             method="from_features")


def eval_outputs(out: ModelOutput) -> dict[str, jax.Array]:
  """What evaluation keeps per sample: logits and whichever features the model produced."""
  keep = {"logits": out.logits}
  for name, value in (("rgb", out.rgb_features), ("skeleton", out.skeleton_features),
                      ("fused", out.fused_features)):
    if value is not None:
      keep[f"features/{name}"] = value.astype(jnp.float32)
  return keep
