"""`python -m amfi_jax.tools.benchmark` on a tiny generated dataset: the report's figures, both
convolution implementations, the profile summary, the peak table and the command line's errors.

The model is the demo's (tiny widths) with a two-unit AGCN: the init and train-step compilations
dominate the run time, so the runs measure the skeleton stage; the RGB stage's batch layout is
checked without compiling its model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from amfi_jax import parallel
from amfi_jax.tools import benchmark, hardware, profiling
from amfi_jax.data import datasets
from amfi_jax.workdir import RunDir
from tests.conftest import cpu_env
from tests.training.conftest import REPO, load_config

# 2 classes × performers 1 (train), 9 (validation), 3 (test) × 3 cameras: 6 samples per split.
TINY_DATA = {"num_classes": 2, "performers": (1, 9, 3), "replications": (1,), "clip_length": 4,
             "image_size": 16, "max_frames": 16}
SKELETON_LAYERS = "64,128/2"
BATCH = 2
RUN = dict(batch_size=BATCH, steps=2, warmup=1, input_batches=2, peak_matmul_size=1024)


def tiny_config():
  config = load_config("fusion")
  for key, value in TINY_DATA.items():
    config.data.embedded[key] = value
  config.data.num_threads = 1
  config.model.skeleton.layers = SKELETON_LAYERS
  return config


def cli_flags(workdir: str) -> list[str]:
  """`tiny_config` as command-line flags."""
  flags = [f"--config={os.path.join(REPO, 'configs', 'fusion.py')}:demo", f"--workdir={workdir}",
           "--config.data.num_threads=1", f"--config.model.skeleton.layers={SKELETON_LAYERS}"]
  flags += [f"--config.data.embedded.{k}={v}".replace(" ", "") for k, v in TINY_DATA.items()]
  return flags + [f"--{k}={v}" for k, v in RUN.items()]


def run_cli(args: list[str], devices: int = 1) -> subprocess.CompletedProcess:
  env = cpu_env(devices)
  return subprocess.run([sys.executable, "-m", "amfi_jax.tools.benchmark", *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> str:
  """A workdir whose embedded dataset is already built (the runs below share it)."""
  path = str(tmp_path_factory.mktemp("benchmark"))
  datasets.prepare(tiny_config().data, RunDir(path).data)
  return path


@pytest.fixture(scope="module")
def report(workdir, tmp_path_factory) -> dict:
  """The skeleton stage with the CPU convolution rewrite, profiled."""
  profile_dir = str(tmp_path_factory.mktemp("profile"))
  opts = benchmark.Options(stage="skeleton", conv_impl="matmul", workdir=workdir,
                           profile_dir=profile_dir, profile_steps=2, **RUN)
  return benchmark.run(tiny_config(), opts, config_name="tiny")


def test_report_describes_the_run(report):
  assert report["stage"] == "skeleton" and report["batch_size"] == BATCH
  # The demo's skeleton stream (joints, bones, motions: 12 channels) resampled to 32 frames,
  # 25 joints, 2 persons.
  config = tiny_config()
  assert (config.model.skeleton.in_channels, config.data.skeleton_frames) == (12, 32)
  assert report["inputs"] == {"skeleton": {"shape": [BATCH, 12, 32, 25, 2], "dtype": "float32"},
                              "label": {"shape": [BATCH], "dtype": "int32"}}
  assert report["dtype"] == "float32"
  assert report["backend"] == "cpu" and report["device_count"] == jax.device_count()
  assert report["mesh"] == {"data": jax.device_count(), "model": 1}
  assert report["conv_impl"] == "matmul" and report["conv_rewrite"] is True
  # The suite sets the entry points' allocator (tests/conftest.py) on Linux.
  assert report["host_memory_reused"] is sys.platform.startswith("linux")


def test_report_figures_are_consistent(report):
  step = report["step"]
  assert 0 < step["min_s"] <= step["median_s"] <= step["max_s"] and step["steps"] == 2
  assert report["compile_s"] > report["lower_s"] > 0
  assert report["init_s"] > 0
  assert report["examples_per_s"] == pytest.approx(BATCH / step["median_s"])
  assert report["flops_per_step"] > 0 and report["model_flops_per_step"] > 0
  assert report["achieved_flops_per_s"] == pytest.approx(
      report["model_flops_per_step"] / step["median_s"])
  assert report["peak_source"].startswith("measured") and report["peak_flops_per_s"] > 0
  assert 0 < report["fraction_of_peak"] < 1.5
  # The rewrite runs no loops, so XLA's count of the compiled step needs no note. (The two counts
  # are not ordered: the CPU graph convolution projects before it aggregates, which costs more
  # multiply-adds than the native order where a unit widens.)
  assert "flops_note" not in report
  forward = report["forward"]
  assert 0 < forward["model_flops_per_step"] < report["model_flops_per_step"]
  assert forward["step"]["median_s"] > 0 and forward["share_of_train_step"] > 0
  assert report["input_pipeline"]["examples_per_s"] > 0
  memory = report["memory"]
  assert memory["peak_bytes"] == memory["compiled_step_bytes"]["total"] > 0
  assert "no device peak" in memory["peak_source"]
  assert memory["host_max_rss_bytes"] > memory["peak_bytes"]


def test_profile_summarises_the_trace(report):
  profile = report["profile"]
  assert os.path.isfile(profile["trace"]) and profile["op_events"] > 0
  shares = {c: v["share"] for c, v in profile["categories"].items()}
  assert set(shares) == set(profiling.CATEGORIES)
  assert sum(shares.values()) == pytest.approx(1.0)
  assert shares["convolution"] + shares["dot"] > 0.05
  assert profile["op_s_per_step"] == pytest.approx(
      sum(v["s_per_step"] for v in profile["categories"].values()))
  assert profile["top_ops"] and all(o["category"] in profiling.CATEGORIES
                                    for o in profile["top_ops"])


def test_command_line_with_native_convolutions(workdir, report):
  """The CLI prints one JSON object; native convolutions run, and the model FLOPs (always from
  the native lowering) equal the rewrite's."""
  result = run_cli(cli_flags(workdir) + ["--stage=skeleton", "--conv_impl=native"])
  assert result.returncode == 0, result.stderr[-3000:]
  native = json.loads(result.stdout)
  assert native["conv_impl"] == "native" and native["conv_rewrite"] is False
  assert native["config"].endswith("fusion.py:demo")
  assert native["config_overrides"]["model.skeleton.layers"] == SKELETON_LAYERS
  assert native["model_flops_per_step"] == report["model_flops_per_step"]
  # Without loops, XLA's count of the optimised step matches the lowered one's.
  assert "flops_note" not in native
  assert native["flops_per_step"] == pytest.approx(native["model_flops_per_step"], rel=0.1)
  assert native["step"]["median_s"] > 0 and 0 < native["fraction_of_peak"] < 1.5


