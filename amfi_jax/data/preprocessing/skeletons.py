"""Skeleton preprocessing exactly as the 2s-AGCN reference (lshiwjx/2s-AGCN, SPEC §3.2).

Reference functions and their counterparts here:
  data_gen/ntu_gendata.py  read_xyz + get_nonzero_std   -> select_bodies
  data_gen/preprocess.py   pre_normalization            -> pre_normalize
  data_gen/rotation.py     rotation_matrix, angle_between -> _rotation_matrix, _angle_between
  data_gen/gen_bone_data.py                              -> joints_to_bones

The reference decides "empty" by an exact zero SUM (of a frame, a person, a sample), not by
all-zero values; that convention is kept everywhere below so that results agree with it up to
float rounding. Where the reference stores into its float32 array between steps, so does this
code; the rotation matrices are float64, as in the reference.
"""

from __future__ import annotations

import math

import numpy as np

from amfi_jax.data.readers import utd_mhad
from amfi_jax.data.readers.ntu_skeleton import SkeletonSequence
from amfi_jax.models.graphs import NTU, UTD_MHAD, SkeletonGraph

MAX_FRAMES = 300
NUM_PERSONS = 2
MAX_BODIES = 4  # bodies read per frame (Kinect lists up to 6; the reference keeps the first 4)


def body_energy(body_xyz: np.ndarray) -> float:
  """Reference `get_nonzero_std`: sum over x, y, z of the coordinate's std over non-empty frames.

  Args:
    body_xyz: (T, V, 3) one body's joints; a frame whose coordinates sum to exactly 0 is empty.
  """
  valid = body_xyz.sum(-1).sum(-1) != 0
  s = body_xyz[valid]
  if len(s) == 0:
    return 0.0
  return float(s[:, :, 0].std() + s[:, :, 1].std() + s[:, :, 2].std())


def select_xyz(xyz: np.ndarray, max_frames: int = MAX_FRAMES, num_persons: int = NUM_PERSONS,
               max_bodies: int = MAX_BODIES) -> np.ndarray:
  """`select_bodies` on a bare coordinate array (T, B, V, 3); see there."""
  if num_persons > max_bodies:
    raise ValueError(f"num_persons={num_persons} exceeds max_bodies={max_bodies}")
  num_frames, num_bodies, num_joints, _ = xyz.shape
  # Always max_bodies slots, as the reference: empty slots take part in the energy ranking, which
  # decides ties (see below).
  data = np.zeros((max_bodies, num_frames, num_joints, 3), np.float64)
  kept = min(num_bodies, max_bodies)
  data[:kept] = np.transpose(xyz[:, :kept, :, :3], (1, 0, 2, 3))
  energy = np.array([body_energy(b) for b in data])
  # The reference takes argsort()[::-1]: descending, and among equal energies the LATER slot
  # first. numpy's default sort is stable for a handful of elements (insertion sort below 16),
  # so a stable sort reproduces it on every platform. This matters for a body seen in a single
  # frame (energy 0): an empty later slot outranks it, as in the reference.
  order = np.argsort(energy, kind="stable")[::-1][:num_persons]
  chosen = data[order]  # (M, T, V, 3)
  out = np.zeros((3, max_frames, num_joints, num_persons), np.float32)
  t = min(num_frames, max_frames)  # the reference would fail on T > 300; truncate instead
  out[:, :t] = np.transpose(chosen[:, :t], (3, 1, 2, 0))
  return out


def select_bodies(seq: SkeletonSequence, max_frames: int = MAX_FRAMES,
                  num_persons: int = NUM_PERSONS, max_bodies: int = MAX_BODIES) -> np.ndarray:
  """Reference `read_xyz`: the `num_persons` most active bodies of a sequence.

  Bodies are taken by their position in each frame's list (slot b of every frame forms body b),
  at most `max_bodies` of them; each is ranked by `body_energy` and the top `num_persons` kept.

  Returns:
    float32 (3, max_frames, V, num_persons); frames beyond the file's count are zero, frames
    beyond `max_frames` are dropped.
  """
  return select_xyz(seq.xyz, max_frames=max_frames, num_persons=num_persons,
                    max_bodies=max_bodies)


def _angle_between(v1: np.ndarray, v2: np.ndarray) -> float:
  """Reference `angle_between`: 0 for a (near-)zero vector, else arccos of the clipped cosine."""
  if np.abs(v1).sum() < 1e-6 or np.abs(v2).sum() < 1e-6:
    return 0.0
  v1_u = v1 / np.linalg.norm(v1)
  v2_u = v2 / np.linalg.norm(v2)
  return float(np.arccos(np.clip(np.dot(v1_u, v2_u), -1.0, 1.0)))


