"""2s-AGCN skeleton preprocessing: reference figures on the real files and each step's semantics."""

from __future__ import annotations


import numpy as np
import pytest

from amfi_jax.data.readers.ntu_skeleton import SkeletonSequence, read_skeleton
from amfi_jax.data.preprocessing.skeletons import (body_energy, frame_motion, joints_to_bones,
                                               pre_normalize, preprocess_ntu_skeleton,
                                               select_bodies)
from amfi_jax.models.graphs import NTU, UTD_MHAD

from tests.shared_data import shared_path


def _read(name: str) -> SkeletonSequence:
  return read_skeleton(shared_path("ntu", f"{name}.skeleton"))


def _sequence(xyz: np.ndarray) -> SkeletonSequence:
  """A SkeletonSequence around xyz (T, B, 25, 3); the other joint fields are zero."""
  num_frames, num_bodies = xyz.shape[:2]
  joints = np.zeros((num_frames, num_bodies, 25, 12))
  joints[..., :3] = xyz
  present = np.abs(xyz).sum(axis=(2, 3)) > 0
  return SkeletonSequence(path="synthetic", num_frames=num_frames,
                          body_counts=present.sum(1).astype(np.int32),
                          body_ids=tuple(tuple(range(int(n))) for n in present.sum(1)),
                          body_info=np.zeros((num_frames, num_bodies, 10)), joints=joints)


def _random_body(rng, num_frames, spread):
  base = rng.normal(size=(1, 25, 3)) * 0.3 + np.array([0, 0, 3.0])
  return base + rng.normal(size=(num_frames, 25, 3)) * spread


def _bodies(rng, num_frames, spreads):
  """(T, B, 25, 3): one pose shared by all bodies plus motion of the given sizes. Energy is the
  spread over joints AND frames, so a shared pose makes the motion decide the ranking."""
  base = rng.normal(size=(1, 25, 3)) * 0.3 + np.array([0, 0, 3.0])
  return np.stack([base + rng.normal(size=(num_frames, 25, 3)) * s for s in spreads], axis=1)


# --- reference figures (computed with the original 2s-AGCN code) --------------------------------

@pytest.mark.parametrize("name, joint_sum, joint_abs, bone_abs, second_person", [
    ("S001C001P001R001A011", -480.032177, 3468.256597, 1461.340115, False),
    ("S001C003P008R002A058", 7951.472684, 18169.024976, 3260.894813, True),
])
def test_reference_figures(name, joint_sum, joint_abs, bone_abs, second_person):
  x = preprocess_ntu_skeleton(_read(name))
  assert x.shape == (3, 300, 25, 2) and x.dtype == np.float32
  bones = joints_to_bones(x)
  assert bones.shape == x.shape and bones.dtype == np.float32
  np.testing.assert_allclose(x.sum(dtype=np.float64), joint_sum, atol=1e-3)
  np.testing.assert_allclose(np.abs(x).sum(dtype=np.float64), joint_abs, atol=1e-3)
  np.testing.assert_allclose(np.abs(bones).sum(dtype=np.float64), bone_abs, atol=1e-3)
  assert bool(np.abs(x[..., 1]).sum() > 0) == second_person


def test_preprocessed_real_sample_geometry():
  x = preprocess_ntu_skeleton(_read("S001C003P008R002A058"))
  # Step 2: joint 2 of person 0 is the origin in every (filled) frame.
  np.testing.assert_allclose(x[:, :, 1, 0], 0, atol=1e-6)
  # Step 4: the shoulder vector (joint 5 -> 9) of person 0 in frame 0 lies on +x.
  shoulder = x[:, 0, 8, 0] - x[:, 0, 4, 0]
  assert shoulder[0] > 0.2
  np.testing.assert_allclose(shoulder[1:], 0, atol=1e-6)
  # Step 1: 70 real frames, then the sequence repeated: frames 70-139 equal frames 0-69.
  np.testing.assert_array_equal(x[:, 70:140], x[:, 0:70])
  np.testing.assert_array_equal(x[:, 280:300], x[:, 0:20])


def test_rotation_preserves_lengths():
  seq = _read("S001C001P001R001A011")
  raw = select_bodies(seq)
  x = pre_normalize(raw[None])[0]
  # Bone lengths are invariant under translation and rotation.
  raw_len = np.linalg.norm(joints_to_bones(raw)[:, :82, :, 0], axis=0)
  new_len = np.linalg.norm(joints_to_bones(x)[:, :82, :, 0], axis=0)
  np.testing.assert_allclose(new_len, raw_len, atol=1e-5)


