"""The compiled train and eval steps of a stage, with explicit shardings and donation (and, on
CPU, the convolution library choice of `models.conv.step_compiler_options`)."""

from __future__ import annotations

from collections.abc import Callable

import jax
import optax
from flax import nnx

from amfi_jax import parallel
from amfi_jax.models import conv
from amfi_jax.training.stages import Stage, eval_outputs
from amfi_jax.training.state import StateLayout, TrainState


def batch_keys(stage: Stage) -> tuple[str, ...]:
  """The training batch's keys: the inputs, the labels and, for distillation, record indices."""
  indices = ("index",) if stage.distills else ()
  return tuple(stage.inputs) + ("label",) + indices


def make_train_step(stage: Stage, layout: StateLayout, tx: optax.GradientTransformation
                    ) -> Callable[[TrainState, dict], tuple[TrainState, dict]]:
  """(state, batch) → (new state, metrics); the old state's buffers are donated."""

  def step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
    with parallel.activation_sharding(layout.mesh, layout.rules):
      return _step(state, batch)

  def _step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
    next_key, dropout_key = jax.random.split(jax.random.wrap_key_data(state.rng))
    mixed_with, weight = None, 1.0
    if stage.mixup:  # its own key, so runs without mixup keep their dropout draws
      dropout_key, mixup_key = jax.random.split(dropout_key)
      batch, mixed_with, weight = stage.mix(batch, mixup_key)

    def loss_fn(params):
      model = layout.model(params, state.frozen)
      out = stage.forward(model, batch, rng=dropout_key)
      loss, metrics = stage.loss(out, batch["label"], mixed_with, weight, batch.get("index"))
      # BatchNorm running statistics updated by the forward pass (none for frozen streams).
      _, _, frozen = nnx.split(model, stage.trainable, ...)
      return loss, (metrics, nnx.to_pure_dict(frozen))

    grads, (metrics, frozen) = jax.grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics["grad_norm"] = optax.tree.norm(grads)
    new = state.replace(step=state.step + 1, params=params, frozen=frozen, opt_state=opt_state,
                        rng=jax.random.key_data(next_key))
    return new, metrics

  data = parallel.batch_sharding(layout.mesh)
  return jax.jit(step, in_shardings=(layout.shardings, {k: data for k in batch_keys(stage)}),
                 out_shardings=(layout.shardings, parallel.replicated(layout.mesh)),
                 donate_argnums=(0,), compiler_options=conv.step_compiler_options(layout.mesh))


def make_eval_step(stage: Stage, layout: StateLayout) -> Callable[[TrainState, dict], dict]:
  """(state, batch) → per-sample logits and features, BatchNorm in inference mode."""

  def step(state: TrainState, batch: dict) -> dict:
    model = nnx.view(layout.model(state.params, state.frozen), use_running_average=True)
    with parallel.activation_sharding(layout.mesh, layout.rules):
      return eval_outputs(stage.forward(model, batch))

  data = parallel.batch_sharding(layout.mesh)
  return jax.jit(step, in_shardings=(layout.shardings, {k: data for k in stage.inputs}),
                 out_shardings=data, compiler_options=conv.step_compiler_options(layout.mesh))
