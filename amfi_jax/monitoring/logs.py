"""Console logging of the command-line entry points."""

from __future__ import annotations

import logging as py_logging

# Libraries whose INFO lines drown the training log (Orbax logs every file it writes).
_QUIET_LOGGERS = ("orbax", "tensorflow_datasets", "array_record", "grain")


class _QuietLibraries(py_logging.Filter):
  """Drops INFO and DEBUG records from chatty libraries; warnings and errors pass."""

  def filter(self, record: py_logging.LogRecord) -> bool:
    if record.levelno >= py_logging.WARNING:
      return True
    return not any(f"/{name}/" in record.pathname or f"{name}_" in record.pathname
                   for name in _QUIET_LOGGERS)


def quiet_library_logs() -> None:
  """Installs the filter on absl's handler (all absl logging goes through it)."""
  from absl import logging as absl_logging
  absl_logging.get_absl_handler().addFilter(_QuietLibraries())