# --- select_bodies ------------------------------------------------------------------------------

def test_select_bodies_real_file_layout():
  seq = _read("S001C001P001R001A011")
  out = select_bodies(seq)
  assert out.shape == (3, 300, 25, 2) and out.dtype == np.float32
  np.testing.assert_array_equal(out[:, :82, :, 0],
                                np.transpose(seq.xyz[:, 0], (2, 0, 1)).astype(np.float32))
  assert not out[:, 82:].any()  # frames beyond the file's count
  assert not out[..., 1].any()  # one body only


def test_select_bodies_truncates_and_keeps_parameters():
  seq = _read("S001C003P008R002A058")
  out = select_bodies(seq, max_frames=50, num_persons=1)
  assert out.shape == (3, 50, 25, 1)
  full = select_bodies(seq)
  np.testing.assert_array_equal(out[..., 0], full[:, :50, :, 0])


def test_select_bodies_ranks_by_energy():
  rng = np.random.default_rng(0)
  xyz = _bodies(rng, 20, (0.01, 0.3, 0.1))  # slots 0, 1, 2
  seq = _sequence(xyz)
  energies = [body_energy(xyz[:, b]) for b in range(3)]
  assert energies[1] > energies[2] > energies[0]
  out = select_bodies(seq, max_frames=30)
  np.testing.assert_allclose(out[:, :20, :, 0], np.transpose(xyz[:, 1], (2, 0, 1)), rtol=1e-6)
  np.testing.assert_allclose(out[:, :20, :, 1], np.transpose(xyz[:, 2], (2, 0, 1)), rtol=1e-6)


def test_select_bodies_ignores_bodies_beyond_max_bodies():
  rng = np.random.default_rng(1)
  xyz = _bodies(rng, 10, (0.01, 0.02, 0.03, 0.3, 1.0))
  out = select_bodies(_sequence(xyz), max_frames=10)
  # Slot 4 moves most but lies beyond the 4 bodies the reference reads.
  np.testing.assert_allclose(out[..., 0], np.transpose(xyz[:, 3], (2, 0, 1)), rtol=1e-6)


def test_energy_uses_only_non_empty_frames():
  rng = np.random.default_rng(2)
  body = _random_body(rng, 10, 0.1)
  padded = np.concatenate([np.zeros((5, 25, 3)), body, np.zeros((5, 25, 3))])
  assert body_energy(padded) == pytest.approx(body_energy(body))
  assert body_energy(np.zeros((4, 25, 3))) == 0.0


def test_tie_order_follows_the_reference():
  # A body with all joints at one point in its only frame has energy 0, like an empty slot. The
  # reference's argsort()[::-1] puts the later slot first among equals, so the empty slot 3 wins
  # over the real (degenerate) body in slot 1.
  rng = np.random.default_rng(3)
  xyz = np.zeros((10, 2, 25, 3))
  xyz[:, 0] = _random_body(rng, 10, 0.1)
  xyz[4, 1] = [0.5, 0.25, 3.0]  # exactly representable, so the std is exactly 0
  assert body_energy(xyz[:, 1]) == 0.0
  out = select_bodies(_sequence(xyz), max_frames=10)
  assert out[..., 0].any()
  assert not out[..., 1].any()


# --- pre_normalize ------------------------------------------------------------------------------

def test_pre_normalize_shifts_leading_empty_frames_and_repeats():
  rng = np.random.default_rng(4)
  data = np.zeros((1, 3, 20, 25, 2), np.float32)
  body = _random_body(rng, 6, 0.05)  # (6, 25, 3)
  data[0, :, 3:9, :, 0] = np.transpose(body, (2, 0, 1))  # frames 0-2 empty, 3-8 valid
  out = pre_normalize(data)
  assert out.shape == data.shape and out.dtype == np.float32
  # The valid frames move to the front, then repeat: 0-5, 0-5, 0-5, 0-1.
  for start in (6, 12):
    np.testing.assert_array_equal(out[0, :, start:start + 6], out[0, :, 0:6])
  np.testing.assert_array_equal(out[0, :, 18:20], out[0, :, 0:2])
  # The shifted frames are the original ones after centring and rotation: lengths survive.
  before = np.linalg.norm(body[:, 4] - body[:, 8], axis=-1)
  after = np.linalg.norm(out[0, :, 0:6, 4, 0] - out[0, :, 0:6, 8, 0], axis=0)
  np.testing.assert_allclose(after, before, rtol=1e-5)
  assert not out[..., 1].any()


