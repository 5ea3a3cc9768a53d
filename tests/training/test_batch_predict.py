"""`python -m amfi_jax.predict --inputs=...`: a folder of raw NTU samples predicted in batches,
with a workdir or an exported artifact, equal to the one-sample path; unreadable samples are
skipped and listed (or stop the run), and bad flags are refused before any model is loaded."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from amfi_jax import predict
from amfi_jax.errors import FlagError, MissingFileError
from amfi_jax.workdir import RunDir

from tests.conftest import cpu_env
from tests.training.conftest import REPO

# Performer 3: test samples of the tiny dataset. The first has its video beside it.
WITH_VIDEO = "S001C001P003R001A002"
SKELETON_ONLY = ("S001C002P003R001A001", "S001C003P003R001A003", "S001C001P003R001A004")
# Sorts first, so that --error_policy=raise meets it before any model is loaded.
CORRUPT = "S001C001P001R001A001"


@pytest.fixture(scope="module")
def trained(tiny_trained_run) -> str:
  return tiny_trained_run


@pytest.fixture(scope="module")
def skeleton_artifact(tiny_skeleton_artifact) -> str:
  return tiny_skeleton_artifact


@pytest.fixture(scope="module")
def raw_folder(tiny_dataset, tmp_path_factory) -> str:
  """Four readable samples (one with its video) and one truncated .skeleton file."""
  # tiny_dataset = WORKDIR/data/tfds/ntu_rgbd/<config>/<version>; the raw files are beside it.
  (raw,) = glob.glob(os.path.join(tiny_dataset, "..", "..", "..", "..", "raw_*"))
  folder = tmp_path_factory.mktemp("raw_samples")
  for name in (WITH_VIDEO, *SKELETON_ONLY):
    shutil.copy(os.path.join(raw, "nturgb+d_skeletons", f"{name}.skeleton"), folder)
  shutil.copy(os.path.join(raw, "nturgb+d_rgb", f"{WITH_VIDEO}_rgb.avi"), folder)
  with open(os.path.join(raw, "nturgb+d_skeletons", f"{CORRUPT}.skeleton")) as f:
    lines = f.readlines()
  # Cut after whole lines, in the middle of the first frame's joints.
  (folder / f"{CORRUPT}.skeleton").write_text("".join(lines[:10]))
  return str(folder)


@pytest.fixture(scope="module")
def workdir_run(trained, raw_folder, tmp_path_factory):
  output = str(tmp_path_factory.mktemp("batch_predict_out") / "scores.jsonl")
  # Batches of two: the three skeleton-only samples fill one and pad the next.
  result = predict.predict_batch(raw_folder, output, workdir=trained, batch_size=2, top=3,
                                 progress_stream=None)
  return output, result


def _read_jsonl(path: str) -> list[dict]:
  with open(path) as f:
    return [json.loads(line) for line in f]


def test_batch_with_a_workdir_equals_the_one_sample_path(workdir_run, trained, raw_folder):
  output, result = workdir_run
  rows = _read_jsonl(output)
  assert rows == result.predictions
  assert [r["sample"] for r in rows] == sorted((WITH_VIDEO, *SKELETON_ONLY))
  class_names = RunDir(trained).read_run_info()["class_names"]
  for row in rows:
    assert row.keys() == {"sample", "stage", "top"}
    probs = [p for _, p in row["top"]]
    assert len(probs) == 3 and probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-6
    assert all(name in class_names for name, _ in row["top"])
    skeleton = os.path.join(raw_folder, f"{row['sample']}.skeleton")
    video = os.path.join(raw_folder, f"{row['sample']}_rgb.avi")
    stage, ranked = predict.predict(trained, skeleton, video if os.path.exists(video) else None)
    assert row["stage"] == stage == ("fusion" if row["sample"] == WITH_VIDEO else "skeleton")
    assert row["top"][0][0] == ranked[0][0]
    np.testing.assert_allclose(probs, [p for _, p in ranked[:3]], atol=1e-5)


def test_the_truncated_sample_is_skipped_and_listed(workdir_run, raw_folder):
  output, result = workdir_run
  (skipped,) = _read_jsonl(predict.skipped_path(output))
  assert skipped == result.skipped[0]
  assert skipped["sample"] == CORRUPT
  assert skipped["path"] == os.path.join(raw_folder, f"{CORRUPT}.skeleton")
  assert skipped["path"] in skipped["reason"] and "truncated file" in skipped["reason"]


def test_error_policy_raise_stops_at_the_unreadable_sample(trained, raw_folder, tmp_path):
  output = tmp_path / "scores.jsonl"
  proc = subprocess.run(
      [sys.executable, "-m", "amfi_jax.predict", f"--workdir={trained}",
       f"--inputs={raw_folder}", f"--output={output}", "--error_policy=raise"],
      cwd=REPO, env=cpu_env(), capture_output=True, text=True,
      timeout=120)
  assert proc.returncode == 2, proc.stderr
  assert "Traceback" not in proc.stderr, proc.stderr
  errors = [line for line in proc.stderr.splitlines() if line.startswith("Error: ")]
  assert len(errors) == 1, proc.stderr
  assert f"{CORRUPT}.skeleton" in errors[0] and "truncated file" in errors[0], proc.stderr
  assert os.listdir(tmp_path) == []


def test_exported_skeleton_model_agrees_with_the_workdir(workdir_run, skeleton_artifact,
                                                         raw_folder, tmp_path):
  output = str(tmp_path / "exported.jsonl")
  result = predict.predict_batch(raw_folder, output, exported=skeleton_artifact, top=3,
                                 progress_stream=None)
  by_workdir = {r["sample"]: r for r in workdir_run[1].predictions}
  by_artifact = {r["sample"]: r for r in _read_jsonl(output)}
  # One stage in the artifact: the sample with a video is predicted from its skeleton too.
  assert sorted(by_artifact) == sorted((WITH_VIDEO, *SKELETON_ONLY))
  assert {r["stage"] for r in by_artifact.values()} == {"skeleton"}
  assert [r["sample"] for r in result.skipped] == [CORRUPT]
  for name in SKELETON_ONLY:
    assert by_artifact[name]["top"][0][0] == by_workdir[name]["top"][0][0]
    np.testing.assert_allclose([p for _, p in by_artifact[name]["top"]],
                               [p for _, p in by_workdir[name]["top"]], atol=1e-5)


def test_bad_flags_are_refused_before_any_model_is_loaded(raw_folder, tmp_path):
  output = str(tmp_path / "scores.jsonl")
  # No workdir exists at these paths: reading one would be a different error.
  nowhere = str(tmp_path / "no_run")
  with pytest.raises(FlagError, match="exactly one of --workdir .* --exported .*got both"):
    predict.predict_batch(raw_folder, output, workdir=nowhere, exported=nowhere + ".jaxexport")
  with pytest.raises(FlagError, match="exactly one of --workdir .* got neither"):
    predict.predict_batch(raw_folder, output)
  (tmp_path / "empty").mkdir()
  with pytest.raises(FlagError, match="--inputs=.*empty: no .skeleton or _skeleton.mat files "
                     "in this directory"):
    predict.predict_batch(str(tmp_path / "empty"), output, workdir=nowhere)
  with pytest.raises(FlagError,
                     match=r"--inputs=.*\*\.txt: no .skeleton or _skeleton.mat files match"):
    predict.predict_batch(os.path.join(raw_folder, "*.txt"), output, workdir=nowhere)
  with pytest.raises(FlagError, match="--inputs=.*nothing_here: no .skeleton or _skeleton.mat "
                     "files there: no such directory or file"):
    predict.predict_batch(str(tmp_path / "nothing_here"), output, workdir=nowhere)
  with pytest.raises(FlagError, match="--error_policy=ignore"):
    predict.predict_batch(raw_folder, output, workdir=nowhere, error_policy="ignore")
  with open(output, "w") as f:
    f.write("keep\n")
  with pytest.raises(FlagError, match="scores.jsonl exists; pass --overwrite"):
    predict.predict_batch(raw_folder, output, workdir=nowhere)
  with open(output) as f:
    assert f.read() == "keep\n"


def test_one_sample_paths_that_are_no_files_are_refused_before_any_model_is_loaded(raw_folder,
                                                                                   tmp_path):
  nowhere = str(tmp_path / "no_run")  # reading a workdir would be a different error
  skeleton = sorted(glob.glob(os.path.join(raw_folder, "*.skeleton")))[0]
  with pytest.raises(MissingFileError, match=r"--skeleton=.*missing\.skeleton: not found"):
    predict.predict(nowhere, str(tmp_path / "missing.skeleton"))
  with pytest.raises(MissingFileError, match=r"--skeleton=.*: is a directory"):
    predict.predict(nowhere, raw_folder)
  with pytest.raises(MissingFileError, match=r"--video=.*_rgb\.avi: not found"):
    predict.predict(nowhere, skeleton,
                    str(tmp_path / os.path.basename(skeleton).replace(".skeleton", "_rgb.avi")))
