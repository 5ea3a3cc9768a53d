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
from absl import app, flags
from flax import nnx

from amfi_jax import parallel, run_context
from amfi_jax.data import datasets, ntu_skeleton, skeleton_preprocess, tfds_ntu
from amfi_jax.evaluation.metrics import softmax
from amfi_jax.models.graphs import NTU
from amfi_jax.training import loop



def sample_inputs(skeleton_path: str, video_path: str | None, sample_format: dict,
                  skeleton_stream: str) -> dict[str, np.ndarray]:
  """A raw sample as a batch of one, preprocessed exactly as the dataset builder does."""
  seq = ntu_skeleton.read_skeleton(skeleton_path)
  joints = skeleton_preprocess.preprocess_ntu_skeleton(seq, max_frames=sample_format["max_frames"])
  if skeleton_stream == "joint_bone":
    joints = np.concatenate([joints, skeleton_preprocess.joints_to_bones(joints, NTU)], axis=0)
  batch = {"skeleton": joints[None].astype(np.float32)}
  if video_path:
    clip, _ = tfds_ntu.load_clip(video_path, seq, clip_length=sample_format["clip_length"],
                                 crop_size=sample_format["crop_size"],
                                 image_size=sample_format["image_size"])
    batch["rgb"] = clip[None]
  return batch


def choose_stage(workdir: str, stages, with_video: bool) -> str:
  trained = [s for s in stages
             if os.path.exists(os.path.join(loop.stage_dir(workdir, s), "result.json"))]
  wanted = ("fusion", "rgb") if with_video else ("skeleton",)
  for stage in wanted:
    if stage in trained:
      return stage
  raise FileNotFoundError(f"{workdir} has no finished {' or '.join(wanted)} stage "
                          f"(finished: {trained or 'none'})")


def predict(workdir: str, skeleton_path: str, video_path: str | None = None
            ) -> tuple[str, list[tuple[str, float]]]:
  """(stage used, [(class name, probability)] sorted by probability)."""
  config, info = run_context.load_run(workdir)
  if config.data.rgb_modality != "rgb":
    raise ValueError("predict reads NTU samples (skeleton + RGB video); this run trained on "
                     f"{config.data.rgb_modality!r}")
  stage_name = choose_stage(workdir, config.stages, bool(video_path))
  inputs = sample_inputs(skeleton_path, video_path, info["sample_format"],
                         config.data.skeleton_stream)
  dataset = datasets.prepare(config.data, workdir)
  mesh = parallel.make_mesh(devices=jax.devices()[:1])
  setup = loop.setup_stage(config, stage_name, dataset, mesh)
  state, _ = loop.restore_best(workdir, setup)
  model = nnx.view(setup.layout.model(state.params, state.frozen), use_running_average=True)
  logits = np.asarray(setup.stage.forward(model, inputs).logits)[0]
  probs = softmax(logits[None])[0]
  names = info["class_names"]
  order = np.argsort(-probs, kind="stable")
  return stage_name, [(names[i], float(probs[i])) for i in order]


def main(argv):
  del argv
  run_context.quiet_library_logs()
  args = flags.FLAGS
  stage, ranking = predict(args.workdir, args.skeleton, args.video)
  print(f"{os.path.basename(args.skeleton)}: {stage} model")
  for rank, (name, p) in enumerate(ranking[:args.top], 1):
    print(f"{rank}. {name:<40s} {100 * p:6.2f} %")


def _define_flags():
  # Defined only when run as a program (see amfi_jax.evaluate).
  flags.DEFINE_string("workdir", None, "A workdir written by amfi_jax.main.")
  flags.DEFINE_string("skeleton", None, "An NTU .skeleton file.")
  flags.DEFINE_string("video", None, "The sample's _rgb.avi (optional).")
  flags.DEFINE_integer("top", 5, "How many actions to print.")
  flags.mark_flags_as_required(["workdir", "skeleton"])


if __name__ == "__main__":
  _define_flags()
  app.run(main)
