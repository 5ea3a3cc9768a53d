"""PyTorch state_dict → Flax stream parameters and batch statistics.

Sources:
  `torchvision_r3d18`: torchvision `r3d_18` (e.g. the Kinetics-400 `r3d_18-b3b3357e.pth`).
  `agcn_reference`: lshiwjx/2s-AGCN `model.agcn.Model` (ten units; NTU or any graph by V).

The import is strict: every tensor of the state_dict must be consumed and every parameter and
statistic of the stream filled, with matching shapes; otherwise `WeightImportError` lists the
unknown, missing and mis-shaped keys. torch is needed only to read `.pth` files — `.npz` and
`.safetensors` files, or any name → array mapping, work without it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping

import numpy as np
from flax import nnx

from amfi_jax.errors import MissingFileError
from amfi_jax.models.agcn import AGCN, NUM_SUBSETS
from amfi_jax.models.graphs import GRAPHS
from amfi_jax.models.resnet3d import ResNet3D
from amfi_jax.weights.common import WeightImportError, stream_state

SOURCES = ("torchvision_r3d18", "agcn_reference")
# PyTorch BatchNorm names → Flax BatchNorm variable names.
_BN = {"scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}


def read_tensors(path: str) -> dict[str, np.ndarray]:
  """Reads a `.pth`/`.pt` (needs torch), `.npz` or `.safetensors` file into name → numpy array.

  A checkpoint wrapping its weights in `state_dict`/`model`, and `module.` prefixes left by
  DataParallel, are unwrapped.
  """
  if not os.path.isfile(path):
    raise MissingFileError(f"Weight file not found: {path}")
  ext = os.path.splitext(path)[1].lower()
  if ext not in (".npz", ".safetensors", ".pth", ".pt", ".ckpt"):
    raise WeightImportError(f"Unsupported weight file {path}: expected .pth, .pt, .npz or "
                            ".safetensors")
  if ext in (".pth", ".pt", ".ckpt"):
    try:
      import torch
    except ImportError:
      raise ImportError(f"Reading {path} needs PyTorch: pip install 'amfi_jax[torch]' "
                        "(or convert the file to .npz/.safetensors elsewhere)") from None
  try:
    if ext == ".npz":
      with np.load(path) as data:
        tensors = {k: data[k] for k in data.files}
    elif ext == ".safetensors":
      from safetensors.numpy import load_file
      tensors = load_file(path)
    else:
      obj = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:  # pylint: disable=broad-except  # each format fails in its own way
    raise WeightImportError(f"{path} is not a readable {ext} weight file "
                            f"({type(e).__name__}: {e})") from None
  if ext in (".pth", ".pt", ".ckpt"):
    for wrapper in ("state_dict", "model"):
      if isinstance(obj, Mapping) and wrapper in obj and isinstance(obj[wrapper], Mapping):
        obj = obj[wrapper]
    if not isinstance(obj, Mapping):
      raise WeightImportError(f"{path} holds a {type(obj).__name__}, not a state_dict")
    tensors = {k: v.detach().cpu().numpy() for k, v in obj.items() if hasattr(v, "detach")}
  return {re.sub(r"^module\.", "", k): np.asarray(v) for k, v in tensors.items()}


# A rule: our flat path → (torch keys it consumes, function of those arrays → our array).
Rule = tuple[tuple[str, ...], Callable[..., np.ndarray]]


def _identity(x):
  return x


def _conv_nd(w):  # (O, I, *k) → (*k, I, O)
  return np.transpose(w, tuple(range(2, w.ndim)) + (1, 0))


def _linear(w):  # (out, in[, 1, 1]) → (in, out)
  return w.reshape(w.shape[0], -1).T


def _stack_linear(*ws):  # k × (out, in, 1, 1) → (k, in, out)
  return np.stack([_linear(w) for w in ws])


def _stack(*bs):
  return np.stack(bs)


def _bn_rule(prefix: str, name: str) -> Rule:
  return (f"{prefix}.{_BN[name]}",), _identity


def _weight_rule(prefix: str, name: str, kernel_transform) -> Rule:
  """`kernel` ← `prefix.weight` (transformed), `bias` ← `prefix.bias`."""
  if name == "kernel":
    return (f"{prefix}.weight",), kernel_transform
  return (f"{prefix}.bias",), _identity


def _r3d_rule(path: tuple) -> Rule:
  """Our ResNet3D path → torchvision r3d_18 keys."""
  *mods, leaf = (str(p) for p in path)
  if mods == ["fc"]:
    return _weight_rule("fc", leaf, _linear)
  # ConvBN modules are `Sequential(conv, bn[, relu])` in torchvision: conv → .0, bn → .1.
  prefix = ".".join(mods[:-1])
  index = {"conv": "0", "bn": "1"}[mods[-1]]
  key = f"{prefix}.{index}" if prefix else index
  if mods[-1] == "conv":
    return _weight_rule(key, leaf, _conv_nd)
  return _bn_rule(key, leaf)


def _agcn_rule(path: tuple) -> Rule:
  """Our AGCN path → lshiwjx/2s-AGCN keys."""
  parts = [str(p) for p in path]
  if parts[0] == "data_bn":
    return _bn_rule("data_bn", parts[1])
  if parts[0] == "fc":
    return _weight_rule("fc", parts[1], _linear)
  unit = f"l{int(parts[1]) + 1}"
  block, rest = parts[2], parts[3:]
  if block == "gcn1":
    g = f"{unit}.gcn1"
    if rest == ["PA"]:
      return (f"{g}.PA",), _identity
    m = re.fullmatch(r"conv_([abd])_(kernel|bias)", rest[0])
    if m:
      keys = tuple(f"{g}.conv_{m[1]}.{k}.{'weight' if m[2] == 'kernel' else 'bias'}"
                   for k in range(NUM_SUBSETS))
      return keys, (_stack_linear if m[2] == "kernel" else _stack)
    if rest[0] == "bn":
      return _bn_rule(f"{g}.bn", rest[1])
    if rest[0] == "down":
      return _weight_rule(f"{g}.down.0", rest[1], _linear)
    if rest[0] == "down_bn":
      return _bn_rule(f"{g}.down.1", rest[1])
  if block in ("tcn1", "residual"):
    t = f"{unit}.{block}"
    if rest[0] == "conv":
      return _weight_rule(f"{t}.conv", rest[1], _conv_nd)
    return _bn_rule(f"{t}.bn", rest[1])
  raise KeyError(f"No 2s-AGCN key for parameter {'.'.join(parts)}")


_RULES = {"torchvision_r3d18": _r3d_rule, "agcn_reference": _agcn_rule}


def build_stream_for(source: str, tensors: Mapping[str, np.ndarray]) -> nnx.Module:
  """The stream architecture a state_dict describes (classes, input channels, graph)."""
  _check_source(source)
  try:
    num_classes = int(tensors["fc.weight"].shape[0])
    if source == "torchvision_r3d18":
      return ResNet3D(num_classes, in_channels=int(tensors["stem.0.weight"].shape[1]),
                      input_normalization="kinetics", rngs=nnx.Rngs(0))
    num_joints = int(tensors["l1.gcn1.PA"].shape[-1])
    graph = next((g for g in GRAPHS.values() if g.num_joints == num_joints), None)
    if graph is None:
      raise WeightImportError(f"No skeleton graph has {num_joints} joints (l1.gcn1.PA)")
    channels = tensors["data_bn.weight"].shape[0]
    in_channels = int(tensors["l1.gcn1.conv_d.0.weight"].shape[1])
    num_persons = channels // (num_joints * in_channels)
    return AGCN(num_classes, layers="reference", in_channels=in_channels, graph=graph.name,
                num_persons=num_persons, rngs=nnx.Rngs(0))
  except KeyError as e:
    raise WeightImportError(f"Not a {source} state_dict: key {e} is missing") from None


def _check_source(source):
  if source not in SOURCES:
    raise ValueError(f"Unknown source {source!r}; expected one of {SOURCES}")


def import_state_dict(model: nnx.Module, tensors: Mapping[str, np.ndarray], source: str) -> None:
  """Fills `model` (a ResNet3D or AGCN) in place from a name → array mapping.

  Raises WeightImportError listing unknown, missing and mis-shaped keys; nothing is written to
  the model unless every parameter and statistic converts.
  """
  _check_source(source)
  rule_of = _RULES[source]
  consumed, missing, mis_shaped = set(), [], []
  updates = []
  for path, variable in nnx.to_flat_state(stream_state(model)):
    keys, transform = rule_of(path)
    absent = [k for k in keys if k not in tensors]
    if absent:
      missing.extend(absent)
      continue
    consumed.update(keys)
    value = transform(*(np.asarray(tensors[k], np.float32) for k in keys))
    if value.shape != variable.shape:
      mis_shaped.append(f"{'+'.join(keys)}: {tuple(tensors[keys[0]].shape)} → {value.shape}, "
                        f"expected {tuple(variable.shape)} for {'.'.join(map(str, path))}")
      continue
    updates.append((variable, value))
  # BatchNorm's step counter has no Flax counterpart; it carries no weight.
  unknown = sorted(k for k in tensors if k not in consumed and not k.endswith("num_batches_tracked"))
  if unknown or missing or mis_shaped:
    lines = [f"state_dict does not fit {source} ({type(model).__name__}):"]
    for title, items in (("unknown keys", unknown), ("missing keys", sorted(missing)),
                         ("mis-shaped keys", mis_shaped)):
      if items:
        lines.append(f"  {title} ({len(items)}): " + ", ".join(items))
    raise WeightImportError("\n".join(lines))
  for variable, value in updates:
    variable[...] = value