def test_rgb_batch_has_the_records_layout(workdir):
  config = tiny_config()
  source = datasets.prepare(config.data, RunDir(workdir).data).source("train")
  specs = benchmark.example_specs(source, modalities=("rgb",), skeleton_stream="joint",
                                  num_threads=1, prefetch=1)
  mesh = parallel.make_mesh()
  batch = benchmark.synthetic_batch(specs, 4, config.model.num_classes, mesh, seed=0)
  assert batch["rgb"].shape == (4, 4, 16, 16, 3) and batch["rgb"].dtype == np.uint8
  assert batch["label"].shape == (4,) and int(batch["label"].max()) < config.model.num_classes
  assert batch["rgb"].sharding == parallel.batch_sharding(mesh)


@pytest.mark.parametrize("kind, dtype, tflops", [
    ("NVIDIA H100 80GB HBM3", "bfloat16", 989.5),
    ("NVIDIA H100 PCIe", "bfloat16", 756.0),
    ("NVIDIA H100 PCIe", "float32", 378.0),
    ("NVIDIA H200", "bfloat16", 989.5),
    ("NVIDIA A100-SXM4-40GB", "float32", 156.0),
    ("NVIDIA A10G", "bfloat16", 70.0),
    ("NVIDIA L4", "bfloat16", 121.0),
    ("Tesla V100-SXM2-16GB", "float32", 15.7),
    ("TPU v4", "bfloat16", 275.0),
    ("TPU v5 lite", "bfloat16", 197.0),
    ("TPU v5", "bfloat16", 459.0),
    ("TPU v6 lite", "float32", 918.0),
])
def test_peak_table_resolves_known_kinds(kind, dtype, tflops):
  peak = hardware.lookup(kind, dtype)
  assert peak.flops_per_s == pytest.approx(tflops * 1e12)
  assert "datasheet" in peak.source or "TPU" in peak.source or "A10G" in peak.source


