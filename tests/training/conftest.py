"""A tiny generated NTU-format dataset, built once per test run, and configs that train on it."""

from __future__ import annotations

import glob
import importlib.util
import os

import pytest

from amfi_jax import configlib
from amfi_jax.data import datasets
from amfi_jax.workdir import RunDir
from tests.conftest import build_once

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_config(name: str, variant: str | None = "demo"):
  spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "configs", f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(variant)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> str:
  """Directory of a prepared dataset: 4 classes, performers 1 2 (train) 9 (validation) 3 (test),
  3 cameras, 1 replication: 24 / 12 / 12 samples, 8-frame 32×32 clips, 32-frame skeletons.
  Built once per test run (`build_once`)."""
  def build(workdir: str) -> None:
    config = configlib.base_config(("rgb",))
    e = config.data.embedded
    e.num_classes = 4
    e.performers = (1, 2, 3, 9)
    e.replications = (1,)
    e.max_frames = 32
    assert datasets.prepare(config.data, RunDir(workdir).data).num_classes == 4

  workdir = build_once(tmp_path_factory, "tiny_data", build)
  (path,) = glob.glob(os.path.join(workdir, "data", "tfds", "ntu_rgbd", "*", "*"))
  return path


def tiny_config(stages: str, dataset_dir: str, *, steps: int = 2, batch_size: int = 8):
  """The demo config of `configs/<stages>.py` on the tiny dataset for `steps` steps per stage."""
  config = load_config(stages)
  config.data.dataset = dataset_dir
  config.model.num_classes = 4
  config.data.num_threads = 1
  for name in ("rgb", "skeleton", "fusion"):
    t = config.train[name]
    t.num_steps = steps
    t.batch_size = batch_size
    t.eval_batch_size = batch_size
  config.train.log_every_steps = 1
  return config


def cli_overrides(dataset_dir: str, stage: str, *, steps: int, batch_size: int = 8,
                  eval_every_epochs: float = 1.0) -> list[str]:
  """The same settings as `tiny_config`, as `amfi_jax.main` command-line flags."""
  t = f"--config.train.{stage}"
  return [f"--config.data.dataset={dataset_dir}", "--config.model.num_classes=4",
          "--config.data.num_threads=1", "--config.train.log_every_steps=1",
          f"{t}.num_steps={steps}", f"{t}.batch_size={batch_size}",
          f"{t}.eval_batch_size={batch_size}", f"{t}.eval_every_epochs={eval_every_epochs}"]


def tiny_run_config(dataset_dir: str):
  """The config `tiny_trained_run` trained: all three stages of the fusion demo config, two steps
  each, with two AGCN units instead of the demo's four, still ending at the RGB stream's 64
  channels (the fusion head needs equal widths): fewer units, less to compile."""
  config = tiny_config("fusion", dataset_dir, steps=2)
  config.model.skeleton.layers = "256,512/2"
  return config


@pytest.fixture(scope="session")
def tiny_trained_run(tiny_dataset, tmp_path_factory) -> str:
  """A workdir with all three stages of `tiny_run_config` trained, once per test run
  (`build_once`; the training loop's tests read a copy of it; export and batch and streaming
  prediction read it; nothing may write to it)."""
  def build(workdir: str) -> None:
    from amfi_jax.models import conv
    from amfi_jax.training import loop

    # The native convolution trains these tiny models in a fraction of the CPU rewrite's time;
    # evaluation and the tests' reference logits use the default (the rewrite).
    with conv.conv_impl("native"):
      loop.train_and_evaluate(tiny_run_config(tiny_dataset), workdir)

  return build_once(tmp_path_factory, "tiny_trained_run", build)


@pytest.fixture(scope="session")
def tiny_skeleton_artifact(tiny_trained_run, tmp_path_factory) -> str:
  """The skeleton stage of `tiny_trained_run` exported for CPU, once per test run (batch and
  streaming prediction read it)."""
  from amfi_jax import export

  def build(folder: str) -> None:
    export.export_to_file(tiny_trained_run, "skeleton", os.path.join(folder, "skeleton.jaxexport"),
                          platforms=("cpu",))

  return os.path.join(build_once(tmp_path_factory, "tiny_artifact", build), "skeleton.jaxexport")
