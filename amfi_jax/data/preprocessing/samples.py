"""One raw sample → stored features → model input, in one place for builders, pipeline and predict.

Two steps, because the builders store what is expensive and fixed (decoded, cropped clips;
normalised joints) while what a run may choose (joints alone or joints + bones) is derived when a
record is read:
  read_ntu_sample / read_utd_sample  raw files → the features a dataset record stores
  model_input                        stored features → the arrays a model consumes
`amfi_jax.predict` chains the two on a user's raw files, so a prediction sees exactly what
training saw.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from amfi_jax.data.errors import DataFormatError
from amfi_jax.data.preprocessing import clips, skeletons
from amfi_jax.data.readers import ntu_skeleton, utd_mhad, video
from amfi_jax.models import graphs

MODALITIES = ("rgb", "depth", "skeleton", "rgb_features", "skeleton_features")
# The skeleton stream's inputs and their channels: joints (3), joints then bones (6), or those
# then their frame-to-frame motions (12: joints, bones, joint motion, bone motion; PYSKL's j, b,
# jm, bm).
# The raw sample formats read outside a dataset build (`predict`, `streaming`).
DATASET_NTU, DATASET_UTD_MHAD = "NTU", "UTD-MHAD"
SKELETON_STREAM_CHANNELS = {"joint": 3, "joint_bone": 6, "joint_bone_motion": 12}
SKELETON_STREAMS = tuple(SKELETON_STREAM_CHANNELS)
# The record features that hold each modality (`clip` in NTU builds, `rgb` in UTD-MHAD ones).
# `*_features`: pooled stream features (C,) of cached-feature sources (`training.feature_cache`).
FEATURES = {"rgb": ("clip", "rgb"), "depth": ("depth",), "skeleton": ("skeleton",),
            "rgb_features": ("rgb_features",), "skeleton_features": ("skeleton_features",)}
# The clip modalities and the dtype of their model inputs.
_CLIP_DTYPES = {"rgb": np.uint8, "depth": np.float32}


def load_clip(video_path: str, seq: ntu_skeleton.SkeletonSequence, *, clip_length: int,
              crop_size: int, image_size: int) -> tuple[np.ndarray, int]:
  """K equally spaced frames, cropped around the performers of `seq` and resized to S x S
  (uint8), and the video's frame count."""
  frames, total = video.read_video_frames(video_path, clip_length)
  if total < video.MIN_DECODABLE_FRACTION * seq.num_frames:
    raise DataFormatError(video_path, f"{total} decodable frames, but its skeleton file has "
                          f"{seq.num_frames} (below {video.MIN_DECODABLE_FRACTION:.0%}): "
                          "truncated or corrupt video, or the skeleton of another sample")
  box = clips.crop_box(seq.color_xy, frames.shape[1:3], crop_size=crop_size)
  clip = clips.crop_and_resize(frames, box, image_size)
  return np.ascontiguousarray(clip, dtype=np.uint8), int(total)


def read_ntu_sample(skeleton_path: str, video_path: str | None, *, max_frames: int,
                    clip_length: int = 0, crop_size: int = 0, image_size: int = 0
                    ) -> dict[str, np.ndarray]:
  """The stored features of an NTU sample: `skeleton` (3, T, 25, 2) and `frame_count`; with a
  video also `clip` (K, S, S, 3) uint8 and `video_frame_count`."""
  seq = ntu_skeleton.read_skeleton(skeleton_path)
  out = ntu_skeleton_features(seq, max_frames)
  if video_path is not None:
    clip, total = load_clip(video_path, seq, clip_length=clip_length, crop_size=crop_size,
                            image_size=image_size)
    out["clip"] = clip
    out["video_frame_count"] = np.int32(total)
  return out


def ntu_skeleton_features(seq: ntu_skeleton.SkeletonSequence, max_frames: int
                          ) -> dict[str, np.ndarray]:
  """`skeleton` (3, max_frames, 25, 2) and `frame_count` of a parsed NTU sequence (a file, or a
  window of streamed frames)."""
  # Legal in the file format, but a model would answer confidently from all-zero input.
  if seq.num_frames == 0:
    raise DataFormatError(seq.path, "the frame count is 0: no skeleton to read", line=1)
  if not seq.body_counts.any():
    raise DataFormatError(seq.path, f"no body in any of its {seq.num_frames} frames (NTU "
                          "lists such samples as missing skeletons; leave them out)")
  return {"skeleton": np.asarray(skeletons.preprocess_ntu_skeleton(seq, max_frames=max_frames),
                                 np.float32),
          "frame_count": np.int32(seq.num_frames)}


def utd_skeleton_features(xyz: np.ndarray, max_frames: int, source: str
                          ) -> dict[str, np.ndarray]:
  """`skeleton` (3, max_frames, 20, 1) and `frame_count` of UTD-MHAD joints (T, 20, 3) (a
  `_skeleton.mat` file, or a window of streamed frames; `source` names it in errors)."""
  if xyz.shape[0] > max_frames:
    raise DataFormatError(source, f"{xyz.shape[0]} frames exceed max_frames={max_frames}")
  return {"skeleton": np.asarray(skeletons.preprocess_utd_skeleton(xyz, max_frames), np.float32),
          "frame_count": np.int32(xyz.shape[0])}


