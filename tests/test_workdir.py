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


def test_a_run_recorded_before_a_field_existed_reads_it_as_the_earlier_behaviour(tmp_path):
  run = workdir.RunDir(tmp_path)
  run.write_run_info({"config": {"seed": 0, "train": {"fusion": {"learning_rate": 0.01}}}})
  assert workdir.ADDED_FIELDS["train.fusion.feature_dropout"] == 0.0
  assert run.recorded_config()["train"]["fusion"] == {
      "learning_rate": 0.01, "feature_dropout": 0.0, "mixup": 0.0, "distill_from": "",
      "distill_weight": 1.0, "distill_logits": 0.0, "distill_temperature": 4.0,
      "label_smoothing": 0.0}
  assert run.load_config().train.fusion.feature_dropout == 0.0
  # A re-run under today's config (the field at its earlier behaviour) is no change ...
  today = {"seed": 0, "train": {"fusion": {"learning_rate": 0.01, "feature_dropout": 0.0,
                                           "mixup": 0.0, "distill_from": "",
                                           "distill_weight": 1.0, "distill_logits": 0.0,
                                           "distill_temperature": 4.0, "label_smoothing": 0.0}}}
  assert run.check_config(today) == []
  # ... while setting it is one.
  today["train"]["fusion"]["feature_dropout"] = 0.5
  with pytest.raises(workdir.ConfigChangedError, match=r"feature_dropout: 0\.0 → 0\.5"):
    run.check_config(today)
