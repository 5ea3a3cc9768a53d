"""Convolutions that run fast on XLA's CPU backend, exact and interchangeable with the native one.

Why this exists: XLA CPU hands 2-D convolutions in the forward layout and matrix products to its
YNNPACK fusions (hundreds of GFLOP/s), but lowers 3-D convolutions, weight-gradient convolutions
(a "convolution" whose window is the whole image) and input-gradient convolutions of strided
layers (lhs-dilated, mostly multiplying zeros) to a slow generic loop. A ResNet3D train step is
almost entirely those three. `conv_general_dilated` here rewrites them, on CPU only, into the fast
primitives with one custom VJP:

* forward: per temporal tap, the time axis is folded into the batch and the 2-D convolution of the
  remaining (H, W) plane is used; the taps' partial outputs are summed (T-fold). Inputs of a few
  channels (a clip) instead carry the taps' frames in their channels: one 2-D convolution.
* input gradient: split the padded input grid into its stride phases; each phase receives a
  stride-1 convolution of the output gradient with the flipped sub-kernel of that phase; the
  phases are interleaved back (sub-pixel decomposition, no multiplication by inserted zeros).
* kernel gradient: per stride phase, a stride-1 correlation of the input with the output
  gradient, which is a forward 2-D convolution with the roles swapped (the input's channels as
  the batch, the samples as the features, the output gradient as the kernel), one per temporal
  tap, transposed into the layout XLA hands to its Eigen convolution.

Which library XLA CPU runs the remaining 2-D convolutions with matters as much: its YNNPACK
"individual convolution" fusions (the default) are 1.5-2× slower here than its Eigen path for the
T-fold's 2-D convolutions and the AGCN's 9×1 temporal ones, so steps compiled for CPU get
`step_compiler_options` (the default YNN fusion types without convolutions).

Elsewhere (GPU, TPU) and for anything it does not handle (dilation, groups, other layouts,
explicit output sharding) it calls `jax.lax.conv_general_dilated` unchanged. The switch
`set_conv_impl` / the `AMFI_CONV_IMPL` environment variable selects 'auto' (the rewrite on CPU
only), 'native' (never) or 'matmul' (always, on any backend: for tests and benchmarks).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
import os
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

IMPLS = ("auto", "native", "matmul")
_impl = os.environ.get("AMFI_CONV_IMPL", "auto")
if _impl not in IMPLS:
  raise ValueError(f"AMFI_CONV_IMPL must be one of {IMPLS}, got {_impl!r}")

_SPECS = {2: ("NHWC", "HWIO", "NHWC"), 3: ("NDHWC", "DHWIO", "NDHWC")}
# Inputs with at most this many channels take `_taps_in_channels_conv` (the clip's 1-3 channels);
# measured on the 16-channel layers of the depth stream it was 0.75× the T-fold.
FOLD_TAPS_MAX_CHANNELS = 4

# XLA CPU's YNN fusion types (jaxlib 0.10.2 enables matrix products, reductions and single
# convolutions) minus the convolutions, which then run on XLA's Eigen path. As compiler options
# the list is written out (the `-type` form works only in XLA_FLAGS); tests check that it is the
# default list without convolutions, so a jaxlib that changes the default is noticed.
YNN_FLAG = "xla_cpu_experimental_ynn_fusion_type"
CPU_STEP_COMPILER_OPTIONS = {
    YNN_FLAG: "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE"}


def step_compiler_options(mesh) -> dict[str, str] | None:
  """Compiler options for a train, eval or prediction step on `mesh`: CPU_STEP_COMPILER_OPTIONS
  when every device is a CPU, unless the user's XLA_FLAGS choose the YNN fusion types
  themselves."""
  if not all(d.platform == "cpu" for d in mesh.devices.flat):
    return None
  if YNN_FLAG in os.environ.get("XLA_FLAGS", ""):
    return None
  return dict(CPU_STEP_COMPILER_OPTIONS)


def set_conv_impl(impl: str) -> None:
  """Selects the implementation for convolutions traced from now on ('auto'|'native'|'matmul').

  Takes effect at trace time: functions already jitted keep the implementation they traced with.
  """
  global _impl
  if impl not in IMPLS:
    raise ValueError(f"conv impl must be one of {IMPLS}, got {impl!r}")
  _impl = impl


def get_conv_impl() -> str:
  return _impl


@contextlib.contextmanager
def conv_impl(impl: str):
  """Convolutions traced inside use `impl`; the previous choice is restored afterwards."""
  previous = _impl
  set_conv_impl(impl)
  try:
    yield
  finally:
    set_conv_impl(previous)


def uses_rewrite(backend: str | None = None, impl: str | None = None) -> bool:
  """Whether convolutions traced now take the CPU rewrite (`backend` defaults to JAX's default)."""
  impl = _impl if impl is None else impl
  if impl == "native":
    return False
  if impl == "matmul":
    return True
  return (jax.default_backend() if backend is None else backend) == "cpu"


def conv_general_dilated(
    lhs,
    rhs,
    window_strides,
    padding,
    lhs_dilation=None,
    rhs_dilation=None,
    dimension_numbers=None,
    feature_group_count: int = 1,
    batch_group_count: int = 1,
    precision=None,
    preferred_element_type=None,
    out_sharding=None,
):
  """Drop-in for `jax.lax.conv_general_dilated` (the signature `flax.nnx.Conv` calls it with)."""
  native = functools.partial(
      lax.conv_general_dilated, lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation,
      rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
      feature_group_count=feature_group_count, batch_group_count=batch_group_count,
      precision=precision, preferred_element_type=preferred_element_type)
  if out_sharding is not None:
    return native(out_sharding=out_sharding)
  if not uses_rewrite():
    return native()
  pads = _supported_padding(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                            dimension_numbers, feature_group_count, batch_group_count)
  if pads is None or (preferred_element_type is not None
                      and jnp.dtype(preferred_element_type) != lhs.dtype):
    return native()  # e.g. bfloat16 in, float32 out: only the native op skips the rounding
  y = _conv(lhs, rhs, tuple(int(s) for s in window_strides), pads, precision)
  return y if preferred_element_type is None else y.astype(preferred_element_type)


def _supported_padding(lhs, rhs, strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
                       feature_group_count, batch_group_count):
  """Explicit ((lo, hi), ...) padding if the call is one the rewrite handles, else None."""
  nd = lhs.ndim - 2
  if nd not in _SPECS or rhs.ndim != lhs.ndim or len(strides) != nd:
    return None
  if feature_group_count != 1 or batch_group_count != 1:
    return None
  for dilation in (lhs_dilation, rhs_dilation):
    if dilation is not None and any(d != 1 for d in dilation):
      return None
  if any(s < 1 for s in strides):
    return None
  if dimension_numbers is None:
    return None  # lax's default is channels-first (NCHW); the rewrite is channels-last only
  want = lax.conv_dimension_numbers(lhs.shape, rhs.shape, _SPECS[nd])
  try:
    got = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
  except (TypeError, ValueError):
    return None
  if tuple(got) != tuple(want):
    return None
  if rhs.shape[-2] != lhs.shape[-1]:
    return None
  if isinstance(padding, str):
    padding = lax.padtype_to_pads(lhs.shape[1:-1], rhs.shape[:-2], strides, padding)
  pads = tuple((int(lo), int(hi)) for lo, hi in padding)
  if len(pads) != nd or any(lo < 0 or hi < 0 for lo, hi in pads):
    return None
  if any(n + lo + hi < k for n, k, (lo, hi) in zip(lhs.shape[1:-1], rhs.shape[:-2], pads)):
    return None  # empty output: leave the edge case to lax
  return pads


def _native_2d(x, w, strides, pads, precision, preferred_element_type=None):
  return lax.conv_general_dilated(x, w, strides, pads, dimension_numbers=_SPECS[2],
                                  precision=precision,
                                  preferred_element_type=preferred_element_type)


def _tfold_conv(x, w, strides, pads, precision):
  """Convolution by 2-D convolutions only: for 3-D, one per temporal tap, time folded into batch.

  Partial sums of low-precision inputs are kept in float32 so the result rounds once, like the
  native convolution's.
  """
  if x.ndim == 4:
    return _native_2d(x, w, strides, pads, precision)
  acc_dtype = jnp.promote_types(x.dtype, jnp.float32)
  (t_lo, t_hi), st = pads[0], strides[0]
  xt = jnp.pad(x, ((0, 0), (t_lo, t_hi), (0, 0), (0, 0), (0, 0))) if t_lo or t_hi else x
  n, t_out = x.shape[0], (xt.shape[1] - w.shape[0]) // st + 1
  if x.shape[-1] <= FOLD_TAPS_MAX_CHANNELS:
    return _taps_in_channels_conv(xt, w, t_out, strides, pads, precision, acc_dtype)
  y = None
  for a in range(w.shape[0]):
    frames = xt[:, a:a + st * (t_out - 1) + 1:st]
    part = _native_2d(frames.reshape((n * t_out,) + frames.shape[2:]), w[a], strides[1:],
                      pads[1:], precision,
                      preferred_element_type=None if acc_dtype == x.dtype else acc_dtype)
    y = part if y is None else y + part
  y = y.reshape((n, t_out) + y.shape[1:])
  return y.astype(x.dtype)


def _taps_in_channels_conv(xt, w, t_out, strides, pads, precision, acc_dtype):
  """The T-fold for inputs of a few channels (a clip's stem): the temporal taps' frames side by
  side in the channels, so one 2-D convolution with kt·I input channels replaces kt summed ones.

  A 2-D convolution of 1-3 channels wastes most of each vector the library computes with; with
  the taps in the channels the stem's forward runs 3× faster for depth clips (1 channel) and 1.6×
  for RGB ones (docs/benchmarks.md). With 16 or more channels the copy of the input costs more
  than it gains, hence FOLD_TAPS_MAX_CHANNELS. `xt` is the time-padded input (N, Tp, H, W, I).
  """
  kt, st = w.shape[0], strides[0]
  n = xt.shape[0]
  frames = jnp.concatenate([xt[:, a:a + st * (t_out - 1) + 1:st] for a in range(kt)], axis=-1)
  # (kt, kh, kw, I, O) → (kh, kw, kt·I, O), the channel order of `frames` (tap-major).
  taps = jnp.transpose(w, (1, 2, 0, 3, 4)).reshape(w.shape[1:3] + (kt * w.shape[3], w.shape[4]))
  y = _native_2d(frames.reshape((n * t_out,) + frames.shape[2:]), taps, strides[1:], pads[1:],
                 precision, preferred_element_type=None if acc_dtype == xt.dtype else acc_dtype)
  return y.reshape((n, t_out) + y.shape[1:]).astype(xt.dtype)


def _interleave(phases, strides):
  """Phase arrays (B, M1, …, M_nd, C), in itertools.product order of the phase offsets r, to the
  (B, M1·s1, …, M_nd·s_nd, C) grid whose position s·m + r holds phase r's element m."""
  if len(phases) == 1:
    return phases[0]
  nd = len(strides)
  shape = phases[0].shape
  # (s1, …, s_nd, B, M1, …, M_nd, C) → (B, M1, s1, …, M_nd, s_nd, C) → merged axes.
  stacked = jnp.stack(phases).reshape(tuple(strides) + shape)
  order = [nd]
  for d in range(nd):
    order += [nd + 1 + d, d]
  order.append(2 * nd + 1)
  return stacked.transpose(order).reshape(
      shape[:1] + tuple(m * s for m, s in zip(shape[1:-1], strides)) + shape[-1:])


def _crop_pad(x, axis_pads):
  """Per spatial axis (lo, hi): positive pads with zeros, negative crops (lax.pad semantics)."""
  config = [(0, 0, 0)] + [(lo, hi, 0) for lo, hi in axis_pads] + [(0, 0, 0)]
  if all(c == (0, 0, 0) for c in config):
    return x
  return lax.pad(x, jnp.zeros((), x.dtype), config)


def _input_grad(dy, w, x_shape, strides, pads, precision):
  """dL/dx of a strided convolution by sub-pixel decomposition (no multiplications by zero).

  Along one axis, padded input position i = s·m + r receives dy[m − j]·w[s·j + r]: phase r of the
  input is a stride-1 "full" correlation of dy with the flipped sub-kernel w[r::s]. All phases are
  computed over the same phase-index range m ∈ [m0, m1) covering the unpadded input, then
  interleaved (stack + reshape) and cropped.
  """
  nd = w.ndim - 2
  spatial = x_shape[1:-1]
  out_sizes = dy.shape[1:-1]
  ranges = []
  for size, s, (lo, _) in zip(spatial, strides, pads):
    m0, m1 = lo // s, -(-(lo + size) // s)
    ranges.append((m0, m1))
  phase_out = (dy.shape[0],) + tuple(m1 - m0 for m0, m1 in ranges) + (x_shape[-1],)
  phases = []
  for r in itertools.product(*(range(s) for s in strides)):
    sub = w[tuple(slice(ri, None, s) for ri, s in zip(r, strides))]
    if any(k == 0 for k in sub.shape[:nd]):
      phases.append(jnp.zeros(phase_out, dy.dtype))  # kernel shorter than stride: no taps land
      continue
    flipped = jnp.swapaxes(jnp.flip(sub, axis=tuple(range(nd))), -1, -2)
    conv_pads, crop = [], []
    for (m0, m1), k_r, n_out in zip(ranges, sub.shape[:nd], out_sizes):
      lo = k_r - 1 - m0
      hi = (m1 - m0) - n_out - lo + k_r - 1
      # Negative padding crops dy first; the convolution pads only with zeros.
      crop.append((min(lo, 0), min(hi, 0)))
      conv_pads.append((max(lo, 0), max(hi, 0)))
    phases.append(_tfold_conv(_crop_pad(dy, crop), flipped, (1,) * nd, tuple(conv_pads),
                              precision))
  grid = _interleave(phases, strides)
  start = tuple(pad_lo - m0 * s for (pad_lo, _), (m0, _), s in zip(pads, ranges, strides))
  limit = tuple(b + n for b, n in zip(start, spatial))
  return lax.slice(grid, (0,) + start + (0,), (grid.shape[0],) + limit + (grid.shape[-1],))


def _stride1_kernel_grad(x, dy, kernel, precision):
  """dL/dw of a stride-1 VALID correlation y[o] = Σ_j x[o + j]·w[j]: Σ_o x[o + j] ⊗ dy[o].

  That sum is itself a forward 2-D convolution once the roles are swapped: x's channels become
  the batch, the samples (with the time steps of a temporal tap) the input features, and dy the
  kernel, whose window is the whole output plane; the result's 'image' is the kernel's (kh, kw)
  taps. Laid out so (NHWC / HWIO), XLA CPU runs it on its Eigen convolution (measured 1.1-2.3×
  faster than gathered patch chunks reduced by matrix products, per ResNet3D-18 and AGCN layer:
  docs/benchmarks.md); left in the weight-gradient layout it would take the slow generic loop.
  For 3-D, one such convolution per temporal tap a pairs x's frames t + a with dy's frames t.
  """
  cin, cout = x.shape[-1], dy.shape[-1]
  w_shape = (cout, *kernel, cin)
  acc_dtype = jnp.promote_types(x.dtype, jnp.float32)
  # Reduce in float32: low-precision accumulation over ~10⁵ positions would lose the gradient.
  x, dy = x.astype(acc_dtype), dy.astype(acc_dtype)
  if math.prod(kernel) == 1:
    m = dy.size // cout
    return lax.dot_general(dy.reshape(m, cout), x.reshape(m, cin), (((0,), (0,)), ((), ())),
                           precision=precision, preferred_element_type=acc_dtype
                           ).reshape(w_shape)
  if len(kernel) == 2:  # one temporal tap of one frame: the same code as 3-D
    x, dy, kernel = x[:, None], dy[:, None], (1, *kernel)
  n, t_out, plane = dy.shape[0], dy.shape[1], dy.shape[2:4]
  # dy as the kernel: (Ho, Wo, N·T_out, O).
  rhs = jnp.transpose(dy, (2, 3, 0, 1, 4)).reshape(plane + (n * t_out, cout))
  taps = []
  for a in range(kernel[0]):
    # x's frames a … a + T_out − 1 as the batch-of-channels image: (I, Hx, Wx, N·T_out).
    lhs = jnp.transpose(x[:, a:a + t_out], (4, 2, 3, 0, 1)).reshape(
        (cin,) + x.shape[2:4] + (n * t_out,))
    taps.append(lax.conv_general_dilated(lhs, rhs, (1, 1), "VALID", precision=precision,
                                         dimension_numbers=_SPECS[2]))  # (I, kh, kw, O)
  return jnp.transpose(jnp.stack(taps), (4, 0, 2, 3, 1)).reshape(w_shape)  # (O, kt, kh, kw, I)


def _kernel_grad(x, dy, w_shape, strides, pads, precision):
  """dL/dw of a strided convolution: per stride phase r, w[r::s] sees x_pad[r::s] at stride 1."""
  nd = len(strides)
  out_sizes = dy.shape[1:-1]
  x_pad = _crop_pad(x, pads)
  # Phase r holds taps r, r + s, …: pad every phase to ceil(k/s) taps, interleave, crop to k.
  taps = tuple(-(-k // s) for k, s in zip(w_shape[:nd], strides))
  phases = []
  for r in itertools.product(*(range(s) for s in strides)):
    sub = tuple(len(range(ri, k, s)) for ri, k, s in zip(r, w_shape[:nd], strides))
    if any(k == 0 for k in sub):
      phases.append(jnp.zeros((w_shape[-1],) + taps + (w_shape[-2],), jnp.float32))
      continue
    # Only the rows reached by some output: o + j ≤ (out − 1) + (k_r − 1).
    index = tuple(slice(ri, ri + s * (o + k - 2) + 1, s)
                  for ri, s, o, k in zip(r, strides, out_sizes, sub))
    part = _stride1_kernel_grad(x_pad[(slice(None),) + index], dy, sub, precision)
    phases.append(_crop_pad(part, [(0, t - k) for t, k in zip(taps, sub)]))
  grad = _interleave(phases, strides)[(slice(None),) + tuple(slice(0, k) for k in w_shape[:nd])]
  return jnp.moveaxis(grad, 0, -1)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _conv(x, w, strides, pads, precision):
  return _tfold_conv(x, w, strides, pads, precision)


def _conv_fwd(x, w, strides, pads, precision):
  return _tfold_conv(x, w, strides, pads, precision), (x, w)


def _conv_bwd(strides, pads, precision, residuals, dy):
  x, w = residuals
  dx = _input_grad(dy.astype(x.dtype), w.astype(x.dtype), x.shape, strides, pads, precision)
  dw = _kernel_grad(x, dy.astype(x.dtype), w.shape, strides, pads, precision)
  return dx.astype(x.dtype), dw.astype(w.dtype)


_conv.defvjp(_conv_fwd, _conv_bwd)


def conv_flops(x_shape: Sequence[int], w_shape: Sequence[int], strides: Sequence[int],
               pads: Sequence[tuple[int, int]]) -> int:
  """Forward multiply-adds ×2: 2·N·(output positions)·(kernel volume)·I·O."""
  nd = len(strides)
  out = [(n + lo + hi - k) // s + 1
         for n, k, s, (lo, hi) in zip(x_shape[1:-1], w_shape[:nd], strides, pads)]
  return 2 * x_shape[0] * math.prod(out) * math.prod(w_shape[:nd]) * w_shape[-2] * w_shape[-1]
