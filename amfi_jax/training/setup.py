"""Building a stage from its config: definition, durations, optimiser, state layout, weights.

Shared by the loop, `evaluate`, `predict` and the benchmark, so each rebuilds a stage the way
training built it. `restore_weights` rebuilds only the model, for inference: no training split,
no optimiser.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import jax
from absl import logging
from flax import nnx
from jax.sharding import Mesh

from amfi_jax import parallel, weights, workdir as workdir_lib
from amfi_jax.data import datasets, pipeline
from amfi_jax.errors import ConfigError, MissingFileError
from amfi_jax.models import build_model
from amfi_jax.training import optim
from amfi_jax.training.checkpoints import StageCheckpoints
from amfi_jax.training.stages import Stage, make_stage
from amfi_jax.training.state import StateLayout, state_layout


@dataclasses.dataclass(frozen=True)
class StageSetup:
  """The static parts of a stage: its definition, durations, optimiser and state layout."""

  stage: Stage
  scfg: object
  schedule: optim.Schedule
  tx: object
  build: object
  layout: StateLayout
  train_source: object
  config: object
  select_split: str | None  # None: the `final` protocol reports the last checkpoint


def setup_stage(config, name: str, dataset: datasets.Dataset, mesh: Mesh) -> StageSetup:
  stage = make_stage(name, config)
  scfg = config.train[name]
  train_split, select_split = pipeline.selection_splits(config.data.protocol)
  train_source = dataset.source(train_split)
  schedule = optim.resolve_schedule(scfg, len(train_source), name)
  tx = optim.make_optimizer(scfg, schedule, name)
  build = lambda: build_model(config.model, name, seed=config.seed)
  layout = state_layout(build, stage, tx, mesh, parallel.config_rules(config.mesh))
  return StageSetup(stage, scfg, schedule, tx, build, layout, train_source, config, select_split)


def augmentation(config, name: str) -> dict:
  """The training pipeline's augmentation arguments for stage `name` (`pipeline.train_dataset`):
  config.data's settings, unless `config.train.<name>.augment` turns them off for the stage."""
  on = bool(config.train[name].augment)
  skeleton = config.data.skeleton_augment
  kwargs = None
  if on and skeleton.enabled:
    kwargs = {k: (tuple(v) if isinstance(v, (list, tuple)) else v)
              for k, v in skeleton.items() if k != "enabled"}
  clip = config.data.clip_augment
  clip_kwargs = {"rotate": bool(clip.rotate), "flip": bool(clip.flip),
                 "scale": tuple(clip.scale) if clip.scale else None, "shift": float(clip.shift),
                 "crop": float(clip.crop), "depth_offset": float(clip.depth_offset)}
  return {"augment": on and bool(config.data.augment), "augment_kwargs": clip_kwargs,
          "skeleton_augment_kwargs": kwargs}


def check_dataset_fits(config, dataset: datasets.Dataset) -> None:
  """The model takes what the dataset stores: its classes and its clips' channels (a depth build
  with the arms crop stores two)."""
  if dataset.num_classes != config.model.num_classes:
    raise ConfigError(f"config.model.num_classes={config.model.num_classes} but the dataset has "
                      f"{dataset.num_classes} classes")
  stored = dataset.clip_channels(config.data.rgb_modality)
  if stored is not None and stored != config.model.rgb.in_channels:
    raise ConfigError(f"config.model.rgb.in_channels={config.model.rgb.in_channels} but "
                      f"config.data.dataset={config.data.dataset!r} stores {stored}-channel "
                      f"{config.data.rgb_modality} clips")


def check_batch(batch_size: int, mesh: Mesh, field: str) -> None:
  data = mesh.shape["data"]
  if batch_size % data or batch_size % jax.process_count():
    raise ConfigError(f"{field}={batch_size} must be divisible by the mesh's data axis ({data}) "
                      f"and the {jax.process_count()} processes")


def selects_last(config) -> bool:
  """Whether the stage reports its last checkpoint (the `final` protocol) instead of the best."""
  return pipeline.selection_splits(config.data.protocol)[1] is None


