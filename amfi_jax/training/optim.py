"""Optimisation of a stage: durations resolved to steps (in ONE place), SGD and its schedule."""

from __future__ import annotations

import dataclasses
import math

import ml_collections
import optax

from amfi_jax.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Schedule:
  """A stage's durations in steps."""

  steps_per_epoch: int
  total_steps: int
  eval_every_steps: int
  decay_steps: tuple[int, ...]

  def is_eval_step(self, step: int) -> bool:
    """Evaluate after `step` optimizer steps (and always after the last one)."""
    return step % self.eval_every_steps == 0 or step == self.total_steps


def resolve_schedule(stage_cfg: ml_collections.ConfigDict, num_train_examples: int,
                     stage: str) -> Schedule:
  """Turns epochs (or `num_steps`) into steps for a training set of `num_train_examples`."""
  field = f"config.train.{stage}"
  if stage_cfg.batch_size < 1:
    raise ConfigError(f"{field}.batch_size must be ≥ 1, got {stage_cfg.batch_size}")
  steps_per_epoch = num_train_examples // stage_cfg.batch_size
  if steps_per_epoch < 1:
    raise ConfigError(f"{field}.batch_size={stage_cfg.batch_size} exceeds the "
                      f"{num_train_examples} training examples; lower it")
  to_steps = lambda epochs: max(1, round(epochs * steps_per_epoch))
  if stage_cfg.num_steps > 0:
    total = int(stage_cfg.num_steps)
  elif stage_cfg.num_epochs > 0:
    total = to_steps(stage_cfg.num_epochs)
  else:
    raise ConfigError(f"{field}: set num_epochs > 0 or num_steps > 0")
  if stage_cfg.eval_every_epochs <= 0:
    raise ConfigError(f"{field}.eval_every_epochs must be > 0, got {stage_cfg.eval_every_epochs}")
  decay = tuple(sorted(to_steps(e) for e in stage_cfg.decay_epochs if 0 < to_steps(e) < total))
  return Schedule(steps_per_epoch=steps_per_epoch, total_steps=total,
                  eval_every_steps=min(total, to_steps(stage_cfg.eval_every_epochs)),
                  decay_steps=decay)


SCHEDULES = ("step", "cosine")


def learning_rate_schedule(stage_cfg, schedule: Schedule, stage: str = "<stage>"
                           ) -> optax.Schedule:
  """`step`: × decay_factor at each decay step; `cosine`: learning_rate → 0 over the stage."""
  if stage_cfg.schedule == "cosine":
    return optax.cosine_decay_schedule(stage_cfg.learning_rate, schedule.total_steps)
  if stage_cfg.schedule != "step":
    raise ConfigError(f"config.train.{stage}.schedule must be one of {list(SCHEDULES)}, got "
                      f"{stage_cfg.schedule!r}")
  return optax.piecewise_constant_schedule(
      stage_cfg.learning_rate, {s: stage_cfg.decay_factor for s in schedule.decay_steps})


def make_optimizer(stage_cfg, schedule: Schedule, stage: str) -> optax.GradientTransformation:
  """torch.optim.SGD semantics: weight decay added to the gradient, then (Nesterov) momentum."""
  if not math.isfinite(stage_cfg.learning_rate) or stage_cfg.learning_rate <= 0:
    raise ConfigError(f"config.train.{stage}.learning_rate must be > 0, "
                      f"got {stage_cfg.learning_rate}")
  return optax.chain(
      optax.add_decayed_weights(stage_cfg.weight_decay),
      optax.sgd(learning_rate_schedule(stage_cfg, schedule, stage), momentum=stage_cfg.momentum,
                nesterov=stage_cfg.nesterov),
  )
