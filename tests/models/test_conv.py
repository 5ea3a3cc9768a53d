"""The CPU convolution rewrite equals `jax.lax.conv_general_dilated`, values and gradients."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax import lax

from amfi_jax import parallel
from amfi_jax.models import conv as conv_lib
from amfi_jax.models import layers

# (input shape, kernel shape, strides, padding): every convolution shape the models use, at small
# sizes with odd extents so phase decompositions meet uneven edges, plus batch 1.
CASES = {
    "stem_3x7x7_s122": ((2, 5, 17, 15, 3), (3, 7, 7, 3, 8), (1, 2, 2), ((1, 1), (3, 3), (3, 3))),
    "stem_depth_3x7x7_s222": ((2, 6, 13, 11, 1), (3, 7, 7, 1, 4), (2, 2, 2),
                              ((1, 1), (3, 3), (3, 3))),
    "3x3x3_s1": ((2, 5, 9, 7, 6), (3, 3, 3, 6, 5), (1, 1, 1), ((1, 1),) * 3),
    "3x3x3_s1_batch1": ((1, 3, 5, 6, 4), (3, 3, 3, 4, 4), (1, 1, 1), ((1, 1),) * 3),
    "3x3x3_s2": ((2, 7, 9, 8, 4), (3, 3, 3, 4, 6), (2, 2, 2), ((1, 1),) * 3),
    "3x3x3_s2_batch1": ((1, 4, 6, 5, 3), (3, 3, 3, 3, 5), (2, 2, 2), ((1, 1),) * 3),
    "1x1x1_s2": ((2, 7, 9, 8, 4), (1, 1, 1, 4, 6), (2, 2, 2), ((0, 0),) * 3),
    "tcn_9x1_s1": ((3, 20, 5, 6), (9, 1, 6, 7), (1, 1), ((4, 4), (0, 0))),
    "tcn_9x1_s2": ((3, 21, 5, 6), (9, 1, 6, 7), (2, 1), ((4, 4), (0, 0))),
    "tcn_9x1_s2_batch1": ((1, 16, 3, 4), (9, 1, 4, 4), (2, 1), ((4, 4), (0, 0))),
    "2d_asymmetric": ((1, 8, 7, 5), (3, 2, 5, 4), (3, 2), ((0, 2), (1, 0))),
}


def _dimension_numbers(x, w):
  return lax.conv_dimension_numbers(x.shape, w.shape, conv_lib._SPECS[x.ndim - 2])


def _outputs_and_grads(conv_fn, x, w, strides, padding, cotangent):
  """y and d/d(x, w) of <y, cotangent>."""
  def loss(x, w):
    y = conv_fn(x, w, strides, padding, dimension_numbers=_dimension_numbers(x, w))
    return jnp.sum((y * cotangent).astype(jnp.float32)), y
  (dx, dw), y = jax.grad(loss, argnums=(0, 1), has_aux=True)(x, w)
  return y, dx, dw


def _both(x, w, strides, padding, cotangent, ref_args=None):
  """Rewrite and native side by side in ONE jitted function (one compilation keeps tests fast)."""
  ref_args = (x, w, cotangent) if ref_args is None else ref_args

  @jax.jit
  def run(x, w, cotangent, rx, rw, rc):
    got = _outputs_and_grads(conv_lib.conv_general_dilated, x, w, strides, padding, cotangent)
    want = _outputs_and_grads(lax.conv_general_dilated, rx, rw, strides, padding, rc)
    return got, want

  return run(x, w, cotangent, *ref_args)


@pytest.fixture
def force_rewrite():
  with conv_lib.conv_impl("matmul"):
    yield


def _inputs(x_shape, w_shape, strides, padding, dtype):
  # NumPy draws: jax.random would compile a threefry kernel per shape, seconds per test on CPU.
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal(x_shape, np.float32), dtype)
  w = jnp.asarray(rng.standard_normal(w_shape, np.float32), dtype)
  out_shape = jax.eval_shape(
      lambda x, w: lax.conv_general_dilated(x, w, strides, padding,
                                            dimension_numbers=_dimension_numbers(x, w)), x, w)
  cotangent = jnp.asarray(rng.standard_normal(out_shape.shape, np.float32), dtype)
  return x, w, cotangent


@pytest.mark.parametrize("name", list(CASES))
def test_values_and_gradients_equal_native(name, force_rewrite):
  x_shape, w_shape, strides, padding = CASES[name]
  x, w, cotangent = _inputs(x_shape, w_shape, strides, padding, jnp.float32)
  got, want = _both(x, w, strides, padding, cotangent)
  for got, want in zip(got, want):
    assert got.shape == want.shape and got.dtype == want.dtype
    # Sums of up to a few thousand float32 products, accumulated in a different order.
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-5 * float(jnp.abs(want).max()))


@pytest.mark.parametrize("name", ["stem_3x7x7_s122", "3x3x3_s2", "tcn_9x1_s2"])
def test_bfloat16(name, force_rewrite):
  x_shape, w_shape, strides, padding = CASES[name]
  x, w, cotangent = _inputs(x_shape, w_shape, strides, padding, jnp.bfloat16)
  got, want = _both(x, w, strides, padding, cotangent,
                    ref_args=tuple(a.astype(jnp.float32) for a in (x, w, cotangent)))
  for got, want in zip(got, want):
    assert got.dtype == jnp.bfloat16
    # bfloat16 keeps 8 bits of mantissa: compare with the float32 result at that resolution.
    scale = float(jnp.abs(want).max())
    np.testing.assert_allclose(got.astype(jnp.float32), want, rtol=0, atol=2e-2 * scale)


def test_dispatch_is_native_off_cpu():
  assert conv_lib.uses_rewrite(backend="cpu", impl="auto")
  for backend in ("gpu", "cuda", "rocm", "tpu"):
    assert not conv_lib.uses_rewrite(backend=backend, impl="auto")
  assert not conv_lib.uses_rewrite(backend="cpu", impl="native")
  assert conv_lib.uses_rewrite(backend="tpu", impl="matmul")
  with pytest.raises(ValueError):
    conv_lib.set_conv_impl("fastest")


def _primitives(fn, *args):
  return {eqn.primitive.name for eqn in jax.make_jaxpr(fn)(*args).jaxpr.eqns}


def test_dispatch_traces_native_or_rewrite(monkeypatch):
  x = jnp.ones((1, 4, 6, 6, 3))
  w = jnp.ones((3, 3, 3, 3, 4))

  def traced(impl, backend):
    monkeypatch.setattr(conv_lib, "_impl", impl)
    monkeypatch.setattr(jax, "default_backend", lambda: backend)
    # A new function each time: make_jaxpr caches traces per function object.
    return _primitives(lambda x, w: conv_lib.conv_general_dilated(
        x, w, (1, 1, 1), ((1, 1),) * 3, dimension_numbers=_dimension_numbers(x, w)), x, w)

  assert traced("auto", "gpu") == {"conv_general_dilated"}
  assert traced("auto", "tpu") == {"conv_general_dilated"}
  assert "conv_general_dilated" not in traced("auto", "cpu")
  assert traced("native", "cpu") == {"conv_general_dilated"}


def _forward_conv_count(x, w, strides):
  jaxpr = jax.make_jaxpr(lambda x, w: conv_lib.conv_general_dilated(
      x, w, strides, ((1, 1),) * 3, dimension_numbers=_dimension_numbers(x, w)))(x, w)
  (call,) = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == "custom_vjp_call"]
  return sum(e.primitive.name == "conv_general_dilated" for e in call.params["call_jaxpr"].eqns)


@pytest.mark.parametrize("channels,strides,convs", [(1, (1, 1, 1), 1), (3, (2, 2, 2), 1),
                                                    (conv_lib.FOLD_TAPS_MAX_CHANNELS + 1,
                                                     (1, 1, 1), 3)])
def test_clip_channels_take_one_convolution_with_the_taps_in_the_channels(
    channels, strides, convs, force_rewrite):
  """A clip's 1-3 channels: one 2-D convolution of kt·I channels; wider inputs: one per tap."""
  x = jnp.ones((1, 5, 6, 6, channels))
  assert _forward_conv_count(x, jnp.ones((3, 3, 3, channels, 4)), strides) == convs


