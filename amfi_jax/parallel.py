"""The device mesh and how state and batches are laid out on it.

A 2-D mesh (`data`, `model`): batches are split over `data`; parameters and optimiser state are
replicated over `data` and, by the logical-axis rules of `amfi_jax.sharding`, may be split over
`model` by output channels. Shardings are derived from the abstract state, so the same code runs
on 1 CPU, 8 fake CPU devices, a GPU host or a TPU slice.
"""

from __future__ import annotations

import math

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from amfi_jax import sharding as shd

AXES = ("data", "model")


def make_mesh(data: int = -1, model: int = 1, devices=None) -> Mesh:
  """A (`data`, `model`) mesh over all devices; `data=-1` takes what `model` leaves."""
  devices = list(jax.devices() if devices is None else devices)
  n = len(devices)
  if model < 1 or n % model:
    raise ValueError(f"config.mesh.model={model} must be ≥ 1 and divide the {n} devices")
  if data == -1:
    data = n // model
  if data * model != n:
    raise ValueError(f"config.mesh.data × config.mesh.model = {data} × {model} must equal the "
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


def variable_shardings(abstract_state: nnx.State, mesh: Mesh, rules=shd.DEFAULT_RULES):
  """NamedShardings for a model state (pure dict), from its variables' logical axis names."""
  def one(variable):
    names = variable.get_metadata().get("out_sharding") or ()
    spec = shd.logical_to_spec(names, rules) if names else PartitionSpec()
    return NamedSharding(mesh, _fit(spec, variable.shape, mesh))

  shardings = jax.tree.map(one, abstract_state, is_leaf=lambda x: isinstance(x, nnx.Variable))
  return nnx.to_pure_dict(shardings)
