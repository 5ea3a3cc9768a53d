"""UTD-MHAD (SPEC §3.4): names, classes, the subject split and readers for the .mat modalities."""

from __future__ import annotations

import dataclasses
import os
import re

import numpy as np
import scipy.io

from amfi_jax.data.readers import video
from amfi_jax.data.errors import DataFormatError

NUM_ACTIONS = 27
NUM_SUBJECTS = 8
NUM_TRIALS = 4
NUM_JOINTS = 20
DEPTH_HW = (240, 320)
MAX_FRAMES = 125  # the longest skeleton sequence of the dataset
TRAIN_SUBJECTS: tuple[int, ...] = (1, 3, 5, 7)
KINDS = ("color", "depth", "skeleton", "inertial")
# The release's file of each modality of sample X (`X_skeleton.mat`, ...) and the folder the
# release ships it in.
FILE_SUFFIXES = {"skeleton": "_skeleton.mat", "depth": "_depth.mat", "rgb": "_color.avi"}
RELEASE_FOLDERS = {"skeleton": "Skeleton", "depth": "Depth", "rgb": "RGB"}

# The 27 actions, a1..a27, as named by the dataset's authors.
UTD_MHAD_CLASS_NAMES: tuple[str, ...] = (
    "right arm swipe to the left", "right arm swipe to the right", "right hand wave",
    "two hand front clap", "right arm throw", "cross arms in the chest", "basketball shoot",
    "right hand draw x", "right hand draw circle (clockwise)",
    "right hand draw circle (counter clockwise)", "draw triangle", "bowling (right hand)",
    "front boxing", "baseball swing from right", "tennis right hand forehand swing",
    "arm curl (two arms)", "tennis serve", "two hand push", "right hand knock on door",
    "right hand catch an object", "right hand pick up and throw", "jogging in place",
    "walking in place", "sit to stand", "stand to sit", "forward lunge (left foot forward)",
    "squat (two arms stretch out)",
)

_NAME_RE = re.compile(r"a(\d+)_s(\d+)_t(\d+)(?:_([a-z]+))?")


@dataclasses.dataclass(frozen=True)
class UTDName:
  """The fields of a UTD-MHAD file name `a{action}_s{subject}_t{trial}_{kind}` (1-based)."""

  action: int
  subject: int
  trial: int

  @property
  def label(self) -> int:
    """0-based class index (action - 1)."""
    return self.action - 1

  @property
  def name(self) -> str:
    """The sample name without the modality, e.g. 'a1_s1_t1'."""
    return f"a{self.action}_s{self.subject}_t{self.trial}"

  def __str__(self) -> str:
    return self.name


def parse_utd_name(path: str | os.PathLike) -> UTDName:
  """Parses `a{action}_s{subject}_t{trial}` with an optional `_{kind}[.ext]` (a path is fine).

  Raises:
    DataFormatError: naming the input, for another pattern, an unknown kind, or a field out of
      range (action 1-27, subject 1-8, trial 1-4).
  """
  text = os.fspath(path)
  base = os.path.basename(text)
  stem = base.split(".", 1)[0]
  match = _NAME_RE.fullmatch(stem)
  if match is None:
    raise DataFormatError(text, "expected a UTD-MHAD name a{action}_s{subject}_t{trial}_{kind}")
  action, subject, trial = (int(g) for g in match.groups()[:3])
  kind = match.group(4)
  if kind is not None and kind not in KINDS:
    raise DataFormatError(text, f"expected a kind in {list(KINDS)}, got {kind!r}")
  for field, value, limit in (("action", action, NUM_ACTIONS), ("subject", subject, NUM_SUBJECTS),
                              ("trial", trial, NUM_TRIALS)):
    if not 1 <= value <= limit:
      raise DataFormatError(text, f"expected {field} 1-{limit}, got {value}")
  return UTDName(action=action, subject=subject, trial=trial)


