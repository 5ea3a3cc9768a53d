"""Logical axis names shared by the models and the parallelism code.

Parameters and activations carry *logical* axis names; a rules table maps them onto the axes of
the device mesh (`data` for the batch, `model` for optional parameter sharding). Changing the
parallelism is a change of rules, never of model code.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
from flax.core import spmd as flax_spmd
from jax.sharding import PartitionSpec

# Activation axes.
BATCH = "batch"
TIME = "time"
HEIGHT = "height"
WIDTH = "width"
JOINTS = "joints"
CHANNELS = "channels"
# Parameter axes.
IN_CHANNELS = "in_channels"
OUT_CHANNELS = "out_channels"
CLASSES = "classes"
SUBSETS = "subsets"

# Data parallelism over `data`; parameters (and their optimiser state) may additionally be sharded
# over `model` by their output channels. A mesh whose `model` axis has size 1 replicates them.
DEFAULT_RULES: tuple[tuple[str, str | None], ...] = (
    (BATCH, "data"),
    (OUT_CHANNELS, "model"),
    (CLASSES, None),
    (IN_CHANNELS, None),
    (SUBSETS, None),
    (JOINTS, None),
    (TIME, None),
    (HEIGHT, None),
    (WIDTH, None),
    (CHANNELS, None),
)


def param_axes(*names: str | None) -> dict:
  """Variable metadata naming a parameter's logical axes.

  Sharding is applied later from the abstract state (jitted init with `out_shardings`), so the
  variables are created unsharded (`eager_sharding=False`) and a model can be built without a mesh.
  """
  return {"out_sharding": tuple(names), "eager_sharding": False}


def logical_to_spec(names: Sequence[str | None], rules=None) -> PartitionSpec:
  """PartitionSpec of logical `names` under `rules` (default: the active `nnx.logical_axis_rules`)."""
  table = dict(rules if rules is not None else flax_spmd.get_logical_axis_rules())
  return PartitionSpec(*(table.get(n) if n is not None else None for n in names))


def constrain(x: jax.Array, *names: str | None) -> jax.Array:
  """Sharding constraint on an activation by logical names; a no-op outside a mesh context."""
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty or not flax_spmd.get_logical_axis_rules():
    return x
  return jax.lax.with_sharding_constraint(x, logical_to_spec(names))
