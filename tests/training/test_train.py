"""The real training loop on tiny models: every stage, reports, evaluate/predict, config errors."""

from __future__ import annotations

import glob
import json
import os
import shutil
import types

import numpy as np
import pytest

from amfi_jax import configlib, evaluate, predict
from amfi_jax.errors import FlagError
from amfi_jax.evaluation import reports
from amfi_jax.training import feature_cache, loop
from amfi_jax.workdir import ConfigChangedError, RunDir

from tests.training.conftest import tiny_config, tiny_run_config


@pytest.fixture(scope="module")
def trained_workdir(tiny_trained_run, tmp_path_factory):
  """A copy of the session's tiny run that these tests may re-run and extend, and its results."""
  workdir = str(tmp_path_factory.mktemp("run") / "run")
  shutil.copytree(tiny_trained_run, workdir)
  with open(os.path.join(workdir, "results.json")) as f:
    return workdir, json.load(f)


def test_every_stage_trains_and_reports(trained_workdir):
  workdir, results = trained_workdir
  assert list(results) == ["rgb", "skeleton", "fusion"]
  with open(os.path.join(workdir, "results.json")) as f:
    saved = json.load(f)
  assert set(saved) == {"rgb", "skeleton", "fusion"}
  for name, entry in saved.items():
    assert entry["best_step"] in (1, 2), name
    assert entry["test"]["num_samples"] == 12  # every test sample exactly once
    assert entry["validation"]["num_samples"] == 12
    assert 0.0 <= entry["test"]["top1"] <= entry["test"]["top5"] <= 1.0
    assert entry["wall_seconds"] > 0 and entry["resumed_from_step"] is None
    stage = os.path.join(workdir, name)
    for produced in ("result.json", "confusion_test.png", "tsne_test.png", "test_scores.jsonl",
                     "metrics.jsonl"):
      assert os.path.getsize(os.path.join(stage, produced)) > 0, (name, produced)
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(stage))
    scores = reports.read_per_sample_scores(os.path.join(stage, "test_scores.jsonl"))
    assert len(scores) == 12 and all(k.startswith("S001C") for k in scores)
  for stream in ("rgb", "skeleton"):  # what the fusion stage loaded
    assert os.path.isdir(os.path.join(workdir, stream, "best_stream", "state"))
  with open(os.path.join(workdir, "fusion", "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  train = [r for r in rows if "gate_loss" in r or "train/gate_loss" in r]
  assert train, "the fusion stage logs L_gate"


def test_finished_stages_are_skipped(trained_workdir, tiny_dataset):
  workdir, results = trained_workdir
  before = os.path.getmtime(os.path.join(workdir, "fusion", "result.json"))
  again = loop.train_and_evaluate(tiny_run_config(tiny_dataset), workdir)
  assert again == json.loads(json.dumps(results))
  assert os.path.getmtime(os.path.join(workdir, "fusion", "result.json")) == before


def _snapshot(workdir: str) -> dict[str, bytes]:
  out = {}
  for root, _, files in os.walk(workdir):
    for name in files:
      path = os.path.join(root, name)
      with open(path, "rb") as f:
        out[os.path.relpath(path, workdir)] = f.read()
  return out


def test_rerun_with_another_model_is_refused_and_leaves_the_workdir_intact(trained_workdir,
                                                                           tiny_dataset):
  workdir, _ = trained_workdir
  before = _snapshot(workdir)
  config = tiny_run_config(tiny_dataset)
  config.model.skeleton.width_multiplier = 0.5
  config.train.rgb.learning_rate = 0.05
  with pytest.raises(ConfigChangedError) as info:
    loop.train_and_evaluate(config, workdir)
  message = str(info.value)
  assert "config.model.skeleton.width_multiplier: " in message and "→ 0.5" in message
  assert "config.train.rgb.learning_rate: 0.1 → 0.05" in message
  assert "--workdir" in message and "--allow_config_change" in message
  assert _snapshot(workdir) == before


def test_rerun_with_safe_changes_only_goes_on(trained_workdir, tiny_dataset):
  workdir, results = trained_workdir
  config = tiny_run_config(tiny_dataset)
  config.train.log_every_steps = 5
  config.data.num_threads = 2
  assert loop.train_and_evaluate(config, workdir) == json.loads(json.dumps(results))
  assert RunDir(workdir).load_config().train.log_every_steps == 5


def test_evaluate_names_a_checkpoint_that_does_not_fit_the_recorded_config(trained_workdir,
                                                                           tmp_path):
  workdir, _ = trained_workdir
  copy = str(tmp_path / "copy")
  shutil.copytree(workdir, copy)
  info = RunDir(copy).read_run_info()
  info["config"]["model"]["skeleton"]["width_multiplier"] *= 2
  RunDir(copy).write_run_info(info)
  with pytest.raises(ValueError, match=r"checkpoint \d+ in .*skeleton.* does not fit the model "
                     r"that config\.model builds"):
    evaluate.evaluate_workdir(copy, stages=["skeleton"])


def test_evaluate_names_an_unknown_split_before_restoring_anything(trained_workdir):
  workdir, _ = trained_workdir
  with pytest.raises(FlagError, match=r"--split=tset: Unknown split 'tset'"):
    evaluate.evaluate_workdir(workdir, "tset")


def test_evaluate_reproduces_the_reported_test_metrics(trained_workdir):
  workdir, results = trained_workdir
  evaluated = evaluate.evaluate_workdir(workdir, "test")
  for name in ("rgb", "skeleton", "fusion"):
    assert evaluated[name]["best_step"] == results[name]["best_step"]
    np.testing.assert_allclose(evaluated[name]["result"].top1, results[name]["test"]["top1"])
    np.testing.assert_allclose(evaluated[name]["result"].loss, results[name]["test"]["loss"],
                               rtol=1e-5)


def test_predict_on_raw_ntu_files_matches_the_evaluation(trained_workdir, tiny_dataset):
  workdir, _ = trained_workdir
  # tiny_dataset = WORKDIR/data/tfds/ntu_rgbd/<config>/<version>; the raw files are beside it.
  (raw,) = glob.glob(os.path.join(tiny_dataset, "..", "..", "..", "..", "raw_*"))
  name = "S001C001P003R001A002"  # performer 3: a test sample
  skeleton = os.path.join(raw, "nturgb+d_skeletons", f"{name}.skeleton")
  video = os.path.join(raw, "nturgb+d_rgb", f"{name}_rgb.avi")
  for stage, args in (("fusion", (skeleton, video)), ("skeleton", (skeleton,))):
    used, ranking = predict.predict(workdir, *args)
    assert used == stage
    assert len(ranking) == 4 and abs(sum(p for _, p in ranking) - 1) < 1e-5
    assert [p for _, p in ranking] == sorted((p for _, p in ranking), reverse=True)
    # Raw files preprocessed by `predict` give exactly the scores the test evaluation stored.
    row = reports.read_per_sample_scores(os.path.join(workdir, stage, "test_scores.jsonl"))[name]
    by_name = dict(ranking)
    class_names = RunDir(workdir).read_run_info()["class_names"]
    np.testing.assert_allclose([by_name[c] for c in class_names], row["scores"], atol=1e-5)


def test_predict_refuses_ntu_files_for_a_depth_run(trained_workdir, tiny_dataset, tmp_path):
  """Raw NTU samples carry an RGB video; a model of depth clips cannot read them."""
  workdir, _ = trained_workdir
  with open(os.path.join(workdir, "run.json")) as f:
    info = json.load(f)
  info["config"]["data"]["rgb_modality"] = "depth"
  depth_run = tmp_path / "depth_run"
  depth_run.mkdir()
  (depth_run / "run.json").write_text(json.dumps(info))
  (raw,) = glob.glob(os.path.join(tiny_dataset, "..", "..", "..", "..", "raw_*"))
  name = "S001C001P003R001A002"
  with pytest.raises(FlagError, match=r"predict reads NTU samples .* trained on 'depth' "
                                      r"\(evaluate such a run"):
    predict.predict(str(depth_run), os.path.join(raw, "nturgb+d_skeletons", f"{name}.skeleton"),
                    os.path.join(raw, "nturgb+d_rgb", f"{name}_rgb.avi"))


@pytest.mark.parametrize("field, value, message", [
    ("stages", ("rgb", "depth"), "config.stages"),
    ("model.dtype", "float16", "config.model.dtype"),
    ("model.fusion.kind", "sum", "config.model.fusion.kind"),
    ("model.skeleton.layers", "64,x", "config.model.skeleton.layers"),
    ("model.rgb.width_multiplier", -1.0, "config.model.rgb.width_multiplier"),
    ("data.clip_frames", -4, "config.data.clip_frames"),
    ("data.clip_views", 0, "config.data.clip_views must be an integer ≥ 1"),
    ("data.clip_views", 2, "config.data.clip_views=2 needs config.data.clip_frames > 0"),
])
def test_config_errors_name_the_field(tiny_dataset, field, value, message):
  config = tiny_config("fusion", tiny_dataset)
  node, _, leaf = field.rpartition(".")
  target = config
  for part in filter(None, node.split(".")):
    target = target[part]
  with config.unlocked():
    target[leaf] = value
  with pytest.raises(ValueError, match=message.replace(".", r"\.")):
    configlib.validate(config)


def test_data_errors_are_clear(tiny_dataset, tmp_path):
  config = tiny_config("skeleton", tiny_dataset)
  config.model.num_classes = 60
  with pytest.raises(ValueError, match="num_classes=60 but the dataset has 4 classes"):
    loop.train_and_evaluate(config, str(tmp_path / "a"))
  config = tiny_config("skeleton", tiny_dataset)
  config.data.dataset = "ntu_rgbd/ntu60_xsub"
  config.data.data_dir = str(tmp_path / "empty")
  with pytest.raises(FileNotFoundError, match="amfi_jax.data.build"):
    loop.train_and_evaluate(config, str(tmp_path / "b"))
  config = tiny_config("rgb", tiny_dataset)
  config.data.clip_frames = 3  # the clips store 8 frames
  with pytest.raises(ValueError, match=r"clip_frames=3 must divide the 8 frames of the stored "
                                       r"'clip' clips"):
    loop.train_and_evaluate(config, str(tmp_path / "d"))
  assert not os.path.exists(tmp_path / "d" / "rgb")
  config.data.clip_frames = 4
  config.data.clip_views = 3  # groups of 2 stored frames
  with pytest.raises(ValueError, match=r"clip_views=3 is more than the 2 stored frames of each "
                                       r"group"):
    loop.train_and_evaluate(config, str(tmp_path / "e"))
  assert not os.path.exists(tmp_path / "e" / "rgb")
  config = tiny_config("skeleton", tiny_dataset)
  config.train.skeleton.batch_size = 100
  with pytest.raises(ValueError, match="batch_size=100 exceeds the 24 training examples"):
    loop.train_and_evaluate(config, str(tmp_path / "c"))


def test_fusion_without_trained_streams_says_what_is_missing(tiny_dataset, tmp_path):
  config = tiny_config("fusion", tiny_dataset)
  config.stages = ("fusion",)
  with pytest.raises(FileNotFoundError, match="needs the trained rgb stream"):
    loop.train_and_evaluate(config, str(tmp_path / "run"))
  assert not os.path.exists(tmp_path / "run")  # said before preparing any data
  config.stages = ("skeleton", "fusion")
  with pytest.raises(FileNotFoundError, match="needs the trained rgb stream"):
    loop.train_and_evaluate(config, str(tmp_path / "run"))
  assert not os.path.exists(tmp_path / "run")


def test_missing_init_from_checkpoint_is_named_before_any_data_is_prepared(tiny_dataset,
                                                                          tmp_path):
  config = tiny_config("fusion", tiny_dataset)
  config.init_from.skeleton = str(tmp_path / "no_such_stream")
  with pytest.raises(FileNotFoundError, match=r"config\.init_from\.skeleton: no stream checkpoint "
                                              r"at .*no_such_stream"):
    loop.train_and_evaluate(config, str(tmp_path / "run"))
  assert not os.path.exists(tmp_path / "run")


def test_non_finite_loss_stops_with_the_step_range(tiny_dataset, tmp_path):
  config = tiny_config("skeleton", tiny_dataset, steps=6)
  config.train.skeleton.learning_rate = 1e30
  config.train.log_every_steps = 2
  with pytest.raises(FloatingPointError, match=r"Non-finite .* at a step in \(\d+, \d+\]"):
    loop.train_and_evaluate(config, str(tmp_path))
  assert not os.path.exists(tmp_path / "skeleton" / "result.json")


def test_bfloat16_training_step(tiny_dataset, tmp_path):
  config = tiny_config("rgb", tiny_dataset, steps=1)
  config.model.dtype = "bfloat16"
  result = loop.train_and_evaluate(config, str(tmp_path))["rgb"]
  assert np.isfinite(result["test"]["loss"])


def test_ablations_retrain_the_fusion_head_per_variant(trained_workdir, monkeypatch, tmp_path):
  from amfi_jax.tools import ablations

  workdir, results = trained_workdir
  run = RunDir(workdir)
  monkeypatch.setattr(ablations, "VARIANTS", (
      ("3", "max", {"kind": "max"}), ("5", "λ = 3", {"kind": "amfi", "gate_weight": 3.0}),
      ("6", "skeleton decides", {"kind": "amfi", "decision": "skeleton"})))
  computed = []
  compute = feature_cache.compute
  monkeypatch.setattr(feature_cache, "compute",
                      lambda *a, **k: computed.append(1) or compute(*a, **k))
  rows = ablations.collect([run])
  # The streams' features of each split (train, validation, test) are computed for the first
  # variant only; the second trains on the same arrays.
  assert len(computed) == 3
  assert [(r["table"], r["label"]) for r in rows] == [
      ("4", "RGB/depth only"), ("4", "Skeleton only"), ("4", "Fusion (the run's fusion stage)"),
      ("3", "max"), ("5", "λ = 3"), ("6", "skeleton decides")]
  for row, stage in zip(rows, ("rgb", "skeleton", "fusion")):
    assert row["values"] == [results[stage]["test"]["top1"]]
  # The run's own head (AMFI, λ = 1, skeleton decides) is read, not trained again.
  assert rows[5]["values"] == [results["fusion"]["test"]["top1"]]
  assert sorted(os.listdir(os.path.join(workdir, "ablations"))) == ["gate_weight=3.0", "kind=max"]
  for row, changes in zip(rows[3:5], ({"kind": "max"}, {"gate_weight": 3.0})):
    variant = RunDir(os.path.join(workdir, "ablations", ablations.variant_name(changes)))
    with open(variant.results) as f:
      entry = json.load(f)["fusion"]
    assert row["values"] == [entry["test"]["top1"]]
    assert all(entry["config"]["model"]["fusion"][k] == v for k, v in changes.items())
    assert entry["config"]["train"]["fusion"]["cache_features"] is True
  # ... and ends where it ends on features computed for itself (the loss to XLA's rounding:
  # each head's program computes the same stream features, fused its own way).
  alone_dir = str(tmp_path / "gate_weight_alone")
  ablations.share_data(run, alone_dir)
  alone = loop.train_and_evaluate(ablations.variant_config(run, {"gate_weight": 3.0}),
                                  alone_dir)["fusion"]
  assert len(computed) == 6
  shared = RunDir(os.path.join(workdir, "ablations", "gate_weight=3.0")).stage("fusion")
  shared_test = shared.read_result()["test"]
  assert shared_test["loss"] == pytest.approx(alone["test"]["loss"], rel=1e-6)
  assert {k: v for k, v in shared_test.items() if k != "loss"} == {
      k: v for k, v in alone["test"].items() if k != "loss"}
  table = ablations.format_table(rows, [run])
  assert "| 3 | max |" in table and "± 0.00" in table
  with pytest.raises(ValueError, match="has not finished"):
    ablations.check_runs([RunDir(os.path.join(workdir, "missing"))])


def test_a_depth_model_must_take_the_stored_channels():
  from amfi_jax.training import setup as stage_setup
  config = configlib.make_config(("skeleton", "rgb", "fusion"), None, (), always=("utd_mhad",))
  config.data.dataset = "utd_mhad/skeleton_depth_k48_s48_spread_arms"
  arms_build = types.SimpleNamespace(num_classes=27, clip_channels={"depth": 2}.get)
  with pytest.raises(ValueError, match=r"config.model.rgb.in_channels=1 but config.data.dataset="
                                       r"'utd_mhad/skeleton_depth_k48_s48_spread_arms' stores "
                                       r"2-channel depth clips"):
    stage_setup.check_dataset_fits(config, arms_build)
  config.model.rgb.in_channels = 2
  configlib.validate(config)
  stage_setup.check_dataset_fits(config, arms_build)
  config.model.rgb.in_channels = 3
  with pytest.raises(ValueError, match=r"rgb_modality='depth' feeds 1 or 2 channel\(s\) but "
                                       r"config.model.rgb.in_channels=3"):
    configlib.validate(config)
