r"""How fast one training stage runs here: compile time, step time, FLOP/s against the devices'
peak, memory, the input pipeline alone, and where the step's time goes.

  # The paper's shapes on the embedded dataset (generated under --workdir on first use):
  python -m amfi_jax.tools.benchmark --config=configs/fusion.py --stage=rgb --batch_size=32 \
      --config.model.num_classes=8 --config.data.embedded.clip_length=16 \
      --config.data.embedded.image_size=112 --config.data.embedded.max_frames=300
  # A prepared NTU dataset; the demo's tiny model with native convolutions, profiled:
  python -m amfi_jax.tools.benchmark --config=configs/fusion.py --stage=skeleton \
      --config.data.dataset=ntu_rgbd/ntu60_xsub --config.data.data_dir=DIR
  python -m amfi_jax.tools.benchmark --config=configs/fusion.py:demo --stage=fusion \
      --conv_impl=native --profile_dir=/tmp/amfi_profile
  # Side by side with the PyTorch peer (the same architecture, batch, optimiser and dtype; its
  # steps alternate with ours): the report's `compare` entry and `speed_ratio` (> 1: ours faster)
  python -m amfi_jax.tools.benchmark --config=configs/fusion.py --stage=rgb --batch_size=2 \
      --config.model.num_classes=8 --config.data.embedded.clip_length=16 \
      --config.data.embedded.image_size=112 --compare=torch

Prints ONE JSON object on stdout (logs go to stderr), from process 0 when several processes
measure one global step (the multi-process flags are `amfi_jax.main`'s). The model, optimiser, state and train step
are built by the training loop's own code (`stage_setup.setup_stage`, `init_state`, `make_train_step`);
the step is timed on synthetic device-resident batches with the exact shapes and dtypes of the
stage's real batches, sharded like them, so compute is measured apart from input. The input
pipeline (`pipeline.train_dataset` on the configured dataset; with none, the embedded one, built
under `--workdir` on first use) is timed on its own, without the model.

Input shapes are those of the configured dataset's records: NTU builds store 16×112×112 clips and
300-frame skeletons (the paper's); the embedded dataset stores what `config.data.embedded` says
(8×48×48 and 64 frames by default; add `--config.data.embedded.clip_length=16
--config.data.embedded.image_size=112 --config.data.embedded.max_frames=300` for the paper's).

FLOPs: `flops_per_step` is XLA's cost analysis of the compiled train step (all devices); XLA
counts a while-loop body once whatever its trip count, so a step with arithmetic in loops is
undercounted there (`flops_note` says so). `model_flops_per_step` is the cost analysis of the
same step lowered with native convolutions (no loops, the same for every `--conv_impl`);
achieved FLOP/s and the fraction of peak use it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import os
import resource
import statistics
import sys
import time

import jax
import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from amfi_jax import cli, configlib, distributed, host_memory, parallel
from amfi_jax import workdir as workdir_lib
from amfi_jax.data import datasets, pipeline
from amfi_jax.models import conv as conv_lib
from amfi_jax.monitoring import logs
from amfi_jax.tools import hardware, profiling, throughput
from amfi_jax.training import setup as stage_setup
from amfi_jax.training.state import init_state
from amfi_jax.training.steps import make_eval_step, make_train_step


# Stages whose train step has a PyTorch peer (the reference modules of the parity tests).
COMPARED_STAGES = ("rgb", "skeleton")


@dataclasses.dataclass(frozen=True)
class Options:
  """What to measure; the command-line flags of the same names."""

  stage: str
  batch_size: int | None = None  # None: config.train.<stage>.batch_size
  steps: int = 10
  warmup: int = 2
  conv_impl: str = "auto"
  input_batches: int = 10
  profile_dir: str = ""
  profile_steps: int = 3
  workdir: str = "workdirs/benchmark"
  peak_matmul_size: int = 4096
  compare: str = ""  # "torch": time the PyTorch peer's train step beside ours, alternating
  peer_threads: int = 0  # the peer's intra-op threads; 0: one per CPU core, as XLA uses


def check_options(config, opts: Options, mesh) -> int:
  """Raises a ValueError naming the flag for unusable values; returns the global batch size."""
  if opts.stage not in workdir_lib.STAGES:
    raise ValueError(f"--stage must be one of {list(workdir_lib.STAGES)}, got {opts.stage!r}")
  if opts.conv_impl not in conv_lib.IMPLS:
    raise ValueError(f"--conv_impl must be one of {list(conv_lib.IMPLS)}, got {opts.conv_impl!r}")
  for name, low in (("steps", 1), ("warmup", 0), ("input_batches", 0), ("profile_steps", 1),
                    ("peak_matmul_size", 1)):
    if getattr(opts, name) < low:
      raise ValueError(f"--{name} must be ≥ {low}, got {getattr(opts, name)}")
  if opts.compare not in ("", "torch"):
    raise ValueError(f"--compare must be 'torch' or empty, got {opts.compare!r}")
  if opts.compare and opts.stage not in COMPARED_STAGES:
    raise ValueError(f"--compare=torch times the PyTorch peers of the streams: --stage must be "
                     f"one of {list(COMPARED_STAGES)}, got {opts.stage!r}")
  if opts.compare and importlib.util.find_spec("torch") is None:
    raise ValueError("--compare=torch needs PyTorch: pip install -e '.[torch]'")
  if opts.peer_threads < 0:
    raise ValueError(f"--peer_threads must be ≥ 0, got {opts.peer_threads}")
  batch_size = config.train[opts.stage].batch_size if opts.batch_size is None else opts.batch_size
  if batch_size < 1:
    raise ValueError(f"--batch_size must be ≥ 1, got {batch_size}")
  stage_setup.check_batch(batch_size, mesh, "--batch_size")
  return batch_size


def run(config, opts: Options, config_name: str = "") -> dict:
  """Measures `opts.stage` of `config`; returns the JSON-able report."""
  configlib.validate(config)
  mesh = parallel.make_mesh(config.mesh.data, config.mesh.model)
  batch_size = check_options(config, opts, mesh)
  config = config.copy_and_resolve_references()
  config.train[opts.stage].batch_size = batch_size
  with contextlib.redirect_stdout(sys.stderr):  # the generator's progress; stdout is the report
    dataset = datasets.prepare(config.data, workdir_lib.RunDir(opts.workdir).data)
  setup = stage_setup.setup_stage(config, opts.stage, dataset, mesh)
  feed = dict(modalities=setup.stage.inputs, skeleton_stream=config.data.skeleton_stream,
              skeleton_frames=config.data.skeleton_frames, clip_frames=config.data.clip_frames,
              num_threads=config.data.num_threads, prefetch=config.data.prefetch)
  specs = example_specs(setup.train_source, **feed)
  report = {"stage": opts.stage, "config": config_name, "batch_size": batch_size,
            "inputs": {k: {"shape": [batch_size, *s.shape], "dtype": str(s.dtype)}
                       for k, s in specs.items()},
            "dtype": config.model.dtype, **environment(mesh, opts.conv_impl)}
  if opts.input_batches:
    report["input_pipeline"] = throughput.measure_pipeline(
        setup.train_source, batch_size=batch_size, num_batches=opts.input_batches,
        **stage_setup.augmentation(config, opts.stage), **feed)
  batch = synthetic_batch(specs, batch_size, config.model.num_classes, mesh, config.seed)
  report.update(measure(config, opts, setup, batch, mesh, report["conv_rewrite"]))
  return report


def measure(config, opts: Options, setup: stage_setup.StageSetup, batch, mesh, rewrite: bool) -> dict:
  """Compiles and times the train step and the forward-only eval step on `batch`; their FLOPs
  against the peak, memory, and (with `opts.profile_dir`) where the train step's time goes."""
  stage, layout, tx = setup.stage, setup.layout, setup.tx
  start = time.perf_counter()
  state = jax.block_until_ready(init_state(setup.build, stage, tx, layout, config.seed))
  init_s = time.perf_counter() - start
  inputs = {k: batch[k] for k in stage.inputs}
  make_train = lambda: make_train_step(stage, layout, tx)
  make_forward = lambda: make_eval_step(stage, layout)
  with conv_lib.conv_impl(opts.conv_impl):
    train = compile_step(make_train(), state, batch)
    forward = compile_step(make_forward(), state, inputs)
  train["model_flops"] = native_flops(make_train, (state, batch), train, rewrite)
  forward["model_flops"] = native_flops(make_forward, (state, inputs), forward, rewrite)
  peer = torch_peer(config, stage.name, batch, opts) if opts.compare else None
  if peer is None:
    train["times"], state = time_steps(train["compiled"], state, batch, opts.warmup, opts.steps)
  else:
    train["times"], peer_times, state = time_alternating(train["compiled"], state, batch, peer,
                                                         opts.warmup, opts.steps)
  forward["times"], _ = time_steps(forward["compiled"], state, inputs, opts.warmup, opts.steps,
                                   carry_state=False)
  batch_size = config.train[stage.name].batch_size
  peak = hardware.peak_flops(mesh.devices.ravel().tolist(), config.model.dtype,
                             opts.peak_matmul_size)
  out = step_report(train, batch_size, peak, mesh.size)
  out["init_s"] = init_s  # compiling and running the state initialisation
  out["forward"] = forward_report(forward, batch_size, mesh.size,
                                  statistics.median(train["times"]))
  out["memory"] = memory_report(train["compiled"], mesh)
  if peer is not None:
    out["compare"] = compare_report(peer, peer_times, train["times"], batch_size,
                                    model_parameters(state))
  if opts.profile_dir:
    out["profile"] = profiling.profile(
        lambda: time_steps(train["compiled"], state, batch, 0, opts.profile_steps), train["hlo"],
        opts.profile_dir, opts.profile_steps)
  return out


