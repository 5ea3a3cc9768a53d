"""Peak FLOP/s of the devices a benchmark runs on: vendor figures for accelerators, a measured
matrix product for CPUs.

A fraction of peak is only meaningful against the arithmetic the step actually runs on, so the
figure follows the compute dtype: bfloat16 → dense bf16 tensor-core / MXU peak; float32 → what
float32 convolutions and dots run on at JAX's default precision (TF32 tensor cores on NVIDIA
Ampere and later, one bf16 MXU pass on TPU; see docs.jax.dev/en/latest/201/precision.html), or
the full-precision float32 figure when `jax_default_matmul_precision` asks for float32.
All vendor figures are DENSE: NVIDIA's datasheets headline the 2:4-sparsity figure, twice these.
"""

from __future__ import annotations

import dataclasses
import functools
import re

import jax

from amfi_jax.tools import conv_benchmark

_NVIDIA = "NVIDIA {} datasheet, dense figures (nvidia.com/en-us/data-center/{})"
_TPU = ("Google Cloud TPU {} system architecture, bf16 per JAX device "
        "(cloud.google.com/tpu/docs/{})")


@dataclasses.dataclass(frozen=True)
class Accelerator:
  """Peak TFLOP/s of one JAX device of a kind (None: the hardware has no such unit).

  Attributes:
    pattern: regular expression matched (case-insensitively) against `device.device_kind`.
    bf16: dense bfloat16 tensor-core / MXU peak.
    f32_default: float32 at JAX's default precision (TF32 tensor cores, TPU bf16 passes).
    f32_full: full-precision float32 (CUDA cores).
  """

  name: str
  pattern: str
  bf16: float | None
  f32_default: float | None
  f32_full: float | None
  source: str


# First match wins: specific variants (PCIe, NVL, A10G) before the family name.
ACCELERATORS = (
    Accelerator("H100 PCIe", r"\bH100\b.*\bPCIe\b", 756.0, 378.0, 51.0,
                _NVIDIA.format("H100", "h100")),
    Accelerator("H100 NVL", r"\bH100\b.*\bNVL\b", 835.5, 417.5, 60.0,
                _NVIDIA.format("H100", "h100")),
    Accelerator("H100 SXM", r"\bH100\b", 989.5, 494.5, 67.0, _NVIDIA.format("H100", "h100")),
    Accelerator("H200 NVL", r"\bH200\b.*\bNVL\b", 835.5, 417.5, 60.0,
                _NVIDIA.format("H200", "h200")),
    Accelerator("H200 SXM", r"\bH200\b", 989.5, 494.5, 67.0, _NVIDIA.format("H200", "h200")),
    Accelerator("A100", r"\bA100\b", 312.0, 156.0, 19.5, _NVIDIA.format("A100", "a100")),
    # NVIDIA publishes no A10G datasheet; AWS's G5 variant trades tensor for CUDA-core rate.
    Accelerator("A10G", r"\bA10G\b", 70.0, 35.0, 35.0,
                "AWS G5 A10G figures as compared in baseten.co/blog/nvidia-a10-vs-a10g-for-ml-"
                "model-inference (no NVIDIA datasheet)"),
    Accelerator("A10", r"\bA10\b", 125.0, 62.5, 31.2, _NVIDIA.format("A10", "products/a10-gpu")),
    Accelerator("L4", r"\bL4\b", 121.0, 60.0, 30.3, _NVIDIA.format("L4", "l4")),
    # Volta and Turing have fp16 tensor cores but no bf16 or TF32: float32 runs on CUDA cores.
    Accelerator("V100S PCIe", r"\bV100S\b", None, 16.4, 16.4, _NVIDIA.format("V100", "v100")),
    Accelerator("V100 PCIe", r"\bV100\b.*\bPCIE\b", None, 14.0, 14.0,
                _NVIDIA.format("V100", "v100")),
    Accelerator("V100 SXM2", r"\bV100\b", None, 15.7, 15.7, _NVIDIA.format("V100", "v100")),
    Accelerator("T4", r"\bT4\b", None, 8.1, 8.1, _NVIDIA.format("T4", "tesla-t4")),
    # TPU v2/v3 expose each of a chip's two cores as a device (half the chip's 45 / 123);
    # v4 and v5p fuse them (megacore); v5e and v6e have one core per chip.
    Accelerator("TPU v2", r"^TPU v2", 22.5, 22.5, None, _TPU.format("v2", "v2")),
    Accelerator("TPU v3", r"^TPU v3", 61.5, 61.5, None, _TPU.format("v3", "v3")),
    Accelerator("TPU v4", r"^TPU v4$", 275.0, 275.0, None, _TPU.format("v4", "v4")),
    Accelerator("TPU v5e", r"^TPU v5 ?(lite|e)$", 197.0, 197.0, None, _TPU.format("v5e", "v5e")),
    Accelerator("TPU v5p", r"^TPU v5p?$", 459.0, 459.0, None, _TPU.format("v5p", "v5p")),
    Accelerator("TPU v6e", r"^TPU v6 ?(lite|e)$", 918.0, 918.0, None, _TPU.format("v6e", "v6e")),
)

