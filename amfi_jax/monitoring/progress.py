"""A dependency-free training progress line: step/total, examples/s, ETA and live values.

On a terminal the line is redrawn in place (carriage return); on anything else (CI logs, a
redirected stderr, a StringIO) each update is a separate plain line, and updates are further
apart so that a long run does not flood the log.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

# Weight of the newest interval in the exponential moving averages of the rates: high enough
# to follow a change (e.g. after compilation or an evaluation pause) within a few updates.
_SMOOTHING = 0.3


def format_duration(seconds: float) -> str:
  """H:MM:SS, or '?' when unknown / infinite."""
  if not math.isfinite(seconds) or seconds < 0:
    return "?"
  seconds = int(round(seconds))
  return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _format_value(value: Any) -> str:
  if isinstance(value, float):
    return f"{value:.4g}"
  try:  # numpy / host-side jax scalars
    if getattr(value, "ndim", None) == 0:
      return f"{float(value):.4g}"
  except (TypeError, ValueError):
    pass
  return str(value)


class ProgressBar:
  """Prints 'step 120/1000 (12.0%) | 345.6 ex/s | ETA 0:04:35 | loss=1.23' as training runs.

  Rates are measured from the first `update` on, so compilation before the first step does not
  depress them, and smoothed with an exponential moving average over the printed intervals.
  The ETA is (total - step) / smoothed steps per second.

  Args:
    total_steps: the last step.
    initial_step: the step training starts (or resumes) from.
    enabled: False on every process but 0: nothing is ever printed.
    stream: where to print.
    min_interval: least seconds between printed updates; None means 0.5 s on a terminal (at
      most ~2 redraws a second) and 10 s otherwise (a line per 10 s in a log). The first
      update and the one reaching `total_steps` always print.
    clock: monotonic seconds (injectable for tests).
  """

  def __init__(self, total_steps: int, *, initial_step: int = 0, enabled: bool,
               stream: TextIO = sys.stderr, min_interval: float | None = None,
               clock: Callable[[], float] = time.monotonic):
    self.total_steps = int(total_steps)
    self.enabled = bool(enabled)
    self._stream = stream
    isatty = getattr(stream, "isatty", None)
    self._tty = bool(isatty()) if callable(isatty) else False
    self._min_interval = (0.5 if self._tty else 10.0) if min_interval is None else min_interval
    self._clock = clock
    self._last_time: float | None = None  # time of the last printed update
    self._last_step = int(initial_step)
    self._pending_examples = 0  # examples since the last printed update
    self._examples_per_s = math.nan
    self._steps_per_s = math.nan
    self._line_length = 0
    self._closed = False

  def update(self, step: int, examples: int, **postfix: Any) -> None:
    """Records progress and prints a line unless the last one was under `min_interval` ago.

    Args:
      step: the current global step (after the steps just run).
      examples: examples processed since the previous `update` (all processes together if
        the rate should be global, e.g. the global batch size times the steps run).
      **postfix: values shown as name=value, e.g. loss=1.23, lr=0.1.
    """
    if not self.enabled or self._closed:
      return
    now = self._clock()
    self._pending_examples += int(examples)
    if self._last_time is None:
      # The first call only starts the clock: the time before it is compilation, not speed.
      self._start(now, step)
      self._print(step, postfix)
      return
    elapsed = now - self._last_time
    final = step >= self.total_steps
    if elapsed < self._min_interval and not final:
      return
    if elapsed > 0:
      self._examples_per_s = _ema(self._examples_per_s, self._pending_examples / elapsed)
      self._steps_per_s = _ema(self._steps_per_s, (step - self._last_step) / elapsed)
    self._start(now, step)
    self._print(step, postfix)

  def _start(self, now: float, step: int) -> None:
    self._last_time = now
    self._last_step = int(step)
    self._pending_examples = 0

  def _print(self, step: int, postfix: dict[str, Any]) -> None:
    total = max(self.total_steps, 1)
    parts = [f"step {step}/{self.total_steps} ({100.0 * step / total:.1f}%)"]
    rate = "?" if math.isnan(self._examples_per_s) else f"{self._examples_per_s:.1f}"
    parts.append(f"{rate} ex/s")
    if self._steps_per_s > 0:
      eta = max(self.total_steps - step, 0) / self._steps_per_s
    else:
      eta = 0.0 if step >= self.total_steps else math.nan
    parts.append(f"ETA {format_duration(eta)}")
    if postfix:
      parts.append(" ".join(f"{name}={_format_value(v)}" for name, v in postfix.items()))
    line = " | ".join(parts)
    if self._tty:
      # Pad with spaces to wipe the tail of a longer previous line.
      self._stream.write("\r" + line + " " * max(self._line_length - len(line), 0))
      self._line_length = len(line)
    else:
      self._stream.write(line + "\n")
    self._stream.flush()

  def close(self) -> None:
    """Ends the in-place line on a terminal; later updates are ignored."""
    if self.enabled and not self._closed and self._tty and self._line_length:
      self._stream.write("\n")
      self._stream.flush()
    self._closed = True

  def __enter__(self) -> ProgressBar:
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()


def _ema(previous: float, value: float) -> float:
  return value if math.isnan(previous) else (1 - _SMOOTHING) * previous + _SMOOTHING * value
