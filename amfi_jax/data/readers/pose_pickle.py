"""Pose pickles of PYSKL and MMAction2: 2-D COCO-17 keypoints of any pose estimator.

The format (PYSKL `tools/data/README.md`; MMAction2's skeleton datasets read and write the same)
is a pickled dict:

  split        {split name: [sample name, ...]}, e.g. xsub_train, xsub_val, xview_train, xview_val
  annotations  [one dict per sample]:
    frame_dir       str, the sample name (NTU: SsssCcccPpppRrrrAaaa)
    label           int, the 0-based class
    total_frames    int, T
    img_shape       (height, width) of the video frames in pixels
    keypoint        float (M, T, 17, 2), x and y in pixels of M persons in T frames
    keypoint_score  float (M, T, 17), the pose estimator's confidence per keypoint

Other fields (`original_shape`, ...) are ignored. Unpickling can run arbitrary code, and these
files are downloads: the reader rebuilds only built-in containers, strings, numbers and numpy
arrays, and refuses a pickle that names any other class.

`PosePickle.skeleton_features` turns one annotation into the stored features of a skeleton
record, the AGCN input layout of the NTU and UTD-MHAD builders, (C, T, V, M):
  - channels (x, y, score), x and y normalised by the image size as PYSKL's PreNormalize2D does,
    (x - w/2) / (w/2) and (y - h/2) / (h/2), so the frame spans [-1, 1]; a keypoint whose score
    is at most SCORE_THRESHOLD (PreNormalize2D's 0.01) gets x = y = 0 and keeps its score;
  - the `num_persons` persons with the largest summed score, in that order; absent ones zero;
  - T = `max_frames`: a shorter sequence is repeated from its start to fill them (2s-AGCN's
    padding), a longer one linearly resampled (`skeletons.resample_frames`), never truncated.
"""

from __future__ import annotations

import dataclasses
import numbers
import os
import pickle
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from amfi_jax.data.errors import DataFormatError
from amfi_jax.data.preprocessing import skeletons

NUM_JOINTS = 17  # COCO-17, graphs.COCO17
SCORE_THRESHOLD = 0.01
CHANNELS = ("x", "y", "score")
REQUIRED_FIELDS = ("frame_dir", "label", "total_frames", "img_shape", "keypoint",
                   "keypoint_score")

# What a pose pickle may name besides the built-in containers: numpy arrays, dtypes and scalars
# (numpy 1.x pickles say `numpy.core`, numpy 2 `numpy._core`), and what protocol 2 uses for bytes.
_ALLOWED_GLOBALS = frozenset({
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("builtins", "set"), ("builtins", "frozenset"), ("collections", "OrderedDict"),
    ("_codecs", "encode"),
})


class _ArraysOnlyUnpickler(pickle.Unpickler):

  def find_class(self, module: str, name: str):
    if (module, name) not in _ALLOWED_GLOBALS:
      raise pickle.UnpicklingError(
          f"refusing to load {module}.{name}: a pose pickle holds only dicts, lists, strings, "
          "numbers and numpy arrays")
    return super().find_class(module, name)


