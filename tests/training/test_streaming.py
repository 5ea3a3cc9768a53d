"""`python -m amfi_jax.predict --stream`: skeleton frames replayed from a file or read from
standard input, a sliding window, the same answers as offline prediction of the same frames,
real-time replay timing, and refusals that name the frame, line or flag."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from amfi_jax import predict, streaming
from amfi_jax.data.errors import DataFormatError
from amfi_jax.errors import FlagError

from tests.conftest import cpu_env
from tests.training.conftest import REPO

# A test sample of the tiny dataset (performer 3) with one body.
SAMPLE = "S001C002P003R001A001"


@pytest.fixture(scope="module")
def artifacts(tiny_skeleton_artifact, tmp_path_factory) -> dict[str, str]:
  """The skeleton artifact, and a copy that says it is the fusion stage (`stream_predictor`
  refuses by the metadata, before it loads the program)."""
  folder = tmp_path_factory.mktemp("stream_artifacts")
  fusion = str(folder / "fusion.jaxexport")
  shutil.copy(tiny_skeleton_artifact, fusion)
  with open(tiny_skeleton_artifact + ".json") as f:
    metadata = json.load(f)
  with open(fusion + ".json", "w") as f:
    json.dump({**metadata, "stage": "fusion"}, f)
  return {"skeleton": tiny_skeleton_artifact, "fusion": fusion}


@pytest.fixture(scope="module")
def skeleton_file(tiny_dataset) -> str:
  (raw,) = glob.glob(os.path.join(tiny_dataset, "..", "..", "..", "..", "raw_*"))
  return os.path.join(raw, "nturgb+d_skeletons", f"{SAMPLE}.skeleton")


def _blocks(path: str) -> list[list[str]]:
  with open(path) as f:
    return list(streaming.frame_blocks(f, path, has_header=True))


def _window_file(blocks: list[list[str]], first: int, last: int, path) -> str:
  """The frames first..last (0-based, inclusive) as a `.skeleton` file of their own."""
  frames = blocks[first:last + 1]
  path.write_text(f"{len(frames)}\n" + "".join(line for b in frames for line in b))
  return str(path)


def _run(predictor, lines, *, has_header: bool, window: int, stride: int):
  frames = streaming.replay(lines, "test", fps=0.0, has_header=has_header)
  return list(streaming.stream(frames, predictor, window=window, stride=stride, source="test"))


def test_stream_windows_equal_offline_prediction_of_the_same_frames(artifacts, skeleton_file,
                                                                    tmp_path):
  predictor = predict.stream_predictor(workdir=None, exported=artifacts["skeleton"], top=4)
  predictor.warm_up()
  blocks = _blocks(skeleton_file)
  window, stride = 12, 5
  with open(skeleton_file) as f:
    results = _run(predictor, f, has_header=True, window=window, stride=stride)
  # Windows end at frames 12, 17, 22, ...: the first once the window is full, then every stride.
  assert [(r.first_frame, r.last_frame) for r in results] == [
      (end - window + 1, end) for end in range(window - 1, len(blocks), stride)]
  offline = predict.ExportedModel(artifacts["skeleton"])
  for r in results:
    path = _window_file(blocks, r.first_frame, r.last_frame, tmp_path / f"w{r.index}.skeleton")
    inputs = offline.reader.read(path, None)
    ranked = predict.ranking(offline.logits("skeleton", inputs)[0], offline.class_names)
    assert [name for name, _ in r.top] == [name for name, _ in ranked[:4]]
    np.testing.assert_allclose([p for _, p in r.top], [p for _, p in ranked[:4]], atol=1e-6)
    assert r.compute_ms > 0 and r.latency_ms >= r.compute_ms
  # The windows see different frames, so their answers differ somewhere.
  assert len({tuple(p for _, p in r.top) for r in results}) > 1


def test_frame_blocks_on_stdin_give_the_file_replays_answers(artifacts, skeleton_file):
  predictor = predict.stream_predictor(workdir=None, exported=artifacts["skeleton"], top=3)
  with open(skeleton_file) as f:
    from_file = _run(predictor, f, has_header=True, window=8, stride=7)
  blocks = _blocks(skeleton_file)
  # A producer writes frame blocks without the frame-count line, with blank lines between.
  lines = [line for b in blocks for line in (*b, "\n")]
  from_stdin = _run(predictor, lines, has_header=False, window=8, stride=7)
  assert [(r.first_frame, r.last_frame, r.top) for r in from_stdin] == [
      (r.first_frame, r.last_frame, r.top) for r in from_file]


def test_the_workdir_model_streams_like_its_artifact(tiny_trained_run, artifacts, skeleton_file):
  by_run = predict.stream_predictor(workdir=tiny_trained_run, exported=None, top=3)
  by_artifact = predict.stream_predictor(workdir=None, exported=artifacts["skeleton"], top=3)
  blocks = _blocks(skeleton_file)
  for predictor in (by_run, by_artifact):
    assert predictor.max_frames == 32
  lines = [line for b in blocks for line in b]
  a = _run(by_run, lines, has_header=False, window=10, stride=10)
  b = _run(by_artifact, lines, has_header=False, window=10, stride=10)
  assert [r.top[0][0] for r in a] == [r.top[0][0] for r in b]
  np.testing.assert_allclose([p for r in a for _, p in r.top], [p for r in b for _, p in r.top],
                             atol=1e-5)


def test_a_stream_shorter_than_the_window_is_answered_once_on_all_of_it(artifacts,
                                                                         skeleton_file):
  predictor = predict.stream_predictor(workdir=None, exported=artifacts["skeleton"], top=2)
  blocks = _blocks(skeleton_file)[:5]
  (result,) = _run(predictor, [line for b in blocks for line in b], has_header=False,
                   window=20, stride=3)
  assert (result.first_frame, result.last_frame) == (0, 4)


class FakeClock:
  """Time that advances only by `sleep` and by a fixed cost per model call."""

  def __init__(self):
    self.now = 100.0
    self.sleeps = []

  def __call__(self) -> float:
    return self.now

  def sleep(self, seconds: float) -> None:
    self.sleeps.append(seconds)
    self.now += seconds


def test_replay_delivers_frames_at_the_frame_rate_and_latency_counts_the_backlog(skeleton_file):
  clock = FakeClock()
  with open(skeleton_file) as f:
    lines = f.readlines()

  class SlowPredictor:
    """Takes 0.2 s per window: slower than windows fall due at stride 3 and 30 fps (0.1 s)."""
    def window_logits(self, sequence):
      clock.now += 0.2
      return np.zeros(2)

    def ranked(self, logits):
      return [("a", 0.5)]

  frames = streaming.replay(lines, "test", fps=30.0, has_header=True, clock=clock,
                            sleep=clock.sleep)
  results, summary = streaming.run(frames, SlowPredictor(), window=3, stride=3, source="test",
                                   fps=30.0, clock=clock)
  # Frame i is due 100 + i / 30 s: the replay waited for frames 1 and 2, then was behind.
  assert clock.sleeps == pytest.approx([1 / 30, 1 / 30])
  first, second, third = results[:3]
  assert first.latency_ms == pytest.approx(200.0)
  # The second window's last frame was due at 100 + 5/30 s but the first answer came at
  # 100 + 2/30 + 0.2 s, so it waited behind it: latency 0.2 s of compute + 0.1 s of backlog.
  assert second.latency_ms == pytest.approx(1e3 * (2 / 30 + 0.2 - 5 / 30) + 200.0)
  assert third.latency_ms > second.latency_ms  # falling further behind
  assert summary["frames"] == len(_blocks(skeleton_file))
  assert summary["windows_per_s"] == pytest.approx(5.0)
  assert summary["windows_due_per_s"] == pytest.approx(10.0)
  assert summary["keeps_up"] is False
  assert summary["min_stride_to_keep_up"] == 6  # 30 fps / 5 windows per s


def test_malformed_streams_name_the_frame_and_line(skeleton_file, tmp_path):
  blocks = _blocks(skeleton_file)
  lines = [line for b in blocks[:3] for line in b]
  # The third frame cut inside its joint lines.
  cut = lines[:-5]
  with pytest.raises(DataFormatError, match=r"stdin:\d+: the stream ended inside a frame"):
    list(streaming.replay(cut, "stdin", fps=0.0, has_header=False))
  with pytest.raises(DataFormatError, match=r"stdin:1: expected a frame's body count"):
    list(streaming.replay(["hello\n", *lines], "stdin", fps=0.0, has_header=False))
  with pytest.raises(DataFormatError, match=r"stdin:1: expected a body count 0-6, got 9"):
    list(streaming.replay(["9\n", *lines], "stdin", fps=0.0, has_header=False))
  # A joint line with a letter in it: the `.skeleton` reader's own check, naming the frame and
  # the stream's line (0-based index len(blocks[0]) + 3); in a file, the header counts too.
  bad = list(lines)
  bad[len(blocks[0]) + 3] = "0.1 x 0.3\n"
  with pytest.raises(DataFormatError, match=rf"stdin \(frame 2\):{len(blocks[0]) + 4}: "):
    list(streaming.replay(bad, "stdin", fps=0.0, has_header=False))
  with pytest.raises(DataFormatError, match=rf"f.skeleton \(frame 2\):{len(blocks[0]) + 5}: "):
    list(streaming.replay(["3\n", *bad], "f.skeleton", fps=0.0, has_header=True))
  # A file whose frame count disagrees with its frames.
  with pytest.raises(DataFormatError, match="declares 5 frames on line 1 but holds 3"):
    list(streaming.replay(["5\n", *lines], "f.skeleton", fps=0.0, has_header=True))
  with pytest.raises(DataFormatError, match="unexpected content after the last of 2 frames"):
    list(streaming.replay(["2\n", *lines], "f.skeleton", fps=0.0, has_header=True))


def test_stream_refusals_name_the_flag(artifacts, tmp_path):
  with pytest.raises(FlagError, match="--stream reads skeleton frames only; .* fusion model"):
    predict.stream_predictor(workdir=None, exported=artifacts["fusion"], top=5)
  with pytest.raises(FlagError, match="exactly one of --workdir .* got neither"):
    predict.stream_predictor(workdir=None, exported=None, top=5)
  with pytest.raises(FlagError, match="--window=40: the model reads at most 32 frames"):
    streaming.check_flags(40, 5, 30.0, 32)
  # Not given, the window is the default capped at what the model reads; given, it is kept.
  assert streaming.resolve_window(None, 32) == 32
  assert streaming.resolve_window(None, 300) == streaming.DEFAULT_WINDOW
  assert streaming.resolve_window(40, 32) == 40
  with pytest.raises(FlagError, match="--stride=0"):
    streaming.check_flags(8, 0, 30.0, 32)
  with pytest.raises(FlagError, match="--fps=-1"):
    streaming.check_flags(8, 1, -1, 32)
  with pytest.raises(FlagError, match="--skeleton=.*nothing.skeleton"):
    streaming.open_lines(str(tmp_path / "nothing.skeleton"), sys.stdin)


def test_the_command_reads_frame_blocks_from_stdin(artifacts, skeleton_file):
  blocks = _blocks(skeleton_file)
  proc = subprocess.run(
      [sys.executable, "-m", "amfi_jax.predict", "--stream", f"--exported={artifacts['skeleton']}",
       "--skeleton=-", "--window=16", "--stride=8", "--top=2"],
      input="".join(line for b in blocks for line in b), cwd=REPO,
      env=cpu_env(), capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr
  out = proc.stdout.strip().splitlines()
  windows = [line for line in out if line.startswith("window ")]
  expected = len(range(15, len(blocks), 8))
  assert len(windows) == expected and windows[0].startswith("window 1 frames 1-16: ")
  summary = json.loads(out[-1])
  assert summary["windows"] == expected and summary["frames"] == len(blocks)
  assert summary["latency_p99_ms"] >= summary["latency_p50_ms"] > 0


def test_the_benchmark_loops_the_file_for_the_windows_it_times(artifacts, skeleton_file):
  from amfi_jax.tools import stream_benchmark

  blocks = _blocks(skeleton_file)
  lines = stream_benchmark.looped_blocks(skeleton_file, 2 * len(blocks) + 1)
  assert lines == [line for b in (*blocks, *blocks, blocks[0]) for line in b]
  record = stream_benchmark.skeleton_stream(artifacts["skeleton"], skeleton_file, windows=4,
                                            window=8, stride=3)
  assert record["what"] == "skeleton_stream"
  assert record["windows"] == 4 and record["frames"] == 8 + 3 * 3
  assert record["min_stride_to_keep_up"] >= 1 and record["windows_per_s"] > 0
