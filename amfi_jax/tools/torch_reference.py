"""PyTorch modules built from SPEC §1 with plain `torch.nn`, laid out like the real state_dicts
(torchvision `r3d_18`, lshiwjx/2s-AGCN `model.agcn.Model`): the parity tests check the JAX models
against them, and `benchmark --compare=torch` times their train step beside ours.

Needs the optional `torch` extra; nothing in the library imports this module.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from torch import nn

from amfi_jax.models import agcn as agcn_lib
from amfi_jax.models.graphs import get_graph


# ---------------------------------------------------------------- torchvision r3d_18 layout
class BasicBlock(nn.Module):

  def __init__(self, inp, out, stride):
    super().__init__()
    self.conv1 = nn.Sequential(nn.Conv3d(inp, out, 3, stride, 1, bias=False), nn.BatchNorm3d(out),
                               nn.ReLU(inplace=True))
    self.conv2 = nn.Sequential(nn.Conv3d(out, out, 3, 1, 1, bias=False), nn.BatchNorm3d(out))
    self.downsample = None
    if stride != 1 or inp != out:
      self.downsample = nn.Sequential(nn.Conv3d(inp, out, 1, stride, bias=False),
                                      nn.BatchNorm3d(out))

  def forward(self, x):
    residual = x if self.downsample is None else self.downsample(x)
    return torch.relu(self.conv2(self.conv1(x)) + residual)


class R3D(nn.Module):

  def __init__(self, num_classes=400, widths=(64, 128, 256, 512), blocks=(2, 2, 2, 2), in_ch=3):
    super().__init__()
    self.stem = nn.Sequential(nn.Conv3d(in_ch, widths[0], (3, 7, 7), (1, 2, 2), (1, 3, 3),
                                        bias=False), nn.BatchNorm3d(widths[0]),
                              nn.ReLU(inplace=True))
    inp = widths[0]
    for i, (w, n) in enumerate(zip(widths, blocks)):
      layer = []
      for b in range(n):
        layer.append(BasicBlock(inp, w, (1 if i == 0 else 2) if b == 0 else 1))
        inp = w
      setattr(self, f"layer{i + 1}", nn.Sequential(*layer))
    self.avgpool = nn.AdaptiveAvgPool3d(1)
    self.fc = nn.Linear(widths[-1], num_classes)

  def forward(self, x):  # (N, C, T, H, W)
    x = self.stem(x)
    x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
    return self.fc(self.avgpool(x).flatten(1))


# ---------------------------------------------------------------- 2s-AGCN layout
class UnitTCN(nn.Module):

  def __init__(self, inp, out, kernel=9, stride=1):
    super().__init__()
    self.conv = nn.Conv2d(inp, out, (kernel, 1), (stride, 1), ((kernel - 1) // 2, 0))
    self.bn = nn.BatchNorm2d(out)

  def forward(self, x):
    return self.bn(self.conv(x))


class UnitGCN(nn.Module):

  def __init__(self, inp, out, adjacency):
    super().__init__()
    self.inter = out // 4
    self.A = torch.tensor(adjacency, dtype=torch.float32)  # fixed: not in the state_dict
    self.PA = nn.Parameter(torch.full(self.A.shape, 1e-6))
    k = self.A.shape[0]
    self.conv_a = nn.ModuleList(nn.Conv2d(inp, self.inter, 1) for _ in range(k))
    self.conv_b = nn.ModuleList(nn.Conv2d(inp, self.inter, 1) for _ in range(k))
    self.conv_d = nn.ModuleList(nn.Conv2d(inp, out, 1) for _ in range(k))
    self.down = nn.Sequential(nn.Conv2d(inp, out, 1), nn.BatchNorm2d(out)) if inp != out else None
    self.bn = nn.BatchNorm2d(out)

  def forward(self, x):  # (N, C, T, V)
    n, c, t, v = x.shape
    adjacency = self.A + self.PA
    y = 0
    for i in range(self.A.shape[0]):
      a1 = self.conv_a[i](x).permute(0, 3, 1, 2).reshape(n, v, self.inter * t)
      a2 = self.conv_b[i](x).reshape(n, self.inter * t, v)
      graph = torch.softmax(a1 @ a2 / a1.shape[-1], dim=-2) + adjacency[i]
      y = y + self.conv_d[i]((x.reshape(n, c * t, v) @ graph).reshape(n, c, t, v))
    y = self.bn(y) + (x if self.down is None else self.down(x))
    return torch.relu(y)


class TCNGCN(nn.Module):

  def __init__(self, inp, out, adjacency, stride=1, residual=True):
    super().__init__()
    self.gcn1 = UnitGCN(inp, out, adjacency)
    self.tcn1 = UnitTCN(out, out, stride=stride)
    self.res_mode = "none" if not residual else ("id" if inp == out and stride == 1 else "conv")
    if self.res_mode == "conv":
      self.residual = UnitTCN(inp, out, kernel=1, stride=stride)

  def forward(self, x):
    y = self.tcn1(self.gcn1(x))
    if self.res_mode == "id":
      y = y + x
    elif self.res_mode == "conv":
      y = y + self.residual(x)
    return torch.relu(y)


class AGCN(nn.Module):

  def __init__(self, adjacency, num_classes=60, in_ch=3, persons=2,
               layers=((64, 1), (64, 1), (64, 1), (64, 1), (128, 2), (128, 1), (128, 1), (256, 2),
                       (256, 1), (256, 1))):
    super().__init__()
    v = adjacency.shape[-1]
    self.data_bn = nn.BatchNorm1d(persons * v * in_ch)
    inp = in_ch
    for i, (out, stride) in enumerate(layers):
      setattr(self, f"l{i + 1}", TCNGCN(inp, out, adjacency, stride, residual=i > 0))
      inp = out
    self.num_layers = len(layers)
    self.fc = nn.Linear(inp, num_classes)
    nn.init.normal_(self.fc.weight, 0, math.sqrt(2.0 / num_classes))

  def forward(self, x):  # (N, C, T, V, M)
    n, c, t, v, m = x.shape
    x = x.permute(0, 4, 3, 1, 2).reshape(n, m * v * c, t)
    x = self.data_bn(x)
    x = x.reshape(n, m, v, c, t).permute(0, 1, 3, 4, 2).reshape(n * m, c, t, v)
    for i in range(self.num_layers):
      x = getattr(self, f"l{i + 1}")(x)
    x = x.reshape(n, m, x.shape[1], -1).mean(3).mean(1)
    return self.fc(x)


def randomize_(module: nn.Module, seed: int) -> None:
  """Random weights AND batch statistics (fresh ones would hide BN layout mistakes)."""
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, p in module.named_parameters():
      noise = torch.randn(p.shape, generator=g)
      if name.endswith("PA"):
        p.copy_(0.1 * noise)
      elif name.endswith("gcn1.bn.weight"):
        # The reference starts this scale at 1e-6; small keeps 10 residual units from blowing up.
        p.copy_(0.2 + 0.02 * noise)
      elif p.ndim == 1:  # BatchNorm scale (around 1) and every bias (small)
        p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * noise)
      else:  # fan-in scaled, so activations stay O(1) through the depth of the network
        p.copy_(noise / math.sqrt(p[0].numel()))
    for name, b in module.named_buffers():
      if name.endswith("running_mean"):
        b.copy_(torch.randn(b.shape, generator=g) * 0.1)
      elif name.endswith("running_var"):
        b.copy_(torch.rand(b.shape, generator=g) + 0.5)


def state_dict_numpy(module: nn.Module) -> dict[str, np.ndarray]:
  return {k: v.detach().numpy() for k, v in module.state_dict().items()}


# ---------------------------------------------------------------- the peer of a configured stream
def peer_of(model_cfg, stage: str) -> nn.Module:
  """The PyTorch module with the architecture `model_cfg` gives the JAX stream of `stage` (the
  same widths, units, graph, input channels and classes; the same parameter count)."""
  if stage == "rgb":
    c = model_cfg.rgb
    widths = tuple(max(1, round(w * c.width_multiplier)) for w in (64, 128, 256, 512))
    return R3D(model_cfg.num_classes, widths, tuple(c.blocks_per_stage), c.in_channels)
  if stage == "skeleton":
    c = model_cfg.skeleton
    units = tuple((max(4, round(w * c.width_multiplier)), s)
                  for w, s in agcn_lib.parse_layers(c.layers))
    return AGCN(get_graph(c.graph).adjacency, model_cfg.num_classes, c.in_channels,
                c.num_persons, units)
  raise ValueError(f"the PyTorch peer covers the rgb and skeleton stages, not {stage!r}")


def peer_inputs(stage: str, batch: dict[str, np.ndarray]) -> torch.Tensor:
  """Our batch's input in the peer's layout: clips (N, T, H, W, C) uint8 → (N, C, T, H, W) float
  in [0, 1]; skeletons are (N, C, T, V, M) in both."""
  if stage == "rgb":
    clip = next(v for k, v in batch.items() if k in ("rgb", "depth"))
    return torch.from_numpy(np.ascontiguousarray(
        np.asarray(clip, np.float32).transpose(0, 4, 1, 2, 3) / 255.0))
  return torch.from_numpy(np.array(batch["skeleton"], np.float32))  # a writable copy


class PeerTrainStep:
  """One SGD step (momentum 0.9, the stage's learning rate and weight decay) of the peer on a
  fixed batch, in fp32 or under CPU autocast to bfloat16 (PyTorch's AMP)."""

  def __init__(self, module: nn.Module, inputs: torch.Tensor, labels: np.ndarray, *,
               learning_rate: float, weight_decay: float, dtype: str):
    self.module = module.train()
    self.inputs, self.labels = inputs, torch.from_numpy(np.asarray(labels, np.int64))
    self.optimizer = torch.optim.SGD(module.parameters(), lr=learning_rate, momentum=0.9,
                                     weight_decay=weight_decay)
    self.autocast = dtype == "bfloat16"

  def __call__(self) -> float:
    """Runs one step; its wall time in seconds."""
    start = time.perf_counter()
    self.optimizer.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.autocast):
      loss = nn.functional.cross_entropy(self.module(self.inputs), self.labels)
    loss.backward()
    self.optimizer.step()
    return time.perf_counter() - start


class PeerConvolution:
  """One convolution of ours (channels-last x (N, *spatial, I), w (*kernel, I, O)) as PyTorch
  runs it (channels-first), forward only or forward plus both gradients for a fixed cotangent."""

  def __init__(self, x: np.ndarray, w: np.ndarray, strides, pads, cotangent: np.ndarray):
    nd = w.ndim - 2
    to_first = (0, nd + 1, *range(1, nd + 1))
    self.x = torch.from_numpy(np.ascontiguousarray(np.asarray(x).transpose(to_first)))
    self.w = torch.from_numpy(np.ascontiguousarray(
        np.asarray(w).transpose(nd + 1, nd, *range(nd))))
    self.cotangent = torch.from_numpy(np.ascontiguousarray(
        np.asarray(cotangent).transpose(to_first)))
    self.x.requires_grad_(True)
    self.w.requires_grad_(True)
    if any(lo != hi for lo, hi in pads):
      raise ValueError(f"PyTorch pads both sides alike; got {pads}")
    self.conv = {2: nn.functional.conv2d, 3: nn.functional.conv3d}[nd]
    self.strides, self.padding = tuple(strides), tuple(lo for lo, _ in pads)

  def forward(self) -> torch.Tensor:
    with torch.no_grad():
      return self.conv(self.x, self.w, stride=self.strides, padding=self.padding)

  def forward_backward(self) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    y = self.conv(self.x, self.w, stride=self.strides, padding=self.padding)
    return y, torch.autograd.grad(y, (self.x, self.w), self.cotangent)