def _rotation_matrix(axis: np.ndarray, theta: float) -> np.ndarray:
  """Reference `rotation_matrix` (Euler-Rodrigues, counter-clockwise about `axis`), float64."""
  if np.abs(axis).sum() < 1e-6 or abs(theta) < 1e-6:
    return np.eye(3)
  axis = np.asarray(axis, np.float64)
  axis = axis / math.sqrt(np.dot(axis, axis))
  a = math.cos(theta / 2.0)
  b, c, d = -axis * math.sin(theta / 2.0)
  aa, bb, cc, dd = a * a, b * b, c * c, d * d
  bc, ad, ac, ab, bd, cd = b * c, a * d, a * c, a * b, b * d, c * d
  return np.array([[aa + bb - cc - dd, 2 * (bc + ad), 2 * (bd - ac)],
                   [2 * (bc - ad), aa + cc - bb - dd, 2 * (cd + ab)],
                   [2 * (bd + ac), 2 * (cd - ab), aa + dd - bb - cc]])


def _align(sample: np.ndarray, start: int, end: int, target: np.ndarray) -> None:
  """Rotates `sample` (M, T, V, C) in place so that joint end - joint start of person 0 in frame
  0 points along `target`. Only non-empty frames of non-empty persons are rotated (reference)."""
  v = sample[0, 0, end] - sample[0, 0, start]  # float32, as the reference's view arithmetic
  # np.cross with an integer target promotes to float64 in the reference as well.
  axis = np.cross(v.astype(np.float64), target)
  matrix = _rotation_matrix(axis, _angle_between(v, target))
  person_ok = sample.sum(axis=(1, 2, 3)) != 0  # (M,)
  frame_ok = sample.sum(-1).sum(-1) != 0  # (M, T)
  rotate = frame_ok & person_ok[:, None]
  if rotate.any():
    joints = sample[rotate].astype(np.float64)  # (n, V, C)
    sample[rotate] = (joints @ matrix.T).astype(np.float32)


def _pad_person(person: np.ndarray) -> None:
  """Step 1 for one person (T, V, C), in place: move non-empty frames to the front when frame 0
  is empty, then repeat the valid prefix over the empty tail."""
  if person.sum() == 0:
    return
  if person[0].sum() == 0:
    valid = person.sum(-1).sum(-1) != 0
    tmp = person[valid].copy()
    person[...] = 0
    person[:len(tmp)] = tmp
  frame_sums = person.sum(-1).sum(-1)
  num_frames = len(person)
  # The first empty frame after which nothing remains; empty frames in the middle stay empty.
  for i_f in np.flatnonzero(frame_sums == 0):
    if person[i_f:].sum() == 0:
      if i_f == 0:  # only possible through float cancellation; the reference would divide by 0
        return
      person[i_f:] = person[np.arange(num_frames - i_f) % i_f]
      return


def pre_normalize(data: np.ndarray, graph: SkeletonGraph = NTU) -> np.ndarray:
  """Reference `pre_normalization` (SPEC §3.2) with the joints taken from `graph`.

  Steps, per sample: (1) per person, shift non-empty frames to the front if frame 0 is empty and
  fill the empty tail by repeating the valid prefix; (2) subtract `graph.origin_joint` of person 0
  in every frame from every non-zero joint; (3) rotate the `graph.spine_axis` vector of person 0,
  frame 0 onto +z; (4) rotate the `graph.shoulder_axis` vector onto +x.

  Args:
    data: (N, C=3, T, V, M) joint coordinates, any float dtype; converted to float32 first, the
      dtype the reference works in.
    graph: skeleton layout giving the joints of steps 2-4.

  Returns:
    float32 (N, C, T, V, M), a new array.
  """
  if data.ndim != 5 or data.shape[1] != 3 or data.shape[3] != graph.num_joints:
    raise ValueError(f"expected (N, 3, T, {graph.num_joints}, M) for graph {graph.name!r}, got "
                     f"shape {data.shape}")
  s = np.ascontiguousarray(np.transpose(data, (0, 4, 2, 3, 1)), dtype=np.float32)  # N, M, T, V, C
  origin = graph.origin_joint - 1
  z_from, z_to = (j - 1 for j in graph.spine_axis)
  x_from, x_to = (j - 1 for j in graph.shoulder_axis)
  z_target = np.array([0, 0, 1])
  x_target = np.array([1, 0, 0])
  for sample in s:
    for person in sample:
      _pad_person(person)
    if sample.sum() == 0:
      continue
    center = sample[0, :, origin:origin + 1, :].copy()  # (T, 1, C), person 0 in every frame
    for person in sample:
      if person.sum() == 0:
        continue
      mask = (person.sum(-1) != 0)[..., None]
      person[...] = (person - center) * mask
    if sample.sum() == 0:
      continue
    _align(sample, z_from, z_to, z_target)
    if sample.sum() == 0:
      continue
    _align(sample, x_from, x_to, x_target)
  return np.ascontiguousarray(np.transpose(s, (0, 4, 2, 3, 1)))


