r"""COCO-17 2-D poses of the generated samples, written as a PYSKL / MMAction2 pose pickle.

    python -m amfi_jax.data.generator.coco_poses --out=/tmp/poses/generated.pkl   # 480 samples

What a 2-D pose estimator would report on the generated 1920x1080 videos, derived from the
generated NTU skeletons (`synthetic.simulate`) without rendering a frame: the body keypoints are
the colorX / colorY pixels of the corresponding Kinect joints, the nose is the head joint, the
eyes and ears sit around it (offsets scaled by the shoulder width, so they turn with the body),
and every keypoint of a tracked body has a score in (0, 1], lower for joints Kinect only
inferred. Frames in which Kinect tracked nobody have zero keypoints and scores, as from a
detector that found no person. Deterministic by seed and sample name.

The pickle (`readers.pose_pickle` documents the format) holds one annotation per sample
(`frame_dir` = the NTU name, `label` = action - 1, `img_shape` (1080, 1920)) and NTU-60's splits
of the generated names: xsub_train / xsub_val and xview_train / xview_val. It is written with
pickle protocol 2, as mmcv's `dump` writes PYSKL's files. The class names, which the format does
not carry, go to `class_names.txt` beside it.
"""

from __future__ import annotations

import os
import pickle
import sys
from collections.abc import Sequence

import numpy as np
from absl import flags

from amfi_jax.data.generator import motion as sm
from amfi_jax.data.generator import synthetic
from amfi_jax.data.readers import ntu

IMG_SHAPE = (sm.COLOR_SIZE[1], sm.COLOR_SIZE[0])  # (height, width) of the colour frames
# COCO-17 order (graphs.COCO17): the Kinect joint each body keypoint is read from.
BODY_FROM_NTU = {
    5: sm.L_SHOULDER, 6: sm.R_SHOULDER, 7: sm.L_ELBOW, 8: sm.R_ELBOW, 9: sm.L_WRIST,
    10: sm.R_WRIST, 11: sm.L_HIP, 12: sm.R_HIP, 13: sm.L_KNEE, 14: sm.R_KNEE, 15: sm.L_ANKLE,
    16: sm.R_ANKLE,
}
NOSE = 0
# The Kinect joint whose tracking state sets each keypoint's score: the head for the face.
SCORE_SOURCE = [sm.HEAD] * 5 + [BODY_FROM_NTU[k] for k in range(5, 17)]
# Face keypoints 1-4 (left eye, right eye, left ear, right ear) as head + a * (left shoulder -
# right shoulder) + b * |that| * image-up: eyes a little above the nose, ears at its height.
FACE_OFFSETS = {1: (0.12, 0.08), 2: (-0.12, 0.08), 3: (0.25, 0.0), 4: (-0.25, 0.0)}
PROTOCOLS = ("xsub", "xview")


def coco_keypoints(sample: synthetic.SyntheticSample, seed: int
                   ) -> tuple[np.ndarray, np.ndarray]:
  """`keypoint` float32 (M, T, 17, 2) pixels and `keypoint_score` float32 (M, T, 17) of one
  generated sample, one person per Kinect body slot (M = 1 or 2)."""
  color = np.transpose(sample.color_xy, (1, 0, 2, 3))  # (M, T, 25, 2)
  tracked = np.transpose(sample.joints[..., 11], (1, 0, 2)) == 2  # Kinect: 2 tracked, 1 inferred
  persons, frames = color.shape[:2]
  keypoint = np.zeros((persons, frames, 17, 2), np.float64)
  keypoint[:, :, NOSE] = color[:, :, sm.HEAD]
  for coco, kinect in BODY_FROM_NTU.items():
    keypoint[:, :, coco] = color[:, :, kinect]
  across = color[:, :, sm.L_SHOULDER] - color[:, :, sm.R_SHOULDER]
  up = np.stack([np.zeros(across.shape[:2]), -np.linalg.norm(across, axis=-1)], axis=-1)
  for coco, (a, b) in FACE_OFFSETS.items():
    keypoint[:, :, coco] = color[:, :, sm.HEAD] + a * across + b * up

  rng = sm.rng_for(seed, "coco_scores", sample.name)
  score = np.where(tracked[:, :, SCORE_SOURCE],
                   rng.uniform(0.7, 1.0, (persons, frames, 17)),
                   rng.uniform(0.2, 0.6, (persons, frames, 17)))
  # Slot b of a frame listing fewer bodies holds no person there.
  present = np.arange(persons)[:, None] < sample.body_counts[None, :]  # (M, T)
  keypoint *= present[..., None, None]
  score *= present[..., None]
  return keypoint.astype(np.float32), score.astype(np.float32)