def read_utd_sample(skeleton_path: str, depth_path: str | None, *, max_frames: int,
                    clip_length: int, image_size: int, rgb_path: str | None = None,
                    depth_values: str = "absolute", depth_frames: str = "sample",
                    depth_views: str = "body") -> dict[str, np.ndarray]:
  """The stored features of a UTD-MHAD sample: `skeleton` (3, T, 20, 1), `frame_count`, with a
  depth file `depth` (K, S, S, C) in [0, 1] (C = 1, or 2 for `depth_views="body_arms"`:
  `clips.crop_depth_views`) and `depth_frame_count`, with a colour video `rgb` (K, S, S, 3) uint8
  and `video_frame_count`."""
  if depth_frames not in clips.DEPTH_FRAMES:
    raise ValueError(f"depth_frames must be one of {clips.DEPTH_FRAMES}, got {depth_frames!r}")
  if depth_views not in clips.DEPTH_VIEWS:
    raise ValueError(f"depth_views must be one of {clips.DEPTH_VIEWS}, got {depth_views!r}")
  xyz = utd_mhad.read_skeleton_mat(skeleton_path)
  out = utd_skeleton_features(xyz, max_frames, skeleton_path)
  if depth_path is not None:
    depth = utd_mhad.read_depth_mat(depth_path)
    if depth_views != "body" and len(depth) != len(xyz):
      # The arms crop is placed by the skeleton: both must be the same recording.
      raise DataFormatError(depth_path, f"{len(depth)} depth frames but {len(xyz)} skeleton "
                            f"frames in {skeleton_path}")
    cropped = clips.crop_depth_views(depth, xyz, image_size, depth_values, depth_views)
    if depth_frames == "segment_mean":
      frames = clips.segment_means(cropped, clip_length)
    elif depth_frames == "spread":
      frames = cropped[clips.spread_frame_indices(len(depth), clip_length)]
    else:
      frames = cropped[video.sample_frame_indices(len(depth), clip_length)]
    out["depth"] = np.ascontiguousarray(frames, dtype=np.float32)
    out["depth_frame_count"] = np.int32(len(depth))
  if rgb_path is not None:
    frames, total = video.read_video_frames(rgb_path, clip_length)
    height, width = frames.shape[1:3]
    # No colour-space joint coordinates in UTD-MHAD, and the subject stands centred in the
    # 640x480 view: take the central full-height square.
    side = min(height, width)
    box = ((height - side) // 2, (width - side) // 2, side)
    out["rgb"] = np.ascontiguousarray(clips.crop_and_resize(frames, box, image_size),
                                      dtype=np.uint8)
    out["video_frame_count"] = np.int32(total)
  return out


def graph_for(num_joints: int) -> graphs.SkeletonGraph:
  """The skeleton layout a joint count identifies: NTU 25, UTD-MHAD 20."""
  for graph in graphs.GRAPHS.values():
    if graph.num_joints == num_joints:
      return graph
  raise ValueError(f"no skeleton graph with V={num_joints} joints")


def skeleton_input(joints: np.ndarray, skeleton_stream: str,
                   graph: graphs.SkeletonGraph | None = None, *, frame_count: int | None = None,
                   num_frames: int = 0) -> np.ndarray:
  """(3, T, V, M) stored joints → the skeleton stream's (C, T', V, M) float32 input: the joints,
  joints then bones (C = 6) for `joint_bone`, and then the motions of both (C = 12,
  `skeletons.frame_motion`, zero after the first `frame_count` frames) for `joint_bone_motion`.
  With `num_frames` > 0 the sequence's first `frame_count` frames are resampled to
  T' = `num_frames` (`skeletons.resample_frames`)."""
  if skeleton_stream not in SKELETON_STREAMS:
    raise ValueError(f"skeleton_stream must be one of {SKELETON_STREAMS}, got "
                     f"{skeleton_stream!r}")
  joints = np.asarray(joints, np.float32)
  if num_frames > 0:
    if frame_count is None:
      raise ValueError("config.data.skeleton_frames > 0 resamples each sequence from its "
                       "stored frame count, but these records have no `frame_count` feature; "
                       "set config.data.skeleton_frames=0 or rebuild the dataset")
    joints = skeletons.resample_frames(joints, frame_count, num_frames)
    frame_count = num_frames
  if skeleton_stream == "joint":
    return joints
  graph = graph or graph_for(joints.shape[-2])
  out = np.concatenate([joints, skeletons.joints_to_bones(joints, graph)], axis=0)
  if skeleton_stream == "joint_bone":
    return out
  return np.concatenate([out, skeletons.frame_motion(out, frame_count)], axis=0)


def model_input(features: Mapping[str, Any], modalities: Sequence[str], skeleton_stream: str,
                graph: graphs.SkeletonGraph | None = None, skeleton_frames: int = 0,
                clip_frames: int = 0, clip_views: int = 1) -> dict[str, np.ndarray]:
  """Stored features (a dataset record or `read_*_sample`'s output) → {modality: model input}:
  `rgb` uint8 (K, S, S, 3), `depth` float32 (K, S, S, C), `skeleton` float32 (C, T, V, M), T
  resampled to `skeleton_frames` when > 0, K reduced to `clip_frames` when > 0 (the middle frame
  of each group, `clips.select_clip_frames`; training draws them at random instead), as
  `clip_views` such clips stacked on a first axis when > 1 (multi-view testing)."""
  out = {}
  for modality in modalities:
    value = next(features[f] for f in FEATURES[modality] if f in features)
    if modality == "skeleton":
      frame_count = features.get("frame_count")
      out["skeleton"] = skeleton_input(
          value, skeleton_stream, graph, num_frames=skeleton_frames,
          frame_count=None if frame_count is None else int(frame_count))
    elif modality in _CLIP_DTYPES:
      out[modality] = clips.select_clip_frames(np.asarray(value, _CLIP_DTYPES[modality]),
                                               clip_frames, views=clip_views)
    else:  # cached stream features: one vector per sample, no frames
      out[modality] = np.asarray(value, np.float32)
  return out
