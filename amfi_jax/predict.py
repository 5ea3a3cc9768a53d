"""Top-5 actions for one raw NTU sample, with the models of a trained workdir.

  python -m amfi_jax.predict --workdir=DIR --skeleton=S001C001P001R001A011.skeleton \
      [--video=S001C001P001R001A011_rgb.avi]

With a video the fusion model is used (or the RGB model when only that stage was trained);
without one, the skeleton stream alone.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from absl import flags

from amfi_jax import cli, parallel, workdir as workdir_lib
from amfi_jax.data.preprocessing import samples
from amfi_jax.data.readers import ntu
from amfi_jax.errors import FlagError, MissingFileError
from amfi_jax.evaluation.metrics import softmax
from amfi_jax.monitoring import logs
from amfi_jax.training import setup as stage_setup


def sample_inputs(skeleton_path: str, video_path: str | None, sample_format: dict,
                  skeleton_stream: str) -> dict[str, np.ndarray]:
  """A raw NTU sample as a batch of one, preprocessed exactly as the dataset and pipeline do."""
  features = samples.read_ntu_sample(
      skeleton_path, video_path, max_frames=sample_format["max_frames"],
      clip_length=sample_format.get("clip_length", 0),
      crop_size=sample_format.get("crop_size", 0), image_size=sample_format.get("image_size", 0))
  modalities = ("skeleton", "rgb") if video_path else ("skeleton",)
  inputs = samples.model_input(features, modalities, skeleton_stream)
  return {k: v[None] for k, v in inputs.items()}


def choose_stage(run: workdir_lib.RunDir, stages, with_video: bool) -> str:
  """The finished stage that uses the given inputs: fusion (or RGB) with a video, else skeleton."""
  trained = run.finished_stages(stages)
  wanted = ("fusion", "rgb") if with_video else ("skeleton",)
  for stage in wanted:
    if stage in trained:
      return stage
  raise MissingFileError(f"{run.path} has no finished {' or '.join(wanted)} stage "
                         f"(finished: {trained or 'none'})")


def check_same_sample(skeleton_path: str, video_path: str | None) -> None:
  """The skeleton and the video must be of one sample (NTU names: S…C…P…R…A…)."""
  if video_path is None:
    return
  names = []
  for flag, path in (("--skeleton", skeleton_path), ("--video", video_path)):
    try:
      names.append(str(ntu.parse_sample_name(path)))
    except ValueError:
      raise FlagError(f"{flag}={path}: not an NTU sample name (SsssCcccPpppRrrrAaaa…); pass "
                      "--allow_mismatch to use the files anyway") from None
  if names[0] != names[1]:
    raise FlagError(f"--skeleton is sample {names[0]} but --video is sample {names[1]}; pass "
                    "--allow_mismatch to combine them anyway")


def predict(workdir: str, skeleton_path: str, video_path: str | None = None,
            allow_mismatch: bool = False) -> tuple[str, list[tuple[str, float]]]:
  """(stage used, [(class name, probability)] sorted by probability)."""
  if not allow_mismatch:
    check_same_sample(skeleton_path, video_path)
  run = workdir_lib.RunDir(workdir)
  info = run.read_run_info()
  config = run.load_config()
  if config.data.rgb_modality != "rgb":
    raise FlagError("predict reads NTU samples (skeleton + RGB video); this run trained on "
                     f"{config.data.rgb_modality!r}")
  stage_name = choose_stage(run, config.stages, bool(video_path))
  inputs = sample_inputs(skeleton_path, video_path, info["sample_format"],
                         config.data.skeleton_stream)
  mesh = parallel.make_mesh(devices=jax.devices()[:1])
  stage, model, _ = stage_setup.restore_weights(config, run, stage_name, mesh)
  logits = np.asarray(stage.forward(model, inputs).logits)[0]
  probs = softmax(logits[None])[0]
  names = info["class_names"]
  order = np.argsort(-probs, kind="stable")
  return stage_name, [(names[i], float(probs[i])) for i in order]


def main(argv):
  del argv
  logs.quiet_library_logs()
  args = flags.FLAGS
  stage, ranking = predict(args.workdir, args.skeleton, args.video, args.allow_mismatch)
  print(f"{os.path.basename(args.skeleton)}: {stage} model")
  for rank, (name, p) in enumerate(ranking[:args.top], 1):
    print(f"{rank}. {name:<40s} {100 * p:6.2f} %")


def _define_flags():
  # Defined only when run as a program (see amfi_jax.evaluate).
  flags.DEFINE_string("workdir", None, "A workdir written by amfi_jax.main.")
  flags.DEFINE_string("skeleton", None, "An NTU .skeleton file.")
  flags.DEFINE_string("video", None, "The sample's _rgb.avi (optional).")
  flags.DEFINE_integer("top", 5, "How many actions to print.")
  flags.DEFINE_bool("allow_mismatch", False, "Combine a skeleton and a video whose sample names "
                    "differ (refused by default).")
  flags.mark_flags_as_required(["workdir", "skeleton"])


if __name__ == "__main__":
  _define_flags()
  cli.run(main)
