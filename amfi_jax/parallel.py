"""Parallelism in one place: logical axis names, the rules mapping them onto the device mesh, the
mesh, and the shardings of state, batches and activations.

Parameters and activations carry *logical* axis names (`batch`, `channels`, `out_channels`, ...);
a rules table maps each onto a mesh axis (`data` for the batch, `model` for optional parameter
and activation sharding) or onto none. Changing the parallelism is a change of rules
(`config.mesh.rules`), never of model code. Shardings are derived from the abstract state, so the
same code runs on 1 CPU, 8 fake CPU devices, a GPU host or a TPU slice.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Iterator, Mapping, Sequence

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from amfi_jax.errors import ConfigError

AXES = ("data", "model")

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
LOGICAL_AXES = (BATCH, TIME, HEIGHT, WIDTH, JOINTS, CHANNELS, IN_CHANNELS, OUT_CHANNELS, CLASSES,
                SUBSETS)

# Data parallelism over `data`; parameters (and their optimiser state) may additionally be sharded
# over `model` by their output channels. A mesh whose `model` axis has size 1 replicates them.
# '' = not sharded. This is the default of `config.mesh.rules`.
DEFAULT_RULES: dict[str, str] = {
    BATCH: "data", OUT_CHANNELS: "model", CLASSES: "", IN_CHANNELS: "", SUBSETS: "",
    JOINTS: "", TIME: "", HEIGHT: "", WIDTH: "", CHANNELS: "",
}

Rules = tuple[tuple[str, str | None], ...]


def rules_from(table: Mapping[str, str]) -> Rules:
  """A hashable rules table from `config.mesh.rules`; raises naming an unknown axis or target."""
  unknown = sorted(set(table) - set(LOGICAL_AXES))
  if unknown:
    raise ConfigError(f"config.mesh.rules: unknown logical axes {unknown}; known: "
                      f"{list(LOGICAL_AXES)}")
  rules = []
  for name in LOGICAL_AXES:
    target = table.get(name, "") or None
    if target is not None and target not in AXES:
      raise ConfigError(f"config.mesh.rules.{name}={target!r}: must be one of {list(AXES)} or ''")
    rules.append((name, target))
  return tuple(rules)


def config_rules(mesh_cfg) -> Rules:
  """The rules of a `config.mesh` (runs recorded before rules were configurable: the default)."""
  return rules_from(mesh_cfg.get("rules") or DEFAULT_RULES)


def param_axes(*names: str | None) -> dict:
  """Variable metadata naming a parameter's logical axes.

  Sharding is applied later from the abstract state (jitted init with `out_shardings`), so the
  variables are created unsharded (`eager_sharding=False`) and a model can be built without a mesh.
  """
  return {"out_sharding": tuple(names), "eager_sharding": False}


def logical_to_spec(names: Sequence[str | None], rules: Rules) -> PartitionSpec:
  """PartitionSpec of logical `names` under `rules`."""
  table = dict(rules)
  return PartitionSpec(*(table.get(n) if n is not None else None for n in names))


def make_mesh(data: int = -1, model: int = 1, devices=None) -> Mesh:
  """A (`data`, `model`) mesh over all devices; `data=-1` takes what `model` leaves."""
  devices = list(jax.devices() if devices is None else devices)
  n = len(devices)
  if model < 1 or n % model:
    raise ConfigError(f"config.mesh.model={model} must be ≥ 1 and divide the {n} devices")
  if data == -1:
    data = n // model
  if data * model != n:
    raise ConfigError(f"config.mesh.data × config.mesh.model = {data} × {model} must equal the "
                      f"{n} available devices (use data=-1 to fill)")
  return Mesh(np.asarray(devices).reshape(data, model), AXES,
              axis_types=(jax.sharding.AxisType.Auto,) * 2)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec("data"))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def _fit(spec: PartitionSpec, shape, mesh: Mesh) -> PartitionSpec:
  """Drops a mesh axis from dimensions it does not divide (e.g. 60 classes over 8 devices)."""
  axes = []
  for dim, axis in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec))):
    size = math.prod(mesh.shape[a] for a in ((axis,) if isinstance(axis, str) else axis or ()))
    axes.append(axis if size > 1 and dim % size == 0 else None)
  return PartitionSpec(*axes)


def variable_shardings(abstract_state: nnx.State, mesh: Mesh, rules: Rules):
  """NamedShardings for a model state (pure dict), from its variables' logical axis names."""
  def one(variable):
    names = variable.get_metadata().get("out_sharding") or ()
    spec = logical_to_spec(names, rules) if names else PartitionSpec()
    return NamedSharding(mesh, _fit(spec, variable.shape, mesh))

  shardings = jax.tree.map(one, abstract_state, is_leaf=lambda x: isinstance(x, nnx.Variable))
  return nnx.to_pure_dict(shardings)


# The mesh and rules that `constrain` applies, set while a step is traced.
_ACTIVATIONS: contextvars.ContextVar[tuple[Mesh, Rules] | None] = contextvars.ContextVar(
    "activation_sharding", default=None)


@contextlib.contextmanager
def activation_sharding(mesh: Mesh, rules: Rules) -> Iterator[None]:
  """Makes `constrain` place activations by `rules` on `mesh` while a model is traced inside."""
  token = _ACTIVATIONS.set((mesh, rules))
  try:
    yield
  finally:
    _ACTIVATIONS.reset(token)


def constrain(x: jax.Array, *names: str | None) -> jax.Array:
  """Sharding constraint on an activation by logical names; a no-op outside
  `activation_sharding` (e.g. a model called eagerly or traced without a mesh)."""
  active = _ACTIVATIONS.get()
  if active is None:
    return x
  mesh, rules = active
  spec = _fit(logical_to_spec(names, rules), x.shape, mesh)
  return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))
