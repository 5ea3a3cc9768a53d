"""Where the real NTU and UTD-MHAD files are: `../shared/data` beside the repository root."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_path(*parts: str) -> Path:
  """A file or folder under ../shared/data; skips the test (saying which) when it is absent."""
  path = SHARED_DATA.joinpath(*parts)
  if not path.exists():
    pytest.skip(f"real data {path} not available (../shared/data is not beside the repository)")
  return path
