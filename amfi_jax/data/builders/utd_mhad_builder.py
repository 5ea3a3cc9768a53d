"""TFDS builder for UTD-MHAD (skeleton + depth, optionally RGB), no TensorFlow.

Build:

  python -m amfi_jax.data.build data_builders/utd_mhad --config=skeleton_depth \
      --manual_dir=/path/to/utd_mhad --data_dir=~/tensorflow_datasets

(Without --config, TFDS builds every config, and `skeleton_depth_rgb` needs the RGB videos.)

The manual dir holds the release's `a{action}_s{subject}_t{trial}_{skeleton,depth}.mat` (and,
for the `skeleton_depth_rgb` config, `_color.avi`) files in any folder layout (the release ships
`Skeleton/`, `Depth/`, `RGB/`). Samples are defined by the skeleton files.

Splits (SPEC §3.4: subjects 1, 3, 5, 7 train, 2, 4, 6, 8 test): `train` = subjects 1, 3, 5,
`validation` = subject 7 (a whole held-out training subject, so validation measures
generalisation to a new person exactly as the test split does), `test` = subjects 2, 4, 6, 8.
The paper's protocol trains on `train+validation`. The real release has 861 sequences:
431 train+validation (323 + 108) and 430 test.

Depth is stored as float32 (K, S, S, C) in [0, 1], exactly `crop_depth_views`'s output (millimetres
/ 4095). uint8 was considered and rejected: on that fixed scale one step is 16 mm, and a performer
spans only a few dozen steps of depth, so quantisation would erase most of the body's relief.
The cost is 800 KB a sample at 16x112x112 (about 0.7 GB for the whole release).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from amfi_jax.data.builders import common
from amfi_jax.data.preprocessing import clips
from amfi_jax.data.readers import utd_mhad
from amfi_jax.data.errors import DataFormatError
from amfi_jax.errors import MissingFileError


@dataclasses.dataclass(eq=False, kw_only=True)
class UtdMhadConfig(tfds.core.BuilderConfig):
  """What one UTD-MHAD build contains. Every field changes the written data, except num_workers.

  Attributes:
    clip_length: K, depth (and RGB) frames sampled at equal intervals (`depth_frames`).
    image_size: S, side of the stored square depth / RGB frames.
    max_frames: T_max of the stored skeleton; the longest real sequence has 125 frames.
    include_rgb: store `rgb` from the `_color.avi` videos (absent from the skeleton+depth copy).
    depth_values: `absolute` or `relative` (`clips.depth_crop`).
    depth_frames: `sample`, `spread` or `segment_mean` (`clips.DEPTH_FRAMES`).
    depth_views: `body` (one channel) or `body_arms` (two: the body and the arms' path,
      `clips.crop_depth_views`).
    validation_subjects: training subjects held out as `validation`; () = none.
    error_policy: 'raise' or 'skip' (as for NTU: skipped samples are listed in the metadata).
    num_workers: processes reading samples in parallel (0 = all CPUs). Does not change the data.
  """

  clip_length: int = 16
  image_size: int = 112
  max_frames: int = 128
  include_rgb: bool = False
  depth_values: str = "absolute"
  depth_frames: str = "sample"
  depth_views: str = "body"
  validation_subjects: tuple[int, ...] = (7,)
  error_policy: str = "raise"
  num_workers: int = 0

  def __post_init__(self):
    if self.error_policy not in common.ERROR_POLICIES:
      raise ValueError(f"error_policy must be one of {common.ERROR_POLICIES}, "
                       f"got {self.error_policy!r}")
    if self.depth_values not in clips.DEPTH_VALUES:
      raise ValueError(f"depth_values must be one of {clips.DEPTH_VALUES}, "
                       f"got {self.depth_values!r}")
    if self.depth_frames not in clips.DEPTH_FRAMES:
      raise ValueError(f"depth_frames must be one of {clips.DEPTH_FRAMES}, "
                       f"got {self.depth_frames!r}")
    if self.depth_views not in clips.DEPTH_VIEWS:
      raise ValueError(f"depth_views must be one of {clips.DEPTH_VIEWS}, "
                       f"got {self.depth_views!r}")
    self.validation_subjects = tuple(int(s) for s in self.validation_subjects)
    bad = set(self.validation_subjects) - set(utd_mhad.TRAIN_SUBJECTS)
    if bad:
      raise ValueError(f"validation_subjects must be training subjects {utd_mhad.TRAIN_SUBJECTS}, "
                       f"got {sorted(bad)}")

  def data_fields(self) -> dict[str, Any]:
    return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
            if f.name not in ("name", "version", "release_notes", "supported_versions",
                              "description", "tags", "num_workers")}


def split_for(name, validation_subjects: Sequence[int]) -> str:
  """'train', 'validation' or 'test' for a parsed name (`utd_mhad.UTDName`) or file name."""

  if not isinstance(name, utd_mhad.UTDName):
    name = utd_mhad.parse_utd_name(name)
  split = utd_mhad.split_of(name)
  if split == "train" and name.subject in validation_subjects:
    return "validation"
  return split


@dataclasses.dataclass(frozen=True)
class _Job:
  name: str
  paths: dict[str, str | None]
  config: dict[str, Any]


def _with_subject_5_held_out(config: UtdMhadConfig) -> UtdMhadConfig:
  """`config` with subject 5 instead of 7 as `validation`: a second held-out training subject for
  choosing a recipe (`protocol=validation`)."""
  return dataclasses.replace(config, name=f"{config.name}_val5", validation_subjects=(5,),
                             description=f"{config.name} with subject 5 held out as validation "
                                         "instead of 7.")


_K8_S48 = UtdMhadConfig(name="skeleton_depth_k8_s48", clip_length=8, image_size=48,
                        description="Skeleton and 8-frame 48x48 depth clips.")
_K16_S48 = UtdMhadConfig(name="skeleton_depth_k16_s48", clip_length=16, image_size=48,
                         description="Skeleton and 16-frame 48x48 depth clips.")
_K48_S48_SPREAD = UtdMhadConfig(
    name="skeleton_depth_k48_s48_spread", clip_length=48, image_size=48, depth_frames="spread",
    description="Skeleton and 48 depth frames spread over the whole sequence, 48x48: a store "
                "to draw 16-frame clips from (config.data.clip_frames=16).")
_K48_S48_SPREAD_ARMS = dataclasses.replace(
    _K48_S48_SPREAD, name="skeleton_depth_k48_s48_spread_arms", depth_views="body_arms",
    description="skeleton_depth_k48_s48_spread with a second depth channel, the crop around the "
                "arms' path (config.model.rgb.in_channels=2).")


class UtdMhad(tfds.core.GeneratorBasedBuilder):
  """UTD-MHAD: 27 actions, 8 subjects, 4 trials; skeleton, depth and optional RGB."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Skeleton (3,T,20,1) float32 + depth (K,S,S,1) float32, ArrayRecord."}
  BUILDER_CONFIGS = [
      UtdMhadConfig(name="skeleton_depth", description="Skeleton and depth (the shared copy)."),
      UtdMhadConfig(name="skeleton_depth_rgb", include_rgb=True,
                    description="Skeleton, depth and RGB (needs the _color.avi files)."),
      _K8_S48,
      _with_subject_5_held_out(_K8_S48),
      # The depth clips the CPU-sized depth stream of configs/utd_mhad.py reads.
      _K16_S48,
      _with_subject_5_held_out(_K16_S48),
      _K48_S48_SPREAD,
      _with_subject_5_held_out(_K48_S48_SPREAD),
      _K48_S48_SPREAD_ARMS,
      _with_subject_5_held_out(_K48_S48_SPREAD_ARMS),
      UtdMhadConfig(name="skeleton_depth_k32_s48", clip_length=32, image_size=48,
                    description="Skeleton and 32-frame 48x48 depth clips."),
      UtdMhadConfig(name="skeleton_depth_k16_s32", clip_length=16, image_size=32,
                    description="Skeleton and 16-frame 32x32 depth clips."),
      UtdMhadConfig(name="skeleton_depth_k32_s32", clip_length=32, image_size=32,
                    description="Skeleton and 32-frame 32x32 depth clips."),
      UtdMhadConfig(name="skeleton_depth_k8_s64", clip_length=8, image_size=64,
                    description="Skeleton and 8-frame 64x64 depth clips."),
      UtdMhadConfig(name="skeleton_depth_k8_s48_relative", clip_length=8, image_size=48,
                    depth_values="relative",
                    description="Skeleton and 8-frame 48x48 depth clips, relative depth."),
      UtdMhadConfig(name="skeleton_depth_k8_s48_mean", clip_length=8, image_size=48,
                    depth_frames="segment_mean",
                    description="Skeleton and 8-frame 48x48 depth clips, each frame the mean "
                                "of an eighth of the sequence."),
  ]
  DEFAULT_BUILDER_CONFIG_NAME = "skeleton_depth"
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Download UTD-MHAD (https://personal.utdallas.edu/~kehtar/UTD-MHAD.html) and extract the
  Skeleton and Depth archives (and RGB for skeleton_depth_rgb) into the manual dir.
  """

  code_path = common.tfds_code_path()

  def __init__(self, *, file_format: str | None = None, **kwargs):
    super().__init__(file_format=file_format or "array_record", **kwargs)

  def _info(self) -> tfds.core.DatasetInfo:

    config: UtdMhadConfig = self.builder_config
    k, s = config.clip_length, config.image_size
    depth_channels = clips.DEPTH_VIEW_CHANNELS[config.depth_views]
    features = {
        "skeleton": tfds.features.Tensor(shape=(3, config.max_frames, utd_mhad.NUM_JOINTS, 1),
                                         dtype=np.float32, encoding=tfds.features.Encoding.BYTES),
        "depth": tfds.features.Tensor(shape=(k, s, s, depth_channels), dtype=np.float32,
                                      encoding=tfds.features.Encoding.BYTES),
        "label": tfds.features.ClassLabel(names=utd_mhad.UTD_MHAD_CLASS_NAMES),
        "sample_name": tfds.features.Text(),
        "subject": tfds.features.Tensor(shape=(), dtype=np.int32),
        "trial": tfds.features.Tensor(shape=(), dtype=np.int32),
        "frame_count": tfds.features.Tensor(shape=(), dtype=np.int32),
        "depth_frame_count": tfds.features.Tensor(shape=(), dtype=np.int32),
    }
    if config.include_rgb:
      features["rgb"] = tfds.features.Tensor(shape=(k, s, s, 3), dtype=np.uint8,
                                             encoding=tfds.features.Encoding.BYTES)
      features["video_frame_count"] = tfds.features.Tensor(shape=(), dtype=np.int32)
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict(features),
        homepage="https://personal.utdallas.edu/~kehtar/UTD-MHAD.html",
        metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    config: UtdMhadConfig = self.builder_config
    manual_dir = Path(dl_manager.manual_dir)
    if not manual_dir.is_dir():
      raise MissingFileError(f"UTD-MHAD manual dir {manual_dir} does not exist. "
                             f"{self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
    files = scan_manual_dir(manual_dir)
    if not files["skeleton"]:
      raise MissingFileError(f"No *_skeleton.mat file under {manual_dir}.")
    if config.include_rgb and not files["rgb"]:
      raise MissingFileError(f"No *_color.avi under {manual_dir}: config {config.name!r} needs "
                             "the RGB videos; build --config=skeleton_depth without them.")
    by_split, bad_names = plan_splits(files, config.validation_subjects)
    job_config = config.data_fields()
    jobs = {split: [_Job(name=name, config=job_config,
                         paths={m: os.fspath(files[m][name]) if name in files[m] else None
                                for m in utd_mhad.FILE_SUFFIXES})
                    for name in names]
            for split, names in by_split.items()}

    metadata = self.info.metadata
    metadata["config"] = {k: list(v) if isinstance(v, tuple) else v
                          for k, v in job_config.items()}
    metadata["manual_dir"] = os.fspath(manual_dir)
    metadata["skipped"] = []
    metadata["num_skipped"] = 0
    metadata["candidates_per_split"] = {k: len(v) for k, v in jobs.items()}
    common.log(f"[utd_mhad/{config.name}] {len(files['skeleton'])} skeleton, "
                  f"{len(files['depth'])} depth, {len(files['rgb'])} RGB files in {manual_dir}; "
                  f"per split: {metadata['candidates_per_split']}")
    if bad_names:
      self._handle_errors(bad_names)
    empty = [split for split, split_jobs in jobs.items() if not split_jobs]
    if empty:
      common.log(f"[utd_mhad/{config.name}] WARNING: no samples for split(s) {empty}; omitted.")
      metadata["empty_splits"] = empty
    non_empty = [split for split, split_jobs in jobs.items() if split_jobs]
    return {split: self._generate_examples(jobs[split], split, last=split == non_empty[-1])
            for split in non_empty}

  def _generate_examples(self, jobs: Sequence[_Job], split: str, last: bool
                         ) -> Iterator[tuple[str, dict[str, Any]]]:
    config: UtdMhadConfig = self.builder_config
    skipped = 0
    for status, name, payload in common.map_jobs(_load_example, jobs, config.num_workers):
      if status == "ok":
        yield name, payload
      else:
        skipped += 1
        self._handle_errors([(name, *payload)])
    common.log(f"[utd_mhad/{config.name}] split {split}: wrote {len(jobs) - skipped} of "
                  f"{len(jobs)} samples, skipped {skipped}.")
    if last:
      common.print_skip_summary(f"utd_mhad/{config.name}", self.info.metadata)

  def _handle_errors(self, errors: Sequence[tuple[str, str, str]]) -> None:
    common.apply_error_policy(self.builder_config, self.info.metadata, errors)


def scan_manual_dir(manual_dir: str | os.PathLike) -> dict[str, dict[str, Path]]:
  """{'skeleton'|'depth'|'rgb': {sample name 'a1_s1_t1': path}} for files anywhere below."""
  found: dict[str, dict[str, Path]] = {m: {} for m in utd_mhad.FILE_SUFFIXES}
  for root, _, names in os.walk(manual_dir, followlinks=True):
    for file_name in names:
      for modality, suffix in utd_mhad.FILE_SUFFIXES.items():
        if file_name.endswith(suffix):
          key = file_name[: -len(suffix)]
          if key in found[modality]:
            raise DataFormatError(Path(root) / file_name,
                                  f"duplicate of {found[modality][key]} (same sample name)")
          found[modality][key] = Path(root) / file_name
  return found


def plan_splits(files: dict[str, dict[str, Path]], validation_subjects: Sequence[int]
                ) -> tuple[dict[str, list[str]], list[tuple[str, str, str]]]:
  """Assigns every skeleton sample to a split by its subject; also returns unparsable names.

  Cheap (names only), so it also serves to count a whole release without reading any file.
  """

  by_split: dict[str, list[str]] = {"train": [], "validation": [], "test": []}
  bad: list[tuple[str, str, str]] = []
  for name, path in sorted(files["skeleton"].items(), key=lambda kv: _sort_key(kv[0])):
    try:
      split = split_for(utd_mhad.parse_utd_name(path), validation_subjects)
    except ValueError as e:  # DataFormatError included
      bad.append((name, os.fspath(path), getattr(e, "message", str(e))))
      continue
    by_split[split].append(name)
  return by_split, bad


def _sort_key(name: str):
  # Numeric order (a2 before a10) so progress and logs read naturally; TFDS shuffles anyway.
  parts = name.split("_")
  try:
    return tuple(int(p[1:]) for p in parts)
  except ValueError:
    return (float("inf"), name)


def stored_features(fields: dict[str, Any], skeleton_path: str, depth_path: str | None,
                    rgb_path: str | None = None) -> dict[str, Any]:
  """The features a build with these config fields (`UtdMhadConfig.data_fields()`) stores for
  one sample's files (`predict` reads raw samples through it too)."""
  from amfi_jax.data.preprocessing import samples

  return samples.read_utd_sample(
      skeleton_path, depth_path, max_frames=fields["max_frames"],
      clip_length=fields["clip_length"], image_size=fields["image_size"], rgb_path=rgb_path,
      depth_values=fields["depth_values"], depth_frames=fields["depth_frames"],
      depth_views=fields["depth_views"])


def _load_example(job: _Job) -> tuple[str, str, Any]:
  """Reads one sample: ('ok', name, example) or ('error', name, (path, reason))."""
  config = job.config
  path = job.paths["skeleton"]
  try:
    utd_name = utd_mhad.parse_utd_name(path)
    if job.paths["depth"] is None:
      raise DataFormatError(path, f"no {job.name}{utd_mhad.FILE_SUFFIXES['depth']} in the manual dir")
    if config["include_rgb"] and job.paths["rgb"] is None:
      raise DataFormatError(path, f"no {job.name}{utd_mhad.FILE_SUFFIXES['rgb']} in the manual dir "
                            "(use the skeleton_depth config without RGB)")
    example = stored_features(config, path, job.paths["depth"],
                              job.paths["rgb"] if config["include_rgb"] else None)
    example.update({
        "label": utd_name.label,
        "sample_name": job.name,
        "subject": np.int32(utd_name.subject),
        "trial": np.int32(utd_name.trial),
    })
  except common.RECOVERABLE_ERRORS as e:
    reason = e.message if isinstance(e, DataFormatError) else f"{type(e).__name__}: {e}"
    return "error", job.name, (getattr(e, "path", None) or path, reason)
  return "ok", job.name, example
