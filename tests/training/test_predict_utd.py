"""`predict` on raw UTD-MHAD files with a run of `configs/utd_mhad.py` (tiny widths, two actions of
the real files, two steps a stage): the scores its test evaluation stored, and its name checks."""

from __future__ import annotations

import json
import os

import numpy as np
import scipy.io
import pytest

from amfi_jax import predict
from amfi_jax.errors import FlagError
from amfi_jax.evaluation import reports
from amfi_jax.workdir import RunDir
from tests.shared_data import shared_path
from tests.training.conftest import load_config

ACTIONS = (1, 2)


def _tiny_utd_config(manual_dir: str):
  config = load_config("utd_mhad", None)
  config.data.manual_dir = manual_dir
  config.data.num_threads = 1
  # Both streams end at 64 features, as the fusion head needs.
  config.model.rgb.width_multiplier = 0.125
  config.model.skeleton.layers = "256,512/2"
  config.model.skeleton.width_multiplier = 0.125
  for name in ("rgb", "skeleton", "fusion"):
    t = config.train[name]
    t.num_steps, t.batch_size, t.eval_batch_size = 2, 8, 8
  return config


@pytest.fixture(scope="module")
def utd_run(tmp_path_factory) -> tuple[str, str]:
  """(workdir, raw UTD-MHAD folder) of a tiny three-stage run on actions 1 and 2."""
  source = shared_path("utd_mhad")
  raw = tmp_path_factory.mktemp("utd_raw")
  for sub, suffix in (("Skeleton", "_skeleton.mat"), ("Depth", "_depth.mat")):
    (raw / sub).mkdir()
    for action in ACTIONS:
      for path in (source / sub).glob(f"a{action}_s*{suffix}"):
        (raw / sub / path.name).symlink_to(path)

  from amfi_jax.models import conv
  from amfi_jax.training import loop

  workdir = str(tmp_path_factory.mktemp("utd_run"))
  with conv.conv_impl("native"):  # the tiny models train faster on the native convolution
    loop.train_and_evaluate(_tiny_utd_config(str(raw)), workdir)
  return workdir, str(raw)


def test_predict_on_raw_utd_mhad_files_matches_the_evaluation(utd_run):
  workdir, raw = utd_run
  name = "a2_s4_t3"  # subject 4: a test sample
  skeleton = os.path.join(raw, "Skeleton", f"{name}_skeleton.mat")
  depth = os.path.join(raw, "Depth", f"{name}_depth.mat")
  class_names = RunDir(workdir).read_run_info()["class_names"]
  assert len(class_names) == 27
  for stage, args in (("fusion", (skeleton, depth)), ("skeleton", (skeleton,))):
    used, ranking = predict.predict(workdir, *args)
    assert used == stage
    assert abs(sum(p for _, p in ranking) - 1) < 1e-5
    # The raw .mat files read by `predict` give the scores the test evaluation stored.
    row = reports.read_per_sample_scores(os.path.join(workdir, stage, "test_scores.jsonl"))[name]
    by_name = dict(ranking)
    np.testing.assert_allclose([by_name[c] for c in class_names], row["scores"], atol=1e-5)


def test_predict_checks_utd_mhad_sample_names(utd_run, tmp_path):
  workdir, raw = utd_run
  skeleton = os.path.join(raw, "Skeleton", "a2_s4_t3_skeleton.mat")
  with pytest.raises(FlagError, match=r"--skeleton is sample a2_s4_t3 but --video is sample "
                                      r"a1_s4_t3; pass --allow_mismatch"):
    predict.predict(workdir, skeleton, os.path.join(raw, "Depth", "a1_s4_t3_depth.mat"))
  renamed = tmp_path / "sample_depth.mat"
  renamed.symlink_to(os.path.join(raw, "Depth", "a2_s4_t3_depth.mat"))
  with pytest.raises(FlagError, match=r"--video=.*sample_depth.mat: not a UTD-MHAD sample name "
                                      r"\(a\{action\}_s\{subject\}_t\{trial\}_\{kind\}\) like "
                                      r"--skeleton's"):
    predict.predict(workdir, skeleton, str(renamed))
  used, _ = predict.predict(workdir, skeleton, str(renamed), allow_mismatch=True)
  assert used == "fusion"


def _test_rows(workdir: str, stage: str) -> dict:
  return reports.read_per_sample_scores(os.path.join(workdir, stage, "test_scores.jsonl"))


