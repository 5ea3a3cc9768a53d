"""Cross-modal feature distillation between the two streams (`config.train.<stream>.distill_from`).

A stream trained from scratch on a few hundred sequences (the depth stream on UTD-MHAD) learns
from one label per sequence. The other stream, trained first, offers more: its pooled features
describe how each training sequence was performed (the hand's path, its speed), and the student
is asked to put each sequence at the same place of its own feature space. The loss adds
`distill_weight` × (1 − cosine(student features, teacher features)), averaged over the batch, to
the student's cross entropy; the teacher's features are computed once, by the teacher's reported
checkpoint on every training record without augmentation, and looked up by record index at each
step. `distill_logits` > 0 adds knowledge distillation of the teacher's class scores (Hinton
et al. 2015): that weight × T² × KL(teacher ‖ student) of the class probabilities softened by the
temperature T = `distill_temperature`, the teacher's logits computed once with its features.
(They say which other classes a sequence resembles, which one label per sequence does not; on
UTD-MHAD's depth stream they hurt, docs/results.md.) Only training changes: the student's model,
checkpoints and evaluation are those of any stream, and the fusion stage reads both streams as
usual.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from amfi_jax import workdir as workdir_lib
from amfi_jax.errors import ConfigError
from amfi_jax.models import conv
from amfi_jax.training import evaluation


def loss(student: jax.Array, teacher: jax.Array, field: str = "distill_from") -> jax.Array:
  """Mean over the batch of 1 − cos(student_i, teacher_i): 0 when every feature points the
  teacher's way, whatever its length (the two streams' feature scales differ)."""
  if student.shape != teacher.shape:  # at tracing, i.e. before the first step runs
    raise ConfigError(f"{field}: the teacher stream has {teacher.shape[-1]} features, the "
                      f"student {student.shape[-1]}; set the model widths so that they agree")
  s = student.astype(jnp.float32)
  t = teacher.astype(jnp.float32)
  eps = 1e-6
  cos = (s * t).sum(-1) / (jnp.linalg.norm(s, axis=-1) * jnp.linalg.norm(t, axis=-1) + eps)
  return (1.0 - cos).mean()


def logit_loss(student: jax.Array, teacher: jax.Array, temperature: float) -> jax.Array:
  """Mean over the batch of T² · KL(softmax(teacher / T) ‖ softmax(student / T)): 0 when the
  softened distributions agree; T² keeps its gradients' scale independent of T (Hinton et al.)."""
  t = jax.nn.log_softmax(teacher.astype(jnp.float32) / temperature, axis=-1)
  s = jax.nn.log_softmax(student.astype(jnp.float32) / temperature, axis=-1)
  return temperature ** 2 * (jnp.exp(t) * (t - s)).sum(-1).mean()


def teacher_outputs(config, run: workdir_lib.RunDir, student: str, source, mesh,
                    class_names) -> tuple[np.ndarray, np.ndarray]:
  """(N, C) float32 features and (N, classes) logits of the teacher stream on every record of
  `source`, in record order.

  The teacher is `config.train.<student>.distill_from`'s reported checkpoint in this run; it
  must have finished: earlier in `config.stages` (config validation sees to it) or in an earlier
  invocation."""
  # Imported here: the stages import this module's loss.
  from amfi_jax.training import setup as stage_setup
  from amfi_jax.training.stages import eval_outputs

  teacher_name = config.train[student].distill_from
  field = f"config.train.{student}.distill_from"
  if not run.stage(teacher_name).is_finished():
    raise ConfigError(f"{field}={teacher_name!r}: the {teacher_name} stage of {run.path} has not "
                      f"finished; list it before {student!r} in config.stages or train it first")
  teacher, model, _ = stage_setup.restore_weights(config, run, teacher_name, mesh)
  forward = jax.jit(lambda m, inputs: eval_outputs(teacher.forward(m, inputs)),
                    compiler_options=conv.step_compiler_options(mesh))
  result = evaluation.in_record_order(
      forward, model, source, stage=teacher, data_cfg=config.data, mesh=mesh,
      batch_size=config.train[teacher_name].eval_batch_size, class_names=class_names)
  return result.features[teacher_name], np.asarray(result.logits, np.float32)

