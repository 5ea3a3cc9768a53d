"""Streaming skeleton inference: frames as they arrive, a sliding window, the top actions of each.

  python -m amfi_jax.predict --stream --exported=skeleton.jaxexport \
      --skeleton=S001C001P001R001A011.skeleton [--fps=30] [--window=90] [--stride=15]
  PRODUCER | python -m amfi_jax.predict --stream --exported=skeleton.jaxexport --skeleton=-

A model trained on UTD-MHAD reads its Kinect v1 frames: a `_skeleton.mat` file replayed at
`--fps`, or from standard input one frame per line, the 20 joints' x y z (60 numbers, metres,
the release's joint order) separated by spaces; each window is preprocessed as a `_skeleton.mat`
of those frames would be (`samples.utd_skeleton_features`).

A `.skeleton` file is replayed at `--fps` (0: as fast as it can be read); `-` reads NTU frame
blocks from standard input as a producer writes them: each block is one frame of the `.skeleton`
format (its body-count line, then each body's line, joint-count line and 25 joint lines), with no
frame-count line in front, since a live stream has no known length. Every `stride` frames, once
`window` frames have arrived, the last `window` frames are preprocessed exactly as a `.skeleton`
file of those frames would be (`samples.ntu_skeleton_features`, `samples.model_input`) and the
skeleton model predicts them. Each window's line gives its frames, the top actions and its
latency: from the arrival of the window's last frame to its answer, so time spent waiting behind
earlier windows counts. The stream keeps up when windows are answered faster than they fall due
(`fps / stride` per second); the summary says whether it did.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TextIO

import numpy as np

from amfi_jax.data.errors import DataFormatError
from amfi_jax.data.preprocessing import samples
from amfi_jax.data.readers import ntu_skeleton, utd_mhad
from amfi_jax.errors import FlagError
from amfi_jax.evaluation import metrics

STDIN = "-"
# NTU RGB+D records at 30 frames per second.
DEFAULT_FPS = 30.0
# Three seconds: about an NTU action's length (most last 2-4 s), so a window holds one action.
DEFAULT_WINDOW = 90
# Two answers per second at 30 fps.
DEFAULT_STRIDE = 15
# A frame block: the body-count line, then per body its body line, joint-count line and joints.
_LINES_PER_BODY = 2 + ntu_skeleton.NUM_JOINTS


@dataclasses.dataclass(frozen=True)
class Frame:
  """One parsed frame and when it arrived (`time.perf_counter()`)."""
  index: int
  # An NTU one-frame SkeletonSequence, or UTD-MHAD's (20, 3) joints.
  data: ntu_skeleton.SkeletonSequence | np.ndarray
  arrival: float


@dataclasses.dataclass(frozen=True)
class WindowResult:
  index: int
  first_frame: int  # 0-based, inclusive
  last_frame: int
  top: list[tuple[str, float]]  # [(class name, probability)], most probable first
  latency_ms: float  # from the arrival of `last_frame` to the answer
  compute_ms: float  # preprocessing and the model alone


def resolve_window(window: int | None, max_frames: int) -> int:
  """`window`, or when it is not given DEFAULT_WINDOW capped at the model's `max_frames` (the
  demo's models read 64 frames)."""
  return min(DEFAULT_WINDOW, max_frames) if window is None else window


def check_flags(window: int | None, stride: int, fps: float, max_frames: int) -> int:
  """The window to use (`resolve_window`), or FlagError naming the flag a model of `max_frames`
  frames cannot take."""
  window = resolve_window(window, max_frames)
  if window < 1:
    raise FlagError(f"--window={window}: a window needs at least one frame")
  if window > max_frames:
    raise FlagError(f"--window={window}: the model reads at most {max_frames} frames "
                    "(its dataset's max_frames)")
  if stride < 1:
    raise FlagError(f"--stride={stride}: a window is due every stride >= 1 frames")
  if fps < 0:
    raise FlagError(f"--fps={fps}: a frame rate is >= 0 (0: replay as fast as possible)")
  return window


def frame_blocks(lines: Iterable[str], source: str, *, has_header: bool
                 ) -> Iterator[list[str]]:
  """The line blocks of successive frames; a `.skeleton` file's frame-count line is skipped
  (`has_header`), and the stream may end only between frames."""
  for _, block in _numbered_frame_blocks(lines, source, has_header=has_header):
    yield block