_FULL_F32_PRECISIONS = ("float32", "highest", "F32_F32_F32")


@dataclasses.dataclass(frozen=True)
class Peak:
  """Peak FLOP/s of all the devices a step runs on, or None with the reason in `source`."""

  flops_per_s: float | None
  source: str


def lookup(device_kind: str, dtype: str, full_f32: bool = False) -> Peak:
  """One device's peak from the vendor table; None and the reason for kinds it lacks."""
  for acc in ACCELERATORS:
    if re.search(acc.pattern, device_kind, re.IGNORECASE):
      break
  else:
    return Peak(None, f"device kind {device_kind!r} is not in amfi_jax.tools.hardware.ACCELERATORS; "
                      "add its vendor figure there")
  if dtype == "bfloat16":
    tflops, unit = acc.bf16, "bf16 dense"
  elif dtype == "float32":
    tflops, unit = ((acc.f32_full, "float32 (full precision)") if full_f32 else
                    (acc.f32_default, "float32 at JAX's default precision"))
  else:
    return Peak(None, f"no peak figure for compute dtype {dtype!r}")
  if tflops is None:
    return Peak(None, f"{acc.name} has no {unit} peak (no such unit, or not published)")
  return Peak(tflops * 1e12, f"{acc.name}, {unit}: {tflops:g} TFLOP/s per device; {acc.source}")


@functools.lru_cache(maxsize=None)
def measured_cpu_peak(size: int = 4096, rounds: int = 5) -> Peak:
  """Best of `rounds` float32 size×size matrix products on the CPU backend (all its threads).

  CPU vendors' peaks assume clock and vector units this process may not get, so measure: the
  matrix product is the fastest thing XLA CPU does (its YNNPACK/Eigen kernels).
  """
  with jax.default_device(jax.devices("cpu")[0]):
    result = conv_benchmark.matmul_reference(size, rounds)
  return Peak(result["gflops_best"] * 1e9,
              f"measured: best of {rounds} float32 {size}x{size} matmuls on this host "
              f"({result['gflops_best']} GFLOP/s; shared by all its CPU devices)")


def full_f32_requested() -> bool:
  """Whether `jax_default_matmul_precision` asks for full float32 (no TF32 / bf16 passes)."""
  return str(jax.config.jax_default_matmul_precision) in _FULL_F32_PRECISIONS


def peak_flops(devices, dtype: str, matmul_size: int = 4096) -> Peak:
  """Peak of `devices` together: per-device vendor figure × count, or the measured host CPU."""
  kinds = {d.device_kind for d in devices}
  platform = devices[0].platform
  if platform == "cpu":
    return measured_cpu_peak(matmul_size)
  if len(kinds) != 1:
    return Peak(None, f"mixed device kinds {sorted(kinds)}")
  one = lookup(kinds.pop(), dtype, full_f32_requested())
  if one.flops_per_s is None:
    return one
  return Peak(one.flops_per_s * len(devices), f"{len(devices)} × {one.source}")
