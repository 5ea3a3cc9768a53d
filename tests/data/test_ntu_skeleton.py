"""read_skeleton on the real NTU files and on every kind of malformed file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from amfi_jax.data.errors import DataFormatError
from amfi_jax.data.readers.ntu_skeleton import SkeletonSequence, read_skeleton

from tests.shared_data import shared_path


def _ntu_file(name: str) -> Path:
  return shared_path("ntu", name)


def _body_lines(body_id: int, offset: float) -> list[str]:
  lines = [f"{body_id} 0 1 1 1 1 0 0.5 -0.5 2", "25"]
  for j in range(25):
    v = offset + j
    lines.append(f"{v} {v + 0.25} {v + 0.5} 1 2 {1000 + j} {500 + j} 0 0 0 0 2")
  return lines


def _skeleton_text(bodies_per_frame: list[int], newline: str = "\r\n") -> str:
  """A well-formed file: frame t, body b has x of joint j = 100 t + 10 b + j."""
  lines = [str(len(bodies_per_frame))]
  for t, count in enumerate(bodies_per_frame):
    lines.append(str(count))
    for b in range(count):
      lines += _body_lines(72057594037927936 + b, 100 * t + 10 * b)
  return newline.join(lines) + newline


def _write(tmp_path: Path, text: str, name: str = "S001C001P001R001A001.skeleton") -> Path:
  path = tmp_path / name
  path.write_bytes(text.encode("latin-1"))
  return path


def _raises(path: Path, line: int | None, message: str) -> DataFormatError:
  with pytest.raises(DataFormatError) as info:
    read_skeleton(path)
  error = info.value
  assert error.path == str(path)
  assert error.line == line
  assert message in error.message, error.message
  prefix = f"{path}:{line}: " if line is not None else f"{path}: "
  assert str(error).startswith(prefix)
  return error


# --- real files ---------------------------------------------------------------------------------

def test_real_single_body_file():
  path = _ntu_file("S001C001P001R001A011.skeleton")
  seq = read_skeleton(path)
  assert isinstance(seq, SkeletonSequence)
  assert seq.path == str(path)
  assert seq.num_frames == 82
  assert seq.body_counts.dtype == np.int32
  np.testing.assert_array_equal(seq.body_counts, np.ones(82))
  assert seq.joints.shape == (82, 1, 25, 12) and seq.joints.dtype == np.float64
  assert seq.body_info.shape == (82, 1, 10) and seq.body_info.dtype == np.float64
  assert seq.body_ids[0] == (72057594037931648,)  # exact: beyond float64 precision in general
  assert len(seq.body_ids) == 82 and all(len(ids) == 1 for ids in seq.body_ids)
  # Line 3 (body line) and line 5 (first joint) of the file.
  np.testing.assert_array_equal(
      seq.body_info[0, 0, 1:], [0, 1, 1, 1, 1, 0, -0.1159187, 0.1413209, 2])
  np.testing.assert_array_equal(
      seq.joints[0, 0, 0],
      [0.2058097, 0.1920515, 3.810989, 276.0976, 190.0662, 1032.328, 514.0889, -0.1705678,
       0.04232755, 0.9718983, -0.1566168, 2])
  # Last line of the file: joint 25 of frame 82.
  np.testing.assert_array_equal(
      seq.joints[81, 0, 24],
      [0.09518377, 0.473689, 3.450333, 266.4491, 158.2272, 1006.19, 422.2212, 0, 0, 0, 0, 2])
  assert seq.xyz.shape == (82, 1, 25, 3)
  np.testing.assert_array_equal(seq.xyz[0, 0, 0], [0.2058097, 0.1920515, 3.810989])
  assert seq.color_xy.shape == (82, 1, 25, 2)
  np.testing.assert_array_equal(seq.color_xy[0, 0, 0], [1032.328, 514.0889])


def test_real_two_body_file():
  seq = read_skeleton(_ntu_file("S001C003P008R002A058.skeleton"))
  assert seq.num_frames == 70
  np.testing.assert_array_equal(seq.body_counts, np.full(70, 2))
  assert seq.joints.shape == (70, 2, 25, 12)
  assert seq.body_ids[0] == (72057594037944738, 72057594037944734)
  np.testing.assert_array_equal(seq.body_info[0, 1, 7:], [0.2471961, -0.2383252, 2])
  np.testing.assert_array_equal(
      seq.xyz[0, 0, 0], [0.7201789, 0.1647426, 3.561895])
  np.testing.assert_array_equal(
      seq.joints[69, 1, 24],
      [0.2655148, 0.1555307, 3.263833, 292.2507, 192.3344, 1057.807, 488.4189, 0, 0, 0, 0, 2])
  assert np.all(np.abs(seq.xyz).sum(axis=(2, 3)) > 0)  # both bodies present in every frame


def test_lf_and_crlf_agree(tmp_path):
  crlf = read_skeleton(_write(tmp_path, _skeleton_text([1, 2, 1], "\r\n"), "a.skeleton"))
  lf = read_skeleton(_write(tmp_path, _skeleton_text([1, 2, 1], "\n"), "b.skeleton"))
  np.testing.assert_array_equal(crlf.joints, lf.joints)
  np.testing.assert_array_equal(crlf.body_info, lf.body_info)
  assert crlf.body_ids == lf.body_ids


def test_frames_without_bodies_and_padding(tmp_path):
  seq = read_skeleton(_write(tmp_path, _skeleton_text([1, 0, 2, 0])))
  assert seq.num_frames == 4
  np.testing.assert_array_equal(seq.body_counts, [1, 0, 2, 0])
  assert seq.body_ids == ((72057594037927936,), (), (72057594037927936, 72057594037927937), ())
  assert seq.joints.shape == (4, 2, 25, 12)
  assert seq.xyz[0, 0, 3, 0] == 3  # frame 0, body 0, joint 4: 100*0 + 10*0 + 3
  assert seq.xyz[2, 1, 7, 0] == 217  # frame 2, body 1, joint 8
  assert seq.xyz[2, 1, 7, 2] == 217.5
  assert np.all(seq.joints[0, 1] == 0)  # slot beyond frame 0's single body
  assert np.all(seq.joints[1] == 0) and np.all(seq.joints[3] == 0)
  assert np.all(seq.body_info[1] == 0)


def test_no_bodies_at_all(tmp_path):
  seq = read_skeleton(_write(tmp_path, _skeleton_text([0, 0, 0])))
  assert seq.joints.shape == (3, 1, 25, 12)  # B is at least 1
  assert not seq.joints.any()
  assert seq.body_ids == ((), (), ())


def test_zero_frames_and_trailing_blank_lines(tmp_path):
  seq = read_skeleton(_write(tmp_path, "0\r\n\r\n  \r\n"))
  assert seq.num_frames == 0
  assert seq.joints.shape == (0, 1, 25, 12)
  assert seq.body_counts.shape == (0,)


def test_no_final_newline(tmp_path):
  seq = read_skeleton(_write(tmp_path, _skeleton_text([1]).rstrip("\r\n")))
  assert seq.joints[0, 0, 24, 11] == 2


# --- malformed files ----------------------------------------------------------------------------

def test_empty_file(tmp_path):
  _raises(_write(tmp_path, ""), 1, "empty file; expected the frame count")


def test_whitespace_only_file(tmp_path):
  _raises(_write(tmp_path, "\r\n \r\n"), 1, "empty file; expected the frame count")


def test_non_integer_frame_count(tmp_path):
  _raises(_write(tmp_path, "82.5\r\n1\r\n"), 1,
          "expected the frame count (one integer), got '82.5'")


def test_negative_frame_count(tmp_path):
  _raises(_write(tmp_path, "-3\r\n"), 1, "expected a non-negative frame count, got -3")


def test_frame_count_beyond_file(tmp_path):
  # An absurd count is reported at once (and allocates nothing).
  _raises(_write(tmp_path, "1000000000\r\n0\r\n0\r\n"), 4,
          "truncated file: frame count 1000000000 needs at least 1000000000 more lines, "
          "the file has 2")


def test_truncated_missing_frames(tmp_path):
  # The header promises 3 frames, the file holds 2 (lines 2-29 and line 30); line 31 is missing.
  text = _skeleton_text([1, 0]).replace("2\r\n", "3\r\n", 1)
  _raises(_write(tmp_path, text), 31, "truncated file: expected the body count of frame 3")


def test_truncated_inside_joint_block(tmp_path):
  lines = _skeleton_text([1, 1]).split("\r\n")
  text = "\r\n".join(lines[:40]) + "\r\n"  # frame 2's body stops after 8 of its joint lines
  _raises(_write(tmp_path, text), 41,
          "truncated file: expected 25 joint lines for body 1 in frame 2")


def test_truncated_after_body_line(tmp_path):
  lines = _skeleton_text([1]).split("\r\n")
  _raises(_write(tmp_path, "\r\n".join(lines[:3]) + "\r\n"), 4,
          "truncated file: expected the joint count of body 1 in frame 1")


def test_non_numeric_joint_value(tmp_path):
  lines = _skeleton_text([1, 1]).split("\r\n")
  lines[34] = lines[34].replace(" 1 2 ", " 1 abc ", 1)  # frame 2, joint 3
  error = _raises(_write(tmp_path, "\r\n".join(lines)), 35,
                  "non-numeric value 'abc' in column 5 of a joint line (expected 12 numbers)")
  assert str(error) == (f"{error.path}:35: non-numeric value 'abc' in column 5 of a joint line "
                        "(expected 12 numbers)")


@pytest.mark.parametrize("token", ["nan", "inf", "-Infinity"])
def test_non_finite_joint_value(tmp_path, token):
  lines = _skeleton_text([1, 1]).split("\r\n")
  lines[34] = lines[34].replace(" 1 2 ", f" 1 {token} ", 1)  # frame 2, joint 3
  _raises(_write(tmp_path, "\r\n".join(lines)), 35, "non-finite value")


def test_non_numeric_body_value(tmp_path):
  lines = _skeleton_text([1]).split("\r\n")
  lines[2] = lines[2].replace("0.5", "nope")
  _raises(_write(tmp_path, "\r\n".join(lines)), 3,
          "non-numeric value 'nope' in column 8 of a body line (expected 10 numbers)")


def test_non_integer_body_id(tmp_path):
  lines = _skeleton_text([1]).split("\r\n")
  lines[2] = "7.2e16" + lines[2][len("72057594037927936"):]
  _raises(_write(tmp_path, "\r\n".join(lines)), 3, "expected an integer bodyID, got '7.2e16'")


def test_wrong_joint_count(tmp_path):
  lines = _skeleton_text([1]).split("\r\n")
  lines[3] = "24"
  _raises(_write(tmp_path, "\r\n".join(lines)), 4, "expected joint count 25, got 24")


def test_joint_line_with_too_few_values(tmp_path):
  lines = _skeleton_text([1, 1]).split("\r\n")
  lines[50] = lines[50].rsplit(" ", 1)[0]  # drop trackingState of frame 2, joint 19
  _raises(_write(tmp_path, "\r\n".join(lines)), 51, "expected 12 values on a joint line, got 11")


def test_joint_line_with_too_many_values(tmp_path):
  lines = _skeleton_text([1]).split("\r\n")
  lines[4] += " 7"
  _raises(_write(tmp_path, "\r\n".join(lines)), 5, "expected 12 values on a joint line, got 13")


def test_body_line_with_wrong_value_count(tmp_path):
  lines = _skeleton_text([2]).split("\r\n")
  lines[29] = lines[29].rsplit(" ", 1)[0]  # the second body's line
  _raises(_write(tmp_path, "\r\n".join(lines)), 30, "expected 10 values on a body line, got 9")


def test_negative_body_count(tmp_path):
  text = _skeleton_text([1, 0]).replace("\r\n0\r\n", "\r\n-1\r\n")
  _raises(_write(tmp_path, text), 30, "expected a body count 0-6 for frame 2, got -1")


def test_absurd_body_count(tmp_path):
  _raises(_write(tmp_path, "1\r\n72057594037927936\r\n"), 2,
          "expected a body count 0-6 for frame 1, got 72057594037927936")


def test_blank_line_inside_file(tmp_path):
  lines = _skeleton_text([1, 1]).split("\r\n")
  lines.insert(29, "")  # before frame 2's body count
  _raises(_write(tmp_path, "\r\n".join(lines)), 30,
          "expected the body count of frame 2 (one integer), got ''")


def test_trailing_garbage(tmp_path):
  text = _skeleton_text([1, 1]) + "\r\n1\r\n"
  _raises(_write(tmp_path, text), 59, "unexpected content after the last of 2 frames: '1'")


# --- samples without a skeleton (legal files, but no answer can come from them) ----------------

@pytest.mark.parametrize("bodies,message", [([], "the frame count is 0"),
                                            ([0, 0, 0], "no body in any of its 3 frames")])
def test_sample_without_skeleton_is_refused(tmp_path, bodies, message):
  from amfi_jax.data.preprocessing.samples import read_ntu_sample
  path = _write(tmp_path, _skeleton_text(bodies))
  with pytest.raises(DataFormatError, match=message):
    read_ntu_sample(str(path), None, max_frames=8)