def environment(mesh, impl: str) -> dict:
  device = mesh.devices.ravel()[0]
  return {"backend": jax.default_backend(), "device_kind": device.device_kind,
          "device_count": int(mesh.size), "process_count": jax.process_count(),
          "mesh": dict(mesh.shape), "conv_impl": impl,
          "conv_rewrite": conv_lib.uses_rewrite(device.platform, impl),
          "host_memory_reused": host_memory.is_reused()}  # set by cli.run before JAX started


def example_specs(source, **pipeline_kwargs) -> dict[str, np.ndarray]:
  """One example of the stage's training batches (no augmentation: it keeps shapes), per key."""
  it = iter(pipeline.train_dataset(source, batch_size=1, seed=0, augment=False, process_index=0,
                                   process_count=1, **pipeline_kwargs))
  example = next(it)
  keys = tuple(pipeline_kwargs["modalities"]) + ("label",)
  return {k: example[k][0] for k in keys}


def synthetic_batch(specs: dict[str, np.ndarray], batch_size: int, num_classes: int, mesh,
                    seed: int) -> dict[str, jax.Array]:
  """Random arrays of the examples' shapes and dtypes, placed as `pipeline.global_batch` places
  real ones (this process's rows, sharded over the mesh's data axis)."""
  rng = np.random.default_rng(seed)
  rows = batch_size // jax.process_count()
  local = {}
  for key, example in specs.items():
    shape = (rows,) + example.shape
    if key == "label":
      local[key] = rng.integers(0, num_classes, shape).astype(example.dtype)
    elif np.issubdtype(example.dtype, np.integer):
      info = np.iinfo(example.dtype)
      local[key] = rng.integers(info.min, int(info.max) + 1, shape).astype(example.dtype)
    else:
      local[key] = rng.standard_normal(shape).astype(example.dtype)
  return pipeline.global_batch(local, parallel.batch_sharding(mesh))


