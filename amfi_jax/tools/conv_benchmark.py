"""Native vs rewritten convolution on this machine: per layer shape and for whole train steps.

    python -m amfi_jax.tools.conv_benchmark              # everything (~10 minutes on 2 cores)
    python -m amfi_jax.tools.conv_benchmark --skip_full  # no full-size ResNet3D-18 step
    python -m amfi_jax.tools.conv_benchmark --cases ""   # matmul reference and train steps only
    python -m amfi_jax.tools.conv_benchmark --skip_full --compare=torch  # PyTorch per layer too

Prints one JSON object per line. Implementations are timed in alternating rounds so that load from
other processes falls on both alike; the median of all rounds is reported with the minimum.
FLOPs count the forward multiply-adds ×2 (2·N·output positions·kernel volume·I·O); forward plus
backward is counted as 3× that. The layer cases compile with the train step's CPU compiler
options (`conv.step_compiler_options`), so their figures are the step's. `--compare=torch` times
PyTorch's own convolution of each layer case (channels-first, fp32, `--peer_threads` threads) in
the same rounds: forward, and forward with both gradients; `ratio_vs_torch` is PyTorch's median
over the rewrite's (> 1: ours is faster).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import statistics
import time

import jax
from absl import app, flags
import jax.numpy as jnp
import optax
from flax import nnx
from jax import lax

from amfi_jax import cli
from amfi_jax.models import conv as conv_lib
from amfi_jax.models.resnet3d import ResNet3D

IMPLS = ("native", "matmul")

# name: (input shape, kernel shape, strides, padding). ResNet3D-18 at batch 2 on 16×112×112 clips,
# AGCN temporal convolutions at N·M = 32 skeletons × 64 frames × 25 joints.
CASES = {
    "stem_3x7x7_s122": ((2, 16, 112, 112, 3), (3, 7, 7, 3, 64), (1, 2, 2),
                        ((1, 1), (3, 3), (3, 3))),
    "layer1_3x3x3_s1": ((2, 16, 56, 56, 64), (3, 3, 3, 64, 64), (1, 1, 1), ((1, 1),) * 3),
    "layer2_3x3x3_s2": ((2, 16, 56, 56, 64), (3, 3, 3, 64, 128), (2, 2, 2), ((1, 1),) * 3),
    "layer2_1x1x1_s2": ((2, 16, 56, 56, 64), (1, 1, 1, 64, 128), (2, 2, 2), ((0, 0),) * 3),
    "layer2_3x3x3_s1": ((2, 8, 28, 28, 128), (3, 3, 3, 128, 128), (1, 1, 1), ((1, 1),) * 3),
    "layer3_3x3x3_s1": ((2, 4, 14, 14, 256), (3, 3, 3, 256, 256), (1, 1, 1), ((1, 1),) * 3),
    "layer4_3x3x3_s1": ((2, 2, 7, 7, 512), (3, 3, 3, 512, 512), (1, 1, 1), ((1, 1),) * 3),
    "tcn_9x1_s1": ((32, 64, 25, 64), (9, 1, 64, 64), (1, 1), ((4, 4), (0, 0))),
    "tcn_9x1_s2": ((32, 64, 25, 128), (9, 1, 128, 128), (2, 1), ((4, 4), (0, 0))),
}


def _time(fn, args, rounds: int) -> list[float]:
  times = []
  for _ in range(rounds):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return times


def _compare(builders: dict[str, callable], args, rounds: int, jit=jax.jit, peers=None
             ) -> dict[str, list[float]]:
  """Compiles each implementation's function (the impl is chosen at trace time), then alternates
  them and the `peers` (name: callable of no arguments, already warm)."""
  compiled = {}
  for impl, build in builders.items():
    with conv_lib.conv_impl(impl):
      fn = jit(build())
      jax.block_until_ready(fn(*args))  # trace and compile under this impl, and warm up
    compiled[impl] = fn
  for name, peer in (peers or {}).items():
    compiled[name] = lambda *_, peer=peer: peer()
  times = {impl: [] for impl in compiled}
  for _ in range(rounds):
    for impl, fn in compiled.items():
      times[impl] += _time(fn, args, 1)
  return times


def _summary(times: list[float]) -> dict[str, float]:
  return {"median_s": round(statistics.median(times), 4), "min_s": round(min(times), 4)}


def matmul_reference(size: int = 4096, rounds: int = 5) -> dict:
  a = jnp.ones((size, size), jnp.float32)
  fn = jax.jit(lambda a: a @ a)
  jax.block_until_ready(fn(a))
  times = _time(fn, (a,), rounds)
  flops = 2 * size ** 3
  return {"case": f"matmul_{size}", **_summary(times),
          "gflops_median": round(flops / statistics.median(times) / 1e9, 1),
          "gflops_best": round(flops / min(times) / 1e9, 1)}


def _step_jit():
  """jax.jit with the train step's compiler options for this host's devices."""
  mesh = jax.sharding.Mesh(jax.devices()[:1], ("data",))
  return functools.partial(jax.jit, compiler_options=conv_lib.step_compiler_options(mesh))


def conv_case(name: str, rounds: int, dtype=jnp.float32, compare: str = "") -> list[dict]:
  x_shape, w_shape, strides, pads = CASES[name]
  kx, kw, kc = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(kx, x_shape, dtype)
  w = (jax.random.normal(kw, w_shape, jnp.float32) * 0.05).astype(dtype)
  dn = conv_lib._SPECS[len(strides)]
  flops = conv_lib.conv_flops(x_shape, w_shape, strides, pads)

  def forward():
    return lambda x, w: conv_lib.conv_general_dilated(
        x, w, strides, pads, dimension_numbers=lax.conv_dimension_numbers(x.shape, w.shape, dn))

  y = forward()(x, w)
  cotangent = jax.random.normal(kc, y.shape, dtype)

  def train():
    conv = forward()

    def forward_and_grads(x, w):
      # The output is returned too: a gradient alone of a linear op needs no forward pass.
      y, vjp = jax.vjp(conv, x, w)
      return y, vjp(cotangent)
    return forward_and_grads

  peer = None
  if compare == "torch":
    from amfi_jax.tools import torch_reference  # the optional extra, checked in main
    peer = torch_reference.PeerConvolution(x, w, strides, pads, cotangent)
    peer.forward(), peer.forward_backward()  # warm up
  rows, jit = [], _step_jit()
  for phase, builders, factor in (("forward", {i: forward for i in IMPLS}, 1),
                                  ("forward_backward", {i: train for i in IMPLS}, 3)):
    peers = {"torch": getattr(peer, phase)} if peer else None
    times = _compare(builders, (x, w), rounds, jit=jit, peers=peers)
    for impl in times:
      med = statistics.median(times[impl])
      rows.append({"case": name, "phase": phase, "impl": impl, **_summary(times[impl]),
                   "gflops_median": round(factor * flops / med / 1e9, 1),
                   "gflops_best": round(factor * flops / min(times[impl]) / 1e9, 1)})
    ratios = {"speedup_median": round(statistics.median(times["native"])
                                      / statistics.median(times["matmul"]), 2)}
    if peer:
      ratios["ratio_vs_torch"] = round(statistics.median(times["torch"])
                                       / statistics.median(times["matmul"]), 2)
    rows.append({"case": name, "phase": phase, **ratios})
  return rows


def train_step_case(name: str, *, width: float, blocks, batch: int, frames: int, size: int,
                    rounds: int) -> list[dict]:
  """Gradient of cross-entropy through ResNet3D in training mode (batch statistics, updated)."""
  model = ResNet3D(num_classes=60, width_multiplier=width, blocks_per_stage=blocks,
                   input_normalization="none", rngs=nnx.Rngs(0))
  clip = jax.random.uniform(jax.random.key(1), (batch, frames, size, size, 3), jnp.float32)
  labels = jnp.arange(batch) % 60

  def build():
    def grads(model, clip, labels):
      def loss_fn(model):
        logits = model(clip).logits
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
      return nnx.grad(loss_fn)(model)
    return grads

  times = _compare({i: build for i in IMPLS}, (model, clip, labels), rounds, jit=nnx.jit)
  rows = [{"case": name, "phase": "train_step", "impl": impl, **_summary(times[impl])}
          for impl in IMPLS]
  rows.append({"case": name, "phase": "train_step",
               "speedup_median": round(statistics.median(times["native"])
                                       / statistics.median(times["matmul"]), 2)})
  return rows


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  args = flags.FLAGS
  if args.compare not in ("", "torch"):
    raise app.UsageError(f"--compare must be 'torch' or empty, got {args.compare!r}")
  if args.compare and importlib.util.find_spec("torch") is None:
    raise app.UsageError("--compare=torch needs PyTorch: pip install -e '.[torch]'")
  unknown = [name for name in filter(None, args.cases.split(",")) if name not in CASES]
  if unknown:
    raise app.UsageError(f"--cases: unknown {unknown}; known: {', '.join(CASES)}")
  peer = {}
  if args.compare:
    import torch
    torch.set_num_threads(args.peer_threads or os.cpu_count() or 1)
    peer = {"peer": f"torch {torch.__version__}", "peer_threads": torch.get_num_threads()}

  def emit(row):
    print(json.dumps(row), flush=True)

  emit({"case": "environment", "backend": jax.default_backend(), "devices": len(jax.devices()),
        "cpu_count": os.cpu_count(), "load_average": [round(v, 2) for v in os.getloadavg()],
        "xla_flags": os.environ.get("XLA_FLAGS", ""), **peer})
  emit(matmul_reference())
  for name in filter(None, args.cases.split(",")):
    for row in conv_case(name, args.rounds, compare=args.compare):
      emit(row)
  for row in train_step_case("resnet3d_tiny_demo", width=0.125, blocks=(1, 1, 1, 1), batch=16,
                             frames=8, size=32, rounds=args.rounds):
    emit(row)
  if not args.skip_full:
    for row in train_step_case(f"resnet3d18_full_b{args.full_batch}", width=1.0,
                               blocks=(2, 2, 2, 2), batch=args.full_batch, frames=16, size=112,
                               rounds=max(3, args.rounds // 2)):
      emit(row)
  emit({"case": "environment_end", "load_average": [round(v, 2) for v in os.getloadavg()]})


def _define_flags():
  # Defined only when run as a program, so importing this module is free of global flags.
  flags.DEFINE_integer("rounds", 5, "Timed rounds per case.")
  flags.DEFINE_string("cases", ",".join(CASES), "Comma-separated case names ('' = none).")
  flags.DEFINE_bool("skip_full", False, "Skip the full-size ResNet3D-18 train step.")
  flags.DEFINE_integer("full_batch", 2, "Batch of the full-size train step.")
  flags.DEFINE_string("compare", "", "'torch': time PyTorch's convolution of each layer case too.")
  flags.DEFINE_integer("peer_threads", 0, "PyTorch's intra-op threads (0: one per core).")


if __name__ == "__main__":
  _define_flags()
  cli.run(main)
