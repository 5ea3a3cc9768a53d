"""A trained stage as a deployable artifact: its inference function as serialized StableHLO.

  python -m amfi_jax.export --workdir=DIR --stage=fusion|skeleton|rgb --output=FILE \
      [--platforms=cpu,cuda,tpu] [--overwrite]

Writes FILE, the `jax.export` serialization of the stage's reported checkpoint (the one
`evaluate` and `predict` use) in inference mode (BatchNorm running statistics), with the weights inside as
constants and a symbolic batch dimension, and FILE.json (`metadata_path`): the inputs in call
order with their shapes ("b" for the batch) and dtypes, the preprocessing they need, the class
names and where the weights came from. `amfi_jax.serving` runs the pair with jax and numpy only;
docs/deployment.md describes both files.

Convolutions are traced with the native `lax` operation: the CPU rewrite of
`amfi_jax.models.conv` is chosen by the backend at trace time, and an artifact must be the same
program on every platform it is lowered for.
"""

from __future__ import annotations

import json
import os

import jax
import numpy as np
from absl import flags
from flax import nnx

from amfi_jax import cli, parallel, workdir as workdir_lib
from amfi_jax.data.preprocessing import samples
from amfi_jax.errors import FlagError, MissingFileError
from amfi_jax.models import conv
from amfi_jax.monitoring import logs
# The loader owns the artifact's conventions (it is shipped alone): the batch dimension's name
# and where the metadata lies.
from amfi_jax.serving import BATCH, metadata_path
from amfi_jax.training import setup as stage_setup

# The platforms `jax.export` lowers for; an artifact runs only on those it was lowered for.
PLATFORMS = ("cpu", "cuda", "rocm", "tpu")
DEFAULT_PLATFORMS = ("cpu", "cuda", "tpu")
# Record features whose stored values are uint8 frames; every other one is float32.
_UINT8_FEATURES = ("clip", "rgb")


def check_flags(stage: str, platforms, output: str | None = None, overwrite: bool = False
                ) -> tuple[str, ...]:
  """The flags alone, before the workdir is read; returns the platforms, each once."""
  if stage not in workdir_lib.STAGES:
    raise FlagError(f"--stage={stage}: expected one of {list(workdir_lib.STAGES)}")
  unknown = [p for p in platforms if p not in PLATFORMS]
  if unknown or not platforms:
    raise FlagError(f"--platforms={','.join(platforms)}: unknown {unknown or 'none given'}; "
                    f"expected some of {list(PLATFORMS)}")
  platforms = tuple(dict.fromkeys(platforms))
  if output is None:
    return platforms
  if not output:
    raise FlagError("--output is empty; name the file to write")
  for path in (output, metadata_path(output)):
    if os.path.exists(path) and not overwrite:
      raise FlagError(f"--output={output}: {path} exists; pass --overwrite to replace it")
  return platforms


def finished_stage_config(run: workdir_lib.RunDir, stage: str):
  """The run's config, once `stage` is known to be one of its finished stages."""
  run.read_run_info()  # a MissingFileError naming run.json when the workdir is not a run
  config = run.load_config()
  if stage not in config.stages:
    raise FlagError(f"--stage={stage}: not a stage of this run ({list(config.stages)})")
  if stage not in run.finished_stages(config.stages):
    raise MissingFileError(f"Stage {stage!r} of {run.path} has not finished "
                           f"({run.stage(stage).result} is missing); train it first")
  return config


def example_inputs(input_names, sample_format: dict, data_cfg) -> dict[str, np.ndarray]:
  """One example of each model input (zeros), made by `samples.model_input` from features of
  the shapes the dataset stores, so the artifact takes exactly what the input pipeline feeds."""
  stored = sample_format.get("shapes")
  if not stored or "skeleton" not in stored:
    raise FlagError("--workdir: its run.json records no sample_format.shapes (an older run); "
                    "re-run its `python -m amfi_jax.main` command, which skips the finished "
                    "stages and records them")
  features = {name: np.zeros(shape, np.uint8 if name in _UINT8_FEATURES else np.float32)
              for name, shape in stored.items()}
  features["frame_count"] = np.int32(stored["skeleton"][1])
  return samples.model_input(features, input_names, data_cfg.skeleton_stream,
                             skeleton_frames=data_cfg.skeleton_frames,
                             clip_frames=data_cfg.clip_frames,
                             clip_views=data_cfg.clip_views)


def preprocessing(sample_format: dict, config) -> dict:
  """How raw samples become the inputs: the dataset's build settings and the run's reading of
  them (`amfi_jax.predict.sample_reader` applies them to raw NTU or UTD-MHAD files). Clips are
  normalised inside the artifact (`rgb_input_normalization`), so they go in as stored."""
  out = {k: sample_format[k] for k in ("builder", "max_frames", "clip_length", "image_size",
                                        "crop_size") if k in sample_format}
  data = config.data
  # `dataset` names the build config, which says how a UTD-MHAD sample's files are stored.
  out.update(dataset=data.dataset, rgb_modality=data.rgb_modality,
             skeleton_stream=data.skeleton_stream,
             skeleton_frames=int(data.skeleton_frames), clip_frames=int(data.clip_frames),
             clip_views=int(data.clip_views),
             rgb_input_normalization=config.model.rgb.input_normalization,
             stored_shapes=sample_format.get("shapes", {}))
  return out


