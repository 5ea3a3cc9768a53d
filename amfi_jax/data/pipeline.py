"""Input pipelines: TFDS ArrayRecord splits -> grain -> per-process numpy batches -> global arrays.

Training (`train_dataset`): source -> per-record selection of modalities -> seed / shuffle /
repeat (reshuffled every epoch) -> random augmentation -> this process's block of each global
batch -> batch (drop_remainder) -> IterDataset. Evaluation (`eval_dataset`): every record
exactly once, the last global batch padded, with a boolean `mask`.

A batch is a dict of numpy arrays, per process:
  'rgb'      uint8   (B, K, S, S, 3)   NOT normalised: that happens on the device, so the host
                                       ships 4x fewer bytes than float32
  'depth'    float32 (B, K, S, S, C)   in [0, 1] as stored (UTD-MHAD; C = 2 with the arms crop)
  'skeleton' float32 (B, C, T, V, M)   C = 3 ('joint'), 6 ('joint_bone': joints, then bones)
                                       or 12 ('joint_bone_motion': and their motions)
  'label'    int32   (B,)
  'index'    int32   (B,)  record index in the split (-1 for eval padding)
  'mask'     bool    (B,)  eval only: False for padding

Iterators are `grain.DatasetIterator`s: `get_state()` / `set_state()`, or checkpoint them with
Orbax through `grain.checkpoint.CheckpointSave(it)` / `CheckpointRestore(it)`.

Typical use:

  source = open_source("ntu_rgbd/ntu60_xsub", "train", data_dir=data_dir)
  it = iter(train_dataset(source, modalities=("rgb", "skeleton"), batch_size=32, seed=0))
  batch = global_batch(next(it), NamedSharding(mesh, PartitionSpec("data")))
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import grain
import jax
import numpy as np
import tensorflow_datasets as tfds

from amfi_jax.data.preprocessing import clips, samples, skeleton_augment
from amfi_jax.models import graphs

MODALITIES = samples.MODALITIES
SKELETON_STREAMS = samples.SKELETON_STREAMS
# Image-like modalities that receive the random clip augmentation in training.
_AUGMENTED = ("rgb", "depth")


# Evaluation protocols: (training split, checkpoint-selection split or None).
#   final       the whole training part, a fixed schedule, the LAST checkpoint reported on test;
#               test is never evaluated before the last step (most UTD-MHAD papers report this)
#   validation  train on the training part minus held-out performers / subjects, select the best
#               checkpoint on those (honest selection)
#   test        the paper's Algorithm 1: the whole training part, best checkpoint on test
#               (optimistic: the test split chooses the checkpoint)
PROTOCOLS = {"final": ("train+validation", None), "validation": ("train", "validation"),
             "test": ("train+validation", "test")}


def selection_splits(protocol: str) -> tuple[str, str | None]:
  """(training split, selection split or None for `final`) of an evaluation protocol."""
  try:
    return PROTOCOLS[protocol]
  except KeyError:
    raise ValueError(f"config.data.protocol must be one of {list(PROTOCOLS)}, got "
                     f"{protocol!r}") from None


def open_source(dataset: str | os.PathLike | tfds.core.DatasetBuilder, split: str, *,
                data_dir: str | os.PathLike | None = None):
  """A random-access source of one split (any TFDS split expression, e.g. 'train+validation').

  Args:
    dataset: a registered name with config ('ntu_rgbd/ntu60_xsub', 'utd_mhad'), the directory
      of a prepared dataset version (…/ntu_rgbd/<config>/1.0.0), or a TFDS builder.
    split: 'train', 'validation', 'test', or an expression such as 'train+validation' (the
      paper's training set when selecting on 'test').
    data_dir: the TFDS data dir, for registered names.
  """
  if isinstance(dataset, tfds.core.DatasetBuilder):
    return dataset.as_data_source(split)
  path = Path(os.fspath(dataset)).expanduser()
  if (path / "dataset_info.json").is_file():
    return tfds.builder_from_directory(path).as_data_source(split)
  # Registers the builders, so their names resolve.
  from amfi_jax.data.builders import ntu_rgbd_builder, utd_mhad_builder  # noqa: F401  pylint: disable=unused-import
  return tfds.data_source(os.fspath(dataset), split=split, data_dir=data_dir, download=False)


@dataclasses.dataclass(frozen=True)
class _Select:
  """Turns a TFDS record into the batch layout (picklable, so grain workers can run it)."""

  modalities: tuple[str, ...]
  skeleton_stream: str
  graph: graphs.SkeletonGraph | None
  skeleton_frames: int = 0
  clip_frames: int = 0
  clip_views: int = 1

  def __call__(self, index: int, record: Mapping[str, Any]) -> dict[str, np.ndarray]:
    out = samples.model_input(record, self.modalities, self.skeleton_stream, self.graph,
                              self.skeleton_frames, self.clip_frames, self.clip_views)
    out.update(label=np.int32(record["label"]), index=np.int32(index))
    return out


@dataclasses.dataclass(frozen=True)
class _Augment:
  """Random augmentation in training: clips (rotation / flip / scaling, SPEC §3.3) of image-like
  modalities when `clips_on`, after drawing `clip_frames` of their stored frames at random
  (`clips.select_clip_frames`) when > 0; skeletons (`skeleton_augment.augment`) when
  `skeleton_kwargs`."""

  clip_kwargs: tuple[tuple[str, Any], ...] = ()
  clips_on: bool = True
  skeleton_kwargs: tuple[tuple[str, Any], ...] | None = None
  clip_frames: int = 0
  crop: float = 0.0  # the frame choice's temporal crop (`clips.select_clip_frames`)
  depth_offset: float = 0.0  # depth clips only (`clips.offset_depth`)

  def __call__(self, example: dict[str, np.ndarray], rng: np.random.Generator):
    out = dict(example)
    if self.clips_on:
      for modality in _AUGMENTED:
        if modality in out:
          clip = out[modality]
          if self.clip_frames:
            clip = clips.select_clip_frames(clip, self.clip_frames, rng, crop=self.crop)
          clip = clips.augment_clip(clip, rng, **dict(self.clip_kwargs))
          if modality == "depth":
            clip = clips.offset_depth(clip, rng, self.depth_offset)
          out[modality] = clip
    if self.skeleton_kwargs is not None and "skeleton" in out:
      out["skeleton"] = _augment_skeleton(out["skeleton"], rng, dict(self.skeleton_kwargs))
    return out


def _augment_skeleton(x: np.ndarray, rng: np.random.Generator, kwargs: dict) -> np.ndarray:
  """Augments a (C, T, V, M) skeleton input. Joints, bones and motions (C = 6 or 12) are
  transformed as one body: the 3-channel groups stacked along M get the same random draw, and
  every transform is linear per point or moves whole frames, so the bones stay the bones of the
  augmented joints (except the independent noise of `jitter`), and the motions those of the
  augmented sequence up to the temporal crop's change of frame rate."""
  if x.shape[0] == 3:
    return skeleton_augment.augment(x, rng, **kwargs)
  groups = x.shape[0] // 3
  out = skeleton_augment.augment(np.concatenate(np.split(x, groups, axis=0), axis=-1), rng,
                                 **kwargs)
  return np.concatenate(np.split(out, groups, axis=-1), axis=0)


def _check(source, modalities: Sequence[str], skeleton_stream: str) -> tuple[str, ...]:
  modalities = tuple(modalities)
  unknown = set(modalities) - set(MODALITIES)
  if not modalities or unknown:
    raise ValueError(f"modalities must be a non-empty subset of {MODALITIES}, got {modalities}")
  if skeleton_stream not in SKELETON_STREAMS:
    raise ValueError(f"skeleton_stream must be one of {SKELETON_STREAMS}, got "
                     f"{skeleton_stream!r}")
  if len(source) == 0:
    raise ValueError("the data source is empty")
  record = source[0]
  for modality in modalities:
    if not any(f in record for f in samples.FEATURES[modality]):
      needed = " or ".join(samples.FEATURES[modality])
      raise ValueError(f"modality {modality!r} needs feature {needed}"
                       f", but the records have {sorted(record)} (was it built without it?)")
  return modalities


def _process(process_index: int | None, process_count: int | None) -> tuple[int, int]:
  index = jax.process_index() if process_index is None else process_index
  count = jax.process_count() if process_count is None else process_count
  if not 0 <= index < count:
    raise ValueError(f"process_index {index} outside [0, {count})")
  return index, count


def _read_options(num_threads: int, prefetch: int) -> grain.ReadOptions:
  # The prefetch buffer holds whole batches (batching happens before to_iter_dataset); grain's
  # default of 500 would hold ~10 GB of 32-clip batches.
  return grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch)