def _numbered_frame_blocks(lines: Iterable[str], source: str, *, has_header: bool
                           ) -> Iterator[tuple[int, list[str]]]:
  """`frame_blocks` with the stream's line number of each block's first line."""
  lines = iter(lines)
  line_number = 0

  def next_line() -> str | None:
    nonlocal line_number
    line = next(lines, None)
    if line is not None:
      line_number += 1
    return line

  declared = None
  if has_header:
    header = next_line()
    try:
      declared = int(header)
    except (TypeError, ValueError):
      raise DataFormatError(source, "expected the frame count (one integer) on the first line"
                            + ("" if header is None else f", got {header.strip()[:40]!r}"),
                            line=1) from None
  frames = 0
  while True:
    count_line = next_line()
    while count_line is not None and not count_line.strip():
      count_line = next_line()  # blank lines between frames are not frames
    if count_line is None:
      if declared is not None and frames != declared:
        raise DataFormatError(source, f"the file declares {declared} frames on line 1 but "
                              f"holds {frames}", line=line_number + 1)
      return
    if declared is not None and frames == declared:
      raise DataFormatError(source, f"unexpected content after the last of {declared} frames",
                            line=line_number)
    try:
      count = int(count_line)
    except ValueError:
      raise DataFormatError(source, f"expected a frame's body count (one integer), got "
                            f"{count_line.strip()[:40]!r}", line=line_number) from None
    if not 0 <= count <= ntu_skeleton.MAX_BODIES_PER_FRAME:
      raise DataFormatError(source, f"expected a body count 0-{ntu_skeleton.MAX_BODIES_PER_FRAME}"
                            f", got {count}", line=line_number)
    first_line = line_number
    block = [count_line]
    for _ in range(count * _LINES_PER_BODY):
      line = next_line()
      if line is None:
        raise DataFormatError(source, f"the stream ended inside a frame of {count} bodies",
                              line=line_number + 1)
      block.append(line)
    frames += 1
    yield first_line, block


def parse_frame(block: list[str], source: str, index: int, first_line: int
                ) -> ntu_skeleton.SkeletonSequence:
  """One frame block as a one-frame sequence, with the `.skeleton` reader's checks; an error
  names the frame and the stream's own line (`first_line` = the block's first line)."""
  text = "1\n" + "".join(_with_newline(l) for l in block)
  try:
    return ntu_skeleton.parse_skeleton(text, f"{source} (frame {index + 1})")
  except DataFormatError as e:
    # The reader counts the one-frame text's lines: its line 1 is the frame count put in front,
    # its line 2 the block's first line.
    line = None if e.line is None or e.line < 2 else first_line + e.line - 2
    raise DataFormatError(e.path, e.message, line=line) from None


def _with_newline(line: str) -> str:
  return line if line.endswith("\n") else line + "\n"


def join_frames(frames: list[ntu_skeleton.SkeletonSequence], path: str
                ) -> ntu_skeleton.SkeletonSequence:
  """Consecutive one-frame sequences as one sequence, as one file of those frames reads."""
  bodies = max(f.max_bodies for f in frames)

  def padded(a: np.ndarray) -> np.ndarray:
    return np.pad(a, [(0, 0), (0, bodies - a.shape[1])] + [(0, 0)] * (a.ndim - 2))

  return ntu_skeleton.SkeletonSequence(
      path=path, num_frames=len(frames),
      body_counts=np.concatenate([f.body_counts for f in frames]),
      body_ids=tuple(ids for f in frames for ids in f.body_ids),
      body_info=np.concatenate([padded(f.body_info) for f in frames]),
      joints=np.concatenate([padded(f.joints) for f in frames]))


def join(frames: list, path: str):
  """Consecutive frames as one sequence: NTU one-frame sequences as one (`join_frames`),
  UTD-MHAD (20, 3) joints as (T, 20, 3)."""
  if isinstance(frames[0], np.ndarray):
    return np.stack(frames)
  return join_frames(frames, path)


def replay(lines: Iterable[str], source: str, *, fps: float, has_header: bool,
           clock: Callable[[], float] = time.perf_counter,
           sleep: Callable[[float], None] = time.sleep) -> Iterator[Frame]:
  """NTU frames of `lines` (`timed`)."""
  numbered = _numbered_frame_blocks(lines, source, has_header=has_header)
  parsed = (parse_frame(block, source, index, first_line)
            for index, (first_line, block) in enumerate(numbered))
  return timed(parsed, fps=fps, clock=clock, sleep=sleep)