def compile_step(jitted, *args) -> dict:
  """Lowers and compiles a jitted step; times both and keeps XLA's own FLOP count."""
  start = time.perf_counter()
  lowered = jitted.lower(*args)
  lowered_at = time.perf_counter()
  compiled = lowered.compile()
  done = time.perf_counter()
  return {"lowered": lowered, "compiled": compiled, "lower_s": lowered_at - start,
          "compile_s": done - start, "flops_per_device": _flops(compiled.cost_analysis()),
          "hlo": compiled.as_text()}


def native_flops(make_step, args, step: dict, rewrite: bool) -> float | None:
  """The whole step's FLOPs with native convolutions, the same whichever implementation runs:
  the cost analysis of the (global, unpartitioned) lowering, re-traced without the rewrite if
  it was active (its kernel-gradient loops would count once per body)."""
  if not rewrite:
    return _flops(step["lowered"].cost_analysis())
  with conv_lib.conv_impl("native"):
    return _flops(make_step().lower(*args).cost_analysis())


def _flops(cost) -> float | None:
  """'flops' of a cost analysis: a dict in current JAX, a list of one dict per module in older."""
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else None
  value = (cost or {}).get("flops")
  return float(value) if value is not None and value >= 0 else None


def time_steps(compiled, state, batch, warmup: int, steps: int, carry_state: bool = True):
  """Seconds of each of `steps` steps after `warmup`, each waited for; the final state."""
  times = []
  for i in range(warmup + steps):
    start = time.perf_counter()
    out = compiled(state, batch)
    jax.block_until_ready(out)
    if i >= warmup:
      times.append(time.perf_counter() - start)
    if carry_state:
      state = out[0]  # the old state's buffers were donated
  return times, state


