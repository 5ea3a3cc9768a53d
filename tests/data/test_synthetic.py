"""Tests of the synthetic NTU generator: file format, determinism, geometry and class design."""

from __future__ import annotations

import dataclasses
import os
import re

import av
import numpy as np
import pytest

from amfi_jax.data.generator import synthetic
from amfi_jax.data.generator import motion as sm
from amfi_jax.data.generator import render as sr

try:
  from amfi_jax.data.readers import ntu_skeleton
except ImportError:  # the project reader is written in parallel; the local reader still runs
  ntu_skeleton = None

TINY = synthetic.SyntheticConfig(
    num_classes=8, performers=(1,), cameras=(1, 2), replications=(1,), frames=(12, 16),
    width=160, height=90, seed=3, zero_body_fraction=0.5)

# The class-design tests use realistic clip lengths and the default video size.
DESIGN = dataclasses.replace(TINY, frames=(40, 48), width=320, height=180)

# C#'s "G7" as the Kinect tool wrote NTU: 7 significant digits, no trailing zeros, exponent
# (E-05 style) only for tiny magnitudes.
_NUMBER = re.compile(r"^-?(0|[1-9]\d*)(\.\d*[1-9])?(E[-+]\d\d)?$|^-?0\.\d*[1-9](E[-+]\d\d)?$")


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("synthetic"))
  summary = synthetic.generate(out, TINY, verbose=False)
  return out, summary


def _skeleton_path(out, name):
  return os.path.join(out, synthetic.SKELETON_DIR, f"{name}.skeleton")


def _video_path(out, name):
  return os.path.join(out, synthetic.RGB_DIR, f"{name}_rgb.avi")


def _read_bytes(path):
  with open(path, "rb") as f:
    return f.read()


def _decode(path):
  with av.open(path) as container:
    return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def _local_read(path):
  """A minimal independent reader: (body_counts, [(info (10,), joints (25, 12)) per body])."""
  lines = _read_bytes(path).decode("ascii").split("\r\n")
  assert lines[-1] == "", "the last line must end in CRLF"
  lines.pop()
  pos = 0
  num_frames = int(lines[pos])
  pos += 1
  counts, frames = [], []
  for _ in range(num_frames):
    count = int(lines[pos])
    pos += 1
    bodies = []
    for _ in range(count):
      info = lines[pos].split(" ")
      assert len(info) == 10, lines[pos]
      assert lines[pos + 1] == "25"
      rows = [lines[pos + 2 + k].split(" ") for k in range(25)]
      assert all(len(r) == 12 for r in rows)
      bodies.append((info, rows))
      pos += 27
    counts.append(count)
    frames.append(bodies)
  assert pos == len(lines), "content after the last frame"
  return counts, frames


def test_layout_names_and_class_file(generated):
  out, summary = generated
  expected = sorted(
      f"S001C{c:03d}P001R001A{a:03d}" for c in (1, 2) for a in range(1, 9))
  assert summary.sample_names == expected
  assert summary.class_names == synthetic.class_names(8)
  assert sorted(os.listdir(os.path.join(out, synthetic.SKELETON_DIR))) == [
      f"{n}.skeleton" for n in expected]
  assert sorted(os.listdir(os.path.join(out, synthetic.RGB_DIR))) == [
      f"{n}_rgb.avi" for n in expected]
  with open(os.path.join(out, synthetic.CLASS_NAMES_FILE)) as f:
    assert f.read().splitlines() == [c.name for c in synthetic.CLASSES]
  assert synthetic.parse_name("S017C003P040R002A060") == (17, 3, 40, 2, 60)
  with pytest.raises(ValueError):
    synthetic.parse_name("S017C003P040R002X060")


def test_skeleton_files_have_exact_ntu_structure(generated):
  out, summary = generated
  saw_empty_frame = saw_two_bodies = False
  for name in summary.sample_names:
    raw = _read_bytes(_skeleton_path(out, name))
    assert raw.count(b"\n") == raw.count(b"\r\n"), "every line must end in CRLF"
    assert raw.endswith(b"\r\n") and not raw.endswith(b"\r\n\r\n")
    counts, frames = _local_read(_skeleton_path(out, name))
    assert TINY.frames[0] <= len(counts) <= TINY.frames[1]
    spec = synthetic.CLASSES[synthetic.parse_name(name)[4] - 1]
    assert set(counts) <= {0, spec.persons}
    saw_empty_frame |= counts[0] == 0
    saw_two_bodies |= spec.persons == 2
    # Frames without bodies only at the start, as when tracking starts late.
    first = counts.index(spec.persons)
    assert all(c == spec.persons for c in counts[first:])
    for bodies in frames:
      for info, rows in bodies:
        assert int(info[0]) > synthetic.BODY_ID_BASE
        assert all(_NUMBER.match(v) for v in info), info
        assert info[9] == "2"
        for row in rows:
          assert all(_NUMBER.match(v) for v in row), row
          assert row[11] in ("1", "2")
  assert saw_empty_frame and saw_two_bodies


