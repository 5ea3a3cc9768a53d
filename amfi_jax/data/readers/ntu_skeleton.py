"""Reader for NTU RGB+D `.skeleton` text files (format: SPEC §3.1).

A full NTU-120 build parses ~114k of these files, so the reader reads each file once, walks its
line structure with a Python loop over frames and bodies only (a few hundred iterations), and
converts all numeric lines of one kind with a single `np.loadtxt` call (C parser). Only when that
fast path fails does a slow path re-scan the lines to report the exact line of the fault.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from amfi_jax.data.errors import DataFormatError

NUM_JOINTS = 25
BODY_INFO_FIELDS = ("bodyID", "clippedEdges", "handLeftConfidence", "handLeftState",
                    "handRightConfidence", "handRightState", "isRestricted", "leanX", "leanY",
                    "trackingState")
JOINT_FIELDS = ("x", "y", "z", "depthX", "depthY", "colorX", "colorY", "orientationW",
                "orientationX", "orientationY", "orientationZ", "trackingState")
# Kinect v2 tracks at most six bodies (the SDK's BODY_COUNT); a larger count means the file is
# misaligned or corrupt, not that the scene was crowded.
MAX_BODIES_PER_FRAME = 6
_JOINT_OFFSETS = range(NUM_JOINTS)


@dataclasses.dataclass(frozen=True, eq=False)
class SkeletonSequence:
  """The full content of one `.skeleton` file.

  Bodies keep their position in each frame's list (the 2s-AGCN reference selects by position,
  not by bodyID); B = the largest body count of any frame (at least 1), and slots beyond a frame's
  own count are zero.

  Attributes:
    path: the file read.
    num_frames: T, the frame count on line 1.
    body_counts: int32 (T,), bodies listed in each frame (0 is legal).
    body_ids: per frame, the bodyIDs in list order (Python ints: they exceed float64 precision).
    body_info: float64 (T, B, 10), the body lines (BODY_INFO_FIELDS).
    joints: float64 (T, B, 25, 12), the joint lines (JOINT_FIELDS).
  """

  path: str
  num_frames: int
  body_counts: np.ndarray
  body_ids: tuple[tuple[int, ...], ...]
  body_info: np.ndarray
  joints: np.ndarray

  @property
  def max_bodies(self) -> int:
    return self.joints.shape[1]

  @property
  def xyz(self) -> np.ndarray:
    """Camera-space joint positions in metres, (T, B, 25, 3)."""
    return self.joints[..., 0:3]

  @property
  def color_xy(self) -> np.ndarray:
    """Joint pixel positions in the 1920x1080 RGB frame (colorX, colorY), (T, B, 25, 2)."""
    return self.joints[..., 5:7]


def read_skeleton(path: str | os.PathLike) -> SkeletonSequence:
  """Reads one NTU `.skeleton` file.

  Raises:
    DataFormatError: with the 1-based line number, for an empty or truncated file, a non-numeric
      field, a joint count other than 25, a body or joint line with the wrong number of values, a
      negative or impossible (> 6) body count, a negative frame count, a NaN or infinite value,
      or non-blank content after the last frame.
  """
  path = os.fspath(path)
  with open(path, "rb") as f:
    # latin-1 never fails to decode, so stray bytes surface as a non-numeric field with a line.
    text = f.read().decode("latin-1")
  return parse_skeleton(text, path)


def parse_skeleton(text: str, path: str) -> SkeletonSequence:
  """`read_skeleton` on the text of a `.skeleton` file; `path` names it in errors (the same
  checks, e.g. for frames arriving one by one: `amfi_jax.streaming`)."""
  # Split on '\n' alone (str.splitlines would also break at '\x0b', '\x1c', ...), so that line
  # numbers are the ones an editor shows; the '\r' of CRLF files is whitespace to int() and
  # np.loadtxt.
  lines = text.split("\n")
  if lines[-1] == "":
    lines.pop()  # the text after the final newline is not a line
  if not text.strip():
    raise DataFormatError(path, "empty file; expected the frame count", line=1)

  num_frames = _read_count(path, lines, 0, "the frame count")
  if num_frames < 0:
    raise DataFormatError(path, f"expected a non-negative frame count, got {num_frames}", line=1)
  if num_frames > len(lines) - 1:
    # Every frame needs at least its body-count line; checking first also avoids allocating
    # arrays for an absurd count.
    raise DataFormatError(
        path, f"truncated file: frame count {num_frames} needs at least {num_frames} more lines, "
        f"the file has {len(lines) - 1}", line=len(lines) + 1)

  body_counts = np.zeros(num_frames, np.int32)
  info_lines: list[int] = []  # 0-based line index of each body line, in file order
  joint_starts: list[int] = []  # 0-based line index of each body's first joint line
  body_frame: list[int] = []  # frame of each body
  body_slot: list[int] = []  # position of each body in its frame's list
  num_lines = len(lines)
  pos = 1

  # Error messages are only formatted on failure: this loop runs ~500 times per file.
  for t in range(num_frames):
    if pos >= num_lines:
      _truncated(path, num_lines, "the body count of frame {} of {}", t + 1, num_frames)
    count = _read_count(path, lines, pos, "the body count of frame {}", t + 1)
    if not 0 <= count <= MAX_BODIES_PER_FRAME:
      raise DataFormatError(
          path, f"expected a body count 0-{MAX_BODIES_PER_FRAME} for frame {t + 1}, got {count}",
          line=pos + 1)
    body_counts[t] = count
    pos += 1
    for b in range(count):
      # One body = its body line, its joint-count line and 25 joint lines.
      if pos + 1 + NUM_JOINTS >= num_lines:
        if pos >= num_lines:
          _truncated(path, num_lines, "the body line of body {} in frame {}", b + 1, t + 1)
        if pos + 1 >= num_lines:
          _truncated(path, num_lines, "the joint count of body {} in frame {}", b + 1, t + 1)
        _truncated(path, num_lines, "{} joint lines for body {} in frame {}", NUM_JOINTS, b + 1,
                   t + 1)
      info_lines.append(pos)
      joint_count = _read_count(path, lines, pos + 1, "the joint count of body {} in frame {}",
                                b + 1, t + 1)
      if joint_count != NUM_JOINTS:
        raise DataFormatError(path, f"expected joint count {NUM_JOINTS}, got {joint_count}",
                              line=pos + 2)
      joint_starts.append(pos + 2)
      body_frame.append(t)
      body_slot.append(b)
      pos += 2 + NUM_JOINTS

  for extra in range(pos, num_lines):
    if lines[extra].strip():
      raise DataFormatError(
          path, f"unexpected content after the last of {num_frames} frames: "
          f"{_preview(lines[extra])}", line=extra + 1)

  joint_line_indices = [s + j for s in joint_starts for j in _JOINT_OFFSETS]
  info_rows = _parse_rows(path, lines, info_lines, len(BODY_INFO_FIELDS), "body line")
  joint_rows = _parse_rows(path, lines, joint_line_indices, len(JOINT_FIELDS), "joint line")

  max_bodies = max(1, int(body_counts.max(initial=0)))
  body_info = np.zeros((num_frames, max_bodies, len(BODY_INFO_FIELDS)), np.float64)
  joints = np.zeros((num_frames, max_bodies, NUM_JOINTS, len(JOINT_FIELDS)), np.float64)
  if info_lines:
    frames = np.asarray(body_frame)
    slots = np.asarray(body_slot)
    body_info[frames, slots] = info_rows
    joints[frames, slots] = joint_rows.reshape(-1, NUM_JOINTS, len(JOINT_FIELDS))

  ids_flat = [_read_body_id(path, lines, i) for i in info_lines]
  body_ids = []
  start = 0
  for count in body_counts.tolist():
    body_ids.append(tuple(ids_flat[start:start + count]))
    start += count
  return SkeletonSequence(path=path, num_frames=num_frames, body_counts=body_counts,
                          body_ids=tuple(body_ids), body_info=body_info, joints=joints)


def _preview(line: str, limit: int = 40) -> str:
  line = line.strip()
  return repr(line if len(line) <= limit else line[:limit] + "...")


def _is_end(lines: list[str], index: int) -> bool:
  """True when line `index` and everything after it is blank: the file ended early there."""
  return not "".join(lines[index:]).strip()


def _truncated(path: str, num_lines: int, what: str, *args) -> None:
  raise DataFormatError(path, "truncated file: expected " + what.format(*args),
                        line=num_lines + 1)


def _read_count(path: str, lines: list[str], index: int, what: str, *args) -> int:
  """An integer alone on line `index` (0-based); `what.format(*args)` names it in errors."""
  try:
    return int(lines[index])
  except ValueError:
    what = what.format(*args)
    if _is_end(lines, index):
      raise DataFormatError(path, f"truncated file: expected {what}", line=index + 1) from None
    raise DataFormatError(path, f"expected {what} (one integer), got {_preview(lines[index])}",
                          line=index + 1) from None


def _read_body_id(path: str, lines: list[str], index: int) -> int:
  token = lines[index].split()[0]
  try:
    return int(token)
  except ValueError:
    raise DataFormatError(path, f"expected an integer bodyID, got {token!r}",
                          line=index + 1) from None


def _parse_rows(path: str, lines: list[str], indices: list[int], width: int,
                what: str) -> np.ndarray:
  """Converts the given lines to a float64 (len(indices), width) array, or names the bad line."""
  if not indices:
    return np.zeros((0, width), np.float64)
  selected = [lines[i] for i in indices]
  try:
    rows = np.loadtxt(selected, dtype=np.float64, comments=None, ndmin=2)
    # loadtxt silently skips blank lines; the row count catches that.
    if rows.shape == (len(indices), width):
      return _finite(path, rows, indices, what)
  except ValueError:
    pass
  # Slow path: find the first offending line for the error message. If there is none (a token
  # float() accepts but loadtxt does not, such as '1_0'), the rows built here are the result.
  rows = []
  for i in indices:
    tokens = lines[i].split()
    if not tokens and _is_end(lines, i):
      raise DataFormatError(path, f"truncated file: expected a {what} of {width} values",
                            line=i + 1)
    if len(tokens) != width:
      raise DataFormatError(path, f"expected {width} values on a {what}, got {len(tokens)}",
                            line=i + 1)
    try:
      rows.append([float(token) for token in tokens])
    except ValueError:
      column, token = next((c, t) for c, t in enumerate(tokens, start=1) if not _is_float(t))
      raise DataFormatError(
          path, f"non-numeric value {token!r} in column {column} of a {what} "
          f"(expected {width} numbers)", line=i + 1) from None
  return _finite(path, np.array(rows, np.float64), indices, what)


def _finite(path: str, rows: np.ndarray, indices: list[int], what: str) -> np.ndarray:
  """`rows`, or an error at the first line holding NaN or an infinity (float() reads 'nan' and
  'inf', and a model fed them answers with NaN scores)."""
  bad = np.flatnonzero(~np.isfinite(rows).all(axis=1))
  if len(bad):
    row = int(bad[0])
    column = int(np.flatnonzero(~np.isfinite(rows[row]))[0]) + 1
    raise DataFormatError(path, f"non-finite value {rows[row, column - 1]} in column {column} "
                          f"of a {what}", line=indices[row] + 1)
  return rows


def _is_float(token: str) -> bool:
  try:
    float(token)
    return True
  except ValueError:
    return False