def time_alternating(compiled, state, batch, peer, warmup: int, steps: int):
  """Our step and the peer's in turn, `warmup` + `steps` times each, so that both see the same
  machine load (this CPU's speed drifts between runs); our and the peer's times and our state."""
  ours, theirs = [], []
  for i in range(warmup + steps):
    start = time.perf_counter()
    state, metrics = compiled(state, batch)
    jax.block_until_ready((state, metrics))
    elapsed = time.perf_counter() - start
    peer_elapsed = peer()
    if i >= warmup:
      ours.append(elapsed)
      theirs.append(peer_elapsed)
  return ours, theirs, state


def torch_peer(config, stage: str, batch, opts: Options):
  """The PyTorch peer's train step on the same batch, shapes, optimiser and dtype."""
  import torch  # the optional extra, checked in check_options
  from amfi_jax.tools import torch_reference

  torch.set_num_threads(opts.peer_threads or os.cpu_count() or 1)
  torch.manual_seed(config.seed)
  host = {k: np.asarray(v) for k, v in batch.items()}
  scfg = config.train[stage]
  return torch_reference.PeerTrainStep(
      torch_reference.peer_of(config.model, stage), torch_reference.peer_inputs(stage, host),
      host["label"], learning_rate=scfg.learning_rate, weight_decay=scfg.weight_decay,
      dtype=config.model.dtype)


def model_parameters(state) -> int:
  return int(sum(np.size(x) for x in jax.tree.leaves(state.params)))


def compare_report(peer, peer_times: list[float], our_times: list[float], batch_size: int,
                   our_parameters: int) -> dict:
  """The peer's step beside ours; `speed_ratio` > 1: ours is faster."""
  import torch

  ratio = statistics.median(peer_times) / statistics.median(our_times)
  return {"peer": f"torch {torch.__version__}", "threads": torch.get_num_threads(),
          "autocast_bfloat16": peer.autocast, "step": _summary(peer_times),
          "examples_per_s": batch_size / statistics.median(peer_times),
          "parameters": {"ours": our_parameters,
                         "peer": sum(p.numel() for p in peer.module.parameters())},
          "speed_ratio": ratio,
          "method": "the two train steps alternate on one fixed batch, each waited for; "
                    "speed_ratio = the peer's median step time / ours"}


def _summary(times: list[float]) -> dict:
  return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
          "p90_s": float(np.percentile(times, 90)), "steps": len(times)}


def _timing(step: dict, batch_size: int, devices: int) -> dict:
  """Compile time, step-time summary, throughput and FLOPs of a compiled and timed step."""
  median = statistics.median(step["times"])
  per_device, model_flops = step["flops_per_device"], step["model_flops"]
  return {"compile_s": step["compile_s"], "step": _summary(step["times"]),
          "examples_per_s": batch_size / median,
          "flops_per_step": per_device * devices if per_device is not None else None,
          "model_flops_per_step": model_flops,
          "achieved_flops_per_s": model_flops / median if model_flops else None}


def step_report(train: dict, batch_size: int, peak: hardware.Peak, devices: int) -> dict:
  out = {"lower_s": train["lower_s"], **_timing(train, batch_size, devices),
         "peak_flops_per_s": peak.flops_per_s, "peak_source": peak.source}
  achieved = out["achieved_flops_per_s"]
  out["fraction_of_peak"] = achieved / peak.flops_per_s if achieved and peak.flops_per_s else None
  if profiling.loops_with_arithmetic(train["hlo"]):
    out["flops_note"] = ("the compiled step runs convolutions or matrix products in while loops; "
                         "XLA's cost analysis counts a loop body once whatever its trip count, "
                         "so flops_per_step undercounts them")
  return out


def forward_report(forward: dict, batch_size: int, devices: int, train_median: float) -> dict:
  """The eval step (forward only, BatchNorm in inference mode) against the full train step."""
  out = _timing(forward, batch_size, devices)
  out["share_of_train_step"] = out["step"]["median_s"] / train_median
  return out