def train_dataset(source, *, batch_size: int, seed: int,
                  modalities: Sequence[str] = ("rgb", "skeleton"),
                  skeleton_stream: str = "joint", graph: graphs.SkeletonGraph | None = None,
                  skeleton_frames: int = 0, clip_frames: int = 0, clip_views: int = 1,
                  augment: bool = True,
                  augment_kwargs: Mapping[str, Any] | None = None,
                  skeleton_augment_kwargs: Mapping[str, Any] | None = None,
                  num_epochs: int | None = None, process_index: int | None = None,
                  process_count: int | None = None, num_threads: int = 4, prefetch: int = 4
                  ) -> grain.IterDataset:
  """The training pipeline of one process: shuffled, repeated, augmented, batched.

  Args:
    source: a random-access source (`open_source`, or any sequence of TFDS-style records).
    batch_size: PER-PROCESS batch size (global batch / process count).
    seed: shuffling and augmentation seed; the same seed gives the same batches.
    modalities: any of 'rgb', 'depth', 'skeleton'.
    skeleton_stream: one of SKELETON_STREAMS ('joint' C=3, 'joint_bone' C=6,
      'joint_bone_motion' C=12).
    graph: skeleton layout for bones; inferred from the joint count when None.
    skeleton_frames: > 0: skeletons resampled to this many frames (from their `frame_count`).
    clip_frames: > 0: clips reduced to this many of their stored frames, drawn at random from
      equal groups when `augment` (`clips.select_clip_frames`), the groups' middles otherwise.
    clip_views: without `augment`, each clip as this many views of fixed frames (as
      `eval_dataset` reads them, so an unaugmented stage trains on what evaluation sees).
    augment: apply `augment_clip` to 'rgb' and 'depth'.
    augment_kwargs: keyword arguments for `augment_clip`, `crop` for the random frame choice's
      temporal crop (`clips.select_clip_frames`; needs clip_frames > 0) and `depth_offset` for
      depth clips (`clips.offset_depth`).
    skeleton_augment_kwargs: when given, skeletons are augmented by `skeleton_augment.augment`
      with these arguments (None, the default, leaves them as 2s-AGCN does).
    num_epochs: None repeats forever; each epoch is reshuffled.
    process_index, process_count: this process's slice; default from JAX.
    num_threads, prefetch: batches read in parallel / buffered ahead.
  """
  modalities = _check(source, modalities, skeleton_stream)
  index, count = _process(process_index, process_count)
  clips_on = augment and any(m in _AUGMENTED for m in modalities)
  # With the clip augmentation the random frame choice is part of it; without, the fixed one.
  ds = grain.MapDataset.source(source).map_with_index(
      _Select(modalities, skeleton_stream, graph, skeleton_frames,
              *((0, 1) if clips_on else (clip_frames, clip_views))))
  ds = ds.seed(seed).shuffle().repeat(num_epochs)
  skeleton_on = skeleton_augment_kwargs is not None and "skeleton" in modalities
  if clips_on or skeleton_on:
    # Before slicing: the random stream is keyed by the GLOBAL position, so the augmentation of
    # an example does not depend on how many processes share the work.
    # The frame choice's and the depth values' settings, split off once; the rest are
    # augment_clip's.
    clip_kwargs = dict(augment_kwargs or {})
    crop, depth_offset = clip_kwargs.pop("crop", 0.0), clip_kwargs.pop("depth_offset", 0.0)
    ds = ds.random_map(_Augment(
        tuple(sorted(clip_kwargs.items())), clips_on,
        tuple(sorted(skeleton_augment_kwargs.items())) if skeleton_on else None,
        clip_frames if clips_on else 0, crop, depth_offset))
  # Process p reads the p-th block of every global batch, not every count-th example: the global
  # batch assembled in process order (`global_batch`) is then the one a single process reads, so
  # what depends on an example's place in it (the fusion head's feature dropout masks, mixup's
  # partner) does not depend on the process count either. One process: the stream itself.
  global_batches = len(ds) // (batch_size * count)
  ds = grain.MapDataset.range(global_batches * batch_size).map(
      _ProcessBlock(ds, batch_size, index, count))
  ds = ds.batch(batch_size, drop_remainder=True)
  return ds.to_iter_dataset(_read_options(num_threads, prefetch))


