"""Video decoding with PyAV: K frames at equal intervals, decoded in one pass (SPEC §3.3)."""

from __future__ import annotations

import os

import av
import numpy as np

from amfi_jax.data.errors import DataFormatError


def sample_frame_indices(num_frames: int, k: int) -> np.ndarray:
  """Indices of K frames at equal intervals of a T-frame video.

  With T >= K the interval is d = floor(T / K) and the frames are 0, d, 2d, ..., (K-1)d (the
  paper's rule, starting at the first frame). With T < K there is no whole interval; every frame
  is then used in order, each repeated about K/T times (index floor(i * T / K)), which keeps the
  clip's time order and spacing as even as integers allow.

  Returns:
    int64 (K,), non-decreasing, all in [0, T).
  """
  if k <= 0:
    raise ValueError(f"k must be positive, got {k}")
  if num_frames <= 0:
    raise ValueError(f"num_frames must be positive, got {num_frames}")
  if num_frames >= k:
    return np.arange(k, dtype=np.int64) * (num_frames // k)
  return (np.arange(k, dtype=np.int64) * num_frames) // k


def _open(path: str):
  try:
    # Metadata in another encoding than UTF-8 must not make a decodable video unreadable.
    container = av.open(path, metadata_errors="replace")
  except FileNotFoundError:
    raise  # a missing file is not a malformed one
  except av.FFmpegError as e:
    raise DataFormatError(path, f"cannot open as a video: {e}") from None
  if not container.streams.video:
    container.close()
    raise DataFormatError(path, "expected a video stream, found none")
  stream = container.streams.video[0]
  # Frame threading roughly halves decode time for 1080p H.264; the decoder still returns the
  # frames in presentation order.
  stream.thread_type = "AUTO"
  return container, stream


def _to_rgb(frame, size: tuple[int, int] | None) -> np.ndarray:
  if size is None:
    return frame.to_ndarray(format="rgb24")
  height, width = size
  # swscale converts YUV -> RGB and downscales in one step; AREA averages the source pixels,
  # which avoids aliasing when shrinking 1080p by large factors.
  return frame.reformat(width=width, height=height, format="rgb24",
                        interpolation="AREA").to_ndarray()


def _decode_count(path: str) -> int:
  container, stream = _open(path)
  try:
    count = 0
    for _ in container.decode(stream):
      count += 1
    return count
  except av.FFmpegError as e:
    raise DataFormatError(path, f"corrupt video data after {count} frames: {e}") from None
  finally:
    container.close()


def _decode_selected(path: str, indices: np.ndarray, size) -> tuple[list[np.ndarray], int]:
  """Decodes frames 0..max(indices) once, converting only the selected ones.

  Returns the frames found (fewer than requested when the video is shorter than expected) and
  the number of frames decoded.
  """
  wanted: dict[int, list[int]] = {}
  for slot, index in enumerate(indices.tolist()):
    wanted.setdefault(index, []).append(slot)
  last = int(indices.max())
  out: list[np.ndarray | None] = [None] * len(indices)
  container, stream = _open(path)
  decoded = 0
  try:
    for frame in container.decode(stream):
      slots = wanted.get(decoded)
      if slots is not None:
        image = _to_rgb(frame, size)
        for slot in slots:
          out[slot] = image
      decoded += 1
      if decoded > last:
        break  # the rest of the video is not needed
  except av.FFmpegError as e:
    raise DataFormatError(path, f"corrupt video data at frame {decoded + 1}: {e}") from None
  finally:
    container.close()
  return [x for x in out if x is not None], decoded


# A video whose decodable frames fall below this fraction of its container's frame count (or of
# its skeleton's frame count, `samples.load_clip`) is truncated or corrupt: sampling the clip
# from the frames that remain would silently show another part of the action.
MIN_DECODABLE_FRACTION = 0.9


def read_video_frames(path: str | os.PathLike, k: int,
                      size: tuple[int, int] | None = None) -> tuple[np.ndarray, int]:
  """Reads K frames at equal intervals (`sample_frame_indices`) of a video.

  The frame count comes from the container (the AVI header of NTU videos), so one decoding pass
  suffices and it stops right after the last needed frame. Only when the container gives no
  count, or the video ends before the frames the count promised, is the video decoded once to
  count its frames and then again to take them. A container count smaller than the truth goes
  unnoticed (decoding stops before the end); frames are then sampled from the first T_header
  frames only.

  Args:
    path: the video file.
    k: frames to return.
    size: optional (height, width); each kept frame is downscaled by swscale while decoding
      (much cheaper than converting full 1080p frames and resizing them afterwards).

  Returns:
    (frames uint8 (k, H, W, 3) RGB, total frame count T used for the sampling).

  Raises:
    DataFormatError: naming the file, when it cannot be opened or decoded as a video, has no
      video stream, has no frames, or fewer decodable frames than MIN_DECODABLE_FRACTION of
      the count its header announces.
    FileNotFoundError: when it does not exist.
  """
  path = os.fspath(path)
  container, stream = _open(path)
  total = header = int(stream.frames or 0)
  container.close()
  frames: list[np.ndarray] = []
  if total > 0:
    frames, decoded = _decode_selected(path, sample_frame_indices(total, k), size)
    if len(frames) < k:
      total = 0  # the header over-counted; fall back to counting
  if total <= 0:
    total = _decode_count(path)
    if total == 0:
      raise DataFormatError(path, "expected at least one video frame, decoded none")
    if header and total < MIN_DECODABLE_FRACTION * header:
      raise DataFormatError(path, f"only {total} of the {header} frames its header announces "
                            f"decode (below {MIN_DECODABLE_FRACTION:.0%}): truncated or corrupt")
    frames, decoded = _decode_selected(path, sample_frame_indices(total, k), size)
    if len(frames) < k:  # the file changed between the two passes, or decoding is not stable
      raise DataFormatError(path, f"counted {total} frames, but decoding stopped at {decoded}")
  return np.stack(frames), total
