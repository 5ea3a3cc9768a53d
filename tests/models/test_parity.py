"""Numerical parity with PyTorch modules laid out like the real state_dicts, through the converter."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch parity needs the `torch` extra")

import jax.numpy as jnp  # noqa: E402
from flax import nnx  # noqa: E402

from amfi_jax import convert, weights  # noqa: E402
from amfi_jax.models import AGCN, ResNet3D  # noqa: E402
from amfi_jax.models.graphs import NTU, UTD_MHAD  # noqa: E402

from amfi_jax.tools import torch_reference as ref  # noqa: E402

TOL = 1e-4


def _eval_logits(model, x):
  return np.asarray(nnx.view(model, use_running_average=True)(jnp.asarray(x)).logits)


@pytest.fixture(scope="module")
def r3d_torch():
  torch.manual_seed(0)
  module = ref.R3D(num_classes=400)
  ref.randomize_(module, seed=1)
  return module.eval()


@pytest.fixture(scope="module")
def agcn_torch():
  module = ref.AGCN(NTU.adjacency, num_classes=60)
  ref.randomize_(module, seed=2)
  return module.eval()


def test_r3d18_state_dict_layout_and_parity(r3d_torch, tmp_path):
  state = ref.state_dict_numpy(r3d_torch)
  assert sum(v.size for k, v in state.items() if "running" not in k and "num_batches" not in k) \
      == 33_371_472
  path = tmp_path / "r3d.pth"
  torch.save(r3d_torch.state_dict(), path)
  out = convert.convert("torchvision_r3d18", str(path), str(tmp_path / "ckpt"))

  model = ResNet3D(400, input_normalization="none", rngs=nnx.Rngs(7))
  assert weights.load_stream(out, model) == []
  clip = np.random.default_rng(0).normal(size=(2, 3, 8, 64, 64)).astype(np.float32)
  with torch.no_grad():
    expected = r3d_torch(torch.from_numpy(clip)).numpy()
  got = _eval_logits(model, clip.transpose(0, 2, 3, 4, 1))
  assert np.abs(expected).max() > 0.1  # a meaningful comparison, not two near-zero vectors
  assert np.abs(got - expected).max() <= TOL


def test_agcn_reference_state_dict_layout_and_parity(agcn_torch, tmp_path):
  state = ref.state_dict_numpy(agcn_torch)
  assert len(state) == 352
  assert sum(p.numel() for p in agcn_torch.parameters()) == 3_469_510
  np.savez(tmp_path / "agcn.npz", **state)  # the torch-free path
  out = convert.convert("agcn_reference", str(tmp_path / "agcn.npz"), str(tmp_path / "ckpt"))

  model = AGCN(60, layers="reference", rngs=nnx.Rngs(3))
  weights.load_stream(out, model)
  x = np.random.default_rng(1).normal(size=(2, 3, 48, 25, 2)).astype(np.float32)
  with torch.no_grad():
    expected = agcn_torch(torch.from_numpy(x)).numpy()
  got = _eval_logits(model, x)
  assert np.abs(expected).max() > 0.1
  assert np.abs(got - expected).max() <= TOL


def test_agcn_parity_utd_graph_with_bones():
  torch_model = ref.AGCN(UTD_MHAD.adjacency, num_classes=27, in_ch=6, persons=1,
                         layers=((16, 1), (32, 2), (32, 1)))
  ref.randomize_(torch_model, seed=3)
  torch_model.eval()
  model = AGCN(27, layers="16,32/2,32", in_channels=6, graph="utd_mhad", num_persons=1,
               rngs=nnx.Rngs(0))
  weights.import_state_dict(model, ref.state_dict_numpy(torch_model), "agcn_reference")
  x = np.random.default_rng(2).normal(size=(3, 6, 20, 20, 1)).astype(np.float32)
  with torch.no_grad():
    expected = torch_model(torch.from_numpy(x)).numpy()
  assert np.abs(_eval_logits(model, x) - expected).max() <= TOL


def test_import_errors_list_unknown_missing_and_misshaped_keys(agcn_torch):
  state = ref.state_dict_numpy(agcn_torch)
  state["l1.gcn1.extra.weight"] = np.zeros(3)
  del state["l3.tcn1.bn.running_var"]
  state["fc.bias"] = np.zeros(61, np.float32)
  model = AGCN(60, layers="reference", rngs=nnx.Rngs(0))
  before = np.asarray(model.fc.kernel[...]).copy()
  with pytest.raises(weights.WeightImportError) as err:
    weights.import_state_dict(model, state, "agcn_reference")
  message = str(err.value)
  assert "unknown keys (1): l1.gcn1.extra.weight" in message
  assert "missing keys (1): l3.tcn1.bn.running_var" in message
  assert "fc.bias: (61,)" in message and "expected (60,)" in message
  np.testing.assert_array_equal(np.asarray(model.fc.kernel[...]), before)  # nothing written


def test_stream_checkpoint_new_classifier_and_mismatch(r3d_torch, tmp_path):
  tiny = ResNet3D(400, width_multiplier=0.125, blocks_per_stage=(1, 1, 1, 1), rngs=nnx.Rngs(0))
  path = weights.save_stream(str(tmp_path / "tiny"), tiny, info={"source": "test"})
  target = ResNet3D(60, width_multiplier=0.125, blocks_per_stage=(1, 1, 1, 1), rngs=nnx.Rngs(1))
  skipped = weights.load_stream(path, target)
  assert skipped == ["fc.bias", "fc.kernel"]
  np.testing.assert_array_equal(np.asarray(target.stem.conv.kernel[...]),
                                np.asarray(tiny.stem.conv.kernel[...]))
  wider = ResNet3D(60, width_multiplier=0.25, blocks_per_stage=(1, 1, 1, 1), rngs=nnx.Rngs(1))
  with pytest.raises(weights.WeightImportError, match="stem.conv.kernel: checkpoint"):
    weights.load_stream(path, wider)
  with pytest.raises(FileNotFoundError, match="amfi_jax.convert"):
    weights.load_stream(str(tmp_path / "nowhere"), target)
  with pytest.raises(FileExistsError):
    weights.save_stream(path, tiny, info={})
