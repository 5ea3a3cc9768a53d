"""The ablation tool's bookkeeping (its training is tested in tests/training/test_train.py)."""

from __future__ import annotations

import os

from amfi_jax.tools import ablations
from amfi_jax.workdir import RunDir


def test_variants_share_the_runs_dataset_through_a_link(tmp_path):
  run = RunDir(tmp_path / "run")
  os.makedirs(os.path.join(run.data, "tfds"))
  variant = str(tmp_path / "run" / "ablations" / "kind=max")
  ablations.share_data(run, variant)
  assert os.path.islink(RunDir(variant).data)
  assert os.path.realpath(RunDir(variant).data) == os.path.realpath(run.data)
  ablations.share_data(run, variant)  # idempotent


def test_no_link_without_a_run_dataset(tmp_path):
  run = RunDir(tmp_path / "run")
  variant = str(tmp_path / "run" / "ablations" / "kind=max")
  ablations.share_data(run, variant)
  assert not os.path.lexists(RunDir(variant).data)