def reported_checkpoints(run: workdir_lib.RunDir, name: str, config
                         ) -> tuple[StageCheckpoints, int]:
  """The stage's checkpoints (open: close them) and the reported step: the best on the selection
  split, or the last one (`final` protocol)."""
  ckpts = StageCheckpoints(run.stage(name).checkpoints, keep_latest=1,
                           select_last=selects_last(config))
  step = ckpts.best_step()
  if step is None:
    ckpts.close()
    raise MissingFileError(f"No evaluated checkpoint of stage {name!r} in "
                           f"{run.stage(name).checkpoints}; train it first")
  return ckpts, step


def restore_best(run: workdir_lib.RunDir, setup: StageSetup):
  """The whole train state of the best checkpoint of a finished (or interrupted) stage, and its
  step."""
  ckpts, step = reported_checkpoints(run, setup.stage.name, setup.config)
  try:
    state = ckpts.restore(step, setup.layout.abstract, setup.layout.shardings)
  finally:
    ckpts.close()
  return state, step


def restore_weights(config, run: workdir_lib.RunDir, name: str, mesh: Mesh
                    ) -> tuple[Stage, nnx.Module, int]:
  """The stage's model with the best checkpoint's weights, in inference mode, and its step.

  Only the model is rebuilt (abstractly, then filled from the checkpoint): no dataset split and
  no optimiser, so this is what inference pays.
  """
  stage = make_stage(name, config)
  abstract_model = nnx.eval_shape(lambda: build_model(config.model, name, seed=config.seed))
  graphdef, params, frozen = nnx.split(abstract_model, stage.trainable, ...)
  abstract = {"params": nnx.to_pure_dict(params), "frozen": nnx.to_pure_dict(frozen)}
  rules = parallel.config_rules(config.mesh)
  shardings = {"params": parallel.variable_shardings(params, mesh, rules),
               "frozen": parallel.variable_shardings(frozen, mesh, rules)}
  ckpts, step = reported_checkpoints(run, name, config)
  try:
    restored = ckpts.restore_weights(step, abstract, shardings)
  finally:
    ckpts.close()
  model = nnx.merge(graphdef, restored["params"], restored["frozen"], copy=True)
  return stage, nnx.view(model, use_running_average=True), step


def stream_sources(config, name: str, run: workdir_lib.RunDir,
                   trained_first: Sequence[str] = ()) -> dict[str, str]:
  """{stream: checkpoint directory} of the stream weights stage `name` starts from ({}: none).

  Sources: `config.init_from.<stream>` (e.g. converted weights), else, for the streams the stage
  loads (`workdir.streams_loaded_by`), this run's `best_stream/` of that stream's stage, which
  must exist unless the stream is one of `trained_first` (stages that run before `name`).
  """
  sources = {}
  for stream in workdir_lib.STREAM_STAGES:
    if name != stream and stream not in workdir_lib.streams_loaded_by(name):
      continue
    path = config.init_from[stream]
    if not path and stream in workdir_lib.streams_loaded_by(name):
      path = run.stage(stream).best_stream
      if not os.path.isdir(path) and stream not in trained_first:
        raise MissingFileError(
            f"The {name} stage needs the trained {stream} stream: {path} does not exist. Run "
            f"the {stream} stage first (config.stages) or set config.init_from.{stream}")
    if path:
      sources[stream] = path
  return sources


def check_stream_sources(config, run: workdir_lib.RunDir) -> None:
  """MissingFileError, before any data is prepared, when a stage of `config.stages` that has not
  started would start from stream weights that are not there and that no earlier stage trains."""
  for i, name in enumerate(config.stages):
    sdir = run.stage(name)
    if os.path.isdir(sdir.checkpoints) and os.listdir(sdir.checkpoints):
      continue  # finished or resuming: its own checkpoints, not the sources, restore it
    for stream, path in stream_sources(config, name, run, config.stages[:i]).items():
      if config.init_from[stream]:  # this run's own best_stream/ may still be trained first
        weights.require_stream_checkpoint(path, f"config.init_from.{stream}")


def stream_loader(config, name: str, run: workdir_lib.RunDir):
  """A function filling the weights of `stream_sources` into a new model of stage `name`, or
  None (from scratch)."""
  sources = stream_sources(config, name, run)
  if not sources:
    return None

  def load(model: nnx.Module):
    for stream, path in sources.items():
      target = model if name == stream else getattr(model, stream)
      skipped = weights.load_stream(path, target)
      logging.info("Loaded %s stream from %s%s", stream, path,
                   f" (new classifier: {skipped})" if skipped else "")

  return load
