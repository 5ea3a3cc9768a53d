"""What a stream's weights are, and the error raised when weights do not fit a stream."""

from __future__ import annotations

from flax import nnx

from amfi_jax.errors import UserError


class WeightImportError(UserError, ValueError):
  """Weights that do not fit the stream; the message lists every offending key."""


def stream_state(model: nnx.Module) -> nnx.State:
  """The leaves a stream's weights consist of: trained parameters and BatchNorm statistics."""
  return nnx.state(model, nnx.Any(nnx.Param, nnx.BatchStat))