def test_pre_normalize_keeps_gaps_in_the_middle():
  rng = np.random.default_rng(5)
  data = np.zeros((1, 3, 12, 25, 1), np.float32)
  data[0, :, 0:4, :, 0] = np.transpose(_random_body(rng, 4, 0.05), (2, 0, 1))
  data[0, :, 6:8, :, 0] = np.transpose(_random_body(rng, 2, 0.05), (2, 0, 1))
  out = pre_normalize(data)
  assert not out[0, :, 4:6].any()  # the gap stays empty
  assert out[0, :, 6:8].any()
  # The tail after frame 7 repeats frames 0-7 (gap included).
  np.testing.assert_array_equal(out[0, :, 8:12], out[0, :, 0:4])


def test_pre_normalize_centres_on_person0_each_frame():
  rng = np.random.default_rng(6)
  data = np.zeros((1, 3, 5, 25, 2), np.float32)
  p0 = _random_body(rng, 5, 0.05)
  p1 = _random_body(rng, 5, 0.05) + np.array([1.0, 0, 0])
  data[0, ..., 0] = np.transpose(p0, (2, 0, 1))
  data[0, ..., 1] = np.transpose(p1, (2, 0, 1))
  data[0, :, 2, 7, 1] = 0  # a missing joint stays zero (only non-zero joints are shifted)
  out = pre_normalize(data)
  np.testing.assert_allclose(out[0, :, :, 1, 0], 0, atol=1e-6)
  assert not out[0, :, 2, 7, 1].any()
  # Person 1 relative to person 0's joint 2 keeps its distance.
  dist_in = np.linalg.norm(p1[:, 3] - p0[:, 1], axis=-1)
  dist_out = np.linalg.norm(out[0, :, :, 3, 1], axis=0)
  np.testing.assert_allclose(dist_out, dist_in, rtol=1e-5)


def test_pre_normalize_axes():
  rng = np.random.default_rng(7)
  data = np.transpose(_random_body(rng, 4, 0.02), (2, 0, 1))[None, ..., None].astype(np.float32)
  data = np.concatenate([data, data * 0.5], axis=0)  # two samples
  out = pre_normalize(data)
  for sample in out:
    # The last rotation puts the shoulders on +x exactly; the spine lies in the y-z plane then.
    shoulder = sample[:, 0, 8, 0] - sample[:, 0, 4, 0]
    np.testing.assert_allclose(shoulder[1:], 0, atol=1e-6)
    assert shoulder[0] > 0


def test_pre_normalize_spine_on_z_without_shoulder_rotation():
  # When the shoulders already lie on +x after step 3, step 4 is the identity and the spine
  # vector (joint 1 -> 2) stays on +z.
  data = np.zeros((1, 3, 2, 25, 1), np.float32)
  joints = np.zeros((25, 3), np.float32)
  joints[:] = [0.1, 0.2, 3.0]
  joints[1] = [0.1, 0.7, 3.0]  # spine 0.5 m along +y
  joints[4] = [-0.1, 0.9, 3.0]
  joints[8] = [0.3, 0.9, 3.0]  # shoulders along +x
  data[0, :, :, :, 0] = joints.T[:, None, :]
  out = pre_normalize(data)
  spine = out[0, :, 0, 1, 0] - out[0, :, 0, 0, 0]
  np.testing.assert_allclose(spine, [0, 0, 0.5], atol=1e-6)
  shoulder = out[0, :, 0, 8, 0] - out[0, :, 0, 4, 0]
  np.testing.assert_allclose(shoulder, [0.4, 0, 0], atol=1e-6)


def test_pre_normalize_all_empty_sample_is_unchanged():
  rng = np.random.default_rng(10)
  data = np.zeros((2, 3, 10, 25, 2), np.float32)
  data[1, :, :4, :, 0] = np.transpose(_random_body(rng, 4, 0.05), (2, 0, 1))
  out = pre_normalize(data)
  assert not out[0].any()
  assert out[1].any()


def test_pre_normalize_does_not_modify_input():
  rng = np.random.default_rng(8)
  data = np.zeros((1, 3, 8, 25, 1))
  data[0, :, 2:5, :, 0] = np.transpose(_random_body(rng, 3, 0.05), (2, 0, 1))
  copy = data.copy()
  pre_normalize(data)
  np.testing.assert_array_equal(data, copy)


