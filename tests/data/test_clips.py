"""Body-centred crop, resize, depth crop and clip augmentation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from amfi_jax.data.readers.ntu_skeleton import read_skeleton
from amfi_jax.data.preprocessing import clips as clips_module
from amfi_jax.data.preprocessing.clips import (DEPTH_SCALE, RELATIVE_FLOOR, augment_clip,
                                          crop_and_resize, crop_box, depth_crop, offset_depth,
                                          segment_means, select_clip_frames,
                                          spread_frame_indices)

from tests.shared_data import shared_path


def _data_file(*parts: str) -> Path:
  return shared_path(*parts)


# --- crop_box -----------------------------------------------------------------------------------

def test_crop_box_centres_on_joint_bounding_box():
  xy = np.array([[800.0, 400.0], [1000.0, 700.0], [0.0, 0.0]])  # the zero row is a missing joint
  # Box centre (900, 550); 1000 px square -> top 50, left 400.
  assert crop_box(xy, (1080, 1920)) == (50, 400, 1000)


def test_crop_box_scales_to_stored_frame_size():
  xy = np.array([[800.0, 400.0], [1000.0, 700.0]])
  # Same box in a 480x270 video: centre (225, 137.5), side 250.
  assert crop_box(xy, (270, 480)) == (12, 100, 250)
  assert crop_box(xy, (540, 960), crop_size=500) == (150, 325, 250)


def test_crop_box_shifts_inside_frame():
  left_edge = np.array([[30.0, 1050.0], [60.0, 1070.0]])
  assert crop_box(left_edge, (1080, 1920)) == (80, 0, 1000)
  right_edge = np.array([[1900.0, 20.0]])
  assert crop_box(right_edge, (1080, 1920)) == (0, 920, 1000)


def test_crop_box_shrinks_only_for_small_frames():
  # A reference-sized crop that exceeds the frame: 1080 px of a 1080x1920 frame.
  assert crop_box(np.array([[960.0, 540.0]]), (1080, 1920), crop_size=1200) == (0, 420, 1080)
  # A frame with another aspect ratio: the smaller scale sets the side (height here, width next).
  assert crop_box(np.array([[960.0, 540.0]]), (540, 1280), crop_size=1000) == (20, 390, 500)
  assert crop_box(np.array([[960.0, 540.0]]), (540, 640), crop_size=1000) == (104, 154, 333)


def test_crop_box_without_valid_joints_uses_frame_centre():
  xy = np.array([[0.0, 0.0], [np.nan, 300.0], [np.inf, np.inf]])
  assert crop_box(xy, (1080, 1920)) == (40, 460, 1000)
  assert crop_box(np.zeros((0, 2)), (270, 480)) == (10, 115, 250)


def test_crop_box_ignores_off_screen_extent():
  # A joint placed far off screen is clipped to the frame edge before the box is taken.
  xy = np.array([[900.0, 500.0], [1100.0, 600.0], [5000.0, 550.0]])
  top, left, size = crop_box(xy, (1080, 1920))
  assert (top, size) == (50, 1000)
  assert left == 910  # centre x (900 + 1920) / 2 = 1410; unclipped, 2950 would give 920


def test_crop_box_on_real_skeleton():
  seq = read_skeleton(_data_file("ntu", "S001C003P008R002A058.skeleton"))
  xy = seq.color_xy
  valid = xy[(xy != 0).any(-1)]
  cx = (valid[:, 0].min() + valid[:, 0].max()) / 2
  cy = (valid[:, 1].min() + valid[:, 1].max()) / 2
  top, left, size = crop_box(xy, (1080, 1920))
  assert size == 1000
  assert left == round(cx - 500) and top == round(cy - 500)
  # Every joint of both performers lies inside the crop.
  assert valid[:, 0].min() >= left and valid[:, 0].max() <= left + size
  assert valid[:, 1].min() >= top and valid[:, 1].max() <= top + size


# --- crop_and_resize ----------------------------------------------------------------------------

def test_crop_and_resize_content():
  frames = np.zeros((2, 60, 80, 3), np.uint8)
  frames[:, 10:50, 30:50] = 200  # left half of the 40x40 crop at (10, 30)
  frames[1, 10:50, 50:70, 1] = 90
  out = crop_and_resize(frames, (10, 30, 40), 20)
  assert out.shape == (2, 20, 20, 3) and out.dtype == np.uint8
  np.testing.assert_allclose(out[0, :, :10].astype(int), 200, atol=2)
  np.testing.assert_allclose(out[0, :, 10:].astype(int), 0, atol=2)
  np.testing.assert_allclose(out[1, :, 10:, 1].astype(int), 90, atol=2)


def test_crop_and_resize_same_size_is_a_plain_crop():
  rng = np.random.default_rng(0)
  frames = rng.integers(0, 256, size=(3, 30, 40, 3), dtype=np.uint8)
  out = crop_and_resize(frames, (5, 7, 16), 16)
  np.testing.assert_array_equal(out, frames[:, 5:21, 7:23])


def test_crop_and_resize_rejects_bad_input():
  frames = np.zeros((1, 30, 40, 3), np.uint8)
  with pytest.raises(ValueError, match=r"crop box \(20, 0, 16\) does not lie inside 30x40"):
    crop_and_resize(frames, (20, 0, 16), 8)
  with pytest.raises(ValueError, match=r"expected uint8 \(K, H, W, 3\) frames"):
    crop_and_resize(frames.astype(np.float32), (0, 0, 16), 8)


# --- depth_crop ---------------------------------------------------------------------------------

def test_depth_crop_synthetic():
  depth = np.zeros((3, 240, 320), np.uint16)
  depth[:, 100:140, 150:170] = 2000  # 40 x 20 foreground
  out = depth_crop(depth, 20)
  assert out.shape == (3, 20, 20, 1) and out.dtype == np.float32
  # The 40x40 square around the body: the body fills the middle half of the columns.
  np.testing.assert_allclose(out[0, :, 5:15, 0], 2000 / DEPTH_SCALE, rtol=1e-5)
  assert not out[0, :, :5].any() and not out[0, :, 15:].any()


def test_depth_crop_at_border_and_empty():
  depth = np.zeros((2, 240, 320), np.uint16)
  depth[:, 0:30, 0:10] = 4095
  out = depth_crop(depth, 10)
  np.testing.assert_allclose(out[0, :, :3, 0], 1.0)  # 30x30 square shifted to the corner
  empty = depth_crop(np.zeros((2, 240, 320), np.uint16), 8)
  assert empty.shape == (2, 8, 8, 1) and not empty.any()


def test_depth_crop_relative_spans_the_bodys_own_depth_range():
  depth = np.zeros((2, 240, 320), np.uint16)
  depth[:, 100:140, 150:170] = 3000  # the trunk
  depth[:, 100:140, 170:190] = 2500  # an arm half a metre nearer
  depth[1, 100:140, 190:210] = 3500  # a far part, only in frame 1
  out = depth_crop(depth, 60, "relative")  # 60 px crop square: no resampling
  assert out.shape == (2, 60, 60, 1) and out.dtype == np.float32
  # Crop rows 10..50 hold the body; columns 0..20 trunk, 20..40 arm, 40..60 the far part.
  np.testing.assert_allclose(out[0, 10:50, 20:40, 0], 1.0, atol=1e-6)  # nearest → 1
  np.testing.assert_allclose(out[1, 10:50, 40:60, 0], RELATIVE_FLOOR, atol=1e-6)  # farthest
  np.testing.assert_allclose(out[0, 10:50, 0:20, 0], 1 - (1 - RELATIVE_FLOOR) * 0.5, atol=1e-6)
  assert not out[:, :10].any() and not out[0, 10:50, 40:].any()  # background stays 0
  # A flat foreground is all "near", and an empty clip all zeros, without dividing by zero.
  flat = np.zeros((1, 240, 320), np.uint16)
  flat[:, 10:20, 10:20] = 2000
  np.testing.assert_allclose(depth_crop(flat, 10, "relative")[0, :, :, 0], 1.0)
  assert not depth_crop(np.zeros((1, 240, 320), np.uint16), 8, "relative").any()
  with pytest.raises(ValueError, match=r"depth values must be one of .*got 'metres'"):
    depth_crop(depth, 8, "metres")


def test_depth_crop_real_file():
  import scipy.io
  raw = scipy.io.loadmat(_data_file("utd_mhad", "Depth", "a1_s1_t1_depth.mat"))["d_depth"]
  depth = np.transpose(raw, (2, 0, 1))
  out = depth_crop(depth, 112)
  assert out.shape == (depth.shape[0], 112, 112, 1) and out.dtype == np.float32
  assert 0.0 <= out.min() and out.max() <= depth.max() / DEPTH_SCALE + 1e-6
  assert 0.1 < (out > 0).mean() < 0.9  # the crop is mostly body, unlike the full frame (~8 %)


def test_segment_means_average_consecutive_equal_segments():
  frames = np.arange(10, dtype=np.float32)[:, None, None] * np.ones((1, 2, 3), np.float32)
  out = segment_means(frames, 3)  # segments 0-2, 3-5, 6-9
  assert out.shape == (3, 2, 3) and out.dtype == np.float32
  np.testing.assert_allclose(out[:, 0, 0], [1.0, 4.0, 7.5])
  np.testing.assert_allclose(segment_means(frames, 10)[:, 0, 0], np.arange(10))
  np.testing.assert_allclose(segment_means(frames, 1)[:, 0, 0], [4.5])
  # Fewer frames than segments: each frame repeated in order, as the sampled clips do.
  np.testing.assert_allclose(segment_means(frames[:2], 4)[:, 0, 0], [0, 0, 1, 1])
  with pytest.raises(ValueError, match="k must be positive"):
    segment_means(frames, 0)
  with pytest.raises(ValueError, match="at least one frame"):
    segment_means(frames[:0], 2)


def test_spread_frame_indices_cover_the_whole_sequence():
  np.testing.assert_array_equal(spread_frame_indices(48, 10), [0, 4, 9, 14, 19, 24, 28, 33, 38, 43])
  np.testing.assert_array_equal(spread_frame_indices(50, 5), [0, 10, 20, 30, 40])
  np.testing.assert_array_equal(spread_frame_indices(3, 6), [0, 0, 1, 1, 2, 2])  # T < K: repeats
  for t in (41, 67, 125):  # the last K-th of the sequence is always reached
    assert spread_frame_indices(t, 16)[-1] >= t - t // 16 - 1
  with pytest.raises(ValueError, match="k > 0"):
    spread_frame_indices(10, 0)


def test_select_clip_frames_middle_of_each_group_without_rng():
  clip = np.arange(12, dtype=np.float32)[:, None, None, None] * np.ones((1, 2, 2, 1), np.float32)
  np.testing.assert_array_equal(select_clip_frames(clip, 4)[:, 0, 0, 0], [1, 4, 7, 10])
  np.testing.assert_array_equal(select_clip_frames(clip, 6)[:, 0, 0, 0], [0, 2, 4, 6, 8, 10])
  np.testing.assert_array_equal(select_clip_frames(clip, 12)[:, 0, 0, 0], np.arange(12))
  assert select_clip_frames(clip, 0) is clip


def test_select_clip_frames_draws_one_frame_per_group_reproducibly():
  clip = np.arange(48, dtype=np.float32)[:, None, None, None] * np.ones((1, 3, 3, 1), np.float32)
  draws = [select_clip_frames(clip, 16, np.random.default_rng(seed))[:, 0, 0, 0]
           for seed in range(20)]
  for frames in draws:
    assert frames.shape == (16,)
    np.testing.assert_array_equal(frames // 3, np.arange(16))  # one from each group of 3
  np.testing.assert_array_equal(draws[0], select_clip_frames(clip, 16, np.random.default_rng(0))[
      :, 0, 0, 0])
  offsets = np.stack(draws) % 3
  assert set(np.unique(offsets)) == {0, 1, 2}  # every offset of a group is drawn
  out = select_clip_frames(clip, 16, np.random.default_rng(0))
  assert out.shape == (16, 3, 3, 1) and out.dtype == clip.dtype


def test_select_clip_frames_crop_draws_increasing_frames_from_one_window_reproducibly():
  clip = np.arange(48, dtype=np.float32)[:, None, None, None] * np.ones((1, 2, 2, 1), np.float32)
  spans, starts = [], []
  for seed in range(200):
    frames = select_clip_frames(clip, 16, np.random.default_rng(seed), crop=0.5)[:, 0, 0, 0]
    assert frames.shape == (16,) and np.all(np.diff(frames) > 0)  # in order, none twice
    # The window holds 24–48 stored frames; its 16 groups then hold 1–3 frames each.
    assert 0 < frames[-1] - frames[0] < 48 and np.all(np.diff(frames) <= 5)
    spans.append(frames[-1] - frames[0])
    starts.append(frames[0])
    np.testing.assert_array_equal(
        frames, select_clip_frames(clip, 16, np.random.default_rng(seed), crop=0.5)[:, 0, 0, 0])
  assert min(spans) < 30 and max(spans) > 42  # windows of half to all the stored frames
  assert max(starts) > 10  # cut at the start too, not only at the end
  # A window of every stored frame (crop=1) is the uncropped draw's choice of groups.
  for seed in range(5):
    frames = select_clip_frames(clip, 16, np.random.default_rng(seed), crop=1.0)[:, 0, 0, 0]
    np.testing.assert_array_equal(frames // 3, np.arange(16))
  # Off by default, and the draw without crop is unchanged by the option.
  np.testing.assert_array_equal(select_clip_frames(clip, 16, np.random.default_rng(3), crop=0.0),
                                select_clip_frames(clip, 16, np.random.default_rng(3)))
  for kwargs in ({"crop": 1.5, "rng": np.random.default_rng(0)}, {"crop": 0.8}):
    with pytest.raises(ValueError, match=r"clip_augment.crop=.* must be in \[0, 1\]"):
      select_clip_frames(clip, 16, **kwargs)


def test_select_clip_frames_views_take_the_middles_of_equal_parts_of_each_group():
  clip = np.arange(16, dtype=np.float32)[:, None, None, None] * np.ones((1, 2, 2, 1), np.float32)
  three = select_clip_frames(clip[:12], 4, views=3)  # groups of 3: every stored frame once
  assert three.shape == (3, 4, 2, 2, 1)
  np.testing.assert_array_equal(three[..., 0, 0, 0], [[0, 3, 6, 9], [1, 4, 7, 10], [2, 5, 8, 11]])
  np.testing.assert_array_equal(select_clip_frames(clip, 4, views=2)[..., 0, 0, 0],
                                [[0, 4, 8, 12], [2, 6, 10, 14]])  # groups of 4, halves of 2
  # One view is the single middle clip, without a view axis.
  np.testing.assert_array_equal(select_clip_frames(clip, 4, views=1), select_clip_frames(clip, 4))
  for kwargs, message in (({"views": 5}, r"clip_views=5 must be in \[1, 4\]"),
                          ({"views": 0}, r"clip_views=0 must be in"),
                          ({"views": 2, "rng": np.random.default_rng(0)}, "1 when drawing")):
    with pytest.raises(ValueError, match=message):
      select_clip_frames(clip, 4, **kwargs)
  with pytest.raises(ValueError, match=r"clip_views=2 needs config.data.clip_frames > 0"):
    select_clip_frames(clip, 0, views=2)


def test_select_clip_frames_rejects_a_count_that_does_not_divide_the_clip():
  with pytest.raises(ValueError, match=r"config.data.clip_frames=5 must divide the 48 frames"):
    select_clip_frames(np.zeros((48, 2, 2, 1)), 5)


def test_offset_depth_moves_the_foreground_only_and_keeps_it_apart_from_the_background():
  clip = np.zeros((4, 6, 6, 1), np.float32)
  clip[:, 2:4, 2:4] = np.linspace(0.3, 0.6, 4, dtype=np.float32)[:, None, None, None]
  clip[0, 0, 0] = 0.5 / 4095  # a nearly-background edge pixel of the zoom's interpolation
  deltas = []
  for seed in range(50):
    out = offset_depth(clip, np.random.default_rng(seed), 0.03)
    assert out.shape == clip.shape and out.dtype == np.float32
    np.testing.assert_array_equal(out[clip == 0], 0.0)  # background untouched
    moved = out[:, 2:4, 2:4] - clip[:, 2:4, 2:4]
    np.testing.assert_allclose(moved, moved.flat[0], atol=1e-6)  # one δ for the whole clip
    assert abs(moved.flat[0]) <= 0.03 and out[0, 0, 0, 0] >= 1 / 4095  # never background
    deltas.append(float(moved.flat[0]))
    np.testing.assert_array_equal(out, offset_depth(clip, np.random.default_rng(seed), 0.03))
  assert min(deltas) < -0.02 and max(deltas) > 0.02  # nearer and farther
  assert offset_depth(clip, np.random.default_rng(0), 0.0) is clip  # off: nothing drawn
  with pytest.raises(ValueError, match=r"clip_augment.depth_offset must be in \[0, 1\)"):
    offset_depth(clip, np.random.default_rng(0), 1.0)


# --- the arms crop (UTD-MHAD depth_views="body_arms") ----------------------------------------

def _joints_at(pixels: np.ndarray, z: float = 2.5) -> np.ndarray:
  """(N, 2) (column, row) depth-map pixels -> camera-space joints at depth z that project there."""
  p = clips_module.UTD_DEPTH_PROJECTION
  x = (pixels[:, 0] - p["cx"]) * z / p["f"]
  y = (p["cy"] - pixels[:, 1]) * z / p["f"]
  return np.stack([x, y, np.full(len(pixels), z)], -1)


def test_project_utd_joints_inverts_the_pinhole_model():
  pixels = np.array([[10.0, 20.0], [160.0, 120.0], [300.0, 230.0]])
  np.testing.assert_allclose(clips_module.project_utd_joints(_joints_at(pixels, 2.9)), pixels,
                             atol=1e-9)
  assert np.isnan(clips_module.project_utd_joints(np.array([0.1, 0.2, 0.0]))).all()


def test_arms_box_frames_the_arm_joints_path_with_margin():
  xyz = np.zeros((2, 20, 3))
  xyz[..., 2] = 2.5
  # Arm joints span columns 100..140 and rows 50..80 over the two frames; the legs (12-19) lie
  # far outside and must not count.
  arm_pixels = np.full((2, 20, 2), [120.0, 60.0])
  arm_pixels[0, 11] = [100.0, 50.0]  # right hand, frame 0
  arm_pixels[1, 7] = [140.0, 80.0]  # left hand, frame 1
  arm_pixels[:, 12:] = [5.0, 235.0]
  xyz = _joints_at(arm_pixels.reshape(-1, 2)).reshape(2, 20, 3)
  top, left, side = clips_module.arms_box(xyz, (240, 320))
  assert side == round(40 * (1 + 2 * clips_module.ARMS_MARGIN))  # the longer side, 40 px
  assert (top, left) == (round(65 - side / 2), round(120 - side / 2))  # centred on the path
  # Near the border the square is shifted inside the frame; a joint without depth is ignored.
  corner = _joints_at(np.array([[2.0, 3.0], [30.0, 33.0]]))
  xyz_corner = np.broadcast_to(corner[0], (2, 20, 3)).copy()
  xyz_corner[1, 4] = corner[1]
  xyz_corner[1, 5] = [5.0, 5.0, 0.0]
  top, left, side = clips_module.arms_box(xyz_corner, (240, 320))
  assert (top, left) == (0, 0) and side == round(30 * (1 + 2 * clips_module.ARMS_MARGIN))
  assert clips_module.arms_box(np.zeros((3, 20, 3)), (240, 320)) is None
  with pytest.raises(ValueError, match=r"expected \(T, 20, 3\) UTD-MHAD joints"):
    clips_module.arms_box(np.zeros((3, 25, 3)), (240, 320))


def test_crop_depth_views_stacks_the_body_and_the_arms_crop():
  depth = np.zeros((3, 240, 320), np.uint16)
  depth[:, 40:220, 140:180] = 2500  # the body
  depth[:, 60:80, 180:220] = 2200  # an arm held out
  shoulder, hand = _joints_at(np.array([[150.0, 60.0], [215.0, 75.0]]))
  xyz = np.broadcast_to(shoulder, (3, 20, 3)).copy()
  xyz[:, 11] = hand  # the right hand at the arm's end
  out = clips_module.crop_depth_views(depth, xyz, 24, views="body_arms")
  assert out.shape == (3, 24, 24, 2) and out.dtype == np.float32
  np.testing.assert_array_equal(out[..., :1], depth_crop(depth, 24))
  box = clips_module.arms_box(xyz, (240, 320))
  np.testing.assert_array_equal(out[..., 1:], depth_crop(depth, 24, box=box))
  assert box[2] < 180 / 2  # the arms crop sees its region at over twice the body crop's scale
  np.testing.assert_array_equal(clips_module.crop_depth_views(depth, xyz, 24),
                                depth_crop(depth, 24))  # `body`: the one channel
  # Without joints in view the second channel repeats the body crop instead of failing.
  blind = clips_module.crop_depth_views(depth, np.zeros_like(xyz), 24, views="body_arms")
  np.testing.assert_array_equal(blind[..., 1:], blind[..., :1])
  with pytest.raises(ValueError, match=r"depth views must be one of .*got 'hands'"):
    clips_module.crop_depth_views(depth, xyz, 24, views="hands")
  with pytest.raises(ValueError, match=r"crop box \(230, 0, 20\) does not lie inside 240x320"):
    depth_crop(depth, 24, box=(230, 0, 20))


# --- augment_clip -------------------------------------------------------------------------------

def _clip(seed=0, k=4, side=16, channels=3):
  return np.random.default_rng(seed).integers(0, 256, size=(k, side, side, channels),
                                              dtype=np.uint8)


def test_augment_is_deterministic_and_keeps_shape():
  clip = _clip()
  a = augment_clip(clip, np.random.default_rng(42))
  b = augment_clip(clip, np.random.default_rng(42))
  assert a.shape == clip.shape and a.dtype == np.uint8
  np.testing.assert_array_equal(a, b)
  outs = {augment_clip(clip, np.random.default_rng(s)).tobytes() for s in range(8)}
  assert len(outs) > 1


def test_augment_disabled_is_identity():
  clip = _clip()
  out = augment_clip(clip, np.random.default_rng(0), rotate=False, flip=False, scale=None)
  np.testing.assert_array_equal(out, clip)
  assert out is not clip


def test_augment_rotation_is_a_right_angle_for_all_frames():
  clip = _clip()
  seen = set()
  for seed in range(20):
    out = augment_clip(clip, np.random.default_rng(seed), flip=False, scale=None)
    k = [q for q in range(4) if np.array_equal(out, np.rot90(clip, q, axes=(1, 2)))]
    assert len(k) == 1
    seen.add(k[0])
  assert seen == {0, 1, 2, 3}


def test_augment_flip_is_none_horizontal_or_vertical():
  clip = _clip()
  options = [clip, clip[:, :, ::-1], clip[:, ::-1]]
  seen = set()
  for seed in range(20):
    out = augment_clip(clip, np.random.default_rng(seed), rotate=False, scale=None)
    match = [i for i, o in enumerate(options) if np.array_equal(out, o)]
    assert len(match) == 1
    seen.add(match[0])
  assert seen == {0, 1, 2}


def test_augment_zoom_out_pads_with_zeros():
  clip = np.full((2, 16, 16, 1), 100, np.uint8)
  out = augment_clip(clip, np.random.default_rng(0), rotate=False, flip=False, scale=(0.5, 0.5))
  assert not out[:, :4].any() and not out[:, 12:].any() and not out[:, :, :4].any()
  np.testing.assert_array_equal(out[:, 4:12, 4:12], 100)


def test_augment_zoom_in_magnifies_the_centre():
  clip = np.zeros((1, 16, 16, 1), np.uint8)
  clip[0, 6:10, 6:10] = 255  # a 4x4 centre square
  out = augment_clip(clip, np.random.default_rng(0), rotate=False, flip=False, scale=(2.0, 2.0))
  # Doubled: the square covers the central 8x8 (bilinear edges aside).
  np.testing.assert_array_equal(out[0, 5:11, 5:11, 0], 255)
  assert not out[0, :3].any() and not out[0, 13:].any()


def test_shift_moves_the_content_and_fills_zeros():
  clip = np.zeros((2, 16, 16, 1), np.uint8)
  clip[:, 6:10, 6:10] = 200
  # 16 * 0.25 = up to 4 pixels either way; read the drawn shift back from the moved square.
  for seed in range(6):
    out = augment_clip(clip, np.random.default_rng(seed), rotate=False, flip=False, scale=None,
                       shift=0.25)
    dy, dx = np.random.default_rng(seed).uniform(-0.25, 0.25, size=2) * 16
    rows, cols = np.nonzero(out[0, ..., 0] > 100)
    assert abs(rows.mean() - (7.5 + dy)) < 0.5 and abs(cols.mean() - (7.5 + dx)) < 0.5
    np.testing.assert_array_equal(out[0], out[1])  # one transform for all frames
    assert out.shape == clip.shape and out.dtype == clip.dtype


def test_whole_pixel_shift_is_a_translation_with_zero_fill():
  clip = np.random.default_rng(0).uniform(size=(3, 12, 12, 1)).astype(np.float32)
  out = clips_module._zoom(clip, 1.0, dy=2.0, dx=-3.0)
  expected = np.zeros_like(clip)
  expected[:, 2:, :9] = clip[:, :10, 3:]
  np.testing.assert_allclose(out, expected, atol=1e-6)


def test_shift_zero_keeps_the_random_draws_of_zoom_only():
  clip = _clip()
  a = augment_clip(clip, np.random.default_rng(3), scale=(0.8, 1.2))
  b = augment_clip(clip, np.random.default_rng(3), scale=(0.8, 1.2), shift=0.0)
  np.testing.assert_array_equal(a, b)
  with pytest.raises(ValueError, match=r"shift must be in \[0, 0.5\)"):
    augment_clip(clip, np.random.default_rng(0), shift=0.7)


def test_augment_rejects_non_square():
  with pytest.raises(ValueError, match=r"expected square frames"):
    augment_clip(np.zeros((2, 8, 10, 3), np.uint8), np.random.default_rng(0))
