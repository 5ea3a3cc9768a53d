"""Which dataset a run trains on: a prepared TFDS dataset, or the embedded generated one.

`config.data.dataset` empty selects the embedded dataset: NTU-format raw files are generated
into WORKDIR/data/raw_<settings hash> (skeleton files and `_rgb.avi` videos, exactly the real layout) and built
with the real NTU builder into WORKDIR/data/tfds — the same path real data takes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os

import jax
import tensorflow_datasets as tfds

from amfi_jax import distributed
from amfi_jax.data import pipeline
from amfi_jax.data.builders import ntu_rgbd_builder
from amfi_jax.data.generator import synthetic
from amfi_jax.data.preprocessing import samples
from amfi_jax.data.readers import ntu
from amfi_jax.errors import ConfigError, MissingFileError

# Cross-subject split of the generated performers: 1 2 4 5 8 9 train (9 held out for validation),
# 3 6 7 10 test, as for real NTU performers.
EMBEDDED_VALIDATION_PERFORMERS = (9,)


@dataclasses.dataclass(frozen=True)
class Dataset:
  builder: tfds.core.DatasetBuilder
  class_names: tuple[str, ...]

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  def clip_channels(self, modality: str) -> int | None:
    """The channels the dataset stores for clip modality `modality` ('rgb' or 'depth'), None
    when it stores no such clips."""
    features = self.builder.info.features
    for key in samples.FEATURES[modality]:
      if key in features:
        return features[key].shape[-1]
    return None

  def source(self, split: str):
    return pipeline.open_source(self.builder, split)

  def sample_format(self) -> dict:
    """How raw samples become records (for `predict` on raw files): the builder config's
    clip/crop/frame settings and the feature shapes."""
    features = self.builder.info.features
    out = {"builder": self.builder.name,
           "shapes": {k: list(features[k].shape) for k in ("skeleton", "clip", "rgb", "depth")
                      if k in features}}
    # Both builders record their config in the dataset metadata, which (unlike the builder
    # config object) survives reading a prepared dataset back from its directory.
    built_with = dict(self.builder.info.metadata or {}).get("config", {})
    for field in ("clip_length", "image_size", "crop_size", "max_frames"):
      if field in built_with:
        out[field] = built_with[field]
    return out


def _class_names(builder) -> tuple[str, ...]:
  label = builder.info.features["label"]
  return tuple(label.names)


def prepare(data_cfg, data_root: str) -> Dataset:
  """The run's dataset, generating and building the embedded one under `data_root` (a run's
  `workdir.RunDir.data`) when no dataset is configured."""
  dataset = _embedded(data_cfg, data_root) if not data_cfg.dataset else _named(data_cfg, data_root)
  _check_clip_frames(data_cfg, dataset.builder)
  return dataset


def _check_clip_frames(data_cfg, builder) -> None:
  """config.data.clip_frames must divide the stored clips' frame count, and clip_views be at most
  the frames of a group (before any training)."""
  n = data_cfg.clip_frames
  if not n:
    return
  features = builder.info.features
  for key in ("clip", "rgb", "depth"):
    if key not in features:
      continue
    stored = features[key].shape[0]
    if stored % n:
      raise ConfigError(f"config.data.clip_frames={n} must divide the {stored} "
                        f"frames of the stored {key!r} clips of {builder.info.full_name}; use "
                        "a divisor, a dataset that stores more frames, or 0 (all)")
    if data_cfg.clip_views > stored // n:
      raise ConfigError(f"config.data.clip_views={data_cfg.clip_views} is more than the "
                        f"{stored // n} stored frames of each group ({stored} frames of the "
                        f"{key!r} clips of {builder.info.full_name} / clip_frames={n})")


def _named(data_cfg, data_root: str) -> Dataset:
  name = data_cfg.dataset
  if os.path.isfile(os.path.join(name, "dataset_info.json")):
    builder = tfds.builder_from_directory(name)
  else:
    # A dataset built from config.data.manual_dir goes under the run's data/ unless a data_dir
    # is given.
    data_dir = data_cfg.data_dir or (os.path.join(data_root, "tfds") if data_cfg.manual_dir
                                     else None)
    _check_dataset_name(name)
    try:
      builder = tfds.builder(name, data_dir=data_dir)
    except Exception as e:  # tfds raises several types for unknown names / configs
      raise ConfigError(f"config.data.dataset={name!r} is not a known dataset or a prepared "
                        f"dataset directory: {e}") from None
    if not builder.is_prepared() and data_cfg.manual_dir:
      if not os.path.isdir(data_cfg.manual_dir):
        raise MissingFileError(f"config.data.manual_dir={data_cfg.manual_dir!r} is not a "
                               "directory")
      if jax.process_index() == 0:
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
            manual_dir=os.path.abspath(data_cfg.manual_dir)))
      distributed.barrier(f"{name} built")
      builder = tfds.builder(name, data_dir=data_dir)
    if not builder.is_prepared():
      raise MissingFileError(
          f"config.data.dataset={name!r} is not built in config.data.data_dir="
          f"{data_cfg.data_dir or '(TFDS default)'}; build it first, e.g. "
          f"`python -m amfi_jax.data.build data_builders/{name.split('/')[0]} "
          f"--config={name.split('/')[-1]} --manual_dir=RAW --data_dir=DIR`, or set "
          "config.data.manual_dir=RAW to build it in the run")
  return Dataset(builder, _class_names(builder))


def _check_dataset_name(name: str) -> None:
  """`builder/config` must name one of this project's builders and one of its configs (TFDS's
  own error would print its whole catalogue, or an empty list of close matches)."""
  from amfi_jax.data.builders import pose_pickle_builder, utd_mhad_builder
  builders = {b.name: b for b in (ntu_rgbd_builder.NtuRgbd, utd_mhad_builder.UtdMhad,
                                  pose_pickle_builder.PosePickle)}
  builder_name, _, config_name = name.partition("/")
  if builder_name not in builders:
    raise ConfigError(f"config.data.dataset={name!r}: unknown dataset {builder_name!r}; "
                      f"expected one of {sorted(builders)} (as name/config, e.g. "
                      "ntu_rgbd/ntu60_xsub), or the directory of a prepared dataset version")
  configs = [c.name for c in builders[builder_name].BUILDER_CONFIGS]
  if config_name and config_name not in configs:
    raise ConfigError(f"config.data.dataset={name!r}: {builder_name} has no config "
                      f"{config_name!r}; its configs are {configs}")


def _embedded_configs(e) -> tuple[synthetic.SyntheticConfig, ntu_rgbd_builder.NtuRgbdConfig]:
  """The generator's and the builder's settings of `config.data.embedded` (`e`)."""
  for field in ("performers", "replications"):
    ids = tuple(e[field])
    if any(not isinstance(i, int) or isinstance(i, bool) for i in ids) or len(set(ids)) < len(ids):
      raise ConfigError(f"config.data.embedded.{field} must be distinct integer ids, got {ids}")
  try:
    generated = synthetic.SyntheticConfig(
        num_classes=e.num_classes, performers=tuple(e.performers),
        replications=tuple(e.replications), seed=e.seed)
    built = ntu_rgbd_builder.custom_config(
        "ntu60_xsub", manual_dir=None, clip_length=e.clip_length, image_size=e.image_size,
        crop_size=e.crop_size, max_frames=e.max_frames,
        validation_performers=EMBEDDED_VALIDATION_PERFORMERS,
        class_names=tuple(synthetic.class_names(e.num_classes)), missing_skeletons="")
    # The built data's directory is named by the generator's settings too (its design revision
    # included): a workdir prepared by another generator gets its data built again, not reused.
    built = dataclasses.replace(built, name=f"{built.name}_{_generated_digest(generated)}")
  except ValueError as error:  # their messages start with the field's name
    raise ConfigError(f"config.data.embedded.{error}") from None
  # Every protocol reads all three splits (`pipeline.PROTOCOLS`), and the builder writes no empty
  # split, so a missing one would only show after generating and building the data.
  performers = set(generated.performers)
  validation = set(EMBEDDED_VALIDATION_PERFORMERS)
  splits = {"train": performers & (ntu.XSUB_TRAIN_PERFORMERS - validation),
            "validation": performers & validation,
            "test": performers - ntu.XSUB_TRAIN_PERFORMERS}
  empty = [name for name, members in splits.items() if not members]
  if empty:
    plural = "s" if len(empty) > 1 else ""
    training = ", ".join(map(str, sorted(ntu.XSUB_TRAIN_PERFORMERS - validation)))
    raise ConfigError(
        f"config.data.embedded.performers={tuple(e.performers)} leaves the {' and '.join(empty)} "
        f"split{plural} empty. The embedded dataset splits performers as NTU's cross-subject "
        f"protocol (training: {training}; "
        f"validation: {', '.join(map(str, sorted(validation)))}; test: every other id), and "
        "every run reads all three splits.")
  return generated, built


def _generated_digest(generated: synthetic.SyntheticConfig) -> str:
  # `workers` changes how the files are made, not what they hold.
  return hashlib.sha1(repr(dataclasses.replace(generated, workers=1)).encode()).hexdigest()[:8]


def check_embedded(data_cfg) -> None:
  """Raises ConfigError for `config.data.embedded` settings that cannot make a dataset (before
  anything is generated)."""
  _embedded_configs(data_cfg.embedded)


def _embedded(data_cfg, data_root: str) -> Dataset:
  generated, config = _embedded_configs(data_cfg.embedded)
  # Raw files of other generator settings live in their own directory, never reused by mistake.
  raw = os.path.join(os.path.abspath(data_root), f"raw_{_generated_digest(generated)}")
  data_dir = os.path.join(os.path.abspath(data_root), "tfds")
  builder = ntu_rgbd_builder.NtuRgbd(config=config, data_dir=data_dir)
  if not builder.is_prepared():
    if jax.process_index() == 0:
      done = os.path.join(raw, "COMPLETE")
      if not os.path.exists(done):
        # One process per CPU: the files are the same whatever the count (so is the digest).
        synthetic.generate(raw, dataclasses.replace(generated, workers=os.cpu_count() or 1))
        open(done, "w").close()
      builder.download_and_prepare(
          download_config=tfds.download.DownloadConfig(manual_dir=raw))
    distributed.barrier("embedded dataset prepared")
    builder = ntu_rgbd_builder.NtuRgbd(config=config, data_dir=data_dir)
  return Dataset(builder, _class_names(builder))