def split_of(name: UTDName | str | os.PathLike) -> str:
  """'train' for subjects 1, 3, 5, 7 and 'test' for 2, 4, 6, 8 (the dataset's protocol)."""
  if not isinstance(name, UTDName):
    name = parse_utd_name(name)
  return "train" if name.subject in TRAIN_SUBJECTS else "test"


def _load_variable(path: str, variable: str) -> np.ndarray:
  try:
    contents = scipy.io.loadmat(path, variable_names=[variable])
  except FileNotFoundError:
    raise  # a missing file is not a malformed one
  except Exception as e:  # pylint: disable=broad-except
    # NotImplementedError: a MATLAB v7.3 (HDF5) file; ValueError, TypeError, OSError,
    # IndexError, MatReadError...: not a .mat file, or a corrupt one.
    raise DataFormatError(path, f"cannot read as a MATLAB .mat file: {e}") from None
  if variable not in contents:
    # Only `variable` was loaded; list what the file holds for the message.
    found = sorted(name for name, _, _ in scipy.io.whosmat(path))
    raise DataFormatError(path, f"expected a variable {variable!r}, found {found or 'none'}")
  return np.asarray(contents[variable])


def read_skeleton_mat(path: str | os.PathLike) -> np.ndarray:
  """Reads `d_skel` (20, 3, T) of a `*_skeleton.mat` file.

  Returns:
    float32 (T, 20, 3): joints in the dataset's order (see graphs.UTD_MHAD), metres.

  Raises:
    DataFormatError: naming the file, when it is not a readable .mat file, lacks `d_skel`, or
      `d_skel` is not a real (20, 3, T) array with T >= 1, or holds NaN or infinite values.
  """
  path = os.fspath(path)
  skel = _load_variable(path, "d_skel")
  if (skel.ndim != 3 or skel.shape[:2] != (NUM_JOINTS, 3) or skel.shape[2] < 1
      or not (np.issubdtype(skel.dtype, np.floating) or np.issubdtype(skel.dtype, np.integer))):
    raise DataFormatError(path, f"expected d_skel as a real ({NUM_JOINTS}, 3, T) array with "
                          f"T >= 1, got {skel.dtype} {skel.shape}")
  joints = np.ascontiguousarray(np.transpose(skel, (2, 0, 1)), dtype=np.float32)
  bad = np.argwhere(~np.isfinite(joints))
  if len(bad):
    frame, joint, _ = bad[0]
    raise DataFormatError(path, f"d_skel has {len(bad)} non-finite (NaN or infinite) "
                          f"coordinate(s), the first at frame {frame + 1}, joint {joint + 1}")
  return joints


def read_depth_mat(path: str | os.PathLike) -> np.ndarray:
  """Reads `d_depth` (240, 320, T) of a `*_depth.mat` file.

  Returns:
    uint16 (T, 240, 320), millimetres, background 0.

  Raises:
    DataFormatError: naming the file, when it is not a readable .mat file, lacks `d_depth`, or
      `d_depth` is not an integer (240, 320, T) array with T >= 1 and values within uint16.
  """
  path = os.fspath(path)
  depth = _load_variable(path, "d_depth")
  if (depth.ndim != 3 or depth.shape[:2] != DEPTH_HW or depth.shape[2] < 1
      or not np.issubdtype(depth.dtype, np.integer)):
    raise DataFormatError(path, f"expected d_depth as an integer ({DEPTH_HW[0]}, {DEPTH_HW[1]}, T) "
                          f"array with T >= 1, got {depth.dtype} {depth.shape}")
  if depth.dtype != np.uint16 and (depth.min() < 0 or depth.max() > np.iinfo(np.uint16).max):
    raise DataFormatError(path, f"expected d_depth values in 0-65535, got {depth.min()}-"
                          f"{depth.max()}")
  return np.ascontiguousarray(np.transpose(depth, (2, 0, 1)), dtype=np.uint16)


def read_color_video(path: str | os.PathLike, k: int,
                     size: tuple[int, int] | None = None) -> tuple[np.ndarray, int]:
  """K frames at equal intervals of a `*_color.avi` (640x480); see video.read_video_frames."""
  return video.read_video_frames(path, k, size=size)