def _assert_rows_match_the_evaluation(rows: list[dict], workdir: str, stage: str) -> None:
  class_names = RunDir(workdir).read_run_info()["class_names"]
  stored = _test_rows(workdir, stage)
  for row in rows:
    assert row["stage"] == stage
    by_name = dict(row["top"])
    np.testing.assert_allclose([by_name[c] for c in class_names],
                               stored[row["sample"]]["scores"], atol=1e-5)


def test_batch_predict_reads_the_release_layout(utd_run, tmp_path):
  """--inputs=the release's Skeleton folder (a glob of subject 4's files): each sample's depth
  file is found in Depth/ beside it, and the fusion scores equal the stored test scores."""
  workdir, raw = utd_run
  pattern = os.path.join(raw, "Skeleton", "a*_s4_t*_skeleton.mat")
  result = predict.predict_batch(pattern, str(tmp_path / "scores.jsonl"), workdir=workdir,
                                 top=27, batch_size=3, progress_stream=None)
  assert [r["sample"] for r in result.predictions] == [
      f"a{a}_s4_t{t}" for a in ACTIONS for t in (1, 2, 3, 4)]
  assert not result.skipped
  _assert_rows_match_the_evaluation(result.predictions, workdir, "fusion")


def test_exported_fusion_model_reads_utd_mhad_samples(utd_run, tmp_path):
  from amfi_jax import export

  workdir, raw = utd_run
  artifact = str(tmp_path / "fusion.jaxexport")
  metadata = export.export_to_file(workdir, "fusion", artifact, platforms=("cpu",))
  assert metadata["preprocessing"]["dataset"] == "utd_mhad/skeleton_depth_k48_s48_spread"
  pattern = os.path.join(raw, "Skeleton", "a2_s4_t*_skeleton.mat")
  result = predict.predict_batch(pattern, str(tmp_path / "scores.jsonl"), exported=artifact,
                                 top=27, progress_stream=None)
  assert len(result.predictions) == 4
  _assert_rows_match_the_evaluation(result.predictions, workdir, "fusion")

  # A skeleton file without its depth file: the fusion artifact cannot predict it, and the
  # reason names where the depth file was looked for.
  lone = tmp_path / "lone"
  lone.mkdir()
  (lone / "a2_s4_t1_skeleton.mat").symlink_to(os.path.join(raw, "Skeleton",
                                                           "a2_s4_t1_skeleton.mat"))
  result = predict.predict_batch(str(lone), str(tmp_path / "lone.jsonl"), exported=artifact,
                                 progress_stream=None)
  assert not result.predictions
  (skipped,) = result.skipped
  assert skipped["sample"] == "a2_s4_t1"
  assert skipped["reason"] == (
      f"{lone}/a2_s4_t1_skeleton.mat: the fusion model needs the sample's _depth.mat file, not "
      f"found at {lone}/a2_s4_t1_depth.mat or {tmp_path}/Depth/a2_s4_t1_depth.mat")

  # An artifact that does not record its dataset (exported before it was recorded) is refused
  # with what to do, before any sample is read.
  with open(artifact + ".json") as f:
    recorded = json.load(f)
  del recorded["preprocessing"]["dataset"]
  with open(artifact + ".json", "w") as f:
    json.dump(recorded, f)
  with pytest.raises(FlagError, match=r"--exported=.*fusion.jaxexport: its dataset '' is not one "
                                      r"of the UTD-MHAD builder's configs .* export it again"):
    predict.predict_batch(pattern, str(tmp_path / "again.jsonl"), exported=artifact)


def test_batch_predict_refuses_another_datasets_samples(utd_run, tmp_path):
  workdir, _ = utd_run
  (tmp_path / "S001C001P001R001A001.skeleton").write_text("1\n")
  with pytest.raises(FlagError, match=r"--inputs=.*: NTU samples, but --workdir=.* reads "
                                      r"UTD-MHAD samples \(_skeleton.mat files\)"):
    predict.predict_batch(str(tmp_path), str(tmp_path / "scores.jsonl"), workdir=workdir)
  (tmp_path / "a1_s1_t1_skeleton.mat").write_text("")
  with pytest.raises(FlagError, match=r"holds both NTU \(.skeleton\) and UTD-MHAD "
                                      r"\(_skeleton.mat\) samples"):
    predict.predict_batch(str(tmp_path), str(tmp_path / "scores.jsonl"), workdir=workdir)


