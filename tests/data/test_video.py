"""Frame sampling and one-pass decoding with PyAV."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from amfi_jax.data.errors import DataFormatError
from amfi_jax.data.readers.video import read_video_frames, sample_frame_indices

from tests.shared_data import shared_path
REAL_VIDEO = "S001C001P001R001A001_rgb.avi"


def _real_video() -> Path:
  return shared_path("ntu", REAL_VIDEO)


def _write_video(path: Path, num_frames: int, height: int = 48, width: int = 64) -> Path:
  """An MPEG-4 AVI whose frame i is a flat grey of level 20 * i."""
  container = av.open(str(path), "w")
  stream = container.add_stream("mpeg4", rate=30)
  stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
  for i in range(num_frames):
    image = np.full((height, width, 3), 20 * i, np.uint8)
    for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
      container.mux(packet)
  for packet in stream.encode():
    container.mux(packet)
  container.close()
  return path


def _levels(frames: np.ndarray) -> np.ndarray:
  return frames.reshape(len(frames), -1).mean(axis=1)


# --- sample_frame_indices -----------------------------------------------------------------------

def test_indices_equal_intervals():
  np.testing.assert_array_equal(sample_frame_indices(103, 16), np.arange(16) * 6)
  np.testing.assert_array_equal(sample_frame_indices(32, 16), np.arange(0, 32, 2))
  np.testing.assert_array_equal(sample_frame_indices(16, 16), np.arange(16))
  np.testing.assert_array_equal(sample_frame_indices(300, 4), [0, 75, 150, 225])
  assert sample_frame_indices(103, 16).dtype == np.int64


def test_indices_short_video_repeats_in_order():
  idx = sample_frame_indices(5, 16)
  assert idx.shape == (16,)
  assert np.all(np.diff(idx) >= 0)
  np.testing.assert_array_equal(np.unique(idx), np.arange(5))
  counts = np.bincount(idx)
  assert counts.min() >= 3 and counts.max() <= 4
  np.testing.assert_array_equal(sample_frame_indices(1, 3), [0, 0, 0])


@pytest.mark.parametrize("num_frames, k", [(0, 16), (10, 0), (-1, 4)])
def test_indices_reject_empty(num_frames, k):
  with pytest.raises(ValueError, match=r"must be positive"):
    sample_frame_indices(num_frames, k)


# --- real video ---------------------------------------------------------------------------------

def test_read_real_video_matches_plain_decode():
  path = _real_video()
  frames, total = read_video_frames(path, 16)
  assert total == 103
  assert frames.shape == (16, 1080, 1920, 3) and frames.dtype == np.uint8
  wanted = set(range(0, 96, 6))
  reference = []
  with av.open(str(path)) as container:
    for i, frame in enumerate(container.decode(video=0)):
      if i in wanted:
        reference.append(frame.to_ndarray(format="rgb24"))
  assert np.array_equal(frames, np.stack(reference))  # (assert_array_equal is slow on 100 MB)
  assert frames[0].std() > 10  # a real image, not a blank frame


def test_read_real_video_downscaled_while_decoding():
  frames, total = read_video_frames(_real_video(), 8, size=(135, 240))
  assert total == 103
  assert frames.shape == (8, 135, 240, 3) and frames.dtype == np.uint8
  full, _ = read_video_frames(_real_video(), 1)
  # Area-downscaled frame 0 agrees with block means of the full frame.
  blocks = full[0].reshape(135, 8, 240, 8, 3).mean(axis=(1, 3))
  assert np.abs(frames[0].astype(np.float64) - blocks).mean() < 2.0


# --- synthetic videos ---------------------------------------------------------------------------

def test_read_short_video_repeats_frames(tmp_path):
  path = _write_video(tmp_path / "short.avi", 5)
  frames, total = read_video_frames(path, 8)
  assert total == 5
  assert frames.shape == (8, 48, 64, 3)
  levels = _levels(frames)
  # Indices 0 0 1 1 2 3 3 4 -> grey levels 0 0 20 20 40 60 60 80 (MPEG-4 is lossy: +-3).
  np.testing.assert_allclose(levels, [0, 0, 20, 20, 40, 60, 60, 80], atol=3)
  np.testing.assert_array_equal(frames[0], frames[1])


def test_read_stops_at_sampled_frames(tmp_path):
  path = _write_video(tmp_path / "ten.avi", 10)
  frames, total = read_video_frames(path, 3)
  assert total == 10
  np.testing.assert_allclose(_levels(frames), [0, 60, 120], atol=3)  # indices 0, 3, 6


def _cut(tmp_path: Path, num_frames: int, keep: int) -> Path:
  """A `num_frames`-frame AVI cut where frame `keep` starts: its header still promises all."""
  full_path = _write_video(tmp_path / "full.avi", num_frames)
  with av.open(str(full_path)) as container:
    starts = [p.pos for p in container.demux(video=0) if p.size]
  cut = tmp_path / f"cut{keep}.avi"
  cut.write_bytes(full_path.read_bytes()[:starts[keep]])
  with av.open(str(cut)) as container:
    assert container.streams.video[0].frames == num_frames
  return cut


def test_header_overcount_falls_back_to_counting(tmp_path):
  cut = _cut(tmp_path, 10, 9)  # 9 of 10 frames decode: 90 %, still accepted
  # Frame 9 is needed for K = 10: count (9), then sample 0 0 1 … 8.
  frames, total = read_video_frames(cut, 10)
  assert total == 9
  np.testing.assert_allclose(_levels(frames), [0, 0, 20, 40, 60, 80, 100, 120, 140, 160], atol=3)
  # Frames 0, 2, 4, 6, 8 are all there: the header is trusted and decoding stops before the cut.
  frames, total = read_video_frames(cut, 5)
  assert total == 10
  np.testing.assert_allclose(_levels(frames), [0, 40, 80, 120, 160], atol=3)


def test_truncated_video_is_an_error(tmp_path):
  cut = _cut(tmp_path, 10, 4)  # 4 of 10 frames decode
  with pytest.raises(DataFormatError, match=r"only 4 of the 10 frames its header announces"):
    read_video_frames(cut, 8)


def test_video_without_frames(tmp_path):
  full = _write_video(tmp_path / "full.avi", 5).read_bytes()
  path = tmp_path / "empty_movie.avi"
  path.write_bytes(full[:full.find(b"movi") + 4])  # header and an empty frame list
  with pytest.raises(DataFormatError) as info:
    read_video_frames(path, 4)
  assert str(info.value) == f"{path}: expected at least one video frame, decoded none"
  assert info.value.line is None


def test_not_a_video(tmp_path):
  path = tmp_path / "notes_rgb.avi"
  path.write_text("this is not a video\n")
  with pytest.raises(DataFormatError, match=r"cannot open as a video") as info:
    read_video_frames(path, 4)
  assert info.value.path == str(path)
  assert str(info.value).startswith(f"{path}: ")


def test_empty_file(tmp_path):
  path = tmp_path / "zero.avi"
  path.write_bytes(b"")
  with pytest.raises(DataFormatError, match=r"^.*zero\.avi: cannot open as a video"):
    read_video_frames(path, 4)


def test_audio_only_file_has_no_video_stream(tmp_path):
  path = tmp_path / "sound.wav"
  container = av.open(str(path), "w")
  stream = container.add_stream("pcm_s16le", rate=8000)
  frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
  frame.sample_rate = 8000
  for packet in stream.encode(frame):
    container.mux(packet)
  for packet in stream.encode():
    container.mux(packet)
  container.close()
  with pytest.raises(DataFormatError, match=r"sound\.wav: expected a video stream, found none$"):
    read_video_frames(path, 4)


def test_missing_file_is_not_a_format_error(tmp_path):
  with pytest.raises(FileNotFoundError):
    read_video_frames(tmp_path / "absent.avi", 4)