@dataclasses.dataclass(frozen=True, eq=False)
class PosePickle:
  """A pose pickle whose structure has been checked: every split names annotated samples.

  The fields of each annotation are checked when it is used (`label`, `skeleton_features`), so
  a build can skip one malformed sample instead of refusing the whole file.

  Attributes:
    path: the file read.
    splits: {split name: sample names, in file order}.
    annotations: {frame_dir: annotation dict}, in file order.
  """

  path: str
  splits: dict[str, tuple[str, ...]]
  annotations: dict[str, dict[str, Any]]

  def split(self, split_name: str) -> tuple[str, ...]:
    """The sample names of one split, e.g. 'xsub_train'."""
    if split_name not in self.splits:
      raise DataFormatError(self.path, f"field 'split' has no split {split_name!r}; the file's "
                            f"splits are {sorted(self.splits)}")
    return self.splits[split_name]

  def annotation(self, name: str) -> dict[str, Any]:
    if name not in self.annotations:
      raise DataFormatError(self.path, f"sample {name}: no annotation has frame_dir {name!r} "
                            f"(the file has {len(self.annotations)} annotations)")
    return self.annotations[name]

  def label(self, name: str, num_classes: int) -> int:
    """The sample's 0-based label, checked to be an integer in [0, num_classes)."""
    label = self._field(name, "label")
    if isinstance(label, (bool, np.bool_)) or not isinstance(label, numbers.Integral):
      raise self._error(name, "label", f"expected an integer class, got {_describe(label)}")
    if not 0 <= int(label) < num_classes:
      raise self._error(name, "label", f"is {int(label)}, outside the {num_classes} classes "
                        f"[0, {num_classes - 1}]")
    return int(label)

  def keypoints(self, name: str) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """The sample's checked `keypoint` float32 (M, T, 17, 2), `keypoint_score` float32
    (M, T, 17) and `img_shape` (height, width)."""
    keypoint = self._float_array(name, "keypoint")
    if keypoint.ndim != 4 or keypoint.shape[3] != 2:
      raise self._error(name, "keypoint", f"expected shape (M, T, {NUM_JOINTS}, 2) (x, y of M "
                        f"persons in T frames), got {keypoint.shape}")
    persons, frames, joints, _ = keypoint.shape
    if joints != NUM_JOINTS:
      raise self._error(name, "keypoint", f"has V = {joints} keypoints (shape "
                        f"{keypoint.shape}); expected {NUM_JOINTS}, the COCO-17 layout")
    if persons == 0 or frames == 0:
      raise self._error(name, "keypoint", f"has no {'person' if persons == 0 else 'frame'} "
                        f"(shape {keypoint.shape}): nothing to recognise")
    score = self._float_array(name, "keypoint_score")
    if score.shape != keypoint.shape[:3]:
      raise self._error(name, "keypoint_score", f"has shape {score.shape}, but keypoint "
                        f"{keypoint.shape} needs (M, T, V) = {keypoint.shape[:3]}")
    total = self._field(name, "total_frames")
    if (isinstance(total, (bool, np.bool_)) or not isinstance(total, numbers.Integral)
        or int(total) != frames):
      raise self._error(name, "total_frames", f"is {_describe(total)}, but keypoint has "
                        f"T = {frames} frames (shape {keypoint.shape})")
    img_shape = self._field(name, "img_shape")
    if (not isinstance(img_shape, (Sequence, np.ndarray)) or isinstance(img_shape, str)
        or len(img_shape) != 2
        or not all(isinstance(v, numbers.Real) and np.isfinite(v) and v > 0 for v in img_shape)):
      raise self._error(name, "img_shape", "expected (height, width), two positive numbers, "
                        f"got {_describe(img_shape)}")
    height, width = (float(v) for v in img_shape)
    return keypoint, score, (height, width)

  def skeleton_features(self, name: str, *, max_frames: int, num_persons: int
                        ) -> dict[str, np.ndarray]:
    """The stored features of one sample (module docstring): `skeleton` float32
    (3, max_frames, 17, num_persons), `frame_count` (the annotation's T) and `img_shape` int32
    (height, width)."""
    keypoint, score, img_shape = self.keypoints(name)
    joints = select_persons(normalize_2d(keypoint, score, img_shape), num_persons)
    skeleton = fit_frames(np.transpose(joints, (3, 1, 2, 0)), max_frames)
    return {"skeleton": skeleton, "frame_count": np.int32(keypoint.shape[1]),
            "img_shape": np.asarray(img_shape, np.int32)}

  def _field(self, name: str, field: str) -> Any:
    annotation = self.annotation(name)
    if field not in annotation:
      raise self._error(name, field, f"is missing (the annotation has {sorted(annotation)})")
    return annotation[field]

  def _float_array(self, name: str, field: str) -> np.ndarray:
    value = self._field(name, field)
    if not isinstance(value, np.ndarray) or not np.issubdtype(value.dtype, np.floating):
      kind = value.dtype if isinstance(value, np.ndarray) else type(value).__name__
      raise self._error(name, field, f"expected a float numpy array, got {kind}")
    bad = np.argwhere(~np.isfinite(value))
    if len(bad):
      raise self._error(name, field, f"has {len(bad)} non-finite (NaN or infinite) value(s), "
                        f"the first at index {tuple(int(i) for i in bad[0])}")
    return value.astype(np.float32)

  def _error(self, name: str, field: str, message: str) -> DataFormatError:
    return DataFormatError(self.path, f"sample {name}: field {field!r} {message}")


