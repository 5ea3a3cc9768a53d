"""Train state: a pure pytree of arrays, created sharded by a jitted init.

`params` holds what the optimiser updates; `frozen` holds every other model variable (BatchNorm
statistics, and in the fusion stage the frozen streams). The model's structure (`graphdef`) is
static and lives outside the state, so the state saves and restores as plain nested dicts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx, struct
from jax.sharding import Mesh

from amfi_jax import parallel
from amfi_jax.training.stages import Stage


@struct.dataclass
class TrainState:
  step: jax.Array
  params: dict
  frozen: dict
  opt_state: optax.OptState
  rng: jax.Array  # raw key data; threaded through steps for stochastic layers and augmentation


@dataclasses.dataclass(frozen=True)
class StateLayout:
  """Everything static about a stage's state: structure, abstract shapes and shardings."""

  graphdef: nnx.GraphDef
  abstract: TrainState  # ShapeDtypeStructs
  shardings: TrainState  # NamedShardings
  mesh: Mesh
  rules: parallel.Rules  # logical axis → mesh axis, for parameters and activations

  def model(self, params, frozen) -> nnx.Module:
    return nnx.merge(self.graphdef, params, frozen, copy=True)


def _split(model: nnx.Module, stage: Stage):
  graphdef, params, frozen = nnx.split(model, stage.trainable, ...)
  return graphdef, params, frozen


def state_layout(build_model: Callable[[], nnx.Module], stage: Stage,
                 tx: optax.GradientTransformation, mesh: Mesh,
                 rules: parallel.Rules = parallel.rules_from(parallel.DEFAULT_RULES)
                 ) -> StateLayout:
  """Abstract state and its shardings from the variables' logical axes.

  The model is built once, abstractly (`nnx.eval_shape`); the rest of the state follows from
  its parameters without building it again (tracing a model build costs seconds here)."""
  abstract_model = nnx.eval_shape(build_model)
  graphdef, params, frozen = _split(abstract_model, stage)
  if not jax.tree.leaves(params):
    raise ValueError(f"Stage {stage.name!r} has no trainable parameters")
  param_sh = parallel.variable_shardings(params, mesh, rules)
  frozen_sh = parallel.variable_shardings(frozen, mesh, rules)
  abstract = jax.eval_shape(lambda p, f: _fresh_state(p, f, tx, 0),
                            nnx.to_pure_dict(params), nnx.to_pure_dict(frozen))
  opt_sh = optax.tree_map_params(tx, lambda _, sh: sh, abstract.opt_state, param_sh,
                                 transform_non_params=lambda _: parallel.replicated(mesh))
  rep = parallel.replicated(mesh)
  shardings = TrainState(step=rep, params=param_sh, frozen=frozen_sh, opt_state=opt_sh, rng=rep)
  return StateLayout(graphdef=graphdef, abstract=abstract, shardings=shardings, mesh=mesh,
                     rules=rules)


def _fresh_state(params: dict, frozen: dict, tx, seed) -> TrainState:
  """Step 0 around the model's variables (pure dicts): the one definition of a new state, used
  concretely by `init_state` and abstractly by `state_layout`."""
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, frozen=frozen,
                    opt_state=tx.init(params),
                    rng=jax.random.key_data(jax.random.key(seed)))


def _init(build_model, stage: Stage, tx, seed) -> TrainState:
  _, params, frozen = _split(build_model(), stage)
  return _fresh_state(nnx.to_pure_dict(params), nnx.to_pure_dict(frozen), tx, seed)


# The init program runs once, so on CPU it is compiled without XLA's backend optimisations:
# compiling the optimised program (one threefry hash per parameter) takes 10-90 s here, the
# unoptimised one a few, and running it takes a fraction of a second either way. Its values can
# differ from the optimised program's in the last bit of normally drawn weights (an erfinv
# rounding); they are the same for every sharding and device count.
CPU_INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}


def init_state(build_model, stage: Stage, tx, layout: StateLayout, seed: int) -> TrainState:
  """Initialises directly into the target shardings (one compiled program, no host copy)."""
  init = jax.jit(lambda: _init(build_model, stage, tx, seed), out_shardings=layout.shardings)
  on_cpu = all(d.platform == "cpu" for d in layout.mesh.devices.flat)
  return init.lower().compile(compiler_options=CPU_INIT_COMPILER_OPTIONS if on_cpu else None)()


def load_streams_into(state: TrainState, layout: StateLayout, stage: Stage, tx,
                      loader: Callable[[nnx.Module], None]) -> TrainState:
  """Applies `loader` (which fills stream weights in place) to the state's model, re-shards it
  and resets the optimiser state for the new parameters."""
  # Writable host copies: the loader assigns into the variables in place.
  model = layout.model(*jax.tree.map(np.array, jax.device_get((state.params, state.frozen))))
  loader(model)
  _, params, frozen = _split(model, stage)
  params, frozen = nnx.to_pure_dict(params), nnx.to_pure_dict(frozen)
  new = state.replace(params=params, frozen=frozen, opt_state=tx.init(params))
  return jax.device_put(new, layout.shardings)
