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

import dataclasses
import json
import os

# Paper Algorithm 1: the RGB stream, the skeleton stream, then the fusion head on both.
STAGES = ("rgb", "skeleton", "fusion")
# Stages that train one stream and export its best weights for the fusion stage.
STREAM_STAGES = ("rgb", "skeleton")

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

  def read_run_info(self) -> dict:
    if not os.path.isfile(self.run_info):
      raise FileNotFoundError(f"{self.run_info} not found: --workdir must be a directory "
                              "written by `python -m amfi_jax.main`")
    with open(self.run_info) as f:
      return json.load(f)

  def load_config(self):
    """The run's config as recorded in `run.json` (locked)."""
    import ml_collections  # here, so that reading paths needs nothing beyond the standard library

    config = ml_collections.ConfigDict(self.read_run_info()["config"])
    config.lock()
    return config
