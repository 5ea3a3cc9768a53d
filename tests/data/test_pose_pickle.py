"""2-D poses of a pose estimator: the coco17 graph, the pose-pickle reader (normalisation,
persons, frames, every malformed-file error), the pickle generator and the builder's splits."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds

from amfi_jax import configlib
from amfi_jax.data import datasets, pipeline
from amfi_jax.data.builders import common, pose_pickle_builder
from amfi_jax.data.errors import DataFormatError
from amfi_jax.data.generator import coco_poses, motion, synthetic
from amfi_jax.data.preprocessing import samples
from amfi_jax.data.readers import ntu, pose_pickle
from amfi_jax.models import graphs

# 4 performers x 3 cameras x 2 actions = 24 samples, as in test_builders: performers 1, 2, 4 are
# cross-subject training performers (2 held out for validation), 3 is not.
SYNTH = synthetic.SyntheticConfig(num_classes=2, performers=(1, 2, 3, 4), replications=(1,),
                                  frames=(12, 20), modalities=("skeleton",))
TINY = dict(validation_performers=(2,), class_names=tuple(synthetic.class_names(2)),
            max_frames=24)
# PYSKL's `coco` layout, 0-based (pyskl/utils/graph.py).
PYSKL_COCO_INWARD = ((15, 13), (13, 11), (16, 14), (14, 12), (11, 5), (12, 6), (9, 7), (7, 5),
                     (10, 8), (8, 6), (5, 0), (6, 0), (1, 0), (3, 1), (2, 0), (4, 2))
NAMES = ("S001C001P001R001A001", "S001C002P003R001A002")


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
  path = tmp_path_factory.mktemp("poses") / "generated.pkl"
  coco_poses.write_pose_pickle(path, SYNTH)
  return path


def _build(config, manual_dir, data_dir):
  builder = pose_pickle_builder.PosePickle(config=config, data_dir=os.fspath(data_dir))
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=os.fspath(manual_dir)))
  return builder


def _counts(builder):
  return {name: split.num_examples for name, split in builder.info.splits.items()}


def _write(path: Path, contents) -> str:
  with open(path, "wb") as f:
    pickle.dump(contents, f)
  return os.fspath(path)


def _annotation(name, label=0, persons=1, frames=3, joints=17):
  rng = np.random.default_rng(len(name) + label)
  return {"frame_dir": name, "label": label, "total_frames": frames, "img_shape": (1080, 1920),
          "keypoint": rng.uniform(0, 1080, (persons, frames, joints, 2)).astype(np.float32),
          "keypoint_score": rng.uniform(0.5, 1, (persons, frames, joints)).astype(np.float32)}


def _contents():
  """A valid hand-made pickle: two NTU-named samples, one per xsub split."""
  return {"split": {"xsub_train": [NAMES[0]], "xsub_val": [NAMES[1]]},
          "annotations": [_annotation(NAMES[0]), _annotation(NAMES[1], label=1, persons=2)]}


# --- the coco17 graph ---------------------------------------------------------------------------

def test_coco17_is_pyskls_coco_layout_with_a_normalised_symmetric_adjacency():
  g = graphs.get_graph("coco17")
  assert g is graphs.COCO17 and g.num_joints == 17 and g.center == 1
  assert sorted((i - 1, j - 1) for i, j in g.inward_edges) == sorted(PYSKL_COCO_INWARD)
  a = g.adjacency
  assert a.shape == (3, 17, 17) and a.dtype == np.float32
  np.testing.assert_array_equal(a[0], np.eye(17))
  # Inward and outward are the same edges reversed; together a symmetric neighbourhood.
  np.testing.assert_array_equal(a[1] > 0, (a[2] > 0).T)
  neighbours = (a[1] > 0) | (a[2] > 0)
  np.testing.assert_array_equal(neighbours, neighbours.T)
  assert not neighbours.diagonal().any()
  # Each non-empty column sums to 1: 16 children with one parent each, 11 distinct parents.
  np.testing.assert_allclose(a.sum(axis=(1, 2)), [17, 16, 11])
  for k in (1, 2):
    sums = a[k].sum(axis=0)
    np.testing.assert_allclose(sums[sums > 0], 1.0)
  # A tree: every joint reaches the nose along inward edges.
  parent = dict(g.inward_edges)
  for joint in range(1, 18):
    seen = set()
    while joint != g.center:
      assert joint not in seen
      seen.add(joint)
      joint = parent[joint]
  assert len(g.bone_pairs) == 17 and samples.graph_for(17) is g


# --- reading and converting one annotation ------------------------------------------------------

def test_normalisation_is_pyskls_prenormalize2d(tmp_path):
  contents = _contents()
  a = contents["annotations"][0]
  # Frame 0: the centre, the four corners' extremes and a low-confidence point; float16 input.
  xy = np.array([[960, 540], [0, 0], [1920, 1080], [480, 810], [1440, 270]], np.float16)
  a["keypoint"][0, 0, :5] = xy
  a["keypoint"] = a["keypoint"].astype(np.float16)
  a["keypoint_score"][0, 0, :5] = [0.9, 0.8, 0.7, 0.6, 0.01]
  poses = pose_pickle.read_pose_pickle(_write(tmp_path / "hand.pkl", contents))
  features = poses.skeleton_features(NAMES[0], max_frames=3, num_persons=2)
  skeleton = features["skeleton"]
  assert skeleton.shape == (3, 3, 17, 2) and skeleton.dtype == np.float32
  np.testing.assert_allclose(skeleton[:, 0, :5, 0].T, [
      [0.0, 0.0, 0.9], [-1.0, -1.0, 0.8], [1.0, 1.0, 0.7], [-0.5, 0.5, 0.6],
      [0.0, 0.0, 0.01]])  # score <= 0.01: x = y = 0, the score kept
  assert not skeleton[..., 1].any()  # one person in the file: the second is zero
  assert features["frame_count"] == 3
  np.testing.assert_array_equal(features["img_shape"], [1080, 1920])
  assert poses.label(NAMES[1], 60) == 1


def test_persons_are_ranked_by_summed_score_and_padded():
  joints = np.zeros((3, 2, 17, 3), np.float32)
  joints[..., 2] = np.array([0.2, 0.9, 0.5])[:, None, None]
  joints[..., 0] = np.array([1, 2, 3])[:, None, None]
  kept = pose_pickle.select_persons(joints, 2)
  np.testing.assert_array_equal(kept[:, 0, 0, 0], [2, 3])
  padded = pose_pickle.select_persons(joints[:1], 3)
  np.testing.assert_array_equal(padded[:, 0, 0, 0], [1, 0, 0])


def test_short_sequences_repeat_and_long_ones_are_resampled():
  x = np.arange(5, dtype=np.float32)[None, :, None, None] * np.ones((3, 5, 17, 2), np.float32)
  np.testing.assert_array_equal(pose_pickle.fit_frames(x[:, :3], 7)[0, :, 0, 0],
                                [0, 1, 2, 0, 1, 2, 0])
  np.testing.assert_allclose(pose_pickle.fit_frames(x, 3)[0, :, 0, 0], [0, 2, 4])
  np.testing.assert_array_equal(pose_pickle.fit_frames(x, 5), x)


def _set(field, value, index=0):
  def mutate(contents):
    contents["annotations"][index][field] = value
  return mutate


def _drop(field, index=0):
  def mutate(contents):
    del contents["annotations"][index][field]
  return mutate


def _reshape(field, shape, dtype=np.float32):
  return _set(field, np.ones(shape, dtype))


S0, S1 = NAMES
MALFORMED = {
    # case: (mutation, fragments the message must hold besides the file)
    "not a dict": (lambda c: [c], ["expected a dict with fields 'split' and 'annotations'"]),
    "no annotations": (lambda c: {"split": c["split"]}, ["field 'annotations' is missing"]),
    "no split": (lambda c: {"annotations": c["annotations"]}, ["field 'split' is missing"]),
    "annotations not a list": (lambda c: {**c, "annotations": {}}, ["field 'annotations'"]),
    "annotation not a dict": (lambda c: c["annotations"].append([1]), ["annotations[2]"]),
    "no frame_dir": (_drop("frame_dir"), ["annotations[0]", "field 'frame_dir'"]),
    "shared frame_dir": (_set("frame_dir", S1), [S1, "field 'frame_dir'", "annotations[1]"]),
    "split names an unknown sample": (
        lambda c: c["split"]["xsub_train"].append("S009C001P001R001A001"),
        ["S009C001P001R001A001", "field split['xsub_train']"]),
    "split not a list of names": (lambda c: c["split"].update(xsub_val=S1), ["split['xsub_val']"]),
    "no keypoint": (_drop("keypoint"), [S0, "field 'keypoint' is missing"]),
    "keypoint not an array": (_set("keypoint", [[0.0, 0.0]]), [S0, "'keypoint'", "list"]),
    "keypoint of integers": (_reshape("keypoint", (1, 3, 17, 2), np.int64),
                             [S0, "'keypoint'", "int64"]),
    "keypoint of three dims": (_reshape("keypoint", (1, 3, 17)), [S0, "'keypoint'", "(1, 3, 17)"]),
    "keypoint with z": (_reshape("keypoint", (1, 3, 17, 3)), [S0, "'keypoint'", "(1, 3, 17, 3)"]),
    "keypoint of 25 joints": (_reshape("keypoint", (1, 3, 25, 2)),
                              [S0, "'keypoint'", "V = 25", "17"]),
    "keypoint without persons": (_reshape("keypoint", (0, 3, 17, 2)),
                                 [S0, "'keypoint'", "no person"]),
    "keypoint with NaN": (_set("keypoint", np.full((1, 3, 17, 2), np.nan, np.float32)),
                          [S0, "'keypoint'", "non-finite"]),
    "keypoint_score of other frames": (_reshape("keypoint_score", (1, 4, 17)),
                                       [S0, "'keypoint_score'", "(1, 4, 17)", "(1, 3, 17)"]),
    "total_frames inconsistent": (_set("total_frames", 4), [S0, "'total_frames'", "T = 3"]),
    "img_shape not (h, w)": (_set("img_shape", (1080,)), [S0, "'img_shape'"]),
    "label out of range": (_set("label", 60), [S0, "'label'", "60", "60 classes"]),
    "label negative": (_set("label", -1, index=1), [S1, "'label'", "-1"]),
    "label not an integer": (_set("label", "drink water"), [S0, "'label'", "str"]),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_pickles_name_the_file_sample_and_field(case, tmp_path):
  mutate, fragments = MALFORMED[case]
  contents = _contents()
  contents = mutate(contents) or contents
  path = _write(tmp_path / "bad.pkl", contents)
  with pytest.raises(DataFormatError) as e:
    poses = pose_pickle.read_pose_pickle(path)
    for name in NAMES:
      poses.skeleton_features(name, max_frames=8, num_persons=2)
      poses.label(name, 60)
  message = str(e.value)
  assert message.startswith(path + ": ")
  for fragment in fragments:
    assert fragment in message, (fragment, message)


class _RunsCode:
  def __reduce__(self):
    return (os.getcwd, ())


@pytest.mark.parametrize("content, fragment", [
    (b"not a pickle", "cannot read as a pose pickle"),
    (pickle.dumps({"split": {}, "annotations": [_RunsCode()]}), "refusing to load posix.getcwd"),
])
def test_unreadable_or_unsafe_pickles_are_refused(content, fragment, tmp_path):
  path = tmp_path / "odd.pkl"
  path.write_bytes(content)
  with pytest.raises(DataFormatError, match=fragment):
    pose_pickle.read_pose_pickle(path)


def test_unknown_split_and_sample_are_named(tmp_path):
  poses = pose_pickle.read_pose_pickle(_write(tmp_path / "ok.pkl", _contents()))
  with pytest.raises(DataFormatError,
                     match=r"no split 'xview_train'.*\['xsub_train', 'xsub_val'\]"):
    poses.split("xview_train")
  with pytest.raises(DataFormatError, match="sample S001C001P001R001A060: no annotation"):
    poses.skeleton_features("S001C001P001R001A060", max_frames=8, num_persons=2)


# --- the generator ------------------------------------------------------------------------------

def test_generated_pickle_holds_the_ntu_joints_as_coco_keypoints(generated):
  with open(generated, "rb") as f:
    contents = pickle.load(f)
  names = synthetic.sample_names(SYNTH)
  assert [a["frame_dir"] for a in contents["annotations"]] == names
  assert set(contents["split"]) == {"xsub_train", "xsub_val", "xview_train", "xview_val"}
  for protocol in ("xsub", "xview"):
    assert contents["split"][f"{protocol}_train"] == [
        n for n in names if ntu.is_train(ntu.parse_sample_name(n), protocol)]
  assert (generated.parent / "class_names.txt").read_text().split() == synthetic.class_names(2)
  for a in contents["annotations"]:
    sample = synthetic.simulate(a["frame_dir"], SYNTH)
    assert a["label"] == sample.label and a["img_shape"] == (1080, 1920)
    assert a["keypoint"].shape == (sample.body_ids.shape[0], sample.num_frames, 17, 2)
    present = a["keypoint_score"] > 0
    tracked_frames = sample.body_counts > 0
    assert (present.all(axis=2) == tracked_frames).all()  # per frame: all keypoints or none
    assert (a["keypoint_score"] <= 1).all()
    color = np.transpose(sample.color_xy, (1, 0, 2, 3))[:, tracked_frames]
    kp = a["keypoint"][:, tracked_frames]
    np.testing.assert_allclose(kp[:, :, 0], color[:, :, motion.HEAD], rtol=1e-6)  # nose
    np.testing.assert_allclose(kp[:, :, 9], color[:, :, motion.L_WRIST], rtol=1e-6)
    np.testing.assert_allclose(kp[:, :, 16], color[:, :, motion.R_ANKLE], rtol=1e-6)
    # The left eye lies towards the left shoulder, the right eye towards the right one.
    towards_left = color[:, :, motion.L_SHOULDER] - color[:, :, motion.R_SHOULDER]
    assert ((kp[:, :, 1] - kp[:, :, 2]) * towards_left).sum(-1).min() >= 0


# --- the builder --------------------------------------------------------------------------------

@pytest.mark.parametrize("base, protocol, expected", [
    ("ntu60_2d_xsub", "xsub", {"train": 12, "validation": 6, "test": 6}),
    ("ntu60_2d_xview", "xview", {"train": 12, "validation": 4, "test": 8}),
])
def test_builder_splits_a_generated_pickle_like_the_ntu_builder(generated, tmp_path, base,
                                                                protocol, expected):
  official = {c.name: c for c in pose_pickle_builder.PosePickle.BUILDER_CONFIGS}[base]
  config = pose_pickle_builder.PosePickleConfig(
      name=f"tiny_{protocol}", pickle_file=generated.name, train_split=official.train_split,
      test_split=official.test_split, **TINY)
  builder = _build(config, generated.parent, tmp_path)
  assert _counts(builder) == expected
  poses = pose_pickle.read_pose_pickle(generated)
  for split in expected:
    source = pipeline.open_source(builder, split)
    for i in range(len(source)):
      record = source[i]
      name = record["sample_name"].decode()
      sample = ntu.parse_sample_name(name)
      assert ntu.split_of(sample, protocol) == ("test" if split == "test" else "train")
      assert (split == "validation") == (split != "test" and sample.performer == 2)
      assert record["label"] == sample.label
      assert record["skeleton"].shape == (3, 24, 17, 2)
      np.testing.assert_array_equal(record["skeleton"], poses.skeleton_features(
          name, max_frames=24, num_persons=2)["skeleton"])
  assert builder.info.features["label"].names == synthetic.class_names(2)


def test_official_config_builds_from_the_manual_dir_on_first_use(tmp_path):
  manual = tmp_path / "pyskl"
  coco_poses.write_pose_pickle(manual / "ntu60_hrnet.pkl", SYNTH,
                               names=synthetic.sample_names(SYNTH)[:6])
  data_cfg = configlib.data_config()
  data_cfg.dataset = "pose_pickle/ntu60_2d_xsub"
  data_cfg.manual_dir = os.fspath(manual)
  dataset = datasets.prepare(data_cfg, os.fspath(tmp_path / "run_data"))
  assert dataset.class_names == ntu.NTU60_CLASS_NAMES
  # Performers 1 and 2 train, 3 tests; NTU-60's validation performers (35, 38) are absent.
  assert _counts(dataset.builder) == {"train": 4, "test": 2}
  sample_format = dataset.sample_format()
  assert sample_format["builder"] == "pose_pickle" and sample_format["max_frames"] == 300
  assert sample_format["shapes"]["skeleton"] == [3, 300, 17, 2]


def test_builder_error_policy_raises_naming_the_sample_or_skips_it(tmp_path, monkeypatch):
  contents = _contents()
  contents["annotations"][1]["keypoint_score"] = np.ones((2, 5, 17), np.float32)
  _write(tmp_path / "bad.pkl", contents)
  config = pose_pickle_builder.PosePickleConfig(name="bad", pickle_file="bad.pkl",
                                                validation_performers=())
  with pytest.raises(DataFormatError, match=rf"bad\.pkl: sample {S1}: field 'keypoint_score'"):
    _build(config, tmp_path, tmp_path / "raise")
  monkeypatch.setenv(common.ERROR_POLICY_ENV, "skip")
  builder = _build(config, tmp_path, tmp_path / "skip")
  assert _counts(builder) == {"train": 1}
  (skipped,) = builder.info.metadata["skipped"]
  assert skipped["sample"] == S1 and "'keypoint_score'" in skipped["reason"]


def test_a_sample_in_both_splits_is_refused(tmp_path):
  contents = _contents()
  contents["split"]["xsub_val"].append(S0)
  poses = pose_pickle.read_pose_pickle(_write(tmp_path / "leak.pkl", contents))
  config = pose_pickle_builder.PosePickleConfig(name="leak", validation_performers=())
  with pytest.raises(DataFormatError, match=f"sample {S0}: field 'split' lists it in both"):
    pose_pickle_builder.plan_splits(poses, config)