def _global_position(i: int, batch_size: int, process_index: int, process_count: int) -> int:
  """Global position of a process's i-th example when process p holds the contiguous block
  [b*G + p*batch_size, b*G + (p+1)*batch_size) of global batch b (G = batch_size × count)."""
  b, offset = divmod(i, batch_size)
  return (b * process_count + process_index) * batch_size + offset


@dataclasses.dataclass(frozen=True)
class _ProcessBlock:
  """Local position -> the example at its global position (`_global_position`)."""

  base: grain.MapDataset
  batch_size: int
  process_index: int
  process_count: int

  def __call__(self, i: int) -> dict[str, np.ndarray]:
    return self.base[_global_position(i, self.batch_size, self.process_index,
                                      self.process_count)]


def eval_num_batches(num_records: int, batch_size: int, process_count: int) -> int:
  """Batches each process yields in `eval_dataset` (the same for every process)."""
  return math.ceil(num_records / (batch_size * process_count))


def eval_dataset(source, *, batch_size: int, modalities: Sequence[str] = ("rgb", "skeleton"),
                 skeleton_stream: str = "joint", graph: graphs.SkeletonGraph | None = None,
                 skeleton_frames: int = 0, clip_frames: int = 0, clip_views: int = 1,
                 process_index: int | None = None, process_count: int | None = None,
                 num_threads: int = 4, prefetch: int = 4) -> grain.IterDataset:
  """Every record exactly once, in record order, the last global batch padded; clips reduced to
  `clip_frames` fixed frames, as `clip_views` views when > 1 (`samples.model_input`).

  All processes yield `eval_num_batches(...)` batches of `batch_size`. Global batch b holds
  records [b*G, (b+1)*G), G = batch_size * process_count, and process p holds the contiguous
  block [b*G + p*batch_size, ...), so `global_batch` assembles it in record order. Padding
  entries repeat record 0 with `mask` False and `index` -1.
  """
  modalities = _check(source, modalities, skeleton_stream)
  index, count = _process(process_index, process_count)
  base = grain.MapDataset.source(source).map_with_index(
      _Select(modalities, skeleton_stream, graph, skeleton_frames, clip_frames, clip_views))
  num_batches = eval_num_batches(len(base), batch_size, count)
  ds = grain.MapDataset.range(num_batches * batch_size).map(
      _Padded(base, len(base), batch_size, index, count))
  ds = ds.batch(batch_size, drop_remainder=True)
  return ds.to_iter_dataset(_read_options(num_threads, prefetch))


@dataclasses.dataclass(frozen=True)
class _Padded:
  """Local position -> the record of this process's block, or a masked copy of record 0."""

  base: grain.MapDataset
  num_records: int
  batch_size: int
  process_index: int
  process_count: int

  def __call__(self, i: int) -> dict[str, np.ndarray]:
    g = _global_position(i, self.batch_size, self.process_index, self.process_count)
    if g < self.num_records:
      return {**self.base[g], "mask": np.bool_(True)}
    return {**self.base[0], "index": np.int32(-1), "mask": np.bool_(False)}


def global_batch(batch: Mapping[str, np.ndarray], sharding: jax.sharding.Sharding
                 ) -> dict[str, jax.Array]:
  """Each process's local batch -> global `jax.Array`s sharded along the batch axis.

  `sharding` (e.g. `NamedSharding(mesh, PartitionSpec('data'))`) applies to every array; the
  global batch is the concatenation of the processes' batches in process order.
  """
  return {key: jax.make_array_from_process_local_data(sharding, np.asarray(value))
          for key, value in batch.items()}