def joints_to_bones(data: np.ndarray, graph: SkeletonGraph = NTU) -> np.ndarray:
  """Reference `gen_bone_data`: bone = joint - parent joint for every pair of `graph.bone_pairs`.

  Args:
    data: (..., C, T, V, M) joints.

  Returns:
    The same shape and dtype; the root's bone (center, center) is zero.
  """
  if data.shape[-2] != graph.num_joints:
    raise ValueError(f"expected V={graph.num_joints} joints on axis -2 for graph {graph.name!r}, "
                     f"got shape {data.shape}")
  child = np.array([c - 1 for c, _ in graph.bone_pairs])
  parent = np.array([p - 1 for _, p in graph.bone_pairs])
  bones = data.copy()
  bones[..., child, :] = data[..., child, :] - data[..., parent, :]
  return bones


def frame_motion(data: np.ndarray, num_valid: int | None = None) -> np.ndarray:
  """PYSKL's motion streams: x[t+1] − x[t] of a (C, T, V, M) skeleton, zero from the last valid
  frame on (the last of `num_valid`, default all T), so padding adds no jump."""
  valid = data.shape[1] if num_valid is None else int(np.clip(num_valid, 0, data.shape[1]))
  motion = np.zeros_like(data)
  if valid > 1:
    motion[:, :valid - 1] = data[:, 1:valid] - data[:, :valid - 1]
  return motion


def preprocess_ntu_skeleton(seq: SkeletonSequence, max_frames: int = MAX_FRAMES) -> np.ndarray:
  """One NTU sample as the reference's training data: float32 (3, max_frames, 25, 2)."""
  return pre_normalize(select_bodies(seq, max_frames=max_frames)[None], NTU)[0]


def resample_frames(x: np.ndarray, num_valid: int, num_frames: int) -> np.ndarray:
  """The first `num_valid` frames of a (C, T, V, M) skeleton, linearly resampled to `num_frames`.

  Sequences of 41–125 frames all become `num_frames` long, the whole action spread over them,
  instead of being padded by repetition (one to three cycles of it) to a fixed length.
  """
  num_valid = int(min(max(num_valid, 1), x.shape[1]))
  pos = np.linspace(0.0, num_valid - 1, num_frames)
  lo = np.floor(pos).astype(np.int64)
  hi = np.minimum(lo + 1, num_valid - 1)
  w = (pos - lo).astype(np.float32)[None, :, None, None]
  return (x[:, lo] * (1.0 - w) + x[:, hi] * w).astype(np.float32)


def preprocess_utd_skeleton(xyz: np.ndarray, max_frames: int = utd_mhad.MAX_FRAMES) -> np.ndarray:
  """A UTD-MHAD skeleton as AGCN input, prepared exactly like an NTU one (one person).

  The sequence is placed at the start of `max_frames` zero frames (longer ones are truncated),
  then `pre_normalize` with the UTD-MHAD graph fills the tail by repetition, centres on the
  spine and rotates hip-centre -> spine onto +z and left -> right shoulder onto +x.

  Args:
    xyz: (T, 20, 3), e.g. from read_skeleton_mat.

  Returns:
    float32 (3, max_frames, 20, 1).
  """
  xyz = np.asarray(xyz)
  if xyz.ndim != 3 or xyz.shape[1:] != (UTD_MHAD.num_joints, 3):
    raise ValueError(f"expected (T, {UTD_MHAD.num_joints}, 3) joints, got shape {xyz.shape}")
  selected = select_xyz(xyz[:, None], max_frames=max_frames, num_persons=1, max_bodies=1)
  return pre_normalize(selected[None], UTD_MHAD)[0]
