"""The training loop: every stage the config lists, each resumable, each with its reports.

Per stage, in `WORKDIR/<stage>/`: `checkpoints/` (Orbax: latest N + best), `best_stream/`
(the best single-stream weights, what the fusion stage loads), TensorBoard events and
`metrics.jsonl`, `result.json` (present = finished: a re-run skips the stage), plots and
per-sample scores. `WORKDIR/results.json` collects every stage's result.

Resume order of a stage: its own latest checkpoint → `config.init_from` (converted weights) or,
for fusion, the best weights of this run's stream stages → fresh initialisation.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import time

import jax
from absl import logging
from jax.experimental import multihost_utils

from amfi_jax import configlib, distributed, parallel, weights
from amfi_jax import workdir as workdir_lib
from amfi_jax.data import datasets, pipeline
from amfi_jax.evaluation import reports
from amfi_jax.monitoring.progress import ProgressBar
from amfi_jax.monitoring.writers import MetricWriter, parameter_overview
from amfi_jax.training import distillation, evaluation, feature_cache, stages
from amfi_jax.training import setup as stage_setup
from amfi_jax.training.checkpoints import SELECTION_METRIC, StageCheckpoints
from amfi_jax.training.stages import Stage
from amfi_jax.training.state import init_state, load_streams_into
from amfi_jax.training.steps import batch_keys, make_eval_step, make_train_step



class Preempted(Exception):
  """SIGTERM arrived; the stage saved a checkpoint and stopped. Re-run to resume."""


class _StopSignal:
  """SIGTERM as a flag the loop polls between steps, so the state is saved at a step boundary.

  One process: a Python signal handler. Several: JAX's preemption sync (the distributed runtime
  catches SIGTERM on any host and all processes agree on the step at which to save), because a
  flag raised on one host alone would make it save while the others wait in a collective.
  """

  def __init__(self):
    self.raised = False
    self._previous = None
    self._synced = jax.process_count() > 1

  def __enter__(self):
    if self._synced:
      return self
    try:
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    except ValueError:  # not the main thread: leave signals to the caller
      self._previous = None
    return self

  def _handle(self, signum, frame):
    del signum, frame
    self.raised = True

  def poll(self, step: int) -> bool:
    """Whether to save and stop after `step` (call once per step, on every process)."""
    if self._synced and not self.raised:
      self.raised = multihost_utils.reached_preemption_sync_point(step)
    return self.raised

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


def train_and_evaluate(config, workdir: str, allow_config_change: bool = False,
                       shared_features: feature_cache.Shared | None = None) -> dict:
  """Runs the stages of `config` in `workdir`; returns {stage: result dict}.

  A workdir trained with another config is refused before anything is written
  (`RunDir.check_config`), unless `allow_config_change`. `shared_features`: the fusion stage's
  cached stream features are taken from (or left in) it, for several heads on the same streams."""
  configlib.validate(config)
  run = workdir_lib.RunDir(workdir)
  config_json = json.loads(config.to_json_best_effort())
  # Process 0's verdict, so that every host stops (or goes on) together.
  refused = None
  try:
    changed = run.check_config(config_json, allow_config_change)
  except workdir_lib.ConfigChangedError as e:
    refused, changed = e, []
  if distributed.agree(refused is not None):
    raise refused or workdir_lib.ConfigChangedError(
        f"{run.path}: process 0 found a config change; see its log")
  if changed:
    logging.warning("Config fields changed since %s was written: %s", run.run_info, changed)
  mesh = parallel.make_mesh(config.mesh.data, config.mesh.model)
  for name in config.stages:  # before any data is generated or built
    for size in ("batch_size", "eval_batch_size"):
      stage_setup.check_batch(config.train[name][size], mesh, f"config.train.{name}.{size}")
  stage_setup.check_stream_sources(config, run)
  os.makedirs(run.path, exist_ok=True)
  dataset = datasets.prepare(config.data, run.data)
  stage_setup.check_dataset_fits(config, dataset)
  logging.info("Mesh %s over %d devices (%d processes)", dict(mesh.shape), jax.device_count(),
               jax.process_count())
  if jax.process_index() == 0:
    run.write_run_info({"config": config_json,
                        "class_names": list(dataset.class_names),
                        "sample_format": dataset.sample_format()})
  results = {}
  for name in config.stages:
    results[name] = train_stage(config, name, run, dataset, mesh, shared_features)
  if jax.process_index() == 0:
    print(reports.format_results_table(results), flush=True)
  return results


def train_stage(config, name: str, run: workdir_lib.RunDir, dataset: datasets.Dataset,
                mesh, shared_features: feature_cache.Shared | None = None) -> dict:
  sdir = run.stage(name)
  # Process 0's view of the shared workdir decides, so no host trains a stage the others skip.
  if distributed.agree(sdir.is_finished()):
    logging.info("Stage %s already finished (%s); skipping", name, sdir.result)
    return sdir.read_result()
  is_main = jax.process_index() == 0
  start_time = time.time()
  setup = stage_setup.setup_stage(config, name, dataset, mesh)
  stage, scfg, schedule, tx, build, layout = (setup.stage, setup.scfg, setup.schedule, setup.tx,
                                              setup.build, setup.layout)
  train_source, select_split = setup.train_source, setup.select_split
  if scfg.distill_from:
    start_teacher = time.time()
    features, logits = distillation.teacher_outputs(config, run, name, train_source, mesh,
                                                    dataset.class_names)
    # A loss whose weight is 0 is left out, not computed and multiplied by 0.
    stage = dataclasses.replace(
        stage, teacher_features=features if scfg.distill_weight else None,
        distill_weight=float(scfg.distill_weight),
        teacher_logits=logits if scfg.distill_logits else None,
        distill_logits=float(scfg.distill_logits),
        distill_temperature=float(scfg.distill_temperature))
    logging.info("Stage %s: %s features and logits of %d training records in %.1fs", name,
                 scfg.distill_from, len(features), time.time() - start_teacher)

  ckpts = StageCheckpoints(sdir.checkpoints, keep_latest=config.train.keep_latest,
                           select_last=select_split is None)
  latest = ckpts.latest_step()
  if latest is not None:
    logging.info("Stage %s: resuming from step %d", name, latest)
    state = ckpts.restore(latest, layout.abstract, layout.shardings)
  else:
    state = init_state(build, stage, tx, layout, config.seed)
    loader = stage_setup.stream_loader(config, name, run)
    if loader is not None:
      state = load_streams_into(state, layout, stage, tx, loader)

  writer = MetricWriter(sdir.path, enabled=is_main)
  if latest is None:
    writer.write_hparams(config.to_dict())
    if is_main:
      logging.info("Stage %s trained parameters:\n%s", name,
                   parameter_overview(layout.abstract.params))
  eval_kwargs = dict(stage=stage, data_cfg=config.data, batch_size=scfg.eval_batch_size,
                     mesh=mesh, class_names=dataset.class_names)
  # The `final` protocol has no selection split: nothing is evaluated before the last step.
  sources = {"train": train_source, "select": dataset.source(select_split) if select_split
             else None, "test": dataset.source("test")}
  names_source = sources["test"]
  if name == "fusion" and scfg.cache_features:
    start_cache = time.time()
    records = sources

    def compute_sources():
      full_eval_step = make_eval_step(stage, layout)
      return {split: source if source is None else
              feature_cache.compute(full_eval_step, state, source, **eval_kwargs)
              for split, source in records.items()}

    key = feature_cache.Shared.key_of(config, stage_setup.stream_sources(config, name, run), mesh)
    sources = (shared_features or feature_cache.Shared()).get(key, compute_sources)
    stage = stages.on_cached_features(stage)
    eval_kwargs["stage"] = stage
    logging.info("Stage %s: stream features of %s cached in %.1fs", name,
                 {k: len(v) for k, v in sources.items() if v is not None},
                 time.time() - start_cache)
  train_iter = iter(pipeline.train_dataset(
      sources["train"], batch_size=scfg.batch_size // jax.process_count(),
      seed=config.seed, modalities=stage.inputs, skeleton_stream=config.data.skeleton_stream,
      skeleton_frames=config.data.skeleton_frames, clip_frames=config.data.clip_frames,
      clip_views=config.data.clip_views, **stage_setup.augmentation(config, name), num_threads=config.data.num_threads,
      prefetch=config.data.prefetch))
  if latest is not None:
    ckpts.restore_position(latest, train_iter)
  train_step = make_train_step(stage, layout, tx)
  eval_step = make_eval_step(stage, layout)
  select_source = sources["select"]
  data_sharding = parallel.batch_sharding(mesh)
  keys = batch_keys(stage)

  start = int(jax.device_get(state.step))
  progress = ProgressBar(schedule.total_steps, initial_step=start, enabled=is_main)
  pending = None  # (step, metrics) of the last step, read once the next one is dispatched
  last_checked = start
  with _StopSignal() as stop_signal:
    for step in range(start + 1, schedule.total_steps + 1):
      batch = next(train_iter)
      state, metrics = train_step(state, pipeline.global_batch(
          {k: batch[k] for k in keys}, data_sharding))
      if pending is not None:
        last_checked = _log_train(writer, progress, *pending, last_checked, scfg, config)
      pending = (step, metrics)
      stop = stop_signal.poll(step)
      if schedule.is_eval_step(step) or stop:
        last_checked = _log_train(writer, progress, *pending, last_checked, scfg, config,
                                  force=True)
        pending = None
      if schedule.is_eval_step(step) and select_source is None:
        ckpts.save(step, state, train_iter, force=True)
      elif schedule.is_eval_step(step):
        result = evaluation.evaluate(eval_step, state, select_source, **eval_kwargs)
        writer.write_scalars(step, {f"{select_split}/{k}": v for k, v in result.scalars().items()})
        logging.info("Stage %s step %d: %s top-1 %.4f", name, step, select_split, result.top1)
        ckpts.save(step, state, train_iter, metrics={SELECTION_METRIC: result.top1}, force=True)
      elif stop:
        ckpts.save(step, state, train_iter, force=True)
      if stop:
        ckpts.close()
        writer.close()
        progress.close()
        raise Preempted(f"SIGTERM: stage {name} saved step {step} in {ckpts.directory}; "
                        "run the same command again to resume")
  progress.close()
  ckpts.wait()

  best = ckpts.best_step()
  if best is None:
    raise RuntimeError(f"Stage {name} finished without an evaluated checkpoint in "
                       f"{ckpts.directory}")
  state = ckpts.restore(best, layout.abstract, layout.shardings)
  ckpts.close()
  result = _final_reports(config, name, sdir, run, dataset, stage, layout, state,
                          eval_step, eval_kwargs, best, select_split, sources, names_source,
                          start_time=start_time, resumed_from_step=latest)
  writer.close()
  return result


def _log_train(writer, progress, step, metrics, last_checked, scfg, config, force=False) -> int:
  """Logs a step's metrics every `log_every_steps` (or when forced) and stops on NaN/inf."""
  if not force and step % config.train.log_every_steps:
    progress.update(step, scfg.batch_size)
    return last_checked
  host = {k: float(v) for k, v in jax.device_get(metrics).items()}
  if not all(math.isfinite(v) for v in host.values()):
    bad = sorted(k for k, v in host.items() if not math.isfinite(v))
    raise FloatingPointError(
        f"Non-finite {bad} at a step in ({last_checked}, {step}]; stopping. The checkpoints "
        "hold only states from before it; lower the learning rate or check the data")
  writer.write_scalars(step, {f"train/{k}": v for k, v in host.items()})
  progress.update(step, scfg.batch_size, loss=f"{host['loss']:.4f}")
  return step