def test_peak_table_explains_missing_figures():
  unknown = hardware.lookup("NVIDIA GeForce RTX 9999", "bfloat16")
  assert unknown.flops_per_s is None and "not in amfi_jax.tools.hardware.ACCELERATORS" in unknown.source
  no_bf16 = hardware.lookup("Tesla V100-PCIE-16GB", "bfloat16")
  assert no_bf16.flops_per_s is None and "V100 PCIe has no bf16" in no_bf16.source
  assert hardware.lookup("NVIDIA A100-SXM4-80GB", "float32", full_f32=True).flops_per_s == 19.5e12


def test_bad_options_name_their_flag():
  config, mesh = tiny_config(), parallel.make_mesh()
  with pytest.raises(ValueError, match="--stage must be one of"):
    benchmark.check_options(config, benchmark.Options(stage="depth"), mesh)
  with pytest.raises(ValueError, match="--steps must be ≥ 1"):
    benchmark.check_options(config, benchmark.Options(stage="rgb", steps=0), mesh)


@pytest.mark.parametrize("flag, message", [
    ("--batch_size=3", "--batch_size=3 must be divisible by the mesh's data axis (2)"),
    ("--stage=depth", "flag --stage=depth: value should be one of <rgb|skeleton|fusion>"),
])
def test_command_line_rejects_bad_flags(tmp_path, flag, message):
  args = [f"--config={os.path.join(REPO, 'configs', 'fusion.py')}:demo", "--stage=skeleton",
          f"--workdir={tmp_path}", flag]
  result = run_cli(args, devices=2)
  assert result.returncode != 0
  assert message in result.stderr
  assert not os.listdir(tmp_path)  # failed before preparing any data


HLO = """HloModule jit_step, entry_computation_layout={()->f32[]}

%fused_conv (p: f32[2,4]) -> f32[2,4] {
  %p = f32[2,4]{1,0} parameter(0)
  ROOT %convolution.1 = f32[2,4]{1,0} convolution(%p, %p), dim_labels=bf_io->bf
}

%fused_norm (p: f32[2,4]) -> f32[2] {
  %p.1 = f32[2,4]{1,0} parameter(0)
  %c = f32[] constant(0)
  ROOT %reduce.1 = f32[2]{0} reduce(%p.1, %c), dimensions={1}, to_apply=%add
}

%fused_scale (p: f32[2,4]) -> f32[2,4] {
  %p.2 = f32[2,4]{1,0} parameter(0)
  ROOT %multiply.1 = f32[2,4]{1,0} multiply(%p.2, %p.2)
}

%body (t: (s32[], f32[2,4])) -> (s32[], f32[2,4]) {
  %t.1 = (s32[], f32[2,4]{1,0}) parameter(0)
  %v = f32[2,4]{1,0} get-tuple-element(%t.1), index=1
  %dot.9 = f32[2,2]{1,0} dot(%v, %v), lhs_contracting_dims={1}, rhs_contracting_dims={1}
  ROOT %t.2 = (s32[], f32[2,4]{1,0}) tuple(%i, %v)
}

ENTRY %main (x: f32[2,4]) -> (f32[2,4], f32[]) {
  %x = f32[2,4]{1,0} parameter(0)
  %conv_fusion = f32[2,4]{1,0} fusion(%x), kind=kOutput, calls=%fused_conv
  %norm_fusion = f32[2]{0} fusion(%conv_fusion), kind=kInput, calls=%fused_norm
  %scale_fusion = f32[2,4]{1,0} fusion(%conv_fusion), kind=kLoop, calls=%fused_scale
  %dot.3 = f32[2,2]{1,0} dot(%x, %x), lhs_contracting_dims={1}, rhs_contracting_dims={1}
  %copy.2 = f32[2,4]{0,1} copy(%x)
  %while.1 = (s32[], f32[2,4]{1,0}) while(%t), condition=%cond, body=%body
  ROOT %tuple.1 = (f32[2,4]{1,0}, f32[]) tuple(%scale_fusion, %c)
}
"""


def _op(name: str, ts: float, dur: float, tid: int = 1, module: str = "jit_step") -> dict:
  return {"ph": "X", "pid": 1, "tid": tid, "ts": ts, "dur": dur, "name": name,
          "args": {"hlo_op": name, "hlo_module": module}}