def memory_report(compiled, mesh) -> dict:
  """Peak device memory where the runtime tracks it (GPU, TPU); always the compiled step's
  buffer sizes per device and this process's maximum resident set."""
  out = {}
  local = [d for d in mesh.devices.ravel() if d.process_index == jax.process_index()]
  stats = [d.memory_stats() for d in local]
  if stats and all(s and "peak_bytes_in_use" in s for s in stats):
    out["device_peak_bytes"] = max(int(s["peak_bytes_in_use"]) for s in stats)
    out["device_peak_source"] = ("device.memory_stats()['peak_bytes_in_use'], max over local "
                                 "devices, whole process so far")
  analysis = compiled.memory_analysis()
  if analysis is not None:
    sizes = {name: int(getattr(analysis, f"{name}_size_in_bytes"))
             for name in ("argument", "output", "alias", "temp")}
    sizes["total"] = sizes["argument"] + sizes["output"] - sizes["alias"] + sizes["temp"]
    out["compiled_step_bytes"] = sizes
    out["compiled_step_source"] = ("compiled.memory_analysis() per device: arguments + outputs "
                                   "- donated (aliased) + temporaries")
  out["host_max_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
  out["host_max_rss_source"] = ("resource.getrusage: this process's maximum resident set, "
                                "including the input pipeline and compilation")
  if "device_peak_bytes" in out:
    out["peak_bytes"], out["peak_source"] = out["device_peak_bytes"], "device_peak_bytes"
  elif "compiled_step_bytes" in out:
    out["peak_bytes"] = out["compiled_step_bytes"]["total"]
    out["peak_source"] = "compiled_step_bytes.total (the runtime reports no device peak)"
  return out


# ---- Command line ----

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (file.py[:variant]).",
                                          lock_config=True)
_STAGE = flags.DEFINE_enum("stage", None, workdir_lib.STAGES, "The stage whose train step to measure.")
_BATCH = flags.DEFINE_integer("batch_size", None,
                              "Global batch size; default config.train.<stage>.batch_size.")
_STEPS = flags.DEFINE_integer("steps", Options.steps, "Timed steps after the warm-up.")
_WARMUP = flags.DEFINE_integer("warmup", Options.warmup, "Untimed steps after compilation.")
_CONV = flags.DEFINE_enum("conv_impl", Options.conv_impl, conv_lib.IMPLS,
                          "Convolutions: auto (the matmul rewrite on CPU only), native, matmul.")
_INPUT = flags.DEFINE_integer("input_batches", Options.input_batches,
                              "Batches of the input pipeline to time alone (0: skip).")
_PROFILE = flags.DEFINE_string("profile_dir", "", "If set, trace --profile_steps train steps "
                               "here and summarise where their time goes.")
_PROFILE_STEPS = flags.DEFINE_integer("profile_steps", Options.profile_steps,
                                      "Train steps traced with --profile_dir.")
_WORKDIR = flags.DEFINE_string("workdir", Options.workdir,
                               "Where the embedded dataset is generated (when the config names "
                               "no dataset).")
_COMPARE = flags.DEFINE_enum("compare", None, ["torch"],
                             "Also time the PyTorch peer of the stream (same architecture, "
                             "shapes, batch, optimiser and dtype; bfloat16 via autocast), "
                             "alternating with ours; needs the `torch` extra.")
_PEER_THREADS = flags.DEFINE_integer("peer_threads", Options.peer_threads,
                                     "PyTorch intra-op threads (0: one per CPU core).")
_MATMUL = flags.DEFINE_integer("peak_matmul_size", Options.peak_matmul_size,
                               "Side of the float32 matmul that measures a CPU's peak.")
_DISTRIBUTED_SETTINGS = distributed.define_flags()
flags.mark_flags_as_required(["config", "stage"])


def options_from_flags() -> Options:
  return Options(stage=_STAGE.value, batch_size=_BATCH.value, steps=_STEPS.value,
                 warmup=_WARMUP.value, conv_impl=_CONV.value, input_batches=_INPUT.value,
                 profile_dir=_PROFILE.value, profile_steps=_PROFILE_STEPS.value,
                 workdir=_WORKDIR.value, peak_matmul_size=_MATMUL.value,
                 compare=_COMPARE.value or "", peer_threads=_PEER_THREADS.value)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logs.quiet_library_logs()
  distributed.start(_DISTRIBUTED_SETTINGS)
  config, opts = cli.config_value(_CONFIG), options_from_flags()
  try:
    check_options(config, opts, parallel.make_mesh(config.mesh.data, config.mesh.model))
  except ValueError as e:
    raise app.UsageError(str(e)) from None
  name = config_flags.get_config_filename(flags.FLAGS["config"])
  logging.info("Benchmarking stage %s of %s", opts.stage, name)
  report = run(config, opts, config_name=name)
  report["config_overrides"] = {k: _jsonable(v) for k, v in
                                config_flags.get_override_values(flags.FLAGS["config"]).items()}
  if distributed.is_main_process():  # every process measured the same global step
    print(json.dumps(report), flush=True)


def _jsonable(value):
  try:
    json.dumps(value)
    return value
  except TypeError:
    return repr(value)


if __name__ == "__main__":
  cli.run(main)
