"""The skeleton stream on 2-D poses: a tiny run of configs/ntu60_2d.py on a generated pose pickle,
and `predict` on one sample of the pickle."""

from __future__ import annotations

import glob
import os
import pickle
import types

import numpy as np
import pytest
import tensorflow_datasets as tfds

from amfi_jax import predict
from amfi_jax.data.builders import pose_pickle_builder
from amfi_jax.data.errors import DataFormatError
from amfi_jax.data.generator import coco_poses, synthetic
from amfi_jax.errors import FlagError
from amfi_jax.evaluation import reports
from amfi_jax.models import conv
from amfi_jax.training import loop

from tests.training.conftest import load_config

# Performers 1 2 4 train, 5 validation, 3 test; 3 cameras x 8 actions: 72 / 24 / 24 samples.
SYNTH = synthetic.SyntheticConfig(num_classes=8, performers=(1, 2, 3, 4, 5), replications=(1,),
                                  modalities=("skeleton",))
# COCO-17 has no finger or toe joints, and the generated twin classes differ only in those or in
# what only the video shows (synthetic.CLASSES): the 2-D poses tell the four coarse motions
# apart, so twins share a label. Chance is 25 %.
CLASS_NAMES = tuple(spec.program for spec in synthetic.CLASSES[::2])
TEST_SAMPLE = "S001C001P003R001A003"  # performer 3: a test sample


@pytest.fixture(scope="module")
def pose_data(tmp_path_factory) -> tuple[str, str]:
  """(the generated pickle, the directory of its prepared dataset)."""
  root = tmp_path_factory.mktemp("pose2d")
  contents = coco_poses.pickle_contents(SYNTH)
  for annotation in contents["annotations"]:
    annotation["label"] //= 2
  path = root / "generated.pkl"
  with open(path, "wb") as f:
    pickle.dump(contents, f)
  config = pose_pickle_builder.PosePickleConfig(
      name="generated_xsub", pickle_file=path.name, validation_performers=(5,),
      class_names=CLASS_NAMES, max_frames=64)
  builder = pose_pickle_builder.PosePickle(config=config, data_dir=os.fspath(root / "tfds"))
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=os.fspath(root)))
  (dataset_dir,) = glob.glob(os.fspath(root / "tfds" / "pose_pickle" / "*" / "*"))
  return os.fspath(path), dataset_dir


@pytest.fixture(scope="module")
def trained_2d_run(pose_data, tmp_path_factory) -> tuple[str, dict]:
  """configs/ntu60_2d.py, cut to one 16-channel AGCN unit on 24 frames for 30 steps."""
  _, dataset_dir = pose_data
  config = load_config("ntu60_2d", "protocol=final")
  config.data.dataset = dataset_dir
  config.data.num_threads = 1
  config.data.skeleton_frames = 24
  config.model.num_classes = len(CLASS_NAMES)
  config.model.skeleton.layers = "64"
  config.model.skeleton.width_multiplier = 0.25
  t = config.train.skeleton
  t.num_steps = 30
  t.batch_size = 16
  t.eval_batch_size = 24
  t.decay_epochs = ()
  config.train.log_every_steps = 10
  workdir = os.fspath(tmp_path_factory.mktemp("run_2d"))
  # The native convolution trains this tiny model fastest (see tests/training/conftest.py).
  with conv.conv_impl("native"):
    results = loop.train_and_evaluate(config, workdir)
  return workdir, results


def test_a_tiny_2d_run_learns_above_chance(trained_2d_run):
  workdir, results = trained_2d_run
  test = results["skeleton"]["test"]
  assert test["num_samples"] == 24
  assert test["top1"] >= 0.4, test  # chance: 0.25
  scores = reports.read_per_sample_scores(os.path.join(workdir, "skeleton", "test_scores.jsonl"))
  assert TEST_SAMPLE in scores


def test_predict_on_one_pickle_sample_matches_the_evaluation(trained_2d_run, pose_data):
  workdir, _ = trained_2d_run
  pickle_path, _ = pose_data
  # The convolution the run evaluated with, so that the scores agree to float rounding.
  with conv.conv_impl("native"):
    stage, ranking = predict.predict_pose_pickle(workdir, pickle_path, TEST_SAMPLE)
  assert stage == "skeleton"
  assert len(ranking) == len(CLASS_NAMES) and abs(sum(p for _, p in ranking) - 1) < 1e-5
  row = reports.read_per_sample_scores(
      os.path.join(workdir, "skeleton", "test_scores.jsonl"))[TEST_SAMPLE]
  by_name = dict(ranking)
  np.testing.assert_allclose([by_name[c] for c in CLASS_NAMES], row["scores"], atol=1e-5)


def test_predict_errors_name_the_sample_and_field(trained_2d_run, pose_data, tmp_path):
  workdir, _ = trained_2d_run
  pickle_path, _ = pose_data
  with pytest.raises(DataFormatError, match="sample S001C001P003R001A060: no annotation"):
    predict.predict_pose_pickle(workdir, pickle_path, "S001C001P003R001A060")
  with open(pickle_path, "rb") as f:
    contents = pickle.load(f)
  (annotation,) = [a for a in contents["annotations"] if a["frame_dir"] == TEST_SAMPLE]
  annotation["keypoint"] = annotation["keypoint"][:, :, :13]
  broken = tmp_path / "broken.pkl"
  with open(broken, "wb") as f:
    pickle.dump(contents, f)
  with pytest.raises(DataFormatError,
                     match=f"broken.pkl: sample {TEST_SAMPLE}: field 'keypoint' has V = 13"):
    predict.predict_pose_pickle(workdir, os.fspath(broken), TEST_SAMPLE)


def test_predict_refuses_a_run_not_trained_on_poses_and_conflicting_flags(pose_data):
  pickle_path, _ = pose_data
  ntu_format = {"builder": "ntu_rgbd", "shapes": {"skeleton": [3, 300, 25, 2]}, "max_frames": 300}
  with pytest.raises(FlagError, match="trained on 'ntu_rgbd' data"):
    predict.pose_pickle_inputs(pickle_path, TEST_SAMPLE, ntu_format, "joint")
  args = types.SimpleNamespace(pose_pickle=pickle_path, sample=TEST_SAMPLE, workdir="w",
                               skeleton="x.skeleton", video=None, inputs=None, exported=None,
                               output=None, stream=False, top=5)
  with pytest.raises(FlagError, match="does not go with --skeleton"):
    predict._main_pose_pickle(args)  # pylint: disable=protected-access
  args.skeleton, args.sample = None, None
  with pytest.raises(FlagError, match="needs --workdir .* and --sample"):
    predict._main_pose_pickle(args)  # pylint: disable=protected-access
