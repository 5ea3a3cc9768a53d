"""MetricWriter files (read back without TensorFlow), parameter_overview, ProgressBar."""

from __future__ import annotations

import importlib.util
import io
import json
import struct
import subprocess
import sys

import ml_collections
import numpy as np
import pytest
from tensorboardX.proto import event_pb2

from amfi_jax.monitoring import MetricWriter, ProgressBar, flatten_config, parameter_overview


def _read_events(logdir):
  """Every Event of the single event file in logdir, parsed from its TFRecord framing."""
  files = list(logdir.glob("events.out.tfevents.*"))
  assert len(files) == 1
  data = files[0].read_bytes()
  assert data
  events, offset = [], 0
  while offset < len(data):
    # Record: uint64 length, uint32 masked CRC of the length, payload, uint32 CRC of it.
    (length,) = struct.unpack("<Q", data[offset:offset + 8])
    payload = data[offset + 12:offset + 12 + length]
    events.append(event_pb2.Event.FromString(payload))
    offset += 12 + length + 4
  assert offset == len(data)
  return events


def test_metric_writer_event_file_and_jsonl(tmp_path):
  logdir = tmp_path / "logs"
  with MetricWriter(logdir, enabled=True) as writer:
    writer.write_scalars(10, {"loss": 1.5, "lr": np.float32(0.25)}, split="train")
    writer.write_scalars(20, {"top1": 0.75, "loss": float("nan")}, split="validation")
    writer.write_scalars(30, {"examples_per_sec": np.array(128.0)})
    writer.write_hparams({"optimizer": {"lr": 0.1, "momentum": 0.9}, "model": "amfi|v1"})
    with pytest.raises(ValueError, match="reserved"):
      writer.write_scalars(40, {"step": 1.0})
    with pytest.raises(ValueError, match="one element"):
      writer.write_scalars(40, {"loss": np.zeros(2)})

  lines = (logdir / "metrics.jsonl").read_text().splitlines()
  assert [json.loads(line) for line in lines] == [
      {"step": 10, "split": "train", "loss": 1.5, "lr": 0.25},
      {"step": 20, "split": "validation", "top1": 0.75, "loss": None},
      {"step": 30, "examples_per_sec": 128.0},
  ]

  scalars, texts = {}, []
  for event in _read_events(logdir):
    for value in event.summary.value:
      if value.HasField("simple_value"):
        scalars[(value.tag, event.step)] = value.simple_value
      elif value.HasField("tensor"):
        texts.append(value.tensor.string_val[0].decode())
  assert scalars[("train/loss", 10)] == 1.5
  assert scalars[("train/lr", 10)] == 0.25
  assert scalars[("validation/top1", 20)] == 0.75
  assert np.isnan(scalars[("validation/loss", 20)])
  assert scalars[("examples_per_sec", 30)] == 128.0
  assert len(texts) == 1
  assert "| optimizer.lr | 0.1 |" in texts[0] and "'amfi\\|v1'" in texts[0]


def test_metric_writer_appends_on_resume(tmp_path):
  for step in (1, 2):
    writer = MetricWriter(tmp_path, enabled=True)
    writer.write_scalars(step, {"loss": float(step)})
    writer.close()
    writer.close()  # idempotent
  rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in rows] == [1, 2]
  with pytest.raises(RuntimeError, match="closed"):
    writer.write_scalars(3, {"loss": 3.0})


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")
def test_enabled_writer_does_not_import_torch(tmp_path):
  """tensorboardX would import torch when it is installed (seconds of start-up per process);
  the writer keeps it out, and torch still imports normally afterwards."""
  code = ("import sys; from amfi_jax.monitoring import MetricWriter; "
          f"w = MetricWriter({str(tmp_path)!r}, enabled=True); w.write_scalars(1, {{'loss': 1.0}}); "
          "w.close(); print('torch' in sys.modules); import torch; print(torch.ones(1).item())")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  assert out.stdout.split() == ["False", "1.0"]
  assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 1


def test_disabled_metric_writer_creates_nothing(tmp_path):
  logdir = tmp_path / "logs"
  writer = MetricWriter(logdir, enabled=False)
  writer.write_scalars(1, {"loss": 1.0}, split="train")
  writer.write_hparams({"a": 1})
  writer.flush()
  writer.close()
  assert not logdir.exists()
  assert list(tmp_path.iterdir()) == []