def _final_reports(config, name, sdir, run, dataset, stage: Stage, layout, state,
                   eval_step, eval_kwargs, best_step, select_split, sources,
                   names_source, start_time: float, resumed_from_step: int | None) -> dict:
  """Evaluates the reported checkpoint on the selection and test splits and writes the reports.

  `sources`: the splits as the stage reads them (cached features or records); `names_source`:
  the test split's records, for the sample names."""
  start = time.time()
  validation = None
  if select_split not in (None, "test"):
    validation = evaluation.evaluate(eval_step, state, sources["select"], **eval_kwargs)
  test = evaluation.evaluate(eval_step, state, sources["test"], keep_features=True,
                             **eval_kwargs)
  if workdir_lib.exports_stream(name):
    model = layout.model(state.params, state.frozen)
    if not distributed.agree(os.path.isdir(os.path.join(sdir.best_stream, "state"))):
      weights.save_stream(sdir.best_stream, model, info={"stage": name, "step": best_step})
  result = reports.stage_entry(best_step=int(best_step), selected_on=config.data.protocol,
                               validation=validation, test=test,
                               config=json.loads(config.to_json_best_effort()),
                               resumed_from_step=resumed_from_step)
  if jax.process_index() == 0:
    names = [_sample_name(names_source, i) for i in test.indices]
    reports.write_per_sample_scores(sdir.test_scores, names,
                                    test.labels, test.probabilities, dataset.class_names)
    reports.save_confusion_png(sdir.confusion_png, test.confusion,
                               dataset.class_names, f"{reports.STAGE_TITLES[name]}: test confusion")
    if len(test.labels) > 5:
      reports.save_tsne_png(sdir.tsne_png, test.features, test.labels,
                            dataset.class_names, f"{reports.STAGE_TITLES[name]}: t-SNE of test features")
    # Everything but writing the result itself, which marks the stage finished.
    result["wall_seconds"] = round(time.time() - start_time, 1)
    reports.update_results_json(run.results, name, result)
    tmp = sdir.result + ".tmp"
    with open(tmp, "w") as f:
      json.dump(result, f, indent=2)
    os.replace(tmp, sdir.result)
  logging.info("Stage %s: best step %d, test top-1 %.4f (reports in %.1fs)", name, best_step,
               test.top1, time.time() - start)
  return result


def _sample_name(source, index: int) -> str:
  name = source[int(index)]["sample_name"]
  return name.decode() if isinstance(name, bytes) else str(name)
