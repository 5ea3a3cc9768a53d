"""The run directory's bookkeeping: which config changes a re-run may make."""

from __future__ import annotations

import json

import pytest

from amfi_jax import workdir


def test_config_changes_lists_each_differing_leaf():
  old = {"model": {"width": 1.0, "sizes": [1, 2]}, "stages": ["rgb"], "gone": 3}
  new = {"model": {"width": 0.5, "sizes": (1, 2)}, "stages": ["rgb", "fusion"], "added": 1}
  assert workdir.config_changes(old, new) == [
      ("added", None, 1), ("gone", 3, None), ("model.width", 1.0, 0.5),
      ("stages", ["rgb"], ["rgb", "fusion"])]


@pytest.mark.parametrize("field,safe", [
    ("stages", True), ("mesh.rules.channels", True), ("train.log_every_steps", True),
    ("data.data_dir", True), ("model.rgb.width_multiplier", False), ("seed", False),
    ("train.rgb.learning_rate", False), ("data.dataset", False), ("mesh", False)])
def test_safe_fields(field, safe):
  assert workdir.is_safe_to_change(field) is safe


def test_check_config_refuses_unsafe_changes_unless_allowed(tmp_path):
  run = workdir.RunDir(tmp_path)
  assert run.check_config({"seed": 0}) == []  # nothing recorded yet
  run.write_run_info({"config": {"seed": 0, "train": {"log_every_steps": 20}}})
  assert run.check_config({"seed": 0, "train": {"log_every_steps": 5}}) == [
      "train.log_every_steps"]
  with pytest.raises(workdir.ConfigChangedError, match=r"config\.seed: 0 → 1"):
    run.check_config({"seed": 1, "train": {"log_every_steps": 20}})
  assert run.check_config({"seed": 1, "train": {"log_every_steps": 20}},
                          allow_change=True) == ["seed"]
  assert json.loads((tmp_path / "run.json").read_text())["config"]["seed"] == 0