def export_stage(workdir: str, stage_name: str, platforms=DEFAULT_PLATFORMS
                 ) -> tuple[bytes, dict]:
  """(serialized artifact, metadata) of the reported checkpoint of a finished stage."""
  platforms = check_flags(stage_name, platforms)
  run = workdir_lib.RunDir(workdir)
  return _export(run, finished_stage_config(run, stage_name), stage_name, platforms)


def _export(run: workdir_lib.RunDir, config, stage_name: str, platforms) -> tuple[bytes, dict]:
  info = run.read_run_info()
  mesh = parallel.make_mesh(devices=jax.devices()[:1])
  stage, model, step = stage_setup.restore_weights(config, run, stage_name, mesh)
  examples = example_inputs(stage.inputs, info["sample_format"], config.data)
  graphdef, state = nnx.split(model)

  def logits(*inputs):
    return stage.forward(nnx.merge(graphdef, state), dict(zip(stage.inputs, inputs))).logits

  (batch,) = jax.export.symbolic_shape(BATCH)
  specs = [jax.ShapeDtypeStruct((batch, *x.shape), x.dtype) for x in examples.values()]
  with conv.conv_impl("native"):
    exported = jax.export.export(jax.jit(logits), platforms=platforms)(*specs)
  (out,) = exported.out_avals
  metadata = {
      "format": "jax.export",
      "stage": stage_name,
      "inputs": [{"name": name, "shape": [BATCH, *x.shape], "dtype": str(x.dtype)}
                 for name, x in examples.items()],
      "outputs": [{"name": "logits", "shape": [BATCH, *out.shape[1:]], "dtype": str(out.dtype)}],
      "class_names": list(info["class_names"]),
      "preprocessing": preprocessing(info["sample_format"], config),
      "platforms": list(exported.platforms),
      "checkpoint": {"workdir": run.path, "directory": run.stage(stage_name).checkpoints,
                     "step": int(step)},
      "jax_version": jax.__version__,
      "calling_convention_version": exported.calling_convention_version,
      # What the training steps compile with on CPU (XLA's Eigen path for the convolutions);
      # `serving` applies them on a CPU backend.
      "cpu_compiler_options": dict(conv.CPU_STEP_COMPILER_OPTIONS),
  }
  return bytes(exported.serialize()), metadata


def write(output: str, artifact: bytes, metadata: dict) -> None:
  """Both files, each written whole (a reader never sees half an artifact)."""
  os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
  for path, data in ((output, artifact),
                     (metadata_path(output), (json.dumps(metadata, indent=2) + "\n").encode())):
    with open(path + ".tmp", "wb") as f:
      f.write(data)
    os.replace(path + ".tmp", path)


def export_to_file(workdir: str, stage: str, output: str, platforms=DEFAULT_PLATFORMS,
                   overwrite: bool = False) -> dict:
  """Exports the stage to `output` (and its metadata beside it); returns the metadata."""
  platforms = check_flags(stage, platforms, output, overwrite)
  run = workdir_lib.RunDir(workdir)
  artifact, metadata = _export(run, finished_stage_config(run, stage), stage, platforms)
  write(output, artifact, metadata)
  return metadata


def main(argv):
  del argv
  logs.quiet_library_logs()
  args = flags.FLAGS
  metadata = export_to_file(args.workdir, args.stage, args.output, args.platforms,
                            args.overwrite)
  inputs = ", ".join(f"{i['name']} {i['dtype']}[{','.join(map(str, i['shape']))}]"
                     for i in metadata["inputs"])
  print(f"{args.output}: {args.stage} model, step {metadata['checkpoint']['step']}, "
        f"platforms {','.join(metadata['platforms'])}")
  print(f"  inputs: {inputs}")
  print(f"  metadata: {metadata_path(args.output)}")


def _define_flags():
  # Defined only when run as a program (see amfi_jax.evaluate).
  flags.DEFINE_string("workdir", None, "A workdir written by amfi_jax.main.")
  flags.DEFINE_string("stage", None, f"The stage to export: {' | '.join(workdir_lib.STAGES)}.")
  flags.DEFINE_string("output", None, "The artifact to write (its metadata goes to OUTPUT.json).")
  flags.DEFINE_list("platforms", list(DEFAULT_PLATFORMS),
                    f"Platforms to lower for, some of {', '.join(PLATFORMS)}.")
  flags.DEFINE_bool("overwrite", False, "Replace an existing --output.")
  flags.mark_flags_as_required(["workdir", "stage", "output"])


if __name__ == "__main__":
  _define_flags()
  cli.run(main)
