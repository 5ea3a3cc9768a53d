"""`amfi_jax.export` and `amfi_jax.serving`: an exported stage computes the trained model's logits
at any batch size, runs without the training libraries, and bad requests are refused early."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from amfi_jax import export, parallel, serving
from amfi_jax.errors import FlagError, MissingFileError
from amfi_jax.models import conv
from amfi_jax.training import setup as stage_setup
from amfi_jax.workdir import RunDir

from tests.conftest import cpu_env
from tests.training.conftest import REPO
STAGES = ("rgb", "skeleton", "fusion")
BATCH_SIZES = (1, 3)
# What a deployment does not ship; the loader must work without any of them.
TRAINING_LIBRARIES = ("flax", "optax", "orbax", "ml_collections", "grain", "tensorflow_datasets",
                      "tensorflow")


@pytest.fixture(scope="module")
def trained(tiny_trained_run) -> str:
  return tiny_trained_run


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory) -> dict:
  """{stage: (artifact path, {batch size: (inputs, the in-process model's logits)})}."""
  out = {}
  directory = tmp_path_factory.mktemp("artifacts")
  run = RunDir(trained)
  config = run.load_config()
  mesh = parallel.make_mesh(devices=jax.devices()[:1])
  for name in STAGES:
    path = str(directory / f"{name}.jaxexport")
    export.export_to_file(trained, name, path)
    stage, model, _ = stage_setup.restore_weights(config, run, name, mesh)
    # Inference treats samples independently, so the first rows of the largest batch are the
    # smaller batches: one compilation of the in-process model serves every batch size.
    inputs = serving.load(path).example_inputs(max(BATCH_SIZES), seed=0)
    forward = jax.jit(lambda m, batch, stage=stage: stage.forward(m, batch).logits)
    logits = np.asarray(forward(model, inputs))
    out[name] = (path, {n: ({k: v[:n] for k, v in inputs.items()}, logits[:n])
                        for n in BATCH_SIZES})
  return out


@pytest.mark.parametrize("name", STAGES)
def test_exported_logits_equal_the_trained_models_at_every_batch_size(exported, trained, name):
  path, cases = exported[name]
  model = serving.load(path)
  run = RunDir(trained)
  info = run.read_run_info()
  metadata = model.metadata
  assert metadata["stage"] == name
  assert model.input_names == {"rgb": ("rgb",), "skeleton": ("skeleton",),
                               "fusion": ("rgb", "skeleton")}[name]
  assert all(i["shape"][0] == "b" for i in metadata["inputs"])
  assert metadata["class_names"] == info["class_names"]
  assert metadata["platforms"] == ["cpu", "cuda", "tpu"]
  assert metadata["checkpoint"]["step"] == run.stage(name).read_result()["best_step"]
  assert metadata["preprocessing"]["skeleton_stream"] == "joint_bone_motion"
  assert metadata["cpu_compiler_options"] == conv.CPU_STEP_COMPILER_OPTIONS
  assert model.compiler_options == conv.CPU_STEP_COMPILER_OPTIONS  # this is a CPU backend
  for batch_size, (inputs, want) in cases.items():
    got = model(**inputs)
    assert got.shape == (batch_size, len(info["class_names"]))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(model(*(inputs[k] for k in model.input_names)), got)


def test_serving_uses_the_artifacts_cpu_options_unless_the_user_sets_them(exported,
                                                                           monkeypatch):
  """XLA_FLAGS that choose the YNN fusion types win; an artifact written without the options
  (older exports) runs with XLA's defaults; every way computes the same logits."""
  path, cases = exported["skeleton"]
  inputs, want = cases[3]
  metadata = serving.load(path).metadata
  assert serving.cpu_compiler_options({**metadata, "cpu_compiler_options": {}}) is None
  monkeypatch.setenv("XLA_FLAGS", f"--{conv.YNN_FLAG}=+individual_convolution")
  assert serving.cpu_compiler_options(metadata) is None
  model = serving.load(path)
  assert model.compiler_options is None
  np.testing.assert_allclose(model(**inputs), want, rtol=0, atol=1e-5)


def test_rgb_artifact_uses_the_native_3d_convolution(exported):
  """Not the CPU rewrite's per-tap 2-D convolutions: the artifact is one program for every
  platform it was lowered for."""
  with open(exported["rgb"][0], "rb") as f:
    text = jax.export.deserialize(bytearray(f.read())).mlir_module()
  convolutions = [line for line in text.splitlines() if "stablehlo.convolution" in line]
  assert convolutions
  assert all("[b, 0, 1, 2, f]x[0, 1, 2, i, o]" in line for line in convolutions)


SERVE_WITHOUT_TRAINING_LIBRARIES = """
import sys
for name in {blocked!r}:
  sys.modules[name] = None  # `import name` (and of its submodules) now raises ImportError
import numpy as np
from amfi_jax import serving
model = serving.load(sys.argv[1])
np.save(sys.argv[3], model(**np.load(sys.argv[2])))
loaded = sorted(m for m in sys.modules if m.startswith("amfi_jax.") or (
    m.split(".")[0] in {blocked!r} and sys.modules[m] is not None))
print("loaded:", loaded)
"""


def test_loader_runs_without_the_training_libraries(exported, tmp_path):
  path, cases = exported["fusion"]
  inputs, want = cases[3]
  np.savez(tmp_path / "inputs.npz", **inputs)
  code = SERVE_WITHOUT_TRAINING_LIBRARIES.format(blocked=TRAINING_LIBRARIES)
  proc = subprocess.run(
      [sys.executable, "-c", code, path, str(tmp_path / "inputs.npz"), str(tmp_path / "out.npy")],
      cwd=REPO, env=cpu_env(), capture_output=True, text=True,
      timeout=120)
  assert proc.returncode == 0, proc.stderr
  assert "loaded: ['amfi_jax.serving']" in proc.stdout, proc.stdout
  np.testing.assert_allclose(np.load(tmp_path / "out.npy"), want, rtol=0, atol=1e-5)


def test_unfinished_stage_is_refused(trained, tmp_path):
  workdir = tmp_path / "run"
  workdir.mkdir()
  (workdir / "run.json").write_text(json.dumps(RunDir(trained).read_run_info()))
  with pytest.raises(MissingFileError, match="'fusion' .* has not finished"):
    export.export_to_file(str(workdir), "fusion", str(tmp_path / "f.jaxexport"))
  with pytest.raises(MissingFileError, match="run.json not found"):
    export.export_to_file(str(tmp_path / "nowhere"), "fusion", str(tmp_path / "f.jaxexport"))


def test_bad_flags_are_refused(trained, tmp_path):
  output = str(tmp_path / "f.jaxexport")
  with pytest.raises(FlagError, match=r"--platforms=cpu,gpu: unknown \['gpu'\]"):
    export.export_to_file(trained, "fusion", output, platforms=("cpu", "gpu"))
  with pytest.raises(FlagError, match="--stage=joint"):
    export.export_to_file(trained, "joint", output)
  assert not os.path.exists(output)
  # A known platform other than this backend: exported, refused when loaded here.
  export.export_to_file(trained, "skeleton", output, platforms=("tpu",))
  with pytest.raises(ValueError, match=r"exported for \['tpu'\], not for this 'cpu' backend"):
    serving.load(output)


def test_existing_output_is_kept_unless_overwrite(exported, trained, tmp_path):
  output = tmp_path / "skeleton.jaxexport"
  output.write_bytes(b"keep")
  with pytest.raises(FlagError, match="exists; pass --overwrite"):
    export.export_to_file(trained, "skeleton", str(output))
  assert output.read_bytes() == b"keep"
  # The command line reports it as a user error, before reading any weight.
  proc = subprocess.run(
      [sys.executable, "-m", "amfi_jax.export", f"--workdir={trained}", "--stage=skeleton",
       f"--output={output}"], cwd=REPO, env=cpu_env(),
      capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2, proc.stderr
  assert "Error: --output=" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
  export.export_to_file(trained, "skeleton", str(output), platforms=("cpu",), overwrite=True)
  assert serving.load(str(output)).metadata["platforms"] == ["cpu"]


def test_loader_names_the_input_that_does_not_fit(exported):
  model = serving.load(exported["fusion"][0])
  inputs, _ = exported["fusion"][1][1]
  with pytest.raises(ValueError, match=r"Input 'skeleton': expected shape \(b, 12, 32, 25, 2\)"):
    model(rgb=inputs["rgb"], skeleton=inputs["skeleton"][:, :3])
  with pytest.raises(ValueError, match="Input 'rgb': expected dtype uint8, got float32"):
    model(rgb=inputs["rgb"].astype(np.float32), skeleton=inputs["skeleton"])
  with pytest.raises(ValueError, match=r"missing \['skeleton'\]"):
    model(rgb=inputs["rgb"])
  with pytest.raises(ValueError, match="batch sizes differ"):
    model(rgb=np.concatenate([inputs["rgb"]] * 2), skeleton=inputs["skeleton"])


def test_top_k_ranks_class_names_by_probability():
  ranked = serving.top_k(np.log(np.array([0.1, 0.6, 0.3])), 2, ("a", "b", "c"))
  assert [name for name, _ in ranked] == ["b", "c"]
  np.testing.assert_allclose([p for _, p in ranked], [0.6, 0.3])