def test_flatten_config_nested_and_config_dict():
  nested = {"a": {"b": 1, "c": {"d": "x"}}, "e": [1, 2]}
  expected = {"a.b": 1, "a.c.d": "x", "e": [1, 2]}
  assert flatten_config(nested) == expected
  assert flatten_config(ml_collections.ConfigDict(nested)) == expected


class _Spec:
  """A leaf with only .shape and .dtype, like jax.ShapeDtypeStruct or an nnx Variable."""

  def __init__(self, shape, dtype):
    self.shape, self.dtype = shape, dtype


def test_parameter_overview_totals():
  params = {
      "conv": {"kernel": np.zeros((3, 3, 3, 64), np.float32), "bias": np.zeros(64, np.float32)},
      "blocks": [{"scale": _Spec((64,), np.float16)}],
      "head": {"kernel": _Spec((512, 60), np.float32)},
  }
  table = parameter_overview(params)
  expected_total = 3 * 3 * 3 * 64 + 64 + 64 + 512 * 60
  assert f"Total: {expected_total:,} parameters" in table
  expected_bytes = (expected_total - 64) * 4 + 64 * 2
  assert f"({expected_bytes / 1024:.2f} KiB)" in table
  assert "conv/kernel" in table and "(3, 3, 3, 64)" in table and "1,728" in table
  assert "blocks/0/scale" in table and "float16" in table
  assert "head/kernel" in table and "30,720" in table
  with pytest.raises(TypeError, match="conv/oops"):
    parameter_overview({"conv": {"oops": object()}})


class _FakeClock:
  def __init__(self):
    self.now = 100.0

  def __call__(self):
    return self.now


def test_progress_bar_non_tty_lines_rate_eta_and_throttle():
  stream, clock = io.StringIO(), _FakeClock()
  bar = ProgressBar(11, enabled=True, stream=stream, min_interval=0.5, clock=clock)
  bar.update(1, 8, loss=2.5)  # starts the clock; always printed
  clock.now += 0.2
  bar.update(2, 8, loss=2.4)  # 0.2 s later: throttled
  clock.now += 0.8
  bar.update(3, 8, loss=np.float32(2.25), lr=0.1)  # 16 examples and 2 steps in 1 s
  clock.now += 0.1
  bar.update(4, 8)  # throttled
  clock.now += 0.1
  bar.update(11, 8)  # the final step always prints
  bar.close()
  lines = stream.getvalue().splitlines()
  assert len(lines) == 3
  assert lines[0].startswith("step 1/11") and "? ex/s" in lines[0] and "ETA ?" in lines[0]
  assert "loss=2.5" in lines[0]
  # 16 ex/s; 2 steps/s -> (11 - 3) / 2 = 4 s left.
  assert lines[1] == "step 3/11 (27.3%) | 16.0 ex/s | ETA 0:00:04 | loss=2.25 lr=0.1"
  assert lines[2].startswith("step 11/11 (100.0%)") and "ETA 0:00:00" in lines[2]
  assert "\r" not in stream.getvalue()


def test_progress_bar_default_throttle_and_disabled():
  stream, clock = io.StringIO(), _FakeClock()
  bar = ProgressBar(1000, enabled=True, stream=stream, clock=clock)
  for step in range(1, 200):
    clock.now += 0.25  # 4 updates a second for ~50 s
    bar.update(step, 32)
  # Non-TTY default: a line per 10 s at most -> the first + 4.
  assert len(stream.getvalue().splitlines()) == 5

  quiet = io.StringIO()
  disabled = ProgressBar(10, enabled=False, stream=quiet)
  disabled.update(10, 1, loss=1.0)
  disabled.close()
  assert quiet.getvalue() == ""


class _Terminal(io.StringIO):
  def isatty(self):
    return True


def test_progress_bar_tty_redraws_in_place():
  stream, clock = _Terminal(), _FakeClock()
  bar = ProgressBar(10, initial_step=4, enabled=True, stream=stream, clock=clock)
  bar.update(5, 4, loss=1.23456)
  clock.now += 0.3
  bar.update(6, 4)  # under 0.5 s: throttled
  clock.now += 0.3
  bar.update(7, 4)
  output = stream.getvalue()
  assert "\n" not in output and output.count("\r") == 2
  assert "step 7/10" in output and "loss=1.235" in output
  bar.close()
  assert stream.getvalue().endswith("\n")
