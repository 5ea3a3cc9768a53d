"""Model shapes and sizes at paper scale (via eval_shape), gradients, fusion heads, dtypes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from amfi_jax import configlib
from amfi_jax.models import AGCN, AMFINet, ResNet3D, build_model, gate_loss
from amfi_jax.models.fusion import AMFIHead, NonLocalAssociation, SimpleFusionHead
from amfi_jax.models.graphs import NTU, UTD_MHAD, get_graph


def _num_params(model):
  return sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


def _tiny_model_config(**fusion):
  config = configlib.base_config(("rgb", "skeleton", "fusion"))
  configlib.demo(config)
  config.model.num_classes = 5
  config.model.skeleton.in_channels = 3  # joints only, as SKEL below
  config.model.fusion.update(fusion)
  return config.model


# ------------------------------------------------------------------ sizes at paper scale

def test_r3d18_parameter_count_and_shapes():
  model = nnx.eval_shape(lambda: ResNet3D(400, rngs=nnx.Rngs(0)))
  assert _num_params(model) == 33_371_472
  assert _num_params(model) - _num_params(model.fc) == 33_166_272
  clip = jax.ShapeDtypeStruct((2, 16, 112, 112, 3), jnp.uint8)
  out = nnx.eval_shape(lambda m, x: m(x), model, clip)
  assert out.logits.shape == (2, 400) and out.rgb_features.shape == (2, 512)

  def stages(m, x):
    x = nnx.relu(m.stem(x.astype(jnp.float32)))
    outputs = [x]
    for stage in (m.layer1, m.layer2, m.layer3, m.layer4):
      for block in stage:
        x = block(x)
      outputs.append(x)
    return outputs

  shapes = [o.shape for o in nnx.eval_shape(stages, model, clip)]
  assert [tuple(s) for s in shapes] == [(2, 16, 56, 56, 64), (2, 16, 56, 56, 64),
                                        (2, 8, 28, 28, 128), (2, 4, 14, 14, 256),
                                        (2, 2, 7, 7, 512)]


def test_agcn_parameter_counts_and_shapes():
  reference = nnx.eval_shape(lambda: AGCN(60, layers="reference", rngs=nnx.Rngs(0)))
  assert _num_params(reference) == 3_469_510
  amfi = nnx.eval_shape(lambda: AGCN(60, layers="amfi", rngs=nnx.Rngs(0)))
  x = jax.ShapeDtypeStruct((2, 3, 300, 25, 2), jnp.float32)
  out = nnx.eval_shape(lambda m, s: m(s), amfi, x)
  assert out.logits.shape == (2, 60) and out.skeleton_features.shape == (2, 512)
  assert nnx.eval_shape(lambda m, s: m(s), reference, x).skeleton_features.shape == (2, 256)
  bones = nnx.eval_shape(lambda: AGCN(60, in_channels=6, rngs=nnx.Rngs(0)))
  assert bones.data_bn.scale.shape == (300,)


def test_full_model_shapes_at_paper_scale():
  config = configlib.base_config(("rgb", "skeleton", "fusion"))
  model = nnx.eval_shape(lambda: build_model(config.model, "fusion"))
  assert isinstance(model, AMFINet)
  out = nnx.eval_shape(lambda m, r, s: m(r, s), model,
                       jax.ShapeDtypeStruct((2, 16, 112, 112, 3), jnp.uint8),
                       jax.ShapeDtypeStruct((2, 3, 300, 25, 2), jnp.float32))
  for field in ("rgb_features", "skeleton_features", "fused_features", "gate"):
    assert getattr(out, field).shape == (2, 512), field
  assert out.logits.shape == out.rgb_logits.shape == out.skeleton_logits.shape == (2, 60)


# ------------------------------------------------------------------ graphs

def test_ntu_graph_matrices():
  a = NTU.adjacency
  assert a.shape == (3, 25, 25)
  np.testing.assert_allclose(a.sum(axis=(1, 2)), [25, 24, 20])
  np.testing.assert_array_equal(a[0], np.eye(25))
  # Edge (1, 2) child→parent: A_1[parent, child] = 1 / in-degree of the child's column.
  assert a[1, 1, 0] == 1.0 and a[2, 0, 1] > 0
  cols = a[1].sum(axis=0)
  np.testing.assert_allclose(cols[cols > 0], 1.0)
  assert len(NTU.bone_pairs) == 25 and (21, 21) in NTU.bone_pairs


def test_utd_graph_is_a_tree_rooted_at_the_shoulder_centre():
  a = UTD_MHAD.adjacency
  assert a.shape == (3, 20, 20)
  assert len(UTD_MHAD.inward_edges) == 19  # a tree over 20 joints
  parents = {child for child, _ in UTD_MHAD.inward_edges}
  assert parents == set(range(1, 21)) - {UTD_MHAD.center}
  with pytest.raises(ValueError, match="Unknown skeleton graph 'kinect'"):
    get_graph("kinect")


# ------------------------------------------------------------------ fusion heads

def test_gate_loss_known_values():
  np.testing.assert_allclose(gate_loss(jnp.zeros((2, 3))), 0.0, atol=1e-7)
  g = jnp.array([[0.5, 0.75], [0.0, 0.9]])
  expected = np.mean(-np.log(1 - np.array([[0.5, 0.75], [0.0, 0.9]])))
  np.testing.assert_allclose(gate_loss(g), expected, rtol=1e-6)
  assert np.isfinite(gate_loss(jnp.ones((1, 4))))  # clamped, not inf
  np.testing.assert_allclose(gate_loss(jnp.ones((1, 4)), eps=1e-6), -np.log(1e-6), rtol=1e-5)


@pytest.mark.parametrize("kind", ["average", "multiply", "max", "concat"])
def test_ablation_fusions_on_known_inputs(kind):
  head = SimpleFusionHead(2, 3, kind=kind, rngs=nnx.Rngs(0))
  s = jnp.array([[1.0, -2.0]])
  r = jnp.array([[3.0, 4.0]])
  expected = {"average": [[2.0, 1.0]], "multiply": [[3.0, -8.0]], "max": [[3.0, 4.0]],
              "concat": [[1.0, -2.0, 3.0, 4.0]]}[kind]
  out = head(s, r)
  np.testing.assert_allclose(out.features, expected)
  np.testing.assert_allclose(out.logits, np.asarray(expected) @ np.asarray(head.classifier.kernel[...])
                             + np.asarray(head.classifier.bias[...]), rtol=1e-6)


def test_tokens_association_matches_a_direct_computation():
  c = 4
  block = NonLocalAssociation(c, "tokens", element_width=8, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(1), (3, 2 * c))
  pos = np.asarray(x).reshape(3, 2, c)
  lin = lambda m, v: v @ np.asarray(m.kernel[...]) + np.asarray(m.bias[...])
  theta, beta, g = lin(block.theta, pos), lin(block.beta, pos), lin(block.g, pos)
  logits = np.einsum("bic,bjc->bij", theta, beta)
  att = np.exp(logits - logits.max(-1, keepdims=True))
  att /= att.sum(-1, keepdims=True)
  expected = (lin(block.w_z, att @ g) + pos).reshape(3, -1)
  np.testing.assert_allclose(block(x), expected, rtol=1e-5, atol=1e-5)
  assert block.theta.kernel.shape == (c, c // 2)


def test_elements_association_attends_over_every_scalar():
  block = NonLocalAssociation(4, "elements", element_width=3, rngs=nnx.Rngs(0))
  assert block.theta.kernel.shape == (1, 3)
  x = jax.random.normal(jax.random.key(2), (2, 8))
  z = block(x)
  assert z.shape == (2, 8)
  # Each output position depends on every input position (attention over all 2C scalars).
  jac = jax.jacobian(lambda v: block(v[None])[0])(x[0])
  assert np.all(np.abs(np.asarray(jac)) > 0)


@pytest.mark.parametrize("decision", ["skeleton", "rgb"])
def test_gate_mixes_the_two_modalities(decision):
  head = AMFIHead(4, 3, se_reduction=2, decision=decision, rngs=nnx.Rngs(0))
  # Make association and weighting transparent: zero W_z → z = x; zero excitation → s = 1/2.
  head.association.w_z.kernel[...] = jnp.zeros_like(head.association.w_z.kernel[...])
  head.weighting.excite.kernel[...] = jnp.zeros_like(head.weighting.excite.kernel[...])
  s = jnp.array([[1.0, 2.0, 3.0, 4.0]])
  r = jnp.array([[-1.0, 0.0, 5.0, 8.0]])
  out = head(s, r)
  y_s, y_r = np.asarray(s) / 2, np.asarray(r) / 2
  decisive, other = (y_s, y_r) if decision == "skeleton" else (y_r, y_s)
  g = 1 / (1 + np.exp(-(decisive @ np.asarray(head.gate.kernel[...])
                        + np.asarray(head.gate.bias[...]))))
  np.testing.assert_allclose(out.gate, g, rtol=1e-5)
  np.testing.assert_allclose(out.features, decisive * g + other * (1 - g), rtol=1e-5, atol=1e-6)


def test_mismatched_stream_widths_are_rejected():
  config = _tiny_model_config()
  config.skeleton.layers = "64,128/2"
  with pytest.raises(ValueError, match="equal feature widths"):
    nnx.eval_shape(lambda: build_model(config, "fusion"))


# ------------------------------------------------------------------ gradients and freezing

def _loss_and_grads(model, *inputs):
  def loss_fn(m):
    out = m(*inputs)
    loss = jnp.mean(out.logits ** 2)
    if out.gate is not None:
      loss = loss + gate_loss(out.gate)
    return loss

  graphdef, params, rest = nnx.split(model, nnx.Param, ...)

  def pure(p, r):
    return loss_fn(nnx.merge(graphdef, p, r, copy=True))

  # Compiled: op by op, the tiny RGB stream's backward pass takes 5x longer than compiling it.
  return jax.jit(jax.grad(pure))(params, rest)


def _nonzero_paths(grads):
  flat = nnx.to_flat_state(grads)
  return {".".join(map(str, path)): float(jnp.abs(v[...]).max()) for path, v in flat}


RGB = jax.random.randint(jax.random.key(0), (2, 4, 16, 16, 3), 0, 255).astype(jnp.uint8)
SKEL = jax.random.normal(jax.random.key(1), (2, 3, 12, 25, 2))


@pytest.mark.parametrize("stage", ["rgb", "skeleton"])
def test_gradients_reach_every_parameter_of_a_stream(stage):
  model = build_model(_tiny_model_config(), stage)
  # Start the gcn BatchNorm scales at 1 (reference: 1e-6) so every branch carries signal.
  for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
    if path[-2:] == ("bn", "scale"):
      var[...] = jnp.ones_like(var[...])
  grads = _nonzero_paths(_loss_and_grads(model, RGB if stage == "rgb" else SKEL))
  zero = [p for p, g in grads.items() if g == 0.0]
  assert not zero, f"no gradient reaches {zero}"


def test_fusion_trains_only_the_head_when_backbones_are_frozen():
  model = build_model(_tiny_model_config(), "fusion")
  grads = _nonzero_paths(_loss_and_grads(model, RGB, SKEL))
  head = {p: g for p, g in grads.items() if p.startswith("head.")}
  frozen = {p: g for p, g in grads.items() if not p.startswith("head.")}
  assert head and all(g > 0 for g in head.values()), [p for p, g in head.items() if g == 0]
  assert frozen and all(g == 0.0 for g in frozen.values())


def test_frozen_backbones_keep_their_batch_statistics():
  model = build_model(_tiny_model_config(), "fusion")
  before = jax.tree.map(np.asarray, nnx.state(model, nnx.BatchStat))
  model(RGB, SKEL)  # training mode: head BNs would update, the frozen streams must not
  after = jax.tree.map(np.asarray, nnx.state(model, nnx.BatchStat))
  jax.tree.map(np.testing.assert_array_equal, before, after)
  # Unfrozen, the same call does update them (the check above can fail).
  config = _tiny_model_config(freeze_backbones=False)
  unfrozen = build_model(config, "fusion")
  before = np.asarray(unfrozen.rgb.stem.bn.mean[...])
  unfrozen(RGB, SKEL)
  assert not np.array_equal(before, np.asarray(unfrozen.rgb.stem.bn.mean[...]))


# ------------------------------------------------------------------ dtypes

def test_bfloat16_compute_with_float32_parameters():
  config = _tiny_model_config()
  config.dtype = "bfloat16"
  model = build_model(config, "fusion")
  assert {v.dtype for v in jax.tree.leaves(nnx.state(model, nnx.Param))} == {np.dtype("float32")}

  @jax.jit
  def forward(m, r, s):
    return m(r, s)

  out = forward(model, RGB, SKEL)
  assert out.rgb_features.dtype == jnp.bfloat16 and out.skeleton_features.dtype == jnp.bfloat16
  assert out.logits.dtype == jnp.float32 and np.all(np.isfinite(out.logits))
  reference = build_model(_tiny_model_config(), "fusion")
  full = forward(reference, RGB, SKEL)
  np.testing.assert_allclose(out.logits, full.logits, atol=0.1 * float(jnp.abs(full.logits).max()))


def test_input_shape_errors_name_the_expected_layout():
  model = AGCN(5, layers="8", rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=r"\(N, 3, T, 25, 2\)"):
    model(jnp.zeros((1, 3, 10, 20, 2)))
  rgb = ResNet3D(5, width_multiplier=0.125, blocks_per_stage=(1, 1, 1, 1), rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=r"\(N, T, H, W, 3\)"):
    rgb(jnp.zeros((1, 3, 4, 16, 16)))


def test_views_of_a_clip_average_the_pooled_features():
  """(N, V, T, H, W, C) clips (multi-view testing): the mean of the V views' features, so the
  logits are the mean of theirs."""
  model = nnx.view(ResNet3D(5, width_multiplier=0.125, blocks_per_stage=(1, 1, 1, 1),
                            rngs=nnx.Rngs(0)), use_running_average=True)
  clips = jax.random.uniform(jax.random.key(1), (2, 3, 4, 16, 16, 3)) * 255
  out = model(clips)
  per_view = [model(clips[:, v]) for v in range(3)]
  assert out.logits.shape == (2, 5) and out.rgb_features.shape == per_view[0].rgb_features.shape
  np.testing.assert_allclose(out.rgb_features, np.mean([o.rgb_features for o in per_view], 0),
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(out.logits, np.mean([o.logits for o in per_view], 0),
                             rtol=1e-5, atol=1e-6)
  assert not np.allclose(per_view[0].logits, per_view[1].logits)  # the views differ
