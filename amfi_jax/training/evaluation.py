"""Evaluation passes over a split: the compiled eval step over every sample exactly once."""

from __future__ import annotations

import jax
import numpy as np
from jax.experimental import multihost_utils

from amfi_jax import parallel
from amfi_jax.data import pipeline
from amfi_jax.errors import ConfigError
from amfi_jax.evaluation.metrics import EvalAccumulator, EvalResult


def evaluate(eval_step, state, source, *, stage, data_cfg, batch_size: int, mesh,
             class_names, keep_features: bool = False) -> EvalResult:
  """Runs `eval_step` over `source` and computes the metrics on every process."""
  per_process = _per_process(batch_size, f"config.train.{stage.name}.eval_batch_size")
  batches = pipeline.eval_dataset(source, batch_size=per_process, modalities=stage.inputs,
                                  skeleton_stream=data_cfg.skeleton_stream,
                                  skeleton_frames=data_cfg.skeleton_frames,
                                  clip_frames=data_cfg.clip_frames,
                                  clip_views=data_cfg.clip_views,
                                  num_threads=data_cfg.num_threads, prefetch=data_cfg.prefetch)
  sharding = parallel.batch_sharding(mesh)
  acc = EvalAccumulator()
  for batch in batches:
    inputs = pipeline.global_batch({k: batch[k] for k in stage.inputs}, sharding)
    out = eval_step(state, inputs)
    host = {k: np.asarray(multihost_utils.process_allgather(v, tiled=True))
            for k, v in out.items()}
    meta = {k: np.asarray(multihost_utils.process_allgather(batch[k], tiled=True))
            for k in ("label", "mask", "index")}
    features = {k.split("/", 1)[1]: v for k, v in host.items() if k.startswith("features/")}
    acc.add(host["logits"], meta["label"], meta["mask"], meta["index"],
            features=features if keep_features else None)
  return acc.result(len(class_names), class_names)


def in_record_order(eval_step, state, source, **eval_kwargs) -> EvalResult:
  """`evaluate` keeping the features, checked to hold every record of `source` once, in record
  order (the cached fusion inputs, a distillation teacher's targets)."""
  result = evaluate(eval_step, state, source, keep_features=True, **eval_kwargs)
  if not np.array_equal(result.indices, np.arange(len(source))):
    raise RuntimeError("the evaluation did not visit every record once in order")
  return result


def _per_process(global_batch: int, field: str) -> int:
  count = jax.process_count()
  if global_batch % count:
    raise ConfigError(f"{field}={global_batch} must be divisible by the {count} processes")
  return global_batch // count
