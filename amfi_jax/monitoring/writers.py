"""Metric writers: TensorBoard event files (via tensorboardX, no TensorFlow) and metrics.jsonl.

Only process 0 should write: build the writer with `enabled=jax.process_index() == 0`; on other
processes every method is a no-op and no file or folder is created.

Files in `logdir`:
  events.out.tfevents.*   scalars under '<split>/<name>' tags, and the config as text.
  metrics.jsonl           one JSON object per `write_scalars` call:
                            {"step": 100, "split": "train", "loss": 1.23, "lr": 0.1}
                          non-finite values are written as null (JSON has no NaN). A resumed run
                          appends, so a step may appear twice; the later line wins.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

METRICS_FILE = "metrics.jsonl"
_RESERVED_KEYS = ("step", "split")


def _to_float(value: Any) -> float:
  # np.asarray handles Python and numpy scalars and 0-d arrays (including jax arrays already on
  # the host); anything with more than one element is a caller bug worth a clear error.
  array = np.asarray(value)
  if array.size != 1:
    raise ValueError(f"scalar metrics must have one element, got shape {array.shape}")
  return float(array.reshape(()))


def flatten_config(config: Any, prefix: str = "") -> dict[str, Any]:
  """Nested mapping (or ml_collections ConfigDict) -> {'a.b.c': value}, in insertion order."""
  if not isinstance(config, Mapping) and hasattr(config, "to_dict"):
    config = config.to_dict()  # ml_collections ConfigDict / FrozenConfigDict
  flat: dict[str, Any] = {}
  for key, value in config.items():
    name = f"{prefix}{key}"
    if isinstance(value, Mapping) or hasattr(value, "to_dict"):
      flat.update(flatten_config(value, prefix=f"{name}."))
    else:
      flat[name] = value
  return flat


def _summary_writer_class():
  """tensorboardX's SummaryWriter, imported without importing PyTorch.

  tensorboardX imports torch whenever it is installed, only to accept torch tensors, which this
  writer never passes; with the `torch` extra installed that import cost every training process
  ~3 s at start and ~1 s at exit. A `None` entry in `sys.modules` makes `import torch` raise
  ImportError, which tensorboardX handles; the entry is removed again at once. When torch is
  already imported there is nothing to save.
  """
  if "torch" in sys.modules or "tensorboardX" in sys.modules:
    from tensorboardX import SummaryWriter
    return SummaryWriter
  sys.modules["torch"] = None
  try:
    from tensorboardX import SummaryWriter
  finally:
    del sys.modules["torch"]
  return SummaryWriter


class MetricWriter:
  """Writes scalar metrics to TensorBoard event files and to metrics.jsonl.

  Args:
    logdir: folder for both outputs (created on first use when enabled).
    enabled: False on every process but 0: then nothing is written and nothing created.

  Usable as a context manager; `close()` is idempotent.
  """

  def __init__(self, logdir: str | os.PathLike, *, enabled: bool):
    self.logdir = Path(logdir)
    self.enabled = bool(enabled)
    self._summary = None
    self._jsonl = None
    if self.enabled:
      # Imported here so that disabled writers (other processes) never touch tensorboardX.
      summary_writer = _summary_writer_class()
      self.logdir.mkdir(parents=True, exist_ok=True)
      self._summary = summary_writer(logdir=str(self.logdir), flush_secs=30)
      self._jsonl = open(self.logdir / METRICS_FILE, "a", encoding="utf-8")

  def write_scalars(self, step: int, scalars: Mapping[str, Any], *,
                    split: str | None = None) -> None:
    """Writes one step's scalars.

    Args:
      step: the global training step.
      scalars: name -> scalar (Python, numpy or host-side jax scalar).
      split: optional group such as 'train', 'validation', 'test': TensorBoard tags become
        '<split>/<name>' and the JSON line gets a "split" field.

    Raises:
      ValueError: a name is 'step' or 'split' (reserved for the JSON line), or a value is not
        a scalar.
    """
    if not self.enabled:
      return
    self._check_open()
    clash = [k for k in scalars if k in _RESERVED_KEYS]
    if clash:
      raise ValueError(f"metric names {clash} are reserved in {METRICS_FILE}")
    values = {str(name): _to_float(value) for name, value in scalars.items()}
    step = int(step)
    for name, value in values.items():
      tag = f"{split}/{name}" if split else name
      self._summary.add_scalar(tag, value, global_step=step)
    row: dict[str, Any] = {"step": step}
    if split:
      row["split"] = split
    row.update({name: value if math.isfinite(value) else None for name, value in values.items()})
    self._jsonl.write(json.dumps(row, allow_nan=False) + "\n")
    # metrics.jsonl is what people `tail -f`; a line per write is cheap next to a train step.
    self._jsonl.flush()

  def write_hparams(self, config: Any) -> None:
    """Writes the flattened config as a TensorBoard text summary (a two-column Markdown table).

    Args:
      config: nested mapping or ml_collections ConfigDict.
    """
    if not self.enabled:
      return
    self._check_open()
    flat = flatten_config(config)
    lines = ["| key | value |", "|---|---|"]
    lines += [f"| {key} | {_markdown_cell(value)} |" for key, value in flat.items()]
    self._summary.add_text("hparams", "\n".join(lines), global_step=0)

  def _check_open(self) -> None:
    if self._summary is None:
      raise RuntimeError(f"MetricWriter({self.logdir}) is closed")

  def flush(self) -> None:
    """Pushes buffered events and lines to disk."""
    if not self.enabled:
      return
    if self._summary is not None:
      self._summary.flush()
    if self._jsonl is not None:
      self._jsonl.flush()

  def close(self) -> None:
    """Flushes and closes both files; later writes raise RuntimeError."""
    if self._summary is not None:
      self._summary.close()
      self._summary = None
    if self._jsonl is not None:
      self._jsonl.close()
      self._jsonl = None

  def __enter__(self) -> MetricWriter:
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()


def _markdown_cell(value: Any) -> str:
  # A '|' would end the Markdown cell early.
  return repr(value).replace("|", "\\|")


def _leaves(tree: Any, prefix: tuple[str, ...] = ()):
  """(path, leaf) pairs of nested mappings / lists / tuples; a leaf is anything with a shape."""
  if hasattr(tree, "shape") and hasattr(tree, "dtype"):
    yield prefix, tree
  elif isinstance(tree, Mapping):
    for key, value in tree.items():
      yield from _leaves(value, prefix + (str(key),))
  elif isinstance(tree, (list, tuple)):
    for i, value in enumerate(tree):
      yield from _leaves(value, prefix + (str(i),))
  elif tree is None:
    return
  else:
    raise TypeError(f"parameter_overview: {'/'.join(prefix) or 'root'} is a "
                    f"{type(tree).__name__}, neither a mapping, a sequence nor an array")


def parameter_overview(params: Any) -> str:
  """A table of parameter paths, shapes, sizes and dtypes with the total, for the start-up log.

  Args:
    params: nested mappings (plain dicts, flax `nnx.State`, ...), lists or tuples whose leaves
      have `.shape` and `.dtype` (numpy / jax arrays, `jax.ShapeDtypeStruct`, nnx Variables);
      nothing is read from the device.

  Returns:
    The table, ending with 'Total: N parameters (size in bytes)'.
  """
  rows = []
  total = 0
  total_bytes = 0
  for path, leaf in _leaves(params):
    shape = tuple(int(d) for d in leaf.shape)
    size = int(np.prod(shape, dtype=np.int64))
    dtype = np.dtype(leaf.dtype)
    total += size
    total_bytes += size * dtype.itemsize
    rows.append(("/".join(path) or "(root)", str(shape), f"{size:,}", dtype.name))
  header = ("Name", "Shape", "Size", "Dtype")
  widths = [max(len(r[i]) for r in [header] + rows) for i in range(4)]

  def line(cells):
    return "| " + " | ".join(c.rjust(w) if i == 2 else c.ljust(w)
                             for i, (c, w) in enumerate(zip(cells, widths))) + " |"

  rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
  out = [rule, line(header), rule] + [line(r) for r in rows] + [rule]
  out.append(f"Total: {total:,} parameters ({_human_bytes(total_bytes)})")
  return "\n".join(out)


def _human_bytes(count: int) -> str:
  for unit in ("B", "KiB", "MiB", "GiB"):
    if count < 1024 or unit == "GiB":
      return f"{count:,} {unit}" if unit == "B" else f"{count:.2f} {unit}"
    count /= 1024
  raise AssertionError("unreachable")