def test_unsupported_calls_fall_back_to_native(force_rewrite):
  x = jnp.ones((1, 5, 6, 4))
  w = jnp.ones((3, 3, 2, 4))
  dn = lax.conv_dimension_numbers(x.shape, w.shape, ("NHWC", "HWIO", "NHWC"))
  grouped = lambda x, w: conv_lib.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)),
                                                       dimension_numbers=dn, feature_group_count=2)
  assert "conv_general_dilated" in _primitives(grouped, x, w)
  w = jnp.ones((3, 3, 4, 4))
  dilated = lambda x, w: conv_lib.conv_general_dilated(x, w, (1, 1), ((2, 2), (2, 2)),
                                                       rhs_dilation=(2, 2), dimension_numbers=dn)
  assert "conv_general_dilated" in _primitives(dilated, x, w)
  channels_first = lambda x, w: conv_lib.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)))
  assert "conv_general_dilated" in _primitives(channels_first, jnp.ones((1, 4, 5, 6)),
                                               jnp.ones((4, 4, 3, 3)))


def test_flax_conv_uses_it_with_same_parameters(force_rewrite):
  """layers.conv keeps Flax's parameter tree and matches a plain nnx.Conv with the same kernel."""
  module = layers.conv(3, 4, (3, 3, 3), strides=(1, 2, 2), padding=1, use_bias=True,
                       dtype=jnp.float32, rngs=nnx.Rngs(0))
  assert module.kernel[...].shape == (3, 3, 3, 3, 4) and module.bias[...].shape == (4,)
  x = jnp.asarray(np.random.default_rng(1).standard_normal((2, 4, 7, 6, 3), np.float32))
  with conv_lib.conv_impl("native"):
    want = module(x)
  np.testing.assert_allclose(module(x), want, rtol=1e-5, atol=1e-5)