def test_number_formatting_matches_kinect_tool():
  sample = synthetic.simulate("S001C001P001R001A001", TINY)
  joints = np.zeros_like(sample.joints)
  joints[..., 0] = -7.257856e-05
  joints[..., 1] = 3.6325310
  joints[..., 2] = -0.0
  joints[..., 3] = 1040.7589
  joints[..., 11] = 2
  text = synthetic.skeleton_text(dataclasses.replace(sample, joints=joints))
  t = int(np.argmax(sample.body_counts > 0))
  line = text.split("\r\n")[1 + (t + 1) + t * 27 + 2]  # past the counts and the body line
  assert line.startswith("-7.257856E-05 3.632531 0 1040.759 0 0 0 0 0 0 0 2"), line


@pytest.mark.parametrize("reader", ["local", "project"])
def test_round_trip_values(generated, reader):
  out, summary = generated
  if reader == "project" and ntu_skeleton is None:
    pytest.skip("amfi_jax.data.readers.ntu_skeleton is not available")
  for name in summary.sample_names[::3]:
    sample = synthetic.simulate(name, TINY)
    path = _skeleton_path(out, name)
    if reader == "project":
      seq = ntu_skeleton.read_skeleton(path)
      np.testing.assert_array_equal(seq.body_counts, sample.body_counts)
      joints, info = seq.joints, seq.body_info
      for t, ids in enumerate(seq.body_ids):
        assert list(ids) == [int(i) for i in sample.body_ids[:sample.body_counts[t]]]
    else:
      counts, frames = _local_read(path)
      np.testing.assert_array_equal(counts, sample.body_counts)
      joints = np.zeros_like(sample.joints)
      info = np.zeros_like(sample.body_info)
      for t, bodies in enumerate(frames):
        for b, (line, rows) in enumerate(bodies):
          assert int(line[0]) == sample.body_ids[b]  # exact: ids exceed float precision
          info[t, b] = [float(v) for v in line]
          joints[t, b] = [[float(v) for v in r] for r in rows]
    present = sample.body_counts > 0
    np.testing.assert_allclose(joints[present], sample.joints[present], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(info[present][..., 1:], sample.body_info[present][..., 1:],
                               rtol=1e-6, atol=1e-6)


def test_geometry_is_plausible(generated):
  out, summary = generated
  for name in summary.sample_names:
    sample = synthetic.simulate(name, TINY)
    present = sample.body_counts > 0
    xyz = sample.xyz[present]
    assert 2.2 < xyz[..., 2].min() and xyz[..., 2].max() < 4.6  # metres in front of the Kinect
    colour = sample.color_xy[present]
    assert (colour >= 0).all() and (colour[..., 0] < 1920).all() and (colour[..., 1] < 1080).all()
    depth = sample.joints[present][..., 3:5]
    assert (depth >= 0).all() and (depth[..., 0] < 512).all() and (depth[..., 1] < 424).all()
    # Bone lengths are those of a person, and stable over time (noise is millimetres).
    forearm = np.linalg.norm(xyz[:, :, sm.R_WRIST] - xyz[:, :, sm.R_ELBOW], axis=-1)
    assert (0.18 < forearm.mean(0)).all() and (forearm.mean(0) < 0.33).all()
    assert forearm.std(0).max() < 0.02
    # Camera-space convention of the real files: facing the camera, the right shoulder has the
    # larger x, and the head is above the spine base.
    assert (xyz[:, :, sm.HEAD, 1] > xyz[:, :, sm.SPINE_BASE, 1]).all()


def test_performers_keep_their_body_across_samples():
  a = synthetic.simulate("S001C001P001R001A001", TINY)
  b = synthetic.simulate("S001C002P001R002A006", TINY)
  c = synthetic.simulate("S001C001P002R001A001", TINY)
  assert a.people[0].body == b.people[0].body
  assert a.people[0].body != c.people[0].body


def test_video_decodes_with_right_format(generated):
  out, summary = generated
  for name in summary.sample_names[:3] + summary.sample_names[-2:]:
    sample = synthetic.simulate(name, TINY)
    with av.open(_video_path(out, name)) as container:
      assert container.format.name == "avi"
      stream = container.streams.video[0]
      assert stream.codec_context.name == "h264"
      assert stream.codec_context.pix_fmt == "yuv420p"
      assert (stream.width, stream.height) == (TINY.width, TINY.height)
      assert stream.average_rate == 30
      count = sum(1 for _ in container.decode(video=0))
    assert count == sample.num_frames


def test_projected_joints_land_on_the_drawn_person(generated):
  out, _ = generated
  scale = np.array([TINY.width / 1920, TINY.height / 1080])
  for name in ("S001C001P001R001A003", "S001C002P001R001A007"):
    sample = synthetic.simulate(name, TINY)
    frames = _decode(_video_path(out, name)).astype(np.float32)
    setup, camera = synthetic.parse_name(name)[:2]
    gain = sample.lighting.gain * np.array(sample.lighting.tint)
    empty = sr.background(TINY.seed, setup, camera, TINY.width, TINY.height) * gain
    diff = np.abs(frames - empty[None]).mean(-1)  # (T, H, W)
    on, off = [], []
    yy, xx = np.mgrid[0:TINY.height, 0:TINY.width]
    for t in np.flatnonzero(sample.body_counts > 0):
      pixels = sample.color_xy[t, :sample.body_counts[t]].reshape(-1, 2) * scale
      for joint in (sm.SPINE_MID, sm.HEAD, sm.SPINE_SHOULDER):
        for b in range(sample.body_counts[t]):
          x, y = (sample.color_xy[t, b, joint] * scale).astype(int)
          assert 0 <= x < TINY.width and 0 <= y < TINY.height
          on.append(diff[t, y, x])
      far = np.min((xx[..., None] - pixels[:, 0]) ** 2 + (yy[..., None] - pixels[:, 1]) ** 2, -1)
      off.append(diff[t][far > 30 ** 2 * (TINY.width / 320) ** 2].mean())
    assert np.median(on) > 15, np.median(on)
    assert np.mean(off) < 4, np.mean(off)


def test_same_seed_is_reproducible_in_any_worker_count_and_subsets_match(generated, tmp_path):
  out, summary = generated
  subset = [summary.sample_names[1], summary.sample_names[-1]]
  # Two worker processes write the same files as the fixture's one.
  again = synthetic.generate(str(tmp_path / "again"), dataclasses.replace(TINY, workers=2),
                             names=subset, verbose=False)
  assert again.sample_names == sorted(subset)
  for name in subset:
    assert _read_bytes(_skeleton_path(out, name)) == _read_bytes(
        _skeleton_path(str(tmp_path / "again"), name))
    np.testing.assert_array_equal(_decode(_video_path(out, name)),
                                  _decode(_video_path(str(tmp_path / "again"), name)))
  other = dataclasses.replace(TINY, seed=TINY.seed + 1, modalities=("skeleton",))
  synthetic.generate(str(tmp_path / "other"), other, names=subset, verbose=False)
  assert not os.path.exists(tmp_path / "other" / synthetic.RGB_DIR)
  for name in subset:
    assert _read_bytes(_skeleton_path(out, name)) != _read_bytes(
        _skeleton_path(str(tmp_path / "other"), name))


def _cue_fraction(frames_i420, prop):
  """Fraction of pixels over a clip that have the hue of a prop (robust to shading/exposure)."""
  rgb = np.stack([sr.yuv420p_to_rgb(f) for f in frames_i420]).astype(np.float32)
  r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
  if prop == "red_cup":
    mask = (r > 70) & (r > 1.8 * g) & (r > 1.8 * b)
  elif prop == "blue_cup":
    mask = (b > 70) & (b > 1.8 * r) & (b > 1.4 * g)
  else:  # yellow
    mask = (r > 110) & (g > 90) & (r > 2.0 * b) & (g > 1.8 * b)
  return mask.mean()


@pytest.mark.parametrize("pair,props", [((1, 2), ("red_cup", "blue_cup")),
                                        ((5, 6), ("yellow_hat", None))])
def test_rgb_only_pairs_share_the_skeleton_and_differ_in_colour(pair, props):
  for key in ("k0", "k1", "k2"):
    a, b = (synthetic.simulate(f"S001C001P003R002A{action:03d}", DESIGN, rng_key=key)
            for action in pair)
    # Same random key: the skeleton-generating process is the same code with the same numbers.
    np.testing.assert_array_equal(a.joints, b.joints)
    assert synthetic.skeleton_text(a) == synthetic.skeleton_text(b)
    frames_a = list(synthetic.render_sample(a, DESIGN))
    frames_b = list(synthetic.render_sample(b, DESIGN))
    # Each prop covers at least 0.15 % of the frame (~20 pixels of the demo's 48 × 48 clips):
    # props of 0.07-0.18 % (the cups at 0.07 %) left the demo's RGB stream confusing the twins.
    cue_a = _cue_fraction(frames_a, props[0])
    assert cue_a > 1.5e-3 and _cue_fraction(frames_b, props[0]) < cue_a / 10
    if props[1] is not None:
      cue_b = _cue_fraction(frames_b, props[1])
      assert cue_b > 1.5e-3 and _cue_fraction(frames_a, props[1]) < cue_b / 10
  # Different keys do change the motion (the equality above is not trivially true).
  c = synthetic.simulate(f"S001C001P003R002A{pair[0]:03d}", DESIGN, rng_key="k9")
  assert not np.array_equal(a.xyz[:4], c.xyz[:4])


@pytest.mark.parametrize("pair,chain", [
    ((3, 4), (sm.R_HAND_TIP, sm.R_HAND, sm.R_WRIST)),
    ((7, 8), (sm.R_FOOT, sm.R_ANKLE, sm.R_KNEE))])
def test_skeleton_only_pairs_render_identically_and_differ_in_motion(pair, chain):
  fine = [sm.L_HAND_TIP, sm.L_THUMB, sm.R_HAND_TIP, sm.R_THUMB, sm.L_FOOT, sm.R_FOOT]
  coarse = [j for j in range(sm.NUM_JOINTS) if j not in fine]
  ratios = []
  for key in ("k0", "k1", "k2"):
    still, moving = (synthetic.simulate(f"S001C002P006R001A{action:03d}", DESIGN, rng_key=key)
                     for action in pair)
    frames_still = list(synthetic.render_sample(still, DESIGN))
    frames_moving = list(synthetic.render_sample(moving, DESIGN))
    assert len(frames_still) == len(frames_moving)
    for x, y in zip(frames_still, frames_moving):
      np.testing.assert_array_equal(x, y)
    # Every position but fingers and toes is the same in the files too (orientations of hands
    # and ankles follow their fingers and toes, as the Kinect's do).
    positions = [0, 1, 2, 3, 4, 5, 6, 11]
    np.testing.assert_array_equal(still.joints[:, :, coarse][..., positions],
                                  moving.joints[:, :, coarse][..., positions])

    # The finger (toe) bends at the hand (ankle) only when it moves: the joint angle is constant
    # to a hundredth of a radian in the clean pose of the still class, and varies well above
    # the sensor noise in the files of the moving one.
    def spread(xyz):
      end, joint, parent = (xyz[..., j, :] for j in chain)
      a, b = end - joint, parent - joint
      cos = np.sum(a * b, -1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
      return np.arccos(np.clip(cos, -1, 1)).std(0)

    assert spread(still.people[0].joints) < 0.01
    assert spread(moving.people[0].joints) > 0.1
    present = moving.body_counts > 0
    ratios.append(spread(moving.xyz[present]).max() / spread(still.xyz[present]).max())
  assert min(ratios) > 1.5, ratios


def test_class_table_is_consistent():
  assert len({c.name for c in synthetic.CLASSES}) == len(synthetic.CLASSES)
  for action, spec in enumerate(synthetic.CLASSES, start=1):
    twin = synthetic.CLASSES[spec.twin - 1]
    assert twin.twin == action and twin.seen_by == spec.seen_by
    assert (twin.program, twin.persons) == (spec.program, spec.persons)
    if spec.seen_by == "rgb":
      assert spec.fine == twin.fine and spec.prop != twin.prop
    else:
      assert spec.prop == twin.prop and spec.fine != twin.fine


def test_config_validation():
  with pytest.raises(ValueError, match="even"):
    synthetic.SyntheticConfig(width=321)
  with pytest.raises(ValueError, match="cameras"):
    synthetic.SyntheticConfig(cameras=(4,))
  with pytest.raises(ValueError, match="num_classes"):
    synthetic.SyntheticConfig(num_classes=9)
  with pytest.raises(ValueError, match="frames"):
    synthetic.SyntheticConfig(frames=(30, 20))


def test_cli(tmp_path, capsys):
  with pytest.raises(SystemExit) as exit_info:
    synthetic.main(["--help"])
  assert exit_info.value.code == 0
  assert "--full_size" in capsys.readouterr().out
  assert synthetic.main(["--out", str(tmp_path), "--width", "33"]) == 2
  code = synthetic.main([
      f"--out={tmp_path}", "--num_classes=2", "--performers=2", "--cameras=3",
      "--replications=1-2", "--frames=10", "--modalities=skeleton", "--workers=1"])
  assert code == 0
  assert "4/4 samples" in capsys.readouterr().out
  files = sorted(os.listdir(tmp_path / synthetic.SKELETON_DIR))
  assert files == [f"S001C003P002R00{r}A00{a}.skeleton" for r in (1, 2) for a in (1, 2)]
  counts, _ = _local_read(str(tmp_path / synthetic.SKELETON_DIR / files[0]))
  assert len(counts) == 10
