"""The one error type of the data path: a raw file that does not have the expected format."""

from __future__ import annotations

import os

from amfi_jax.errors import UserError


class DataFormatError(UserError, ValueError):
  """A malformed input file.

  Every reader of the data path raises this (and only this) for malformed input, so a dataset
  build can catch it, log the offending file and either stop or skip it deliberately.

  Attributes:
    path: the file (or name) that is malformed, as a string.
    line: 1-based line number where the problem was found, or None when it is not line-bound
      (a binary file, a whole-file property).
    message: what was found and what was expected.
  """

  def __init__(self, path: str | os.PathLike, message: str, line: int | None = None):
    self.path = os.fspath(path)
    self.line = line
    self.message = message
    super().__init__(self._format())

  def _format(self) -> str:
    if self.line is None:
      return f"{self.path}: {self.message}"
    return f"{self.path}:{self.line}: {self.message}"

  def __str__(self) -> str:
    return self._format()

  def __reduce__(self):
    # Keep the exception picklable (grain / multiprocessing workers send errors across processes);
    # the default reduce would call __init__ with the formatted string as the only argument.
    return (type(self), (self.path, self.message, self.line))