def annotation(sample: synthetic.SyntheticSample, seed: int) -> dict:
  """One sample's entry of the pickle's `annotations`."""
  keypoint, score = coco_keypoints(sample, seed)
  return {"frame_dir": sample.name, "label": sample.label, "total_frames": sample.num_frames,
          "img_shape": IMG_SHAPE, "original_shape": IMG_SHAPE, "keypoint": keypoint,
          "keypoint_score": score}


def pickle_contents(config: synthetic.SyntheticConfig = synthetic.SyntheticConfig(),
                    names: Sequence[str] | None = None) -> dict:
  """The pickle's dict for `config`'s samples (or only `names`): `split` and `annotations`."""
  names = synthetic.sample_names(config) if names is None else sorted(names)
  split: dict[str, list[str]] = {}
  for protocol in PROTOCOLS:
    is_train = {n: ntu.is_train(ntu.parse_sample_name(n), protocol) for n in names}
    split[f"{protocol}_train"] = [n for n in names if is_train[n]]
    split[f"{protocol}_val"] = [n for n in names if not is_train[n]]
  return {"split": split,
          "annotations": [annotation(synthetic.simulate(n, config), config.seed) for n in names]}


def write_pose_pickle(path: str | os.PathLike,
                      config: synthetic.SyntheticConfig = synthetic.SyntheticConfig(),
                      names: Sequence[str] | None = None) -> synthetic.GeneratedSummary:
  """Writes the pickle of `config`'s samples (or only `names`) to `path`, and the class names
  to `class_names.txt` in the same directory."""
  contents = pickle_contents(config, names)
  path = os.fspath(path)
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "wb") as f:
    pickle.dump(contents, f, protocol=2)
  os.replace(tmp, path)
  class_names = synthetic.class_names(config.num_classes)
  with open(os.path.join(directory, synthetic.CLASS_NAMES_FILE), "w", encoding="utf-8") as f:
    f.write("".join(n + "\n" for n in class_names))
  return synthetic.GeneratedSummary(
      sample_names=[a["frame_dir"] for a in contents["annotations"]], class_names=class_names)


def _flags() -> flags.FlagValues:
  defaults = synthetic.SyntheticConfig()
  fv = flags.FlagValues()
  flags.DEFINE_string("out", None, "The pickle to write.", flag_values=fv)
  flags.DEFINE_integer("num_classes", defaults.num_classes,
                       f"First N of the {len(synthetic.CLASSES)} classes.", flag_values=fv)
  flags.DEFINE_list("performers", [str(p) for p in defaults.performers], "Performer ids.",
                    flag_values=fv)
  flags.DEFINE_integer("seed", defaults.seed, "Random seed.", flag_values=fv)
  return fv


def main(argv: Sequence[str] | None = None) -> int:
  """`python -m amfi_jax.data.generator.coco_poses --out=FILE.pkl [...]`; the exit code."""
  fv = _flags()
  try:
    fv(["coco_poses"] + list(sys.argv[1:] if argv is None else argv))
    if fv.out is None:
      raise flags.Error("--out is required")
    config = synthetic.SyntheticConfig(num_classes=fv.num_classes,
                                       performers=tuple(int(p) for p in fv.performers),
                                       seed=fv.seed, modalities=("skeleton",))
  except (flags.Error, ValueError) as e:
    print(f"error: {e}\n\n{fv.get_help()}", file=sys.stderr)
    return 2
  summary = write_pose_pickle(fv.out, config)
  print(f"wrote {len(summary.sample_names)} samples of {config.num_classes} classes to {fv.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
