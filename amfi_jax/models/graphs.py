"""Skeleton graphs: joint layouts, bone lists and the fixed AGCN adjacency A_k.

Joints are numbered from 1 in the edge lists below, exactly as the datasets document them.
An edge (i, j) points "inward", from child joint i to its parent j (towards the graph centre).
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np


@dataclasses.dataclass(frozen=True)
class SkeletonGraph:
  """A skeleton layout and the facts the model and the preprocessing need about it.

  Attributes:
    name: registry name (`ntu`, `utd_mhad`, `coco17`).
    num_joints: V.
    inward_edges: (child, parent) pairs, 1-based.
    center: 1-based root joint; its bone is the zero vector (`center - center`).
    origin_joint: 1-based joint subtracted from every joint in pre-normalisation.
    spine_axis: (from, to) 1-based joints whose vector is rotated onto +z.
    shoulder_axis: (from, to) 1-based joints whose vector is rotated onto +x.
  """

  name: str
  num_joints: int
  inward_edges: tuple[tuple[int, int], ...]
  center: int
  origin_joint: int
  spine_axis: tuple[int, int]
  shoulder_axis: tuple[int, int]

  @property
  def bone_pairs(self) -> tuple[tuple[int, int], ...]:
    """(joint, parent) pairs for the bone stream: every inward edge plus (center, center)."""
    return tuple(sorted(self.inward_edges + ((self.center, self.center),)))

  @functools.cached_property
  def adjacency(self) -> np.ndarray:
    """A_k of the three partition subsets, float32 (3, V, V): identity, inward, outward.

    Entry [j, i] = 1 for each directed edge i -> j, then each non-empty column is divided by
    its sum (the reference `normalize_digraph`).
    """
    v = self.num_joints
    inward = [(i - 1, j - 1) for i, j in self.inward_edges]
    outward = [(j, i) for i, j in inward]
    return np.stack([np.eye(v), _normalized(inward, v), _normalized(outward, v)]).astype(np.float32)


def _normalized(edges, num_joints):
  a = np.zeros((num_joints, num_joints))
  for i, j in edges:
    a[j, i] = 1.0
  column_sums = a.sum(axis=0)
  scale = np.where(column_sums > 0, 1.0 / np.where(column_sums > 0, column_sums, 1.0), 0.0)
  return a * scale[None, :]


# NTU RGB+D (Kinect v2), 25 joints. Joint 21 (spine at the shoulders) is the centre, as in 2s-AGCN.
NTU = SkeletonGraph(
    name="ntu",
    num_joints=25,
    inward_edges=(
        (1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7), (9, 21), (10, 9),
        (11, 10), (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18),
        (20, 19), (22, 23), (23, 8), (24, 25), (25, 12),
    ),
    center=21,
    origin_joint=2,
    spine_axis=(1, 2),
    shoulder_axis=(5, 9),
)

# UTD-MHAD (Kinect v1), 20 joints: 1 head, 2 shoulder centre, 3 spine, 4 hip centre,
# 5-8 left shoulder/elbow/wrist/hand, 9-12 right, 13-16 left hip/knee/ankle/foot, 17-20 right.
# Rooted at the shoulder centre (joint 2), the Kinect-v1 counterpart of NTU's joint 21, so both
# graphs partition neighbours the same way. Pre-normalisation uses the spine (3) as origin, the
# hip-centre -> spine vector as +z and left -> right shoulder as +x, mirroring NTU's choices.
UTD_MHAD = SkeletonGraph(
    name="utd_mhad",
    num_joints=20,
    inward_edges=(
        (1, 2), (3, 2), (4, 3), (5, 2), (6, 5), (7, 6), (8, 7), (9, 2), (10, 9), (11, 10),
        (12, 11), (13, 4), (14, 13), (15, 14), (16, 15), (17, 4), (18, 17), (19, 18), (20, 19),
    ),
    center=2,
    origin_joint=3,
    spine_axis=(4, 3),
    shoulder_axis=(5, 9),
)

# COCO-17 keypoints, the layout of 2-D pose estimators (HRNet, ViTPose, ...) and of PYSKL's /
# MMAction2's 2-D pose pickles: 1 nose, 2-3 left/right eye, 4-5 left/right ear, 6-7 left/right
# shoulder, 8-9 elbows, 10-11 wrists, 12-13 hips, 14-15 knees, 16-17 ankles (left before right).
# Edges and centre are PYSKL's `coco` layout (its 0-based pairs plus one): rooted at the nose,
# hips hang from the shoulders, eyes from the nose and ears from the eyes.
# 2-D poses are normalised by the image size (`readers.pose_pickle`), never by `pre_normalize`;
# its three joint fields below only matter for 3-D keypoints in this layout (e.g. lifted poses):
# the nose as origin, left hip -> left shoulder as +z, left -> right shoulder as +x.
COCO17 = SkeletonGraph(
    name="coco17",
    num_joints=17,
    inward_edges=(
        (16, 14), (14, 12), (17, 15), (15, 13), (12, 6), (13, 7), (10, 8), (8, 6), (11, 9),
        (9, 7), (6, 1), (7, 1), (2, 1), (4, 2), (3, 1), (5, 3),
    ),
    center=1,
    origin_joint=1,
    spine_axis=(12, 6),
    shoulder_axis=(6, 7),
)

GRAPHS = {g.name: g for g in (NTU, UTD_MHAD, COCO17)}


def get_graph(name: str) -> SkeletonGraph:
  try:
    return GRAPHS[name]
  except KeyError:
    raise ValueError(f"Unknown skeleton graph {name!r}; expected one of {sorted(GRAPHS)}") from None
