"""Skeleton augmentation: deterministic per seed, shapes and zero padding kept, applied in the
training pipeline only when configured."""

from __future__ import annotations

import numpy as np
import pytest

from amfi_jax.data import pipeline
from amfi_jax.data.preprocessing import samples, skeleton_augment, skeletons
from amfi_jax.models import graphs

SETTINGS = {"rotate": (10.0, 10.0, 30.0), "scale": 0.1, "shear": 0.1, "crop": 0.8, "jitter": 0.0}


def _skeleton(valid: int = 20, frames: int = 32, persons: int = 2, seed: int = 0) -> np.ndarray:
  """(3, T, V, M) joints with `valid` non-zero frames, zero padding after them, and an absent
  second person."""
  x = np.zeros((3, frames, 20, persons), np.float32)
  x[:, :valid, :, 0] = np.random.default_rng(seed).normal(size=(3, valid, 20)).astype(np.float32)
  return x


def test_same_seed_same_result_and_shapes_kept():
  x = _skeleton()
  a = skeleton_augment.augment(x, np.random.default_rng(7), **SETTINGS)
  b = skeleton_augment.augment(x, np.random.default_rng(7), **SETTINGS)
  c = skeleton_augment.augment(x, np.random.default_rng(8), **SETTINGS)
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, c)
  assert a.shape == x.shape and a.dtype == np.float32


def test_padding_and_absent_people_stay_zero():
  x = _skeleton(valid=20)
  out = skeleton_augment.augment(x, np.random.default_rng(3), **{**SETTINGS, "jitter": 0.01})
  assert not out[:, 20:].any() and not out[..., 1].any()
  assert np.abs(out[:, :20, :, 0]).sum(axis=(0, 2)).all()  # every valid frame still has a body


def test_rotation_keeps_bone_lengths():
  x = _skeleton(valid=32)
  out = skeleton_augment.augment(x, np.random.default_rng(1), rotate=(30.0, 30.0, 90.0), scale=0.0,
                                 shear=0.0, crop=0.0, jitter=0.0)
  np.testing.assert_allclose(np.linalg.norm(out, axis=0), np.linalg.norm(x, axis=0), rtol=1e-5)


def _records(n: int = 6):
  return [{"skeleton": _skeleton(seed=i)[..., :1], "label": np.int64(i % 3)} for i in range(n)]


@pytest.mark.parametrize("stream", ["joint", "joint_bone", "joint_bone_motion"])
def test_pipeline_augments_skeletons_only_when_configured(stream):
  source = _records()
  kwargs = dict(batch_size=6, seed=0, modalities=("skeleton",), skeleton_stream=stream,
                graph=graphs.UTD_MHAD, num_epochs=1, process_index=0, process_count=1,
                num_threads=1)
  plain = next(iter(pipeline.train_dataset(source, **kwargs)))
  augmented = next(iter(pipeline.train_dataset(source, skeleton_augment_kwargs=SETTINGS,
                                               **kwargs)))
  again = next(iter(pipeline.train_dataset(source, skeleton_augment_kwargs=SETTINGS, **kwargs)))
  np.testing.assert_array_equal(plain["index"], augmented["index"])  # same order
  np.testing.assert_array_equal(augmented["skeleton"], again["skeleton"])  # deterministic
  assert not np.allclose(plain["skeleton"], augmented["skeleton"])
  expected = [samples.skeleton_input(source[i]["skeleton"], stream, graphs.UTD_MHAD)
              for i in plain["index"]]
  np.testing.assert_array_equal(plain["skeleton"], np.stack(expected))  # off: untouched
  if stream != "joint":  # the bones are those of the augmented joints
    joints = augmented["skeleton"][:, :3]
    bones = np.stack([samples.skeleton_input(j, "joint_bone", graphs.UTD_MHAD)[3:]
                      for j in joints])
    np.testing.assert_allclose(augmented["skeleton"][:, 3:6], bones, atol=1e-5)



def test_motions_are_augmented_with_their_joints():
  source = _records()
  rigid = {**SETTINGS, "crop": 0.0}  # rotation, scaling, shear: linear per point, like motion
  batch = next(iter(pipeline.train_dataset(
      source, batch_size=6, seed=0, modalities=("skeleton",), skeleton_stream="joint_bone_motion",
      graph=graphs.UTD_MHAD, num_epochs=1, process_index=0, process_count=1, num_threads=1,
      skeleton_augment_kwargs=rigid)))
  assert batch["skeleton"].shape[1] == 12
  motion = np.stack([skeletons.frame_motion(x[:6]) for x in batch["skeleton"]])
  np.testing.assert_allclose(batch["skeleton"][:, 6:], motion, atol=1e-5)
  assert np.abs(motion).max() > 0.01
