"""Evaluation protocols: `final` trains on every training subject and reports the last
checkpoint, never looking at test before the last step; every protocol is named in results."""

from __future__ import annotations

import json
import os

import pytest

from amfi_jax.evaluation import reports
from amfi_jax.training import evaluation, loop

from tests.training.conftest import tiny_config


def test_final_protocol_never_evaluates_before_the_last_step(tiny_dataset, tmp_path, monkeypatch):
  config = tiny_config("skeleton", tiny_dataset, steps=6)
  config.data.protocol = "final"
  config.train.skeleton.eval_every_epochs = 0.5  # checkpoints every 2 of the 6 steps
  calls = []
  real = evaluation.evaluate

  def spy(eval_step, state, source, **kwargs):
    calls.append((int(state.step), len(source)))
    return real(eval_step, state, source, **kwargs)

  monkeypatch.setattr(evaluation, "evaluate", spy)
  result = loop.train_and_evaluate(config, str(tmp_path))["skeleton"]
  # One evaluation, of the last state, on the 12 test samples; the 36 = 24 + 12 training and
  # validation samples all trained (train+validation).
  assert calls == [(6, 12)]
  assert result["best_step"] == 6 and result["protocol"] == "final"
  assert result["validation"] is None and result["test"]["num_samples"] == 12
  saved = sorted(int(d) for d in os.listdir(tmp_path / "skeleton" / "checkpoints") if d.isdigit())
  assert saved[-1] == 6


@pytest.mark.parametrize("protocol,validation_samples", [("validation", 12), ("test", None)])
def test_every_protocol_is_named_in_results(tiny_dataset, tmp_path, protocol, validation_samples):
  config = tiny_config("skeleton", tiny_dataset, steps=2)
  config.data.protocol = protocol
  loop.train_and_evaluate(config, str(tmp_path))
  with open(tmp_path / "results.json") as f:
    entry = json.load(f)["skeleton"]
  assert entry["protocol"] == protocol
  assert entry["selection_protocol"] == reports.SELECTION_PROTOCOLS[protocol]
  validation = entry["validation"]
  assert (validation and validation["num_samples"]) == validation_samples
