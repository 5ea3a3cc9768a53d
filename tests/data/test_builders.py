"""TFDS builders: NTU on a tiny generated dataset, UTD-MHAD on a subset of the real files.

Expected split sizes are derived from the protocol rules (`ntu.split_of`) on the generated
names and cross-checked against hand-computed numbers, so a wrong rule or a lost sample fails.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds

from amfi_jax.data import pipeline
from amfi_jax.data.builders import ntu_rgbd_builder, utd_mhad_builder
from amfi_jax.data.generator import synthetic
from amfi_jax.data.preprocessing import skeletons
from amfi_jax.data.readers import ntu, utd_mhad
from amfi_jax.data.errors import DataFormatError

from tests.shared_data import SHARED_DATA
UTD_DIR = SHARED_DATA / "utd_mhad"

# 4 performers x 3 cameras x 2 actions = 24 samples. Performers 1, 2, 4 are cross-subject
# training performers and 3 is not; performer 2 is carved out as validation.
SYNTH = synthetic.SyntheticConfig(num_classes=2, performers=(1, 2, 3, 4), replications=(1,),
                                  frames=(12, 20), width=64, height=36)
TINY = dict(clip_length=8, image_size=32, validation_performers=(2,), num_workers=1)


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory) -> Path:
  out = tmp_path_factory.mktemp("ntu_raw")
  synthetic.generate(os.fspath(out), SYNTH, verbose=False)
  return out


def _build(builder_cls, config, manual_dir, data_dir):
  builder = builder_cls(config=config, data_dir=os.fspath(data_dir))
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=os.fspath(manual_dir)))
  return builder


def _expected_counts(names, protocol, validation_performers):
  counts = {"train": 0, "validation": 0, "test": 0}
  for name in names:
    sample = ntu.parse_sample_name(name)
    split = ntu.split_of(sample, protocol)
    if split == "train" and sample.performer in validation_performers:
      split = "validation"
    counts[split] += 1
  return counts


def _counts(builder):
  return {name: split.num_examples for name, split in builder.info.splits.items()}


def test_ntu_xsub_with_rgb_counts_features_and_names(synth_dir, tmp_path):
  config = ntu_rgbd_builder.custom_config("ntu60_xsub", manual_dir=synth_dir, **TINY)
  builder = _build(ntu_rgbd_builder.NtuRgbd, config, synth_dir, tmp_path)
  names = synthetic.sample_names(SYNTH)
  assert _counts(builder) == _expected_counts(names, "xsub", {2})
  assert _counts(builder) == {"train": 12, "validation": 6, "test": 6}
  assert builder.info.features["label"].names == synthetic.class_names(2)

  # Read back through the pipeline's entry point, by registered name and config.
  read = {split: pipeline.open_source(f"ntu_rgbd/{config.name}", split, data_dir=tmp_path)
          for split in ("train", "validation", "test")}
  got_names = set()
  for split, source in read.items():
    for i in range(len(source)):
      record = source[i]
      name = record["sample_name"].decode()
      sample = ntu.parse_sample_name(name)
      got_names.add(name)
      assert record["label"] == sample.label
      assert (record["performer"], record["camera"], record["setup"]) == (
          sample.performer, sample.camera, sample.setup)
      assert (split == "test") == (sample.performer == 3)
      assert record["clip"].shape == (8, 32, 32, 3) and record["clip"].dtype == np.uint8
      assert record["skeleton"].shape == (3, 300, 25, 2)
      assert record["skeleton"].dtype == np.float32
      assert 12 <= record["frame_count"] <= 20
  assert got_names == set(names)
  # The crop found the performer: frames are not blank.
  assert read["test"][0]["clip"].std() > 5
  assert builder.info.metadata["num_excluded_missing_skeleton"] == 0
  train, evaluation = pipeline.selection_splits("test")  # the paper's protocol
  assert len(pipeline.open_source(f"ntu_rgbd/{config.name}", train, data_dir=tmp_path)) == 18
  assert len(pipeline.open_source(f"ntu_rgbd/{config.name}", evaluation, data_dir=tmp_path)) == 6
  assert pipeline.selection_splits("validation") == ("train", "validation")


def test_ntu_xview_skeleton_only_matches_preprocessing(synth_dir, tmp_path):
  from amfi_jax.data.readers import ntu_skeleton

  # Videos present but not wanted: a skeleton-only build must not need them.
  config = ntu_rgbd_builder.custom_config("ntu60_xview", manual_dir=synth_dir, include_rgb=False, **TINY)
  builder = _build(ntu_rgbd_builder.NtuRgbd, config, synth_dir, tmp_path)
  assert _counts(builder) == _expected_counts(synthetic.sample_names(SYNTH), "xview", {2})
  assert _counts(builder) == {"train": 12, "validation": 4, "test": 8}
  record = builder.as_data_source("test")[0]
  assert "clip" not in record
  name = record["sample_name"].decode()
  assert ntu.parse_sample_name(name).camera == 1
  expected = skeletons.preprocess_ntu_skeleton(
      ntu_skeleton.read_skeleton(synth_dir / "nturgb+d_skeletons" / f"{name}.skeleton"))
  np.testing.assert_array_equal(record["skeleton"], expected)


def _copy_skeletons(synth_dir: Path, dest: Path) -> Path:
  shutil.copytree(synth_dir / "nturgb+d_skeletons", dest / "nested" / "skeletons")
  return dest


def test_missing_skeleton_list_excludes_and_counts(synth_dir, tmp_path):
  excluded = "S001C001P001R001A001"
  missing = tmp_path / "missing.txt"
  missing.write_text(f"{excluded}\r\n")
  config = ntu_rgbd_builder.custom_config("ntu60_xsub", manual_dir=synth_dir, include_rgb=False,
                                  missing_skeletons=os.fspath(missing), **TINY)
  builder = _build(ntu_rgbd_builder.NtuRgbd, config, synth_dir, tmp_path / "data")
  assert builder.info.metadata["num_excluded_missing_skeleton"] == 1
  assert builder.info.metadata["excluded_missing_skeleton"] == [excluded]
  assert _counts(builder) == {"train": 11, "validation": 6, "test": 6}
  names = {r["sample_name"].decode() for r in builder.as_data_source("train")}
  assert excluded not in names
  # Metadata survives a reload from disk (read-only builder, no builder code).
  reloaded = tfds.builder_from_directory(builder.data_dir)
  assert reloaded.info.metadata["num_excluded_missing_skeleton"] == 1


def test_official_missing_lists_are_vendored():
  config = ntu_rgbd_builder.NtuRgbdConfig(name="x", protocol="xsub120")
  path = ntu_rgbd_builder._missing_list_path(config)
  assert len(ntu.read_missing_skeletons(path)) == 535
  assert len(ntu.read_missing_skeletons(
      ntu_rgbd_builder._missing_list_path(ntu_rgbd_builder.NtuRgbdConfig(name="y")))) == 302


def _corrupt(manual_dir: Path, name: str) -> Path:
  path = next(manual_dir.rglob(f"{name}.skeleton"))
  lines = path.read_bytes().split(b"\r\n")
  path.write_bytes(b"\r\n".join(lines[: len(lines) // 2]))  # truncated mid-file
  return path


def test_skip_policy_records_corrupted_file(synth_dir, tmp_path):
  manual = _copy_skeletons(synth_dir, tmp_path / "raw")
  bad = "S001C002P004R001A002"  # a training sample
  _corrupt(manual, bad)
  config = ntu_rgbd_builder.custom_config("ntu60_xsub", manual_dir=manual, include_rgb=False,
                                  error_policy="skip", **TINY)
  builder = _build(ntu_rgbd_builder.NtuRgbd, config, manual, tmp_path / "data")
  assert _counts(builder) == {"train": 11, "validation": 6, "test": 6}
  skipped = builder.info.metadata["skipped"]
  assert [s["sample"] for s in skipped] == [bad]
  assert skipped[0]["path"].endswith(f"{bad}.skeleton") and skipped[0]["reason"]
  assert tfds.builder_from_directory(builder.data_dir).info.metadata["num_skipped"] == 1


def test_raise_policy_names_the_corrupted_file(synth_dir, tmp_path):
  manual = _copy_skeletons(synth_dir, tmp_path / "raw")
  bad = "S001C003P003R001A001"
  _corrupt(manual, bad)
  config = ntu_rgbd_builder.custom_config("ntu60_xsub", manual_dir=manual, include_rgb=False, **TINY)
  with pytest.raises(DataFormatError, match=f"{bad}.skeleton"):
    _build(ntu_rgbd_builder.NtuRgbd, config, manual, tmp_path / "data")


def test_error_policy_flag_overrides_the_config(synth_dir, tmp_path, monkeypatch):
  from amfi_jax.data import build
  from amfi_jax.data.builders import common
  manual = _copy_skeletons(synth_dir, tmp_path / "raw")
  bad = "S001C003P003R001A001"
  _corrupt(manual, bad)
  # Recorded by monkeypatch, so the value take_error_policy sets is undone after the test.
  monkeypatch.setenv(common.ERROR_POLICY_ENV, "raise")
  rest = build.take_error_policy(["build", "ntu_rgbd", "--error_policy=skip", "--config=x"])
  assert rest == ["build", "ntu_rgbd", "--config=x"]
  assert os.environ[common.ERROR_POLICY_ENV] == "skip"
  # The config's policy is `raise`: the flag wins, the name stays the published one.
  config = ntu_rgbd_builder.custom_config("ntu60_xsub", manual_dir=manual, include_rgb=False, **TINY)
  builder = _build(ntu_rgbd_builder.NtuRgbd, config, manual, tmp_path / "data")
  assert [s["sample"] for s in builder.info.metadata["skipped"]] == [bad]
  with pytest.raises(SystemExit):
    build.take_error_policy(["build", "--error_policy=maybe"])


def test_rgb_build_without_videos_fails_clearly(synth_dir, tmp_path):
  manual = _copy_skeletons(synth_dir, tmp_path / "raw")
  config = ntu_rgbd_builder.custom_config("ntu60_xsub", manual_dir=manual, **TINY)
  with pytest.raises(DataFormatError, match="no video .*_rgb.avi"):
    _build(ntu_rgbd_builder.NtuRgbd, config, manual, tmp_path / "data")


def test_custom_config_names_and_class_names(synth_dir, tmp_path):
  a = ntu_rgbd_builder.custom_config("ntu60_xsub", clip_length=8)
  b = ntu_rgbd_builder.custom_config("ntu60_xsub", clip_length=4)
  assert a.name != b.name and a.name.startswith("ntu60_xsub_")
  assert a.resolved_class_names == ntu.NTU60_CLASS_NAMES
  assert ntu_rgbd_builder.custom_config("ntu120_xset").resolved_class_names == ntu.NTU120_CLASS_NAMES
  assert ntu_rgbd_builder.custom_config("ntu60_xsub", manual_dir=synth_dir).class_names == tuple(
      synthetic.class_names(2))
  with pytest.raises(ValueError, match="Unknown NtuRgbdConfig fields"):
    ntu_rgbd_builder.custom_config("ntu60_xsub", clip_len=8)


def _require_utd():
  if not (UTD_DIR / "Skeleton").is_dir() or not (UTD_DIR / "Depth").is_dir():
    pytest.skip(f"real UTD-MHAD files not found at {UTD_DIR} (shared data not mounted)")


def test_utd_mhad_whole_release_split_counts_by_name():
  _require_utd()
  files = utd_mhad_builder.scan_manual_dir(UTD_DIR)
  assert len(files["skeleton"]) == 861 and set(files["depth"]) == set(files["skeleton"])
  by_split, bad = utd_mhad_builder.plan_splits(files, validation_subjects=(7,))
  assert not bad
  counts = {k: len(v) for k, v in by_split.items()}
  assert counts == {"train": 323, "validation": 108, "test": 430}
  assert counts["train"] + counts["validation"] == 431
  for name in ("a8_s1_t4", "a23_s6_t4", "a27_s8_t4"):
    assert name not in files["skeleton"]
  # The second held-out subject's config: subject 5 (108 sequences) is validation instead.
  named = {c.name: c for c in utd_mhad_builder.UtdMhad.BUILDER_CONFIGS}
  by_split, _ = utd_mhad_builder.plan_splits(
      files, named["skeleton_depth_k8_s48_val5"].validation_subjects)
  assert {k: len(v) for k, v in by_split.items()} == {"train": 323, "validation": 108,
                                                      "test": 430}
  assert {utd_mhad.parse_utd_name(files["skeleton"][name]).subject
          for name in by_split["validation"]} == {5}


def test_utd_mhad_val5_configs_differ_from_their_clips_only_in_the_held_out_subject():
  named = {c.name: c for c in utd_mhad_builder.UtdMhad.BUILDER_CONFIGS}
  val5 = [name for name in named if name.endswith("_val5")]
  assert {"skeleton_depth_k8_s48_val5", "skeleton_depth_k16_s48_val5",
          "skeleton_depth_k48_s48_spread_val5"} <= set(val5)
  for name in val5:
    fields, base = named[name].data_fields(), named[name[:-len("_val5")]].data_fields()
    assert fields.pop("validation_subjects") == (5,) and base.pop("validation_subjects") == (7,)
    assert fields == base, name


def test_utd_mhad_config_depth_values():
  named = {c.name: c for c in utd_mhad_builder.UtdMhad.BUILDER_CONFIGS}
  assert named["skeleton_depth_k8_s48_relative"].depth_values == "relative"
  assert named["skeleton_depth_k8_s48"].depth_values == "absolute"
  assert named["skeleton_depth_k8_s48_relative"].data_fields()["depth_values"] == "relative"
  with pytest.raises(ValueError, match=r"depth_values must be one of .*got 'metres'"):
    utd_mhad_builder.UtdMhadConfig(name="x", depth_values="metres")
  assert named["skeleton_depth_k8_s48_mean"].data_fields()["depth_frames"] == "segment_mean"
  assert named["skeleton_depth_k8_s48"].depth_frames == "sample"
  assert named["skeleton_depth_k48_s48_spread"].data_fields()["depth_frames"] == "spread"
  with pytest.raises(ValueError, match=r"depth_frames must be one of .*got 'max'"):
    utd_mhad_builder.UtdMhadConfig(name="x", depth_frames="max")
  arms = named["skeleton_depth_k48_s48_spread_arms"]
  assert arms.data_fields() == {**named["skeleton_depth_k48_s48_spread"].data_fields(),
                                "depth_views": "body_arms"}
  assert named["skeleton_depth_k48_s48_spread"].depth_views == "body"
  with pytest.raises(ValueError, match=r"depth_views must be one of .*got 'hands'"):
    utd_mhad_builder.UtdMhadConfig(name="x", depth_views="hands")


def test_utd_mhad_arms_build_stores_two_depth_channels(tmp_path):
  builder = utd_mhad_builder.UtdMhad(config="skeleton_depth_k48_s48_spread_arms",
                                     data_dir=str(tmp_path))
  assert builder.info.features["depth"].shape == (48, 48, 48, 2)
  plain = utd_mhad_builder.UtdMhad(config="skeleton_depth_k48_s48_spread", data_dir=str(tmp_path))
  assert plain.info.features["depth"].shape == (48, 48, 48, 1)


def test_utd_mhad_builder_on_two_actions(tmp_path):
  _require_utd()
  manual = tmp_path / "raw"
  for sub, suffix in (("Skeleton", "_skeleton.mat"), ("Depth", "_depth.mat")):
    (manual / sub).mkdir(parents=True)
    for action in (1, 2):
      for path in (UTD_DIR / sub).glob(f"a{action}_s*{suffix}"):
        (manual / sub / path.name).symlink_to(path)
  config = utd_mhad_builder.UtdMhadConfig(name="two_actions", clip_length=4, image_size=24,
                                       num_workers=1)
  builder = _build(utd_mhad_builder.UtdMhad, config, manual, tmp_path / "data")
  # 2 actions x 4 trials per subject: subjects 1, 3, 5 / 7 / 2, 4, 6, 8.
  assert _counts(builder) == {"train": 24, "validation": 8, "test": 32}
  assert builder.info.features["label"].names == list(utd_mhad.UTD_MHAD_CLASS_NAMES)
  for split, subjects in (("train", {1, 3, 5}), ("validation", {7}), ("test", {2, 4, 6, 8})):
    source = builder.as_data_source(split)
    assert {int(r["subject"]) for r in source} == subjects
  record = builder.as_data_source("test")[0]
  assert record["skeleton"].shape == (3, 128, 20, 1) and record["skeleton"].dtype == np.float32
  assert record["depth"].shape == (4, 24, 24, 1) and record["depth"].dtype == np.float32
  assert 0.0 <= record["depth"].min() and record["depth"].max() <= 1.0
  assert record["depth"].max() > 0  # the crop kept the performer
  name = record["sample_name"].decode()
  assert record["label"] == utd_mhad.parse_utd_name(name).label
  np.testing.assert_array_equal(
      record["skeleton"],
      skeletons.preprocess_utd_skeleton(
          utd_mhad.read_skeleton_mat(UTD_DIR / "Skeleton" / f"{name}_skeleton.mat"), 128))
  # The depth pipeline modality reads it.
  batch = next(iter(pipeline.eval_dataset(builder.as_data_source("validation"), batch_size=3,
                                          modalities=("depth", "skeleton"), process_index=0,
                                          process_count=1)))
  assert batch["depth"].shape == (3, 4, 24, 24, 1) and batch["skeleton"].shape == (3, 3, 128,
                                                                                   20, 1)