def timed(parsed: Iterable, *, fps: float, clock: Callable[[], float] = time.perf_counter,
          sleep: Callable[[float], None] = time.sleep) -> Iterator[Frame]:
  """Parsed frames as they arrive: with `fps` > 0 frame i arrives at start + i / fps (a
  recording played back in real time), otherwise when it has been read (a live producer, or as
  fast as possible)."""
  start = clock()
  for index, data in enumerate(parsed):
    if fps > 0:
      due = start + index / fps
      wait = due - clock()
      if wait > 0:
        sleep(wait)
      arrival = due
    else:
      arrival = clock()
    yield Frame(index, data, arrival)


def utd_frames(source: str, stdin: TextIO) -> Iterator[np.ndarray]:
  """UTD-MHAD frames, (20, 3) joints each: the frames of a `_skeleton.mat` file (read here, so
  that a missing or malformed file is named before the model compiles), or standard input's
  lines (`parse_utd_line`; blank lines are skipped)."""
  if source != STDIN:
    if not os.path.isfile(source):
      raise FlagError(f"--skeleton={source}: no such file (a UTD-MHAD _skeleton.mat, or - for "
                      "standard input)")
    return iter(utd_mhad.read_skeleton_mat(source))
  return (parse_utd_line(line, "<stdin>", number)
          for number, line in enumerate(stdin, 1) if line.strip())


def parse_utd_line(line: str, source: str, line_number: int) -> np.ndarray:
  """One UTD-MHAD frame line, the 20 joints' x y z: (20, 3) float32; DataFormatError naming the
  line otherwise."""
  fields = line.split()
  expected = 3 * utd_mhad.NUM_JOINTS
  if len(fields) != expected:
    raise DataFormatError(source, f"expected a frame's {expected} numbers (x y z of "
                          f"{utd_mhad.NUM_JOINTS} joints), got {len(fields)}", line=line_number)
  values = np.empty(expected, np.float32)
  for i, field in enumerate(fields):
    try:
      values[i] = float(field)
    except ValueError:
      raise DataFormatError(source, f"not a number: {field[:40]!r}", line=line_number) from None
  if not np.isfinite(values).all():
    raise DataFormatError(source, "a joint coordinate is not finite", line=line_number)
  return values.reshape(utd_mhad.NUM_JOINTS, 3)


class Predictor:
  """The top actions of a window of frames, by a skeleton model's logits.

  `logits` maps a batch {"skeleton": (1, C, T, V, M)} to (1, classes) logits; `window_inputs`
  maps a window (`join`'s output) to that batch, as a skeleton file of those frames reads
  (`predict.SampleReader.window_inputs`); `dataset` (`samples.DATASET_NTU` or
  `DATASET_UTD_MHAD`) says which frames the stream carries, `max_frames` the most a window may
  hold.
  """

  def __init__(self, logits: Callable[[dict[str, np.ndarray]], np.ndarray], class_names,
               window_inputs: Callable[..., dict[str, np.ndarray]], *, dataset: str,
               max_frames: int, top: int = 5):
    if dataset not in (samples.DATASET_NTU, samples.DATASET_UTD_MHAD):
      raise ValueError(f"a stream carries {samples.DATASET_NTU} or {samples.DATASET_UTD_MHAD} "
                       f"frames, got {dataset!r}")
    self._logits = logits
    self.class_names = list(class_names)
    self.inputs = window_inputs
    self.dataset = dataset
    self.max_frames = int(max_frames)
    self.top = top

  def warm_up(self) -> None:
    """Compiles the model before the first frame: every window has one input shape (padded to
    `max_frames` or resampled), so one call on any window suffices."""
    rng = np.random.default_rng(0)
    if self.dataset == samples.DATASET_UTD_MHAD:
      joints = rng.normal(size=(1, utd_mhad.NUM_JOINTS, 3)) * 0.3 + [0.0, 0.0, 2.5]
      self.window_logits(joints)
      return
    joints = np.zeros((1, 1, ntu_skeleton.NUM_JOINTS, len(ntu_skeleton.JOINT_FIELDS)))
    joints[..., :3] = rng.normal(size=(ntu_skeleton.NUM_JOINTS, 3))
    self.window_logits(ntu_skeleton.SkeletonSequence(
        path="warm-up", num_frames=1, body_counts=np.ones(1, np.int32), body_ids=((0,),),
        body_info=np.zeros((1, 1, len(ntu_skeleton.BODY_INFO_FIELDS))), joints=joints))

  def window_logits(self, sequence) -> np.ndarray:
    return np.asarray(self._logits(self.inputs(sequence)))[0]

  def ranked(self, logits: np.ndarray) -> list[tuple[str, float]]:
    return metrics.ranking(logits, self.class_names)[:self.top]