def test_a_run_on_the_arms_build_reads_samples_with_both_depth_channels():
  folder = shared_path("utd_mhad")
  skeleton = os.path.join(folder, "Skeleton", "a9_s1_t1_skeleton.mat")
  depth = os.path.join(folder, "Depth", "a9_s1_t1_depth.mat")
  reading = {"rgb_modality": "depth", "skeleton_stream": "joint", "skeleton_frames": 32,
             "clip_frames": 16}
  inputs = {}
  for name in ("skeleton_depth_k48_s48_spread", "skeleton_depth_k48_s48_spread_arms"):
    reader = predict.sample_reader({"builder": "utd_mhad"},
                                   {**reading, "dataset": f"utd_mhad/{name}"}, "run")
    inputs[name] = reader.read(skeleton, depth)
  body, arms = inputs["skeleton_depth_k48_s48_spread"], inputs["skeleton_depth_k48_s48_spread_arms"]
  assert body["depth"].shape == (1, 16, 48, 48, 1) and arms["depth"].shape == (1, 16, 48, 48, 2)
  np.testing.assert_array_equal(arms["depth"][..., :1], body["depth"])
  np.testing.assert_array_equal(arms["skeleton"], body["skeleton"])


def test_a_utd_mhad_run_streams_its_frames_like_offline_prediction(utd_run, tmp_path):
  from amfi_jax import streaming
  from amfi_jax.data.errors import DataFormatError
  from amfi_jax.data.readers.utd_mhad import read_skeleton_mat

  workdir, raw = utd_run
  skeleton = os.path.join(raw, "Skeleton", "a2_s2_t1_skeleton.mat")
  predictor = predict.stream_predictor(workdir=workdir, exported=None, top=3)
  assert (predictor.dataset, predictor.max_frames) == ("UTD-MHAD", 128)
  predictor.warm_up()
  xyz = read_skeleton_mat(skeleton)
  window, stride = 30, 11
  frames = streaming.timed(streaming.utd_frames(skeleton, None), fps=0.0)
  results = list(streaming.stream(frames, predictor, window=window, stride=stride,
                                  source=skeleton))
  assert [(r.first_frame, r.last_frame) for r in results] == [
      (end - window + 1, end) for end in range(window - 1, len(xyz), stride)]
  # Each window answers as the window's frames saved as a _skeleton.mat of their own do offline.
  offline = predict.WorkdirModels(workdir)
  for r in results:
    path = tmp_path / f"a2_s2_t1_w{r.index}" / "a2_s2_t1_skeleton.mat"
    path.parent.mkdir()
    scipy.io.savemat(path, {"d_skel": xyz[r.first_frame:r.last_frame + 1].transpose(1, 2, 0)})
    inputs = offline.reader.read(str(path), None)
    ranked = predict.ranking(offline.logits("skeleton", inputs)[0], offline.class_names)
    assert [name for name, _ in r.top] == [name for name, _ in ranked[:3]]
    np.testing.assert_allclose([p for _, p in r.top], [p for _, p in ranked[:3]], atol=1e-6)
  # Standard input: one frame per line, 60 numbers; the same answers.
  lines = [" ".join(f"{v:.9g}" for v in frame.ravel()) + "\n" for frame in xyz]
  from_stdin = list(streaming.stream(
      streaming.timed(streaming.utd_frames(streaming.STDIN, ["\n", *lines]), fps=0.0),
      predictor, window=window, stride=stride, source="<stdin>"))
  assert [(r.first_frame, r.top) for r in from_stdin] == [(r.first_frame, r.top)
                                                          for r in results]
  with pytest.raises(DataFormatError, match=r"<stdin>:2: expected a frame's 60 numbers "
                                            r"\(x y z of 20 joints\), got 59"):
    list(streaming.utd_frames(streaming.STDIN, [lines[0], lines[1].rsplit(" ", 1)[0]]))
  with pytest.raises(DataFormatError, match=r"<stdin>:1: not a number: 'x'"):
    list(streaming.utd_frames(streaming.STDIN, ["x " + lines[0].split(" ", 1)[1]]))
  with pytest.raises(DataFormatError, match=r"<stdin>:1: a joint coordinate is not finite"):
    list(streaming.utd_frames(streaming.STDIN, ["nan " + lines[0].split(" ", 1)[1]]))
  with pytest.raises(FlagError, match=r"--skeleton=.*nothing_skeleton.mat: no such file"):
    streaming.utd_frames(str(tmp_path / "nothing_skeleton.mat"), None)
