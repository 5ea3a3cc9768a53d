"""The logical-axis rules of `config.mesh.rules` reach the activations of the traced step."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from amfi_jax import configlib, parallel

from tests.conftest import cpu_env

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# One train step of the demo skeleton stream on a 4×2 mesh of 8 CPU devices, under the default
# rules and with activation channels sharded over `model`.
SCRIPT = r"""
import json
import jax, numpy as np
from amfi_jax import configlib, parallel
from amfi_jax.models import build_model
from amfi_jax.training import optim
from amfi_jax.training.stages import make_stage
from amfi_jax.training.state import init_state, state_layout
from amfi_jax.training.steps import make_train_step

config = configlib.make_config(("skeleton",), "demo", ("demo",))
stage = make_stage("skeleton", config)
tx = optim.make_optimizer(config.train.skeleton,
                          optim.resolve_schedule(config.train.skeleton, 64, "skeleton"), "skeleton")
mesh = parallel.make_mesh(4, 2)
rng = np.random.default_rng(0)
channels = config.model.skeleton.in_channels
batch = {"skeleton": rng.normal(size=(8, channels, 16, 25, 2)).astype(np.float32),
         "label": rng.integers(0, 8, 8).astype(np.int32)}
build = lambda: build_model(config.model, "skeleton")
out = {}
for name, table in (("default", dict(config.mesh.rules)),
                    ("channels", {**config.mesh.rules, "channels": "model"})):
  layout = state_layout(build, stage, tx, mesh, parallel.rules_from(table))
  state = init_state(build, stage, tx, layout, 0)
  step = make_train_step(stage, layout, tx)
  placed = jax.device_put(batch, parallel.batch_sharding(mesh))
  constraints = [line for line in step.lower(state, placed).as_text().splitlines()
                 if "sharding_constraint" in line]
  _, metrics = step(state, placed)
  out[name] = {"loss": float(metrics["loss"]), "constraints": len(constraints),
               "over_model": sum('{"model"}]' in c for c in constraints)}
print("RESULT" + json.dumps(out))
"""


def test_channel_rule_constrains_activations_and_keeps_the_loss():
  env = cpu_env(8)
  done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  out = json.loads(done.stdout.split("RESULT", 1)[1])
  default, channels = out["default"], out["channels"]
  # One constraint per AGCN unit boundary, in both programs; only the channel rule names `model`
  # on the channel axis.
  assert default["constraints"] > 0 and default["over_model"] == 0
  assert channels["constraints"] == default["constraints"]
  assert channels["over_model"] == channels["constraints"]
  assert channels["loss"] == pytest.approx(default["loss"], rel=1e-5)


def test_constrain_is_a_no_op_outside_a_traced_step():
  import numpy as np
  x = np.ones((2, 3))
  assert parallel.constrain(x, parallel.BATCH, parallel.CHANNELS) is x


@pytest.mark.parametrize("table,message", [
    ({"colour": "data"}, "unknown logical axes"),
    ({"channels": "pipeline"}, r"config.mesh.rules.channels='pipeline'"),
])
def test_bad_rules_name_the_field(table, message):
  config = configlib.base_config(("rgb",))
  config.mesh.rules = table
  with pytest.raises(ValueError, match=message):
    configlib.validate(config)



# The initial state of the demo's RGB stream on 1 device and on 8 devices as 8×1 and 4×2 meshes.
INIT_SCRIPT = r"""
import json
import jax, numpy as np
from amfi_jax import configlib, parallel
from amfi_jax.models import build_model
from amfi_jax.training import optim
from amfi_jax.training.stages import make_stage
from amfi_jax.training.state import init_state, state_layout

config = configlib.make_config(("rgb",), "demo", ("demo",))
stage = make_stage("rgb", config)
tx = optim.make_optimizer(config.train.rgb, optim.resolve_schedule(config.train.rgb, 64, "rgb"),
                          "rgb")
build = lambda: build_model(config.model, "rgb", seed=3)
states = []
# The default rules split output channels over `model`: the 4×2 mesh shards the parameters too.
for mesh in (parallel.make_mesh(devices=jax.devices()[:1]), parallel.make_mesh(8, 1),
             parallel.make_mesh(4, 2)):
  layout = state_layout(build, stage, tx, mesh, parallel.rules_from(dict(config.mesh.rules)))
  states.append(jax.device_get(init_state(build, stage, tx, layout, 3)))
same = [all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(states[0]), jax.tree.leaves(s)))
        for s in states[1:]]
leaves = jax.tree.leaves(states[0].params)
print("RESULT" + json.dumps({"same": same, "leaves": len(leaves),
                             "nonzero": sum(bool(np.any(x)) for x in leaves)}))
"""


def test_initial_state_is_the_same_for_every_mesh():
  """The CPU init program (compiled unoptimised, `state.CPU_INIT_COMPILER_OPTIONS`) draws the
  same parameters whatever the devices and the sharding."""
  env = cpu_env(8)
  done = subprocess.run([sys.executable, "-c", INIT_SCRIPT], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  out = json.loads(done.stdout.split("RESULT", 1)[1])
  assert out["same"] == [True, True]
  assert out["nonzero"] > out["leaves"] // 2  # weights were drawn, not left at zero
