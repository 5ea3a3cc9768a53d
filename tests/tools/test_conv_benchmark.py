"""`python -m amfi_jax.tools.conv_benchmark`: its PyTorch peer computes the same convolution, a
layer case reports all three implementations with their ratios, and bad flags stop it early."""

from __future__ import annotations

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from amfi_jax.models import conv
from amfi_jax.tools import conv_benchmark
from tests.conftest import cpu_env
from tests.training.conftest import REPO

TINY_CASES = {  # (input, kernel, strides, padding): a strided 3-D and a temporal 2-D case
    "tiny_3d": ((1, 4, 8, 8, 3), (3, 3, 3, 3, 4), (1, 2, 2), ((1, 1),) * 3),
    "tiny_tcn": ((2, 12, 5, 4), (9, 1, 4, 4), (2, 1), ((4, 4), (0, 0))),
}


@pytest.mark.parametrize("name", sorted(TINY_CASES))
def test_torch_peer_computes_our_convolution_and_its_gradients(name):
  pytest.importorskip("torch", reason="the peer needs the `torch` extra")
  from amfi_jax.tools import torch_reference
  x_shape, w_shape, strides, pads = TINY_CASES[name]
  x = jax.random.normal(jax.random.key(0), x_shape)
  w = jax.random.normal(jax.random.key(1), w_shape)
  dims = conv._SPECS[len(strides)]
  with conv.conv_impl("native"):
    y, vjp = jax.vjp(lambda x, w: conv.conv_general_dilated(
        x, w, strides, pads, dimension_numbers=dims), x, w)
  cotangent = jax.random.normal(jax.random.key(2), y.shape)
  dx, dw = vjp(cotangent)
  peer = torch_reference.PeerConvolution(np.asarray(x), np.asarray(w), strides, pads,
                                         np.asarray(cotangent))
  nd = len(strides)
  to_last = (0, *range(2, nd + 2), 1)
  np.testing.assert_allclose(peer.forward().numpy().transpose(to_last), y, rtol=1e-5, atol=1e-5)
  y_peer, (dx_peer, dw_peer) = peer.forward_backward()
  np.testing.assert_allclose(y_peer.detach().numpy().transpose(to_last), y, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(dx_peer.numpy().transpose(to_last), dx, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(dw_peer.numpy().transpose(*range(2, nd + 2), 1, 0), dw,
                             rtol=1e-5, atol=1e-4)


def test_torch_peer_refuses_padding_it_cannot_express():
  pytest.importorskip("torch", reason="the peer needs the `torch` extra")
  from amfi_jax.tools import torch_reference
  x, w = np.zeros((1, 8, 8, 2), np.float32), np.zeros((3, 3, 2, 2), np.float32)
  with pytest.raises(ValueError, match="pads both sides alike"):
    torch_reference.PeerConvolution(x, w, (1, 1), ((0, 1), (1, 1)), np.zeros((1, 7, 8, 2)))


def test_layer_case_reports_native_rewrite_and_torch(monkeypatch):
  pytest.importorskip("torch", reason="--compare=torch needs the `torch` extra")
  monkeypatch.setattr(conv_benchmark, "CASES", TINY_CASES)
  rows = conv_benchmark.conv_case("tiny_3d", rounds=1, compare="torch")
  timed = {(r["phase"], r["impl"]) for r in rows if "impl" in r}
  assert timed == {(p, i) for p in ("forward", "forward_backward")
                   for i in ("native", "matmul", "torch")}
  ratios = [r for r in rows if "ratio_vs_torch" in r]
  assert [r["phase"] for r in ratios] == ["forward", "forward_backward"]
  assert all(r["ratio_vs_torch"] > 0 and r["speedup_median"] > 0 for r in ratios)
  # Without --compare no peer is timed.
  plain = conv_benchmark.conv_case("tiny_3d", rounds=1)
  assert all(r.get("impl") != "torch" and "ratio_vs_torch" not in r for r in plain)


@pytest.mark.parametrize("flag, message", [
    ("--cases=layer9", "--cases: unknown ['layer9']"),
    ("--compare=tensorflow", "--compare must be 'torch' or empty, got 'tensorflow'"),
])
def test_command_line_rejects_bad_flags(flag, message):
  result = subprocess.run([sys.executable, "-m", "amfi_jax.tools.conv_benchmark", flag],
                          cwd=REPO, env=cpu_env(1), capture_output=True, text=True, timeout=120)
  assert result.returncode != 0
  assert message in result.stderr
  assert "matmul_4096" not in result.stdout  # stopped before timing anything
