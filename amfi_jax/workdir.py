"""The run directory: the stages, what each loads and exports, and every path of a workdir.

  WORKDIR/
    run.json               config, class names and sample format of the run (before training)
    results.json           every finished stage's result (the README's tables)
    data/                  the embedded dataset, generated and built when no dataset is configured
    <stage>/               rgb | skeleton | fusion
      checkpoints/         Orbax: the latest `keep_latest` and the best (selection accuracy)
      best_stream/         rgb and skeleton: the best stream's weights, what fusion loads
      result.json          present = the stage finished (a re-run skips it)
      metrics.jsonl        train and selection metrics (and TensorBoard event files)
      test_scores.jsonl    per-sample test probabilities
      confusion_test.png, tsne_test.png

Everything that reads or writes a workdir (the loop, evaluate, predict, reports, the tools) asks
this module for names instead of spelling them.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os

from amfi_jax.errors import ConfigError, FlagError, MissingFileError

# Paper Algorithm 1: the RGB stream, the skeleton stream, then the fusion head on both.
STAGES = ("rgb", "skeleton", "fusion")
# Stages that train one stream and export its best weights for the fusion stage.
STREAM_STAGES = ("rgb", "skeleton")

# Config fields a re-run in an existing workdir may change freely: how the work is run and
# logged, not what a checkpoint holds or means (paths, threads, the mesh — resuming on another
# device count is supported —, evaluation batch sizes, the stages to run, and the feature cache,
# whose results equal the uncached path's). Patterns: a field, or a prefix ending in '.'.
SAFE_TO_CHANGE = ("stages", "data.data_dir", "data.manual_dir", "data.num_threads",
                  "data.prefetch", "mesh.", "train.log_every_steps", "train.keep_latest",
                  "train.rgb.eval_batch_size", "train.skeleton.eval_batch_size",
                  "train.fusion.eval_batch_size", "train.fusion.cache_features")

# Config fields added after runs were recorded → the value that reproduces what those runs did.
# A recorded config without such a field reads it as this value (comparisons, evaluate, ablations).
ADDED_FIELDS = {"train.rgb.mixup": 0.0,
                "train.skeleton.mixup": 0.0, "train.fusion.mixup": 0.0, "data.clip_frames": 0,
                "data.clip_views": 1, "data.clip_augment.crop": 0.0,
                "data.clip_augment.depth_offset": 0.0,
                **{f"train.{stage}.{field}": value for stage in STAGES
                   for field, value in (("distill_from", ""), ("distill_weight", 1.0),
                                         ("distill_logits", 0.0), ("distill_temperature", 4.0),
                                         ("label_smoothing", 0.0), ("feature_dropout", 0.0))}}

RUN_INFO = "run.json"
RESULTS = "results.json"
METRICS = "metrics.jsonl"


def streams_loaded_by(stage: str) -> tuple[str, ...]:
  """The streams whose trained weights initialise `stage` (fusion: both; others: none)."""
  return STREAM_STAGES if stage == "fusion" else ()


def exports_stream(stage: str) -> bool:
  """Whether `stage` writes `best_stream/` when it finishes."""
  return stage in STREAM_STAGES


@dataclasses.dataclass(frozen=True)
class StageDir:
  """`WORKDIR/<stage>/` and its files."""

  name: str
  path: str

  @property
  def checkpoints(self) -> str:
    return os.path.join(self.path, "checkpoints")

  @property
  def best_stream(self) -> str:
    return os.path.join(self.path, "best_stream")

  @property
  def result(self) -> str:
    return os.path.join(self.path, "result.json")

  @property
  def metrics(self) -> str:
    return os.path.join(self.path, METRICS)

  @property
  def test_scores(self) -> str:
    return os.path.join(self.path, "test_scores.jsonl")

  @property
  def confusion_png(self) -> str:
    return os.path.join(self.path, "confusion_test.png")

  @property
  def tsne_png(self) -> str:
    return os.path.join(self.path, "tsne_test.png")

  def is_finished(self) -> bool:
    """Trained to the end: `result.json` is written last, atomically."""
    return os.path.exists(self.result)

  def read_result(self) -> dict:
    with open(self.result) as f:
      return json.load(f)


def check_workdir_path(path: str) -> None:
  """A --workdir must be a directory or not exist yet (it is then created)."""
  if not path:
    raise FlagError("--workdir is empty; name a directory")
  if os.path.exists(path) and not os.path.isdir(path):
    raise FlagError(f"--workdir={path} is a file, not a directory; name a new or existing "
                    "directory")


def _flatten(tree, prefix: str = "") -> dict:
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      out.update(_flatten(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = value
  return out


def config_changes(recorded: dict, new: dict) -> list[tuple[str, object, object]]:
  """(field, recorded value, new value) for every config field that differs (JSON forms; a
  field missing on one side shows as None), sorted by field."""
  old_flat, new_flat = _flatten(recorded), _flatten(new)
  normal = lambda v: list(v) if isinstance(v, tuple) else v
  return [(k, old_flat.get(k), new_flat.get(k)) for k in sorted(set(old_flat) | set(new_flat))
          if normal(old_flat.get(k)) != normal(new_flat.get(k))]


def is_safe_to_change(field: str) -> bool:
  return any(field == p or (p.endswith(".") and field.startswith(p)) for p in SAFE_TO_CHANGE)


class ConfigChangedError(ConfigError):
  """A re-run's config differs from the workdir's in fields its checkpoints depend on."""


class RunDir:
  """A workdir written by `python -m amfi_jax.main`."""

  def __init__(self, workdir: str | os.PathLike):
    self.path = os.path.abspath(os.fspath(workdir))

  @property
  def run_info(self) -> str:
    return os.path.join(self.path, RUN_INFO)

  @property
  def results(self) -> str:
    return os.path.join(self.path, RESULTS)

  @property
  def data(self) -> str:
    return os.path.join(self.path, "data")

  def stage(self, name: str) -> StageDir:
    if name not in STAGES:
      raise ValueError(f"Unknown stage {name!r}; expected one of {list(STAGES)}")
    return StageDir(name, os.path.join(self.path, name))

  def finished_stages(self, stages=STAGES) -> list[str]:
    """The stages of `stages` that trained to the end (what evaluate and predict may use)."""
    return [s for s in stages if self.stage(s).is_finished()]

  def write_run_info(self, info: dict) -> None:
    """Writes `run.json` atomically (a reader never sees half a file)."""
    os.makedirs(self.path, exist_ok=True)
    tmp = self.run_info + ".tmp"
    with open(tmp, "w") as f:
      json.dump(info, f, indent=2)
    os.replace(tmp, self.run_info)

  def check_config(self, config: dict, allow_change: bool = False) -> list[str]:
    """Compares a re-run's config (its JSON form) with the one `run.json` recorded.

    Fields outside SAFE_TO_CHANGE that differ raise ConfigChangedError listing each (old → new)
    and the ways out, unless `allow_change`. Returns the differing fields (to log). A workdir
    without run.json has nothing to compare."""
    if not os.path.isfile(self.run_info):
      return []
    recorded = self.recorded_config()
    changes = config_changes(recorded, config)
    blocking = [c for c in changes if not is_safe_to_change(c[0])]
    if blocking and not allow_change:
      lines = "\n".join(f"  config.{k}: {old!r} → {new!r}" for k, old, new in blocking)
      raise ConfigChangedError(
          f"{self.path} was trained with another config; these fields differ from its "
          f"{RUN_INFO}:\n{lines}\nIts checkpoints and reports depend on them, so nothing was "
          "changed. Use a new --workdir for the new config, or pass --allow_config_change if "
          "these changes leave the checkpoints' shapes and meaning intact.")
    return [c[0] for c in changes]

  def read_run_info(self) -> dict:
    if not os.path.isfile(self.run_info):
      raise MissingFileError(f"{self.run_info} not found: --workdir must be a directory "
                             "written by `python -m amfi_jax.main`")
    with open(self.run_info) as f:
      return json.load(f)

  def recorded_config(self) -> dict:
    """The config `run.json` recorded (its JSON form), with ADDED_FIELDS it predates filled in."""
    config = copy.deepcopy(self.read_run_info().get("config", {}))
    for field, value in ADDED_FIELDS.items():
      *parents, leaf = field.split(".")
      node = config
      for key in parents:
        node = node.get(key)
        if not isinstance(node, dict):
          break
      else:
        node.setdefault(leaf, value)
    return config

  def load_config(self):
    """The run's config as recorded in `run.json` (locked)."""
    import ml_collections  # here, so that reading paths needs nothing beyond the standard library

    config = ml_collections.ConfigDict(self.recorded_config())
    config.lock()
    return config