def test_pre_normalize_rejects_wrong_layout():
  with pytest.raises(ValueError, match=r"expected \(N, 3, T, 25, M\) for graph 'ntu'"):
    pre_normalize(np.zeros((3, 300, 25, 2)))
  with pytest.raises(ValueError, match=r"expected \(N, 3, T, 20, M\) for graph 'utd_mhad'"):
    pre_normalize(np.zeros((1, 3, 300, 25, 2)), UTD_MHAD)


# --- bones --------------------------------------------------------------------------------------

def test_joints_to_bones():
  rng = np.random.default_rng(9)
  joints = rng.normal(size=(2, 3, 4, 25, 2)).astype(np.float32)
  bones = joints_to_bones(joints)
  assert bones.shape == joints.shape and bones.dtype == np.float32
  np.testing.assert_array_equal(bones[..., 0, :], joints[..., 0, :] - joints[..., 1, :])  # (1, 2)
  np.testing.assert_array_equal(bones[..., 1, :], joints[..., 1, :] - joints[..., 20, :])
  np.testing.assert_array_equal(bones[..., 23, :], joints[..., 23, :] - joints[..., 24, :])
  np.testing.assert_array_equal(bones[..., 24, :], joints[..., 24, :] - joints[..., 11, :])
  assert not bones[..., 20, :].any()  # the centre (21, 21)
  assert len(NTU.bone_pairs) == 25


def test_joints_to_bones_utd_graph_and_check():
  joints = np.arange(3 * 2 * 20, dtype=np.float32).reshape(3, 2, 20, 1)
  bones = joints_to_bones(joints, UTD_MHAD)
  assert not bones[..., 1, :].any()  # UTD-MHAD centre: joint 2
  np.testing.assert_array_equal(bones[..., 3, :], joints[..., 3, :] - joints[..., 2, :])  # (4, 3)
  with pytest.raises(ValueError, match=r"expected V=25 joints on axis -2"):
    joints_to_bones(joints)


def test_resample_frames_spreads_the_valid_frames_over_the_new_length():
  from amfi_jax.data.preprocessing.skeletons import resample_frames

  x = np.zeros((3, 10, 20, 1), np.float32)
  x[0, :5] = np.arange(5, dtype=np.float32)[:, None, None]  # 5 valid frames, then padding
  out = resample_frames(x, 5, 9)
  assert out.shape == (3, 9, 20, 1)
  np.testing.assert_allclose(out[0, :, 0, 0], np.linspace(0, 4, 9))  # no padding frame used
  np.testing.assert_array_equal(resample_frames(x, 5, 5), x[:, :5])
  assert resample_frames(x, 1, 4)[0, :, 0, 0].tolist() == [0, 0, 0, 0]


def test_pipeline_resamples_skeletons_to_the_configured_frames():
  from amfi_jax.data import pipeline

  records = []
  for i, count in enumerate((7, 12)):
    joints = np.zeros((3, 16, 20, 1), np.float32)
    joints[:, :count] = i + 1
    records.append({"skeleton": joints, "frame_count": np.int32(count), "label": np.int64(i)})
  batch = next(iter(pipeline.eval_dataset(records, batch_size=2, modalities=("skeleton",),
                                          skeleton_frames=32, process_index=0, process_count=1,
                                          num_threads=1)))
  assert batch["skeleton"].shape == (2, 3, 32, 20, 1)
  np.testing.assert_array_equal(batch["skeleton"][0], 1.0)  # only valid frames, none of the zeros
  np.testing.assert_array_equal(batch["skeleton"][1], 2.0)


def test_frame_motion_is_the_next_frame_minus_this_one_up_to_the_last_valid_frame():
  x = np.random.default_rng(0).normal(size=(3, 6, 4, 2)).astype(np.float32)
  np.testing.assert_allclose(frame_motion(x)[:, :5], x[:, 1:] - x[:, :-1], atol=1e-7)
  assert not frame_motion(x)[:, 5].any()
  short = frame_motion(x, num_valid=3)
  np.testing.assert_allclose(short[:, :2], x[:, 1:3] - x[:, :2], atol=1e-7)
  assert not short[:, 2:].any()
  assert not frame_motion(x, num_valid=1).any() and not frame_motion(x, num_valid=0).any()
  assert frame_motion(x).dtype == np.float32 and frame_motion(x).shape == x.shape
