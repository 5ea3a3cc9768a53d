"""TFDS builder for 2-D poses of any pose estimator (PYSKL / MMAction2 pose pickles), no TensorFlow.

Build (registered name; `amfi_jax.data.build` takes the `tfds build` arguments):

  python -m amfi_jax.data.build pose_pickle --config=ntu60_2d_xsub \
      --manual_dir=/path/to/pyskl_data --data_dir=~/tensorflow_datasets

The manual dir holds the pickle, by default PYSKL's `ntu60_hrnet.pkl` (HRNet COCO-17 poses of
NTU RGB+D 60); the `pickle_file` field names another one (a file name in the manual dir, or an
absolute path), e.g. with a JSON config:
`--config='{"name": "mine_xsub", "pickle_file": "mine.pkl", "class_names": [...]}'`.
The format and how one annotation becomes a skeleton are in `readers/pose_pickle.py`.

Splits, named as the NTU builder names them: `test` = the file's `test_split` (PYSKL:
`xsub_val` / `xview_val`), `train` = the file's `train_split` minus the samples of
`validation_performers` (read from the NTU sample names), `validation` = those. The defaults
hold out the NTU builder's performers (35 and 38 for NTU-60), so both builders validate on the
same people; the paper's protocol trains on `train+validation`.

Records: `skeleton` float32 (3, max_frames, 17, num_persons), channels (x, y, score), the layout
of the NTU builder's skeletons; `label`, `sample_name`, `frame_count` (the annotation's T) and
`img_shape` (height, width).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from amfi_jax.data.builders import common, ntu_rgbd_builder
from amfi_jax.data.errors import DataFormatError
from amfi_jax.data.readers import ntu, pose_pickle
from amfi_jax.errors import MissingFileError


@dataclasses.dataclass(eq=False, kw_only=True)
class PosePickleConfig(tfds.core.BuilderConfig):
  """What one pose-pickle build contains. Every field changes the written data.

  Attributes:
    pickle_file: the pickle, a file name in the manual dir (or an absolute path).
    train_split: the file's split that trains (PYSKL's NTU names: xsub_train, xview_train).
    test_split: the file's split that tests (xsub_val, xview_val).
    validation_performers: NTU performers of `train_split` held out as `validation`; () puts
      every training sample in `train` (needed when sample names are not NTU names).
    class_names: label names, index = label. None = NTU-60's official names.
    max_frames: T of the stored skeleton (shorter sequences repeated, longer ones resampled).
    num_persons: M, the most confident persons kept.
    error_policy: 'raise' stops at the first malformed annotation, naming the file, sample and
      field; 'skip' drops it, records it in the dataset metadata and prints a summary.
  """

  pickle_file: str = "ntu60_hrnet.pkl"
  train_split: str = "xsub_train"
  test_split: str = "xsub_val"
  validation_performers: tuple[int, ...] = ntu_rgbd_builder.NTU60_VALIDATION_PERFORMERS
  class_names: tuple[str, ...] | None = None
  max_frames: int = 300
  num_persons: int = 2
  error_policy: str = "raise"

  def __post_init__(self):
    if self.error_policy not in common.ERROR_POLICIES:
      raise ValueError(f"error_policy must be one of {common.ERROR_POLICIES}, "
                       f"got {self.error_policy!r}")
    for field in ("max_frames", "num_persons"):
      if getattr(self, field) < 1:
        raise ValueError(f"{field} must be positive, got {getattr(self, field)}")
    if self.train_split == self.test_split:
      raise ValueError(f"train_split and test_split are both {self.train_split!r}")
    # JSON configs (`--config='{...}'`) deliver lists; keep the config hashable and canonical.
    self.validation_performers = tuple(int(p) for p in self.validation_performers)
    if self.class_names is not None:
      self.class_names = tuple(str(c) for c in self.class_names)

  @property
  def resolved_class_names(self) -> tuple[str, ...]:
    return self.class_names if self.class_names is not None else ntu.NTU60_CLASS_NAMES

  def data_fields(self) -> dict[str, Any]:
    return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
            if f.name not in ("name", "version", "release_notes", "supported_versions",
                              "description", "tags")}


class PosePickle(tfds.core.GeneratorBasedBuilder):
  """2-D COCO-17 poses (x, y, score) from a PYSKL / MMAction2 pose pickle."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Skeleton (3,T,17,M) float32 (x, y, score), ArrayRecord."}
  BUILDER_CONFIGS = [
      PosePickleConfig(name="ntu60_2d_xsub", description="NTU RGB+D 60 as 2-D COCO-17 poses "
                       "(PYSKL's ntu60_hrnet.pkl), cross-subject."),
      PosePickleConfig(name="ntu60_2d_xview", train_split="xview_train", test_split="xview_val",
                       description="NTU RGB+D 60 as 2-D COCO-17 poses (PYSKL's "
                       "ntu60_hrnet.pkl), cross-view."),
  ]
  DEFAULT_BUILDER_CONFIG_NAME = "ntu60_2d_xsub"
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Put the pose pickle in the manual dir: for the ntu60_2d_* configs PYSKL's ntu60_hrnet.pkl
  (https://download.openmmlab.com/mmaction/pyskl/data/nturgbd/ntu60_hrnet.pkl), or any pickle
  of the same format named by the config's pickle_file.
  """

  code_path = common.tfds_code_path()

  def __init__(self, *, file_format: str | None = None, **kwargs):
    super().__init__(file_format=file_format or "array_record", **kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    config: PosePickleConfig = self.builder_config
    features = {
        "skeleton": tfds.features.Tensor(
            shape=(3, config.max_frames, pose_pickle.NUM_JOINTS, config.num_persons),
            dtype=np.float32, encoding=tfds.features.Encoding.BYTES),
        "label": tfds.features.ClassLabel(names=config.resolved_class_names),
        "sample_name": tfds.features.Text(),
        "frame_count": tfds.features.Tensor(shape=(), dtype=np.int32),
        "img_shape": tfds.features.Tensor(shape=(2,), dtype=np.int32),
    }
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict(features),
        homepage="https://github.com/kennymckormick/pyskl/blob/main/tools/data/README.md",
        metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    config: PosePickleConfig = self.builder_config
    path = Path(dl_manager.manual_dir) / config.pickle_file
    if not path.is_file():
      raise MissingFileError(f"Pose pickle {path} does not exist. "
                             f"{self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
    poses = pose_pickle.read_pose_pickle(path)
    by_split = plan_splits(poses, config)

    metadata = self.info.metadata
    metadata["config"] = {k: list(v) if isinstance(v, tuple) else v
                          for k, v in config.data_fields().items()}
    metadata["pickle"] = os.fspath(path)
    metadata["skipped"] = []
    metadata["num_skipped"] = 0
    metadata["candidates_per_split"] = {k: len(v) for k, v in by_split.items()}
    metadata["num_annotations_in_no_split"] = (
        len(poses.annotations) - sum(len(v) for v in by_split.values()))
    common.log(f"[pose_pickle/{config.name}] {len(poses.annotations)} annotations in {path}; "
               f"per split: {metadata['candidates_per_split']}")
    # Every annotation is checked before anything is written: with 'raise' a malformed one stops
    # the build at once, with 'skip' it leaves its split before the split's writer starts (a
    # split whose every sample is skipped is then omitted like an empty one).
    num_classes = len(config.resolved_class_names)
    for split, names in by_split.items():
      errors = []
      for name in names:
        try:
          poses.keypoints(name)
          poses.label(name, num_classes)
        except DataFormatError as e:
          errors.append((name, e.path, e.message))
      if errors:
        self._handle_errors(errors)
        bad = {name for name, _, _ in errors}
        by_split[split] = [name for name in names if name not in bad]
    common.print_skip_summary(f"pose_pickle/{config.name}", metadata)
    empty = [split for split, names in by_split.items() if not names]
    if empty:
      # TFDS cannot write an empty split; leave it out and say so (reading it then fails loudly).
      common.log(f"[pose_pickle/{config.name}] WARNING: no samples for split(s) {empty}; "
                 "omitted.")
      metadata["empty_splits"] = empty
    return {split: self._generate_examples(poses, names, split)
            for split, names in by_split.items() if names}

  def _generate_examples(self, poses: pose_pickle.PosePickle, names: Sequence[str], split: str
                         ) -> Iterator[tuple[str, dict[str, Any]]]:
    config: PosePickleConfig = self.builder_config
    num_classes = len(config.resolved_class_names)
    for name in names:
      example = poses.skeleton_features(name, max_frames=config.max_frames,
                                        num_persons=config.num_persons)
      example.update(label=poses.label(name, num_classes), sample_name=name)
      yield name, example
    common.log(f"[pose_pickle/{config.name}] split {split}: wrote {len(names)} samples.")

  def _handle_errors(self, errors: Sequence[tuple[str, str, str]]) -> None:
    common.apply_error_policy(self.builder_config, self.info.metadata, errors,
                              reason_names_sample=True)


def plan_splits(poses: pose_pickle.PosePickle, config: PosePickleConfig) -> dict[str, list[str]]:
  """{'train'|'validation'|'test': sample names} from the file's splits (module docstring)."""
  train, test = poses.split(config.train_split), poses.split(config.test_split)
  both = sorted(set(train) & set(test))
  if both:
    raise DataFormatError(poses.path, f"sample {both[0]}: field 'split' lists it in both "
                          f"{config.train_split!r} and {config.test_split!r} ({len(both)} such "
                          "sample(s)): the test split would leak into training")
  by_split: dict[str, list[str]] = {"train": [], "validation": [], "test": list(test)}
  held_out = frozenset(config.validation_performers)
  for name in train:
    if held_out and _performer(poses.path, name) in held_out:
      by_split["validation"].append(name)
    else:
      by_split["train"].append(name)
  return by_split


def _performer(path: str, name: str) -> int:
  try:
    return ntu.parse_sample_name(name).performer
  except DataFormatError as e:
    raise DataFormatError(path, f"sample {name}: field 'frame_dir' is not an NTU sample name "
                          f"({e.message}), so validation_performers cannot hold it out; build "
                          "with validation_performers=() to train on the whole training split"
                          ) from None
