"""UTD-MHAD names, split, .mat readers and skeleton preprocessing on the real files."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import scipy.io

from amfi_jax.data.preprocessing.skeletons import preprocess_utd_skeleton
from amfi_jax.data.readers import utd_mhad
from amfi_jax.data.errors import DataFormatError
from amfi_jax.data.preprocessing.skeletons import joints_to_bones
from amfi_jax.data.readers.utd_mhad import (TRAIN_SUBJECTS, UTD_MHAD_CLASS_NAMES, UTDName, parse_utd_name,
                                    read_color_video, read_depth_mat,
                                    read_skeleton_mat, split_of)

from tests.shared_data import SHARED_DATA, shared_path

DATA = SHARED_DATA / "utd_mhad"
ABSENT = {"a8_s1_t4", "a23_s6_t4", "a27_s8_t4"}


def _folder(name: str) -> Path:
  return shared_path("utd_mhad", name)


# --- names --------------------------------------------------------------------------------------

@pytest.mark.parametrize("given, expected", [
    ("a1_s1_t1_skeleton.mat", UTDName(1, 1, 1)),
    ("/data/Depth/a27_s8_t3_depth.mat", UTDName(27, 8, 3)),
    ("a12_s5_t4_color.avi", UTDName(12, 5, 4)),
    ("a3_s2_t2_inertial.mat", UTDName(3, 2, 2)),
    ("a10_s4_t1", UTDName(10, 4, 1)),
])
def test_parse_utd_name(given, expected):
  name = parse_utd_name(given)
  assert name == expected
  assert name.label == expected.action - 1
  assert name.name == f"a{expected.action}_s{expected.subject}_t{expected.trial}"


@pytest.mark.parametrize("given, message", [
    ("a28_s1_t1_skeleton.mat", "expected action 1-27, got 28"),
    ("a0_s1_t1_skeleton.mat", "expected action 1-27, got 0"),
    ("a1_s9_t1_depth.mat", "expected subject 1-8, got 9"),
    ("a1_s0_t1_depth.mat", "expected subject 1-8, got 0"),
    ("a1_s1_t5_color.avi", "expected trial 1-4, got 5"),
    ("a1_s1_t1_audio.mat", "expected a kind in ['color', 'depth', 'skeleton', 'inertial'], "
     "got 'audio'"),
    ("A1_S1_T1_skeleton.mat", "expected a UTD-MHAD name a{action}_s{subject}_t{trial}_{kind}"),
    ("Skeleton_joint_order.txt", "expected a UTD-MHAD name a{action}_s{subject}_t{trial}_{kind}"),
])
def test_parse_utd_name_rejects(given, message):
  with pytest.raises(DataFormatError) as info:
    parse_utd_name(given)
  assert str(info.value) == f"{given}: {message}"


def test_class_names_and_split():
  assert len(UTD_MHAD_CLASS_NAMES) == 27 and len(set(UTD_MHAD_CLASS_NAMES)) == 27
  assert UTD_MHAD_CLASS_NAMES[0] == "right arm swipe to the left"
  assert UTD_MHAD_CLASS_NAMES[9] == "right hand draw circle (counter clockwise)"
  assert UTD_MHAD_CLASS_NAMES[21] == "jogging in place"
  assert UTD_MHAD_CLASS_NAMES[26] == "squat (two arms stretch out)"
  assert TRAIN_SUBJECTS == (1, 3, 5, 7)
  assert split_of("a5_s3_t2_depth.mat") == "train"
  assert split_of(UTDName(5, 4, 2)) == "test"
  assert [split_of(UTDName(1, s, 1)) for s in range(1, 9)] == ["train", "test"] * 4


def test_real_file_names():
  # Counts by name only: nothing is loaded.
  for folder, kind in (("Skeleton", "skeleton"), ("Depth", "depth")):
    files = sorted(_folder(folder).glob(f"*_{kind}.mat"))
    assert len(files) == 861
    names = {parse_utd_name(f).name for f in files}
    assert len(names) == 861
    assert not names & ABSENT
    expected = {f"a{a}_s{s}_t{t}" for a in range(1, 28) for s in range(1, 9) for t in range(1, 5)}
    assert names == expected - ABSENT
  train = [f for f in _folder("Skeleton").glob("*_skeleton.mat") if split_of(f) == "train"]
  assert len(train) == 431  # a8_s1_t4 is a training sample, the other two absent ones test


# --- readers ------------------------------------------------------------------------------------

def test_read_skeleton_mat_real():
  path = _folder("Skeleton") / "a1_s1_t1_skeleton.mat"
  xyz = read_skeleton_mat(path)
  assert xyz.shape == (48, 20, 3) and xyz.dtype == np.float32
  raw = scipy.io.loadmat(path)["d_skel"]
  np.testing.assert_array_equal(xyz, np.transpose(raw, (2, 0, 1)).astype(np.float32))
  np.testing.assert_allclose(xyz[0, 0], [-0.04576265, 0.48398542, 2.8301895], rtol=1e-6)


def test_all_skeleton_lengths():
  # Reading every skeleton costs ~0.3 s; it checks the dataset's documented range.
  lengths = [read_skeleton_mat(p).shape[0] for p in _folder("Skeleton").glob("*_skeleton.mat")]
  assert len(lengths) == 861
  assert min(lengths) == 41 and max(lengths) == 125
  assert np.median(lengths) == 67


def test_read_depth_mat_real():
  depth = read_depth_mat(_folder("Depth") / "a1_s1_t1_depth.mat")
  assert depth.shape == (48, 240, 320) and depth.dtype == np.uint16
  assert depth.max() == 3201
  assert 0.05 < (depth > 0).mean() < 0.15  # background removed: only the performer is non-zero


def test_read_skeleton_missing_variable(tmp_path):
  path = tmp_path / "a1_s1_t1_skeleton.mat"
  scipy.io.savemat(path, {"skeleton": np.zeros((20, 3, 5))})
  with pytest.raises(DataFormatError) as info:
    read_skeleton_mat(path)
  assert str(info.value) == f"{path}: expected a variable 'd_skel', found ['skeleton']"


def test_read_skeleton_wrong_shape(tmp_path):
  path = tmp_path / "a1_s1_t1_skeleton.mat"
  scipy.io.savemat(path, {"d_skel": np.zeros((25, 3, 5))})
  with pytest.raises(DataFormatError) as info:
    read_skeleton_mat(path)
  assert str(info.value) == (f"{path}: expected d_skel as a real (20, 3, T) array with T >= 1, "
                             "got float64 (25, 3, 5)")


def test_read_skeleton_with_non_finite_values(tmp_path):
  path = tmp_path / "a1_s1_t1_skeleton.mat"
  skel = np.zeros((20, 3, 6))
  skel[4, 1, 2] = np.nan
  skel[0, 0, 5] = np.inf
  scipy.io.savemat(path, {"d_skel": skel})
  with pytest.raises(DataFormatError) as info:
    read_skeleton_mat(path)
  assert str(info.value) == (f"{path}: d_skel has 2 non-finite (NaN or infinite) coordinate(s), "
                             "the first at frame 3, joint 5")


@pytest.mark.parametrize("content", [b"not a MATLAB file\n", b"MATLAB 5.0 MAT-file" + b" " * 200,
                                     b"x" * 300, b""])
def test_read_skeleton_text_named_mat(tmp_path, content):
  path = tmp_path / "a1_s1_t1_skeleton.mat"
  path.write_bytes(content)
  with pytest.raises(DataFormatError, match=r"cannot read as a MATLAB \.mat file"):
    read_skeleton_mat(path)


def test_read_skeleton_not_a_mat_file(tmp_path):
  path = tmp_path / "a1_s1_t1_skeleton.mat"
  path.write_text("not a MATLAB file\n")
  with pytest.raises(DataFormatError, match=r"cannot read as a MATLAB \.mat file") as info:
    read_skeleton_mat(path)
  assert info.value.path == str(path) and info.value.line is None


def test_read_depth_wrong_shape(tmp_path):
  path = tmp_path / "a1_s1_t1_depth.mat"
  scipy.io.savemat(path, {"d_depth": np.zeros((240, 321, 2), np.uint16)})
  with pytest.raises(DataFormatError) as info:
    read_depth_mat(path)
  assert str(info.value) == (f"{path}: expected d_depth as an integer (240, 320, T) array with "
                             "T >= 1, got uint16 (240, 321, 2)")


def test_read_depth_wrong_dtype(tmp_path):
  path = tmp_path / "a1_s1_t1_depth.mat"
  scipy.io.savemat(path, {"d_depth": np.zeros((240, 320, 2), np.float64)})
  with pytest.raises(DataFormatError, match=r"expected d_depth as an integer .* got float64"):
    read_depth_mat(path)


def test_read_depth_out_of_range(tmp_path):
  path = tmp_path / "a1_s1_t1_depth.mat"
  depth = np.zeros((240, 320, 2), np.int32)
  depth[0, 0, 0] = -1
  scipy.io.savemat(path, {"d_depth": depth})
  with pytest.raises(DataFormatError, match=r"expected d_depth values in 0-65535, got -1-0$"):
    read_depth_mat(path)


def test_read_depth_missing_variable(tmp_path):
  path = tmp_path / "a1_s1_t1_depth.mat"
  scipy.io.savemat(path, {"d_skel": np.zeros((20, 3, 2))})
  with pytest.raises(DataFormatError, match=r"expected a variable 'd_depth', found \['d_skel'\]$"):
    read_depth_mat(path)


def test_read_color_video(tmp_path):
  # No UTD-MHAD RGB video is available: a synthetic 640x480 one stands in.
  path = tmp_path / "a1_s1_t1_color.avi"
  container = av.open(str(path), "w")
  stream = container.add_stream("mpeg4", rate=30)
  stream.width, stream.height, stream.pix_fmt = 640, 480, "yuv420p"
  for i in range(12):
    frame = av.VideoFrame.from_ndarray(np.full((480, 640, 3), 10 * i, np.uint8), format="rgb24")
    for packet in stream.encode(frame):
      container.mux(packet)
  for packet in stream.encode():
    container.mux(packet)
  container.close()
  frames, total = read_color_video(path, 4, size=(120, 160))
  assert total == 12
  assert frames.shape == (4, 120, 160, 3) and frames.dtype == np.uint8
  np.testing.assert_allclose(frames.reshape(4, -1).mean(1), [0, 30, 60, 90], atol=3)


# --- preprocessing ------------------------------------------------------------------------------

def test_preprocess_utd_skeleton_real():
  xyz = read_skeleton_mat(_folder("Skeleton") / "a1_s1_t1_skeleton.mat")  # 48 frames
  x = preprocess_utd_skeleton(xyz, 125)
  assert x.shape == (3, 125, 20, 1) and x.dtype == np.float32
  np.testing.assert_allclose(x[:, :, 2, 0], 0, atol=1e-6)  # the spine (joint 3) is the origin
  shoulder = x[:, 0, 8, 0] - x[:, 0, 4, 0]  # left (5) -> right (9) shoulder on +x
  assert shoulder[0] > 0.2
  np.testing.assert_allclose(shoulder[1:], 0, atol=1e-6)
  # Padded exactly like NTU: the 48 frames repeat over the rest.
  np.testing.assert_array_equal(x[:, 48:96], x[:, 0:48])
  np.testing.assert_array_equal(x[:, 96:125], x[:, 0:29])
  # Translation and rotation keep bone lengths.
  from amfi_jax.models.graphs import UTD_MHAD
  raw = np.transpose(xyz, (2, 0, 1))[..., None]
  np.testing.assert_allclose(
      np.linalg.norm(joints_to_bones(x, UTD_MHAD)[:, :48], axis=0),
      np.linalg.norm(joints_to_bones(raw, UTD_MHAD), axis=0), atol=1e-5)


def test_preprocess_utd_skeleton_truncates_and_defaults():
  xyz = read_skeleton_mat(_folder("Skeleton") / "a1_s1_t1_skeleton.mat")
  short = preprocess_utd_skeleton(xyz, 32)
  assert short.shape == (3, 32, 20, 1)
  assert preprocess_utd_skeleton(xyz).shape == (3, utd_mhad.MAX_FRAMES, 20, 1)
  with pytest.raises(ValueError, match=r"expected \(T, 20, 3\) joints"):
    preprocess_utd_skeleton(np.zeros((10, 25, 3)), 32)


@pytest.mark.parametrize("depth_frames", ["sample", "segment_mean"])
def test_read_utd_sample_depth_frames_real(depth_frames):
  from amfi_jax.data.preprocessing import clips, samples
  from amfi_jax.data.readers import video
  depth_path = _folder("Depth") / "a1_s1_t1_depth.mat"
  out = samples.read_utd_sample(str(_folder("Skeleton") / "a1_s1_t1_skeleton.mat"),
                                str(depth_path), max_frames=128, clip_length=8, image_size=32,
                                depth_frames=depth_frames)
  cropped = clips.depth_crop(read_depth_mat(depth_path), 32)  # 48 frames: segments of 6
  expected = (cropped[video.sample_frame_indices(48, 8)] if depth_frames == "sample"
              else cropped.reshape(8, 6, 32, 32, 1).mean(axis=1))
  assert out["depth"].shape == (8, 32, 32, 1) and out["depth_frame_count"] == 48
  np.testing.assert_allclose(out["depth"], expected, rtol=1e-6, atol=1e-7)


def test_read_utd_sample_spread_frames_reach_the_end_of_the_sequence():
  from amfi_jax.data.preprocessing import clips, samples
  depth_path = _folder("Depth") / "a1_s1_t1_depth.mat"
  out = samples.read_utd_sample(str(_folder("Skeleton") / "a1_s1_t1_skeleton.mat"),
                                str(depth_path), max_frames=128, clip_length=10, image_size=32,
                                depth_frames="spread")
  cropped = clips.depth_crop(read_depth_mat(depth_path), 32)  # 48 frames
  # floor(i * 48 / 10); the paper's rule would stop at frame 36.
  expected = cropped[[0, 4, 9, 14, 19, 24, 28, 33, 38, 43]]
  np.testing.assert_allclose(out["depth"], expected, rtol=1e-6, atol=1e-7)


def test_read_utd_sample_rejects_unknown_depth_frames():
  from amfi_jax.data.preprocessing import samples
  with pytest.raises(ValueError, match=r"depth_frames must be one of .*got 'max'"):
    samples.read_utd_sample(str(_folder("Skeleton") / "a1_s1_t1_skeleton.mat"),
                            str(_folder("Depth") / "a1_s1_t1_depth.mat"), max_frames=128,
                            clip_length=8, image_size=32, depth_frames="max")


def test_read_utd_sample_body_arms_views_real():
  from amfi_jax.data.preprocessing import clips, samples
  skeleton_path = str(_folder("Skeleton") / "a9_s1_t1_skeleton.mat")  # draw circle clockwise
  depth_path = str(_folder("Depth") / "a9_s1_t1_depth.mat")
  common = dict(max_frames=128, clip_length=16, image_size=32, depth_frames="spread")
  body = samples.read_utd_sample(skeleton_path, depth_path, **common)
  both = samples.read_utd_sample(skeleton_path, depth_path, depth_views="body_arms", **common)
  assert both["depth"].shape == (16, 32, 32, 2)
  np.testing.assert_array_equal(both["depth"][..., :1], body["depth"])
  np.testing.assert_array_equal(both["skeleton"], body["skeleton"])
  # The arms crop is a smaller square of the same frames, around the arms' projected path.
  box = clips.arms_box(read_skeleton_mat(skeleton_path), (240, 320))
  assert 40 < box[2] < clips.body_box(read_depth_mat(depth_path))[2]
  assert both["depth"][..., 1].any()


def test_read_utd_sample_body_arms_needs_one_recording(tmp_path):
  from amfi_jax.data.preprocessing import samples
  skeleton = scipy.io.loadmat(_folder("Skeleton") / "a9_s1_t1_skeleton.mat")["d_skel"]
  short = tmp_path / "a9_s1_t1_skeleton.mat"
  scipy.io.savemat(short, {"d_skel": skeleton[..., :-3]})
  depth_path = str(_folder("Depth") / "a9_s1_t1_depth.mat")
  common = dict(max_frames=128, clip_length=16, image_size=32, depth_frames="spread")
  with pytest.raises(DataFormatError, match=r"a9_s1_t1_depth.mat.*\b(\d+) depth frames but "
                     r"\d+ skeleton frames in .*a9_s1_t1_skeleton.mat"):
    samples.read_utd_sample(str(short), depth_path, depth_views="body_arms", **common)
  # The body crop alone does not use the joints, so it reads the pair as before.
  assert samples.read_utd_sample(str(short), depth_path, **common)["depth"].shape[-1] == 1
  with pytest.raises(ValueError, match=r"depth_views must be one of .*got 'arms'"):
    samples.read_utd_sample(str(short), depth_path, depth_views="arms", **common)
