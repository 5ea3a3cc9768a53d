"""TFDS builder for NTU RGB+D 60 / 120 (skeletons and body-centred RGB clips), no TensorFlow.

Build (the `tfds` CLI needs TensorFlow in tfds 4.9.10, so use the equivalent launcher):

  python -m amfi_jax.data.build data_builders/ntu_rgbd --config=ntu60_xsub \
      --manual_dir=/path/to/ntu --data_dir=~/tensorflow_datasets

The manual dir holds the raw release: `nturgb+d_skeletons/*.skeleton` and `nturgb+d_rgb/*_rgb.avi`.
Files are found by name in ANY subfolder, because NTU-120's second half ships as separate
folders. Samples are defined by the skeleton files; a video without a skeleton file is ignored
(and counted).

Records are written as ArrayRecord with plain `Tensor` / `ClassLabel` / `Text` features, so both
building and reading (`tfds.data_source`) run without TensorFlow. Big arrays are stored as raw
bytes (`Encoding.BYTES`): uint8 would otherwise be widened to int64, and a byte string decodes
with one `np.frombuffer` instead of a protobuf float-list parse.

Splits: `train` = the protocol's training part minus `validation_performers`, `validation` =
those held-out training performers, `test` = the protocol's test part. The paper's protocol
trains on `train+validation` and selects on `test`; the honest default selects on `validation`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from amfi_jax.data.builders import common
from amfi_jax.data.readers import ntu
from amfi_jax.data.errors import DataFormatError
from amfi_jax.errors import MissingFileError

# Deterministic validation carve-outs: the highest-numbered training performers, about 10 % of
# the training set. NTU-60: 2 of the 20 cross-subject training performers; NTU-120: 5 of 53.
# Cross-view / cross-setup hold out the same performers from their own training parts.
NTU60_VALIDATION_PERFORMERS: tuple[int, ...] = (35, 38)
NTU120_VALIDATION_PERFORMERS: tuple[int, ...] = (97, 98, 100, 103, 95)

_PROTOCOL_DATASET = {"xsub": "ntu60", "xview": "ntu60", "xsub120": "ntu120", "xset": "ntu120"}
# NTU-60 is the first 17 setups / 60 actions of NTU-120: a combined manual dir builds both.
_DATASET_LIMITS = {"ntu60": (17, 60), "ntu120": (ntu.MAX_SETUP, ntu.MAX_ACTION)}
_MISSING_LISTS = {"ntu60": "NTU_RGBD_samples_with_missing_skeletons.txt",
                  "ntu120": "NTU_RGBD120_samples_with_missing_skeletons.txt"}
NUM_JOINTS = 25
NUM_PERSONS = 2


@dataclasses.dataclass(eq=False, kw_only=True)
class NtuRgbdConfig(tfds.core.BuilderConfig):
  """What one NTU build contains. Every field changes the written data, except `num_workers`.

  Attributes:
    protocol: 'xsub', 'xview' (NTU-60) or 'xsub120', 'xset' (NTU-120).
    clip_length: K, frames sampled at equal intervals per video.
    image_size: S, side of the stored square RGB frames.
    crop_size: side of the body-centred square crop in 1920x1080 pixel coordinates (paper: 1000).
    max_frames: T of the stored skeleton (2s-AGCN: 300).
    include_rgb: store the `clip` feature; a skeleton-only build needs no video at all.
    validation_performers: training performers held out as the `validation` split. None picks
      the documented defaults above; () puts every training sample in `train`.
    class_names: label names, index = action - 1. None = the official 60 / 120 names.
    missing_skeletons: a file of sample names to exclude. None = the official list vendored in
      `amfi_jax/data/resources/`; '' = exclude nothing.
    error_policy: 'raise' stops at the first malformed sample, naming its file; 'skip' drops it,
      records the sample and reason in the dataset metadata and prints a summary.
    num_workers: processes decoding samples in parallel (0 = all CPUs). Does not change the data.
  """

  protocol: str = "xsub"
  clip_length: int = 16
  image_size: int = 112
  crop_size: int = 1000
  max_frames: int = 300
  include_rgb: bool = True
  validation_performers: tuple[int, ...] | None = None
  class_names: tuple[str, ...] | None = None
  missing_skeletons: str | None = None
  error_policy: str = "raise"
  num_workers: int = 0

  def __post_init__(self):
    if self.protocol not in _PROTOCOL_DATASET:
      raise ValueError(f"Unknown NTU protocol {self.protocol!r}; expected one of "
                       f"{sorted(_PROTOCOL_DATASET)}")
    if self.error_policy not in common.ERROR_POLICIES:
      raise ValueError(f"error_policy must be one of {common.ERROR_POLICIES}, got {self.error_policy!r}")
    for field in ("clip_length", "image_size", "crop_size", "max_frames"):
      if getattr(self, field) < 1:
        raise ValueError(f"{field} must be positive, got {getattr(self, field)}")
    # JSON configs (`--config='{...}'`) deliver lists; keep the config hashable and canonical.
    if self.validation_performers is not None:
      self.validation_performers = tuple(int(p) for p in self.validation_performers)
    if self.class_names is not None:
      self.class_names = tuple(str(c) for c in self.class_names)

  @property
  def dataset(self) -> str:
    """'ntu60' or 'ntu120'."""
    return _PROTOCOL_DATASET[self.protocol]

  @property
  def resolved_class_names(self) -> tuple[str, ...]:
    if self.class_names is not None:
      return self.class_names
    return ntu.NTU60_CLASS_NAMES if self.dataset == "ntu60" else ntu.NTU120_CLASS_NAMES

  @property
  def resolved_validation_performers(self) -> frozenset[int]:
    if self.validation_performers is not None:
      return frozenset(self.validation_performers)
    if self.dataset == "ntu60":
      return frozenset(NTU60_VALIDATION_PERFORMERS)
    return frozenset(NTU120_VALIDATION_PERFORMERS)

  def data_fields(self) -> dict[str, Any]:
    """The fields that determine the written data (for names, descriptions and metadata)."""
    return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
            if f.name not in ("name", "version", "release_notes", "supported_versions",
                              "description", "tags", "num_workers")}


def _official_config(name: str, protocol: str, description: str) -> NtuRgbdConfig:
  return NtuRgbdConfig(name=name, protocol=protocol, description=description)


def read_class_names(path: str | os.PathLike) -> tuple[str, ...]:
  """Reads a `class_names.txt`: one name per line, line i = action i (1-based); blanks ignored."""
  with open(path, encoding="utf-8") as f:
    names = tuple(line.strip() for line in f.read().splitlines() if line.strip())
  if not names:
    raise DataFormatError(path, "expected one class name per line, found none")
  return names


def custom_config(base: str = "ntu60_xsub", *, name: str | None = None,
                  manual_dir: str | os.PathLike | None = None, **overrides) -> NtuRgbdConfig:
  """A config derived from an official one with some fields changed (e.g. a tiny demo build).

  Args:
    base: the official config whose protocol (and other fields) to start from.
    name: the config name, i.e. the data sub-directory. Default: `base` plus a short hash of the
      overrides, so two different custom builds never share (and silently reuse) a directory.
    manual_dir: if it contains `class_names.txt` and `class_names` is not overridden, the label
      names come from that file (generated datasets ship one), otherwise the official names.
    **overrides: NtuRgbdConfig fields.
  """
  official = {c.name: c for c in NtuRgbd.BUILDER_CONFIGS}
  if base not in official:
    raise ValueError(f"Unknown base config {base!r}; expected one of {sorted(official)}")
  fields = official[base].data_fields()
  num_workers = overrides.pop("num_workers", 0)
  unknown = set(overrides) - set(fields)
  if unknown:
    raise ValueError(f"Unknown NtuRgbdConfig fields {sorted(unknown)}; known: {sorted(fields)}")
  fields.update(overrides)
  if fields.get("class_names") is None and manual_dir is not None:
    names_file = Path(manual_dir) / "class_names.txt"
    if names_file.is_file():
      fields["class_names"] = read_class_names(names_file)
  if name is None:
    changed = {k: v for k, v in fields.items() if official[base].data_fields()[k] != v}
    digest = hashlib.sha1(json.dumps(changed, sort_keys=True, default=list).encode()).hexdigest()
    name = f"{base}_{digest[:8]}" if changed else base
  return NtuRgbdConfig(name=name, num_workers=num_workers,
                       description=f"custom config derived from {base}", **fields)


@dataclasses.dataclass(frozen=True)
class _Job:
  """Everything a worker process needs to turn one sample into an example."""

  name: str
  skeleton_path: str
  video_path: str | None
  config: dict[str, Any]
  num_classes: int


@dataclasses.dataclass
class _SampleFiles:
  skeleton: dict[str, Path]
  video: dict[str, Path]
  duplicates: list[str]


class NtuRgbd(tfds.core.GeneratorBasedBuilder):
  """NTU RGB+D 60 / 120: preprocessed skeletons (2s-AGCN) and body-centred RGB clips."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Skeleton (3,T,25,2) float32 + RGB clip (K,S,S,3) uint8, ArrayRecord."}
  BUILDER_CONFIGS = [
      _official_config("ntu60_xsub", "xsub", "NTU RGB+D 60, cross-subject."),
      _official_config("ntu60_xview", "xview", "NTU RGB+D 60, cross-view (train cameras 2, 3)."),
      _official_config("ntu120_xsub", "xsub120", "NTU RGB+D 120, cross-subject."),
      _official_config("ntu120_xset", "xset", "NTU RGB+D 120, cross-setup (train even setups)."),
  ]
  DEFAULT_BUILDER_CONFIG_NAME = "ntu60_xsub"
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Download NTU RGB+D (https://rose1.ntu.edu.sg/dataset/actionRecognition/) and extract it into
  the manual dir: `nturgb+d_skeletons/*.skeleton` and, unless include_rgb=False,
  `nturgb+d_rgb/*_rgb.avi`. Any folder layout works: files are matched by sample name.
  """

  code_path = common.tfds_code_path()

  def __init__(self, *, file_format: str | None = None, **kwargs):
    # ArrayRecord is the random-access format grain reads, and the only one written without TF.
    super().__init__(file_format=file_format or "array_record", **kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    config: NtuRgbdConfig = self.builder_config
    k, s = config.clip_length, config.image_size
    features = {
        "skeleton": tfds.features.Tensor(
            shape=(3, config.max_frames, NUM_JOINTS, NUM_PERSONS), dtype=np.float32,
            encoding=tfds.features.Encoding.BYTES),
        "label": tfds.features.ClassLabel(names=config.resolved_class_names),
        "sample_name": tfds.features.Text(),
        # The skeleton file's frame count (known for skeleton-only builds too).
        "frame_count": tfds.features.Tensor(shape=(), dtype=np.int32),
        "setup": tfds.features.Tensor(shape=(), dtype=np.int32),
        "camera": tfds.features.Tensor(shape=(), dtype=np.int32),
        "performer": tfds.features.Tensor(shape=(), dtype=np.int32),
        "replication": tfds.features.Tensor(shape=(), dtype=np.int32),
    }
    if config.include_rgb:
      features["clip"] = tfds.features.Tensor(shape=(k, s, s, 3), dtype=np.uint8,
                                              encoding=tfds.features.Encoding.BYTES)
      features["video_frame_count"] = tfds.features.Tensor(shape=(), dtype=np.int32)
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict(features),
        supervised_keys=None,
        homepage="https://rose1.ntu.edu.sg/dataset/actionRecognition/",
        # Build facts (exclusions, skipped samples) go here and into metadata.json.
        metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    config: NtuRgbdConfig = self.builder_config
    manual_dir = Path(dl_manager.manual_dir)
    if not manual_dir.is_dir():
      raise MissingFileError(f"NTU manual dir {manual_dir} does not exist. "
                             f"{self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
    files = _scan_manual_dir(manual_dir, want_video=config.include_rgb)
    if files.duplicates:
      raise DataFormatError(manual_dir, "the same sample appears more than once: "
                            + "; ".join(files.duplicates[:5]))
    if not files.skeleton:
      raise MissingFileError(f"No *.skeleton file under {manual_dir}.")

    missing_list = _missing_list_path(config)
    missing = ntu.read_missing_skeletons(missing_list) if missing_list else frozenset()
    max_setup, max_action = _DATASET_LIMITS[config.dataset]
    validation_performers = config.resolved_validation_performers
    by_split: dict[str, list[_Job]] = {"train": [], "validation": [], "test": []}
    excluded, out_of_scope, bad_names = [], 0, []
    job_config = config.data_fields()
    num_classes = len(config.resolved_class_names)
    for name, path in sorted(files.skeleton.items()):
      try:
        sample = ntu.parse_sample_name(path)
      except DataFormatError as e:
        bad_names.append(e)
        continue
      if sample.setup > max_setup or sample.action > max_action:
        out_of_scope += 1
        continue
      if name in missing:
        excluded.append(name)
        continue
      split = ntu.split_of(sample, config.protocol)
      if split == "train" and sample.performer in validation_performers:
        split = "validation"
      video = files.video.get(name)
      by_split[split].append(_Job(name=name, skeleton_path=os.fspath(path),
                                  video_path=os.fspath(video) if video else None,
                                  config=job_config, num_classes=num_classes))

    metadata = self.info.metadata
    metadata["config"] = {k: list(v) if isinstance(v, tuple) else v
                          for k, v in job_config.items()}
    metadata["manual_dir"] = os.fspath(manual_dir)
    metadata["missing_skeleton_list"] = os.fspath(missing_list) if missing_list else None
    metadata["num_excluded_missing_skeleton"] = len(excluded)
    metadata["excluded_missing_skeleton"] = excluded
    metadata["num_out_of_scope"] = out_of_scope
    metadata["num_videos_without_skeleton"] = len(set(files.video) - set(files.skeleton))
    metadata["skipped"] = []
    metadata["num_skipped"] = 0
    metadata["validation_performers"] = sorted(validation_performers)
    metadata["candidates_per_split"] = {k: len(v) for k, v in by_split.items()}
    common.log(f"[ntu_rgbd/{config.name}] {len(files.skeleton)} skeleton files, "
         f"{len(files.video)} videos in {manual_dir}; excluded {len(excluded)} samples with "
         f"missing skeletons ({missing_list or 'no list'}), {out_of_scope} outside "
         f"{config.dataset}; per split: {metadata['candidates_per_split']}")

    if bad_names:
      self._handle_errors([(e.path, e.path, e.message) for e in bad_names])
    empty = [split for split, jobs in by_split.items() if not jobs]
    if empty:
      # TFDS cannot write an empty split; leave it out and say so (reading it then fails loudly).
      common.log(f"[ntu_rgbd/{config.name}] WARNING: no samples for split(s) {empty}; omitted.")
      metadata["empty_splits"] = empty
    return {split: self._generate_examples(jobs, split, last=(split == _last(by_split)))
            for split, jobs in by_split.items() if jobs}

  def _generate_examples(self, jobs: Sequence[_Job], split: str, last: bool
                         ) -> Iterator[tuple[str, dict[str, Any]]]:
    config: NtuRgbdConfig = self.builder_config
    skipped: list[tuple[str, str, str]] = []
    for status, name, payload in common.map_jobs(_load_example, jobs, config.num_workers):
      if status == "ok":
        yield name, payload
      else:
        path, reason = payload
        skipped.append((name, path, reason))
        self._handle_errors([(name, path, reason)])
    common.log(f"[ntu_rgbd/{config.name}] split {split}: wrote {len(jobs) - len(skipped)} of "
         f"{len(jobs)} samples, skipped {len(skipped)}.")
    if last:
      common.print_skip_summary(f"ntu_rgbd/{config.name}", self.info.metadata)

  def _handle_errors(self, errors: Sequence[tuple[str, str, str]]) -> None:
    common.apply_error_policy(self.builder_config, self.info.metadata, errors)


def _last(by_split: dict[str, list]) -> str | None:
  non_empty = [s for s, jobs in by_split.items() if jobs]
  return non_empty[-1] if non_empty else None


def _missing_list_path(config: NtuRgbdConfig):
  if config.missing_skeletons == "":
    return None
  if config.missing_skeletons is not None:
    return Path(config.missing_skeletons)
  return resources.files("amfi_jax.data") / "resources" / _MISSING_LISTS[config.dataset]


def _scan_manual_dir(manual_dir: Path, want_video: bool) -> _SampleFiles:
  """Finds `*.skeleton` and `*_rgb.avi` files anywhere below `manual_dir`, keyed by sample name."""
  skeleton: dict[str, Path] = {}
  video: dict[str, Path] = {}
  duplicates = []
  for root, _, names in os.walk(manual_dir, followlinks=True):
    for file_name in names:
      if file_name.endswith(".skeleton"):
        table, key = skeleton, file_name[: -len(".skeleton")]
      elif want_video and file_name.endswith("_rgb.avi"):
        table, key = video, file_name[: -len("_rgb.avi")]
      else:
        continue
      path = Path(root) / file_name
      if key in table:
        duplicates.append(f"{table[key]} and {path}")
      table[key] = path
  return _SampleFiles(skeleton=skeleton, video=video, duplicates=duplicates)


def _load_example(job: _Job) -> tuple[str, str, Any]:
  """Reads and preprocesses one sample: ('ok', name, example) or ('error', name, (path, reason))."""
  # Imported here so spawn workers import only what they use.
  from amfi_jax.data.preprocessing import samples

  config = job.config
  path = job.skeleton_path
  try:
    sample = ntu.parse_sample_name(job.name)
    if sample.label >= job.num_classes:
      raise DataFormatError(path, f"action {sample.action} has no class name "
                            f"({job.num_classes} classes)")
    video_path = None
    if config["include_rgb"]:
      if job.video_path is None:
        raise DataFormatError(path, f"no video {job.name}_rgb.avi found in the manual dir "
                              "(build with include_rgb=False for skeletons only)")
      video_path = job.video_path
    example = samples.read_ntu_sample(
        path, video_path, max_frames=config["max_frames"], clip_length=config["clip_length"],
        crop_size=config["crop_size"], image_size=config["image_size"])
    example.update({
        "label": sample.label,
        "sample_name": job.name,
        "setup": np.int32(sample.setup),
        "camera": np.int32(sample.camera),
        "performer": np.int32(sample.performer),
        "replication": np.int32(sample.replication),
    })
  except common.RECOVERABLE_ERRORS as e:
    reason = e.message if isinstance(e, DataFormatError) else f"{type(e).__name__}: {e}"
    return "error", job.name, (getattr(e, "path", None) or path, reason)
  return "ok", job.name, example
