"""Runs an artifact of `python -m amfi_jax.export` with jax and numpy only.

What a deployment ships: this module, the artifact and its metadata (ARTIFACT.json). It imports
no other module of the project and no training library (flax, optax, orbax, grain, TFDS), so it
also runs copied out of the package, as `serving.py`. JAX needs the `flatbuffers` package to
read artifacts.

  from amfi_jax import serving
  model = serving.load("fusion.jaxexport")
  print(model.input_names)                           # ('rgb', 'skeleton')
  logits = model(rgb=clips, skeleton=skeletons)      # numpy in, numpy (batch, classes) out
  for name, p in model.top_k(logits[0], 5):          # [(class name, probability)]
    print(f"{name}: {p:.3f}")

The inputs are what the training pipeline feeds (the metadata's `preprocessing` says how raw
samples become them): `rgb` uint8 frames, not normalised; `depth` and `skeleton` float32.

  python -m amfi_jax.serving ARTIFACT [--batch_size=1] [--calls=50] [--warmup=5]

times the artifact on random inputs of its shapes (per-batch latency: p50, p99).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import numpy as np

BATCH = "b"  # the batch dimension's name, in the artifact and in the metadata's shapes


def metadata_path(artifact: str) -> str:
  """The metadata `amfi_jax.export` writes beside an artifact: its name with `.json` appended."""
  return artifact + ".json"


class ServedModel:
  """An exported stage: call it with its inputs (by name or in `input_names` order)."""

  def __init__(self, exported: jax.export.Exported, metadata: dict):
    self.metadata = metadata
    self.input_names = tuple(i["name"] for i in metadata["inputs"])
    self.class_names = tuple(metadata["class_names"])
    self._inputs = {i["name"]: i for i in metadata["inputs"]}
    self.compiler_options = cpu_compiler_options(metadata)
    # jit caches the compiled program per batch size, so repeated calls only run it.
    self._call = jax.jit(exported.call, compiler_options=self.compiler_options)

  def __call__(self, *args, **kwargs) -> np.ndarray:
    """Logits (batch, classes) as float32 numpy."""
    arrays = self._arrange(args, kwargs)
    return np.asarray(self._call(*arrays), np.float32)

  def _arrange(self, args, kwargs) -> list[np.ndarray]:
    if args and kwargs:
      raise ValueError(f"Pass the inputs either by position or by name {self.input_names}, "
                       "not both")
    if args:
      if len(args) != len(self.input_names):
        raise ValueError(f"Expected {len(self.input_names)} inputs {self.input_names}, got "
                         f"{len(args)}")
      kwargs = dict(zip(self.input_names, args))
    missing = [n for n in self.input_names if n not in kwargs]
    unknown = [n for n in kwargs if n not in self._inputs]
    if missing or unknown:
      raise ValueError(f"Inputs {self.input_names} expected; missing {missing}, unknown "
                       f"{unknown}")
    arrays = [self._check(name, kwargs[name]) for name in self.input_names]
    sizes = {a.shape[0] for a in arrays}
    if len(sizes) > 1:
      raise ValueError("The inputs' batch sizes differ: "
                       f"{dict(zip(self.input_names, (a.shape[0] for a in arrays)))}")
    return arrays

  def _check(self, name: str, value) -> np.ndarray:
    spec = self._inputs[name]
    array = np.asarray(value)
    want = tuple(spec["shape"])
    shape_text = "(" + ", ".join(map(str, want)) + ")"
    if array.ndim != len(want) or tuple(array.shape[1:]) != want[1:]:
      raise ValueError(f"Input {name!r}: expected shape {shape_text} ({BATCH} = batch), got "
                       f"{tuple(array.shape)}")
    if array.dtype != np.dtype(spec["dtype"]):
      hint = " (frames stay uint8: the model normalises them)" if spec["dtype"] == "uint8" else ""
      raise ValueError(f"Input {name!r}: expected dtype {spec['dtype']}, got {array.dtype}{hint}")
    if array.shape[0] == 0:
      raise ValueError(f"Input {name!r}: the batch is empty")
    return array

  def top_k(self, logits: np.ndarray, k: int = 5) -> list[tuple[str, float]]:
    """The k most probable classes of one sample's logits: [(class name, probability)]."""
    return top_k(logits, k, self.class_names)

  def example_inputs(self, batch_size: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs of the artifact's shapes and dtypes (uint8 over its whole range)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name in self.input_names:
      spec = self._inputs[name]
      shape = (batch_size, *spec["shape"][1:])
      if spec["dtype"] == "uint8":
        out[name] = rng.integers(0, 256, shape, dtype=np.uint8)
      else:
        out[name] = rng.standard_normal(shape).astype(spec["dtype"])
    return out


def cpu_compiler_options(metadata: dict) -> dict[str, str] | None:
  """The artifact's `cpu_compiler_options` (the XLA options its training steps used on CPU) when
  this process runs on CPU; None elsewhere, for artifacts written without them, or when the
  user's XLA_FLAGS set any of them (theirs win)."""
  options = metadata.get("cpu_compiler_options")
  if not options or jax.default_backend() != "cpu":
    return None
  user_flags = os.environ.get("XLA_FLAGS", "")
  if any(name in user_flags for name in options):
    return None
  return dict(options)


def load(path: str | os.PathLike) -> ServedModel:
  """The artifact at `path` and its metadata (`path` + '.json')."""
  path = os.fspath(path)
  for file in (path, metadata_path(path)):
    if not os.path.isfile(file):
      raise FileNotFoundError(f"{file} not found: write it with `python -m amfi_jax.export`")
  with open(path, "rb") as f:
    exported = jax.export.deserialize(bytearray(f.read()))
  with open(metadata_path(path)) as f:
    metadata = json.load(f)
  backend = jax.default_backend()
  # JAX names its GPU backend `gpu`; artifacts name the lowering, `cuda` or `rocm`.
  runs_here = {"gpu": ("cuda", "rocm")}.get(backend, (backend,))
  if not set(runs_here) & set(exported.platforms):
    raise ValueError(f"{path} was exported for {list(exported.platforms)}, not for this "
                     f"{backend!r} backend; export it again with --platforms including it")
  return ServedModel(exported, metadata)


def softmax(logits: np.ndarray) -> np.ndarray:
  z = np.asarray(logits, np.float64)
  z = np.exp(z - z.max(axis=-1, keepdims=True))
  return z / z.sum(axis=-1, keepdims=True)


def top_k(logits: np.ndarray, k: int, class_names) -> list[tuple[str, float]]:
  """The k most probable classes of ONE sample's logits: [(class name, probability)]."""
  logits = np.asarray(logits)
  if logits.ndim != 1:
    raise ValueError(f"top_k takes one sample's logits (classes,), got shape {logits.shape}")
  probs = softmax(logits)
  order = np.argsort(-probs, kind="stable")[:k]
  return [(class_names[i], float(probs[i])) for i in order]


def latency(model: ServedModel, batch_size: int = 1, calls: int = 50, warmup: int = 5
            ) -> dict:
  """Per-batch latency in milliseconds over `calls` calls after `warmup` ones (the first
  compiles), on random inputs already in host memory: what a caller of `model` waits."""
  inputs = model.example_inputs(batch_size)
  for _ in range(max(warmup, 1)):
    model(**inputs)
  times = []
  for _ in range(calls):
    start = time.perf_counter()
    model(**inputs)
    times.append(1e3 * (time.perf_counter() - start))
  return {"stage": model.metadata["stage"], "batch_size": batch_size, "calls": calls,
          "warmup": warmup, "backend": jax.default_backend(),
          "p50_ms": float(np.percentile(times, 50)), "p99_ms": float(np.percentile(times, 99)),
          "mean_ms": float(np.mean(times)), "min_ms": float(np.min(times))}


def main() -> None:
  parser = argparse.ArgumentParser(description="Time an exported model (per-batch latency).")
  parser.add_argument("artifact")
  parser.add_argument("--batch_size", type=int, default=1)
  parser.add_argument("--calls", type=int, default=50)
  parser.add_argument("--warmup", type=int, default=5)
  args = parser.parse_args()
  model = load(args.artifact)
  print(json.dumps(latency(model, args.batch_size, args.calls, args.warmup), indent=2))


if __name__ == "__main__":
  main()