def stream(frames: Iterable[Frame], predictor: Predictor, *, window: int, stride: int,
           source: str, clock: Callable[[], float] = time.perf_counter
           ) -> Iterator[WindowResult]:
  """A result every `stride` frames once `window` frames have arrived (and one for a stream
  shorter than the window, on all of it)."""
  recent: collections.deque[Frame] = collections.deque(maxlen=window)
  since_last = 0
  count = 0
  last: Frame | None = None
  for frame in frames:
    recent.append(frame)
    last = frame
    since_last += 1
    if len(recent) == window and (count == 0 or since_last >= stride):
      yield _predict(predictor, list(recent), count, source, clock)
      count += 1
      since_last = 0
  if count == 0 and last is not None:
    yield _predict(predictor, list(recent), 0, source, clock)


def _predict(predictor: Predictor, frames: list[Frame], index: int, source: str,
             clock: Callable[[], float]) -> WindowResult:
  start = clock()
  sequence = join([f.data for f in frames],
                  f"{source} (frames {frames[0].index + 1}-{frames[-1].index + 1})")
  logits = predictor.window_logits(sequence)
  done = clock()
  return WindowResult(index=index, first_frame=frames[0].index, last_frame=frames[-1].index,
                      top=predictor.ranked(logits),
                      latency_ms=1e3 * (done - frames[-1].arrival),
                      compute_ms=1e3 * (done - start))


def run(frames: Iterable[Frame], predictor: Predictor, *, window: int, stride: int, source: str,
        fps: float, on_result: Callable[[WindowResult], None] = lambda r: None,
        clock: Callable[[], float] = time.perf_counter) -> tuple[list[WindowResult], dict]:
  """`stream` to its end, `on_result` called as each window is answered: (results, summary)."""
  read = 0

  def counted() -> Iterator[Frame]:
    nonlocal read
    for frame in frames:
      read += 1
      yield frame

  start = clock()
  results = []
  for result in stream(counted(), predictor, window=window, stride=stride, source=source,
                       clock=clock):
    results.append(result)
    on_result(result)
  return results, summary(results, frames=read, fps=fps, stride=stride,
                          elapsed_s=clock() - start)


def summary(results: list[WindowResult], *, frames: int, fps: float, stride: int,
            elapsed_s: float) -> dict:
  """Per-window latency percentiles, windows answered per second of computing, the smallest
  stride that keeps up with `fps` (30 when replayed as fast as possible), and whether this
  stride does (answers at least as fast as windows fall due)."""
  if not results:
    return {"windows": 0, "frames": frames}
  latency = np.array([r.latency_ms for r in results])
  compute = np.array([r.compute_ms for r in results])
  windows_per_s = 1e3 / float(np.mean(compute))
  out = {"windows": len(results), "frames": frames, "stride": stride,
         "latency_p50_ms": float(np.percentile(latency, 50)),
         "latency_p99_ms": float(np.percentile(latency, 99)),
         "compute_p50_ms": float(np.percentile(compute, 50)),
         "compute_p99_ms": float(np.percentile(compute, 99)),
         "windows_per_s": windows_per_s, "elapsed_s": elapsed_s}
  # The smallest stride at which windows are answered as fast as they fall due.
  rate = fps if fps > 0 else DEFAULT_FPS
  out["fps"] = rate
  # (1e-9: a rate that divides exactly must not round up through float error.)
  out["min_stride_to_keep_up"] = max(1, math.ceil(rate / windows_per_s - 1e-9))
  if fps > 0:
    out["windows_due_per_s"] = fps / stride
    out["keeps_up"] = bool(windows_per_s >= fps / stride)
  return out


def open_lines(source: str, stdin: TextIO) -> tuple[Iterable[str], bool]:
  """(lines, has_header): a `.skeleton` file starts with its frame count, standard input does
  not (frame blocks only)."""
  if source == STDIN:
    return stdin, False
  try:
    f = open(source, "rb")
  except OSError as e:
    raise FlagError(f"--skeleton={source}: {e.strerror}") from None
  return (line.decode("latin-1") for line in f), True


def format_result(r: WindowResult) -> str:
  top = " | ".join(f"{name} {100 * p:.1f} %" for name, p in r.top)
  return (f"window {r.index + 1} frames {r.first_frame + 1}-{r.last_frame + 1}: {top} "
          f"[{r.latency_ms:.0f} ms]")