def read_pose_pickle(path: str | os.PathLike) -> PosePickle:
  """Reads a pose pickle and checks its structure (module docstring).

  Raises:
    DataFormatError: naming the file, and the sample and field where there is one, when the
      file is not a readable pickle of built-in types and numpy arrays, not a dict with `split`
      and `annotations`, a split is not a list of names or names a sample without annotation,
      an annotation is not a dict or lacks a string `frame_dir`, or two share one.
  """
  path = os.fspath(path)
  try:
    with open(path, "rb") as f:
      contents = _ArraysOnlyUnpickler(f).load()
  except FileNotFoundError:
    raise  # a missing file is not a malformed one
  except Exception as e:  # pylint: disable=broad-except
    # UnpicklingError, EOFError, ValueError, ...: not a pickle, truncated, or a refused class.
    raise DataFormatError(path, f"cannot read as a pose pickle: {type(e).__name__}: {e}") from None
  if not isinstance(contents, Mapping):
    raise DataFormatError(path, "expected a dict with fields 'split' and 'annotations', got "
                          f"{_describe(contents)}")
  for field in ("split", "annotations"):
    if field not in contents:
      raise DataFormatError(path, f"field {field!r} is missing (the file's dict has "
                            f"{sorted(map(str, contents))})")
  annotations = _annotations_by_name(path, contents["annotations"])
  splits = _splits(path, contents["split"], annotations)
  return PosePickle(path=path, splits=splits, annotations=annotations)


def _annotations_by_name(path: str, annotations: Any) -> dict[str, dict[str, Any]]:
  if not isinstance(annotations, (list, tuple)):
    raise DataFormatError(path, "field 'annotations' expected a list of dicts, got "
                          f"{_describe(annotations)}")
  by_name: dict[str, dict[str, Any]] = {}
  first_index: dict[str, int] = {}
  for i, annotation in enumerate(annotations):
    if not isinstance(annotation, Mapping):
      raise DataFormatError(path, f"annotations[{i}] expected a dict, got "
                            f"{_describe(annotation)}")
    name = annotation.get("frame_dir")
    if not isinstance(name, str) or not name:
      raise DataFormatError(path, f"annotations[{i}]: field 'frame_dir' expected the sample "
                            f"name (a non-empty string), got {_describe(name)}")
    if name in by_name:
      raise DataFormatError(path, f"sample {name}: field 'frame_dir' is shared by "
                            f"annotations[{first_index[name]}] and annotations[{i}]")
    by_name[name] = dict(annotation)
    first_index[name] = i
  return by_name


def _splits(path: str, split: Any, annotations: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
  if not isinstance(split, Mapping):
    raise DataFormatError(path, "field 'split' expected a dict {split name: [sample names]}, "
                          f"got {_describe(split)}")
  out = {}
  for split_name, names in split.items():
    field = f"split[{split_name!r}]"
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
      raise DataFormatError(path, f"field {field} expected a list of sample names, got "
                            f"{_describe(names)}")
    unknown = [n for n in names if n not in annotations]
    if unknown:
      raise DataFormatError(path, f"sample {unknown[0]}: field {field} names it, but no "
                            f"annotation has that frame_dir ({len(unknown)} such name(s))")
    out[str(split_name)] = tuple(names)
  return out


def normalize_2d(keypoint: np.ndarray, score: np.ndarray,
                 img_shape: tuple[float, float]) -> np.ndarray:
  """PYSKL's PreNormalize2D: (M, T, V, 2) pixels and (M, T, V) scores -> float32 (M, T, V, 3)
  (x, y, score) with x, y in [-1, 1] across the frame; x = y = 0 where score <= SCORE_THRESHOLD."""
  height, width = img_shape
  out = np.empty(keypoint.shape[:3] + (3,), np.float32)
  out[..., 0] = (keypoint[..., 0] - width / 2) / (width / 2)
  out[..., 1] = (keypoint[..., 1] - height / 2) / (height / 2)
  out[..., 2] = score
  out[..., :2][score <= SCORE_THRESHOLD] = 0.0
  return out


def select_persons(joints: np.ndarray, num_persons: int) -> np.ndarray:
  """The `num_persons` persons of (M, T, V, C) with the largest summed score (channel 2), most
  confident first (ties keep file order), zero-padded when M < num_persons."""
  totals = joints[..., 2].sum(axis=(1, 2))
  order = np.argsort(-totals, kind="stable")[:num_persons]
  out = np.zeros((num_persons,) + joints.shape[1:], np.float32)
  out[:len(order)] = joints[order]
  return out


def fit_frames(x: np.ndarray, max_frames: int) -> np.ndarray:
  """(C, T, V, M) -> (C, max_frames, V, M): T <= max_frames repeated from the start over the
  rest (as 2s-AGCN pads), a longer sequence linearly resampled so none of the action is lost."""
  frames = x.shape[1]
  if frames > max_frames:
    return skeletons.resample_frames(x, frames, max_frames)
  return np.ascontiguousarray(x[:, np.arange(max_frames) % frames], dtype=np.float32)


def _describe(value: Any) -> str:
  if isinstance(value, np.ndarray):
    return f"a {value.dtype} array of shape {value.shape}"
  text = repr(value)
  return f"{type(value).__name__} {text if len(text) <= 40 else text[:40] + '...'}"