def _end(name: str, ts: float) -> dict:
  return {"ph": "X", "pid": 1, "tid": 3, "ts": ts, "dur": 0.2, "name": f"end: {name}"}


def test_trace_summary_counts_own_time_by_category():
  """An asynchronous op lasts until its `end:` event, and ops it overlaps keep their time; a
  while loop's body ops nest inside it on the same thread, so only its own time is "other";
  events of other modules and events that are no XLA op do not count."""
  events = [_op("conv_fusion", 0, 1), _end("conv_fusion", 40), _op("scale_fusion", 20, 10),
            _op("norm_fusion", 40, 10), _op("while.1", 60, 30), _op("dot.3", 65, 20),
            _op("copy.2", 10, 10, tid=2), _op("conv_fusion", 0, 500, module="jit_other"),
            {"ph": "X", "pid": 1, "tid": 1, "ts": 0, "dur": 99, "name": "PjitFunction"}]
  summary = profiling.summarize_trace({"traceEvents": events}, HLO, "jit_step", steps=2)
  seconds = {c: v["s_per_step"] * 1e6 for c, v in summary["categories"].items()}
  assert seconds == pytest.approx({"convolution": 20, "dot": 10, "reduce": 5, "fusion": 5,
                                   "copy": 5, "other": 5})
  assert summary["op_events"] == 6 and summary["op_s_per_step"] == pytest.approx(50e-6)
  assert summary["top_ops"][0] == {"op": "conv_fusion", "category": "convolution",
                                   "s_per_step": pytest.approx(20e-6)}


def test_loops_with_arithmetic_are_flagged():
  assert profiling.loops_with_arithmetic(HLO)
  assert not profiling.loops_with_arithmetic(HLO.replace("dot(%v, %v)", "add(%v, %v)"))


def test_compare_with_the_torch_peer_alternates_on_the_same_architecture(workdir):
  pytest.importorskip("torch", reason="--compare=torch needs the `torch` extra")
  opts = benchmark.Options(stage="skeleton", workdir=workdir, compare="torch", peer_threads=1,
                           **{**RUN, "input_batches": 0, "steps": 3})
  report = benchmark.run(tiny_config(), opts)
  compare = report["compare"]
  assert compare["parameters"]["peer"] == compare["parameters"]["ours"] > 0
  assert compare["threads"] == 1 and compare["autocast_bfloat16"] is False
  assert compare["step"]["steps"] == report["step"]["steps"] == 3
  assert compare["speed_ratio"] == pytest.approx(
      compare["step"]["median_s"] / report["step"]["median_s"])
  assert compare["examples_per_s"] == pytest.approx(BATCH / compare["step"]["median_s"])


def test_the_torch_peer_has_the_configured_rgb_architecture():
  pytest.importorskip("torch", reason="the peer needs the `torch` extra")
  from amfi_jax.models import amfi
  from amfi_jax.tools import torch_reference
  from flax import nnx

  config = tiny_config()
  config.model.rgb.in_channels = 1
  peer = torch_reference.peer_of(config.model, "rgb")
  ours = nnx.eval_shape(lambda: amfi.build_model(config.model, "rgb"))
  ours_count = sum(np.size(x) for x in jax.tree.leaves(nnx.state(ours, nnx.Param)))
  assert sum(p.numel() for p in peer.parameters()) == ours_count
  clip = np.zeros((2, 4, 16, 16, 1), np.uint8)
  inputs = torch_reference.peer_inputs("rgb", {"depth": clip})
  assert tuple(inputs.shape) == (2, 1, 4, 16, 16)
  assert tuple(peer(inputs).shape) == (2, config.model.num_classes)


@pytest.mark.parametrize("fields,message", [
    ({"stage": "fusion", "compare": "torch"}, "--stage must be one of"),
    ({"stage": "skeleton", "compare": "tf"}, "--compare must be"),
    ({"stage": "skeleton", "compare": "torch", "peer_threads": -1}, "--peer_threads"),
])
def test_compare_option_errors_name_the_flag(fields, message):
  with pytest.raises(ValueError, match=message):
    benchmark.check_options(tiny_config(), benchmark.Options(**fields),
                            parallel.make_mesh(devices=jax.devices()[:1]))