# --- which library XLA CPU runs convolutions with ------------------------------------------------

def _ynn_fusion_ops(fn, *args, compiler_options=None) -> set[str]:
  """The ops ({'convolution', 'dot', 'reduce'}) inside the YNN fusions XLA compiled `fn` into."""
  text = jax.jit(fn, compiler_options=compiler_options).lower(*args).compile().as_text()
  bodies = dict(re.findall(r"^%?([\w.-]+) \([^\n]*\{\n(.*?)^\}", text, re.S | re.M))
  ops = set()
  for line in text.splitlines():
    if "__ynn_fusion" in line:
      body = bodies[re.search(r"calls=%?([\w.-]+)", line).group(1)]
      ops |= {op for op in ("convolution", "dot", "reduce") if f" {op}(" in body}
  return ops


def test_cpu_steps_run_convolutions_outside_ynn_and_keep_the_other_ynn_fusions():
  from amfi_jax.models import agcn, graphs

  # The gradient of one AGCN unit: temporal convolutions, graph contractions, BatchNorm sums.
  unit = agcn.TCNGCNUnit(64, 128, 2, graphs.get_graph("ntu"), residual=True, dtype=jnp.float32,
                         rngs=nnx.Rngs(0))
  graphdef, state = nnx.split(unit)
  grad = jax.grad(lambda s, x: jnp.sum(nnx.merge(graphdef, s)(x) ** 2), argnums=(0, 1))
  x = jnp.ones((2, 40, 25, 64))
  mesh = parallel.make_mesh(devices=jax.devices("cpu")[:1])
  default = _ynn_fusion_ops(grad, state, x)
  assert "convolution" in default  # what XLA does by default: the premise of the option
  chosen = _ynn_fusion_ops(grad, state, x, compiler_options=conv_lib.step_compiler_options(mesh))
  assert chosen == default - {"convolution"}


def test_step_compiler_options_leave_the_users_xla_flags_and_other_backends_alone(monkeypatch):
  cpu_mesh = parallel.make_mesh(devices=jax.devices("cpu")[:1])
  monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
  assert conv_lib.step_compiler_options(cpu_mesh) == conv_lib.CPU_STEP_COMPILER_OPTIONS
  monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_experimental_ynn_fusion_type=+individual_convolution")
  assert conv_lib.step_compiler_options(cpu_mesh) is None

  class FakeDevice:
    platform = "gpu"

  gpu_mesh = type("Mesh", (), {"devices": np.array([FakeDevice()])})()
  monkeypatch.delenv("XLA_FLAGS")
  assert conv_lib.step_compiler_options(gpu_mesh) is None


# --- the AGCN's graph convolution, formulated for CPU under the same switch ----------------------

@pytest.mark.parametrize("in_ch,out_ch", [(3, 8), (8, 8), (8, 6)])
def test_graph_convolution_values_and_gradients_equal_the_einsum_form(in_ch, out_ch):
  from amfi_jax.models import agcn, graphs
  module = agcn.AdaptiveGraphConv(in_ch, out_ch, graphs.get_graph("ntu"), dtype=jnp.float32,
                                  rngs=nnx.Rngs(0))
  rng = np.random.default_rng(2)
  # Random adaptive parts and BatchNorm scale, so every term reaches the output and its gradient.
  module.PA[...] = jnp.asarray(rng.standard_normal(module.PA[...].shape, np.float32))
  module.bn.scale[...] = jnp.ones(out_ch)
  x = jnp.asarray(rng.standard_normal((2, 7, 25, in_ch), np.float32))
  cotangent = jnp.asarray(rng.standard_normal((2, 7, 25, out_ch), np.float32))
  graphdef, params, rest = nnx.split(module, nnx.Param, ...)

  def outputs_and_grads(impl):
    def loss(params, x):
      with conv_lib.conv_impl(impl):
        y = nnx.merge(graphdef, params, rest, copy=True)(x)
      return jnp.sum(y * cotangent), y
    (dparams, dx), y = jax.jit(jax.grad(loss, argnums=(0, 1), has_aux=True))(params, x)
    return [y, dx] + jax.tree.leaves(dparams)

  got, want = outputs_and_grads("matmul"), outputs_and_grads("native")
  assert len(got) == len(want)
  # One scale for all: some gradients are zero in exact arithmetic (θ's bias: a shift the softmax
  # over the first joint axis cancels; conv_d's bias: a shift BatchNorm removes) and hold only
  # the rounding noise of sums of terms of the size of the others.
  atol = 2e-5 * max(float(jnp.abs(w).max()) for w in want)
  for got, want in zip(got, want):
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=atol)
