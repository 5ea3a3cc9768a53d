"""NTU metadata: sample names, class names, splits and the missing-skeleton lists."""

from __future__ import annotations

from pathlib import Path

import pytest

from amfi_jax.data.readers import ntu
from amfi_jax.data.errors import DataFormatError

from tests.shared_data import shared_path


def _ntu_file(name: str) -> Path:
  return shared_path("ntu", name)


def test_parse_bare_name():
  s = ntu.parse_sample_name("S001C002P003R002A013")
  assert (s.setup, s.camera, s.performer, s.replication, s.action) == (1, 2, 3, 2, 13)
  assert s.label == 12
  assert s.name == "S001C002P003R002A013"
  assert str(s) == s.name


@pytest.mark.parametrize("given", [
    "/data/nturgb+d_skeletons/S017C003P020R001A120.skeleton",
    "S017C003P020R001A120_rgb.avi",
    Path("rgb") / "S017C003P020R001A120_rgb.avi",
])
def test_parse_file_names(given):
  s = ntu.parse_sample_name(given)
  assert s == ntu.SampleName(setup=17, camera=3, performer=20, replication=1, action=120)
  assert s.label == 119


def test_sample_name_is_hashable_and_frozen():
  s = ntu.parse_sample_name("S001C001P001R001A001")
  assert {s: 1}[ntu.SampleName(1, 1, 1, 1, 1)] == 1
  with pytest.raises(AttributeError):
    s.action = 2  # type: ignore[misc]


@pytest.mark.parametrize("bad", [
    "S001C001P001R001A01",  # two-digit field
    "s001c001p001r001a001",  # lower case
    "S001C001P001R001A001.txt",  # unknown ending
    "S001C001P001R001A001_depth.avi",
    "",
])
def test_parse_rejects_wrong_pattern(bad):
  with pytest.raises(DataFormatError) as info:
    ntu.parse_sample_name(bad)
  assert info.value.path == bad
  assert info.value.line is None
  assert "expected an NTU sample name SsssCcccPpppRrrrAaaa" in str(info.value)
  assert str(info.value).startswith(f"{bad}: ")


def test_parse_rejects_camera_out_of_range():
  with pytest.raises(DataFormatError, match=r"^S001C004P001R001A001: expected camera 1-3, got 4$"):
    ntu.parse_sample_name("S001C004P001R001A001")


def test_parse_rejects_zero_fields():
  with pytest.raises(DataFormatError,
                     match=r"^S000C001P000R001A001: expected 1-based fields, got 0 for setup, "
                     r"performer$"):
    ntu.parse_sample_name("S000C001P000R001A001")


def test_parse_rejects_action_above_120():
  with pytest.raises(DataFormatError,
                     match=r"^x/S001C001P001R001A121.skeleton: expected action 1-120, got 121$"):
    ntu.parse_sample_name("x/S001C001P001R001A121.skeleton")


def test_parse_rejects_setup_above_32():
  with pytest.raises(DataFormatError, match=r"expected setup 1-32, got 33"):
    ntu.parse_sample_name("S033C001P001R001A001")


def test_class_names():
  assert len(ntu.NTU60_CLASS_NAMES) == 60
  assert len(ntu.NTU120_CLASS_NAMES) == 120
  assert ntu.NTU120_CLASS_NAMES[:60] == ntu.NTU60_CLASS_NAMES
  assert len(set(ntu.NTU120_CLASS_NAMES)) == 120
  names = ntu.NTU120_CLASS_NAMES
  assert names[0] == "drink water"
  assert names[1] == "eat meal/snack"
  assert names[10] == "reading"  # A11, the action of S001C001P001R001A011
  assert names[57] == "handshaking"  # A58
  assert names[58] == "walking towards each other"  # A59
  assert names[59] == "walking apart from each other"  # A60
  assert names[60] == "put on headphone"  # A61
  assert names[119] == "finger-guessing game (playing rock-paper-scissors)"
  assert all(n == n.strip() and not n.endswith(".") and "’" not in n for n in names)


def test_label_indexes_class_names():
  s = ntu.parse_sample_name("S001C003P008R002A058")
  assert ntu.NTU60_CLASS_NAMES[s.label] == "handshaking"


def test_training_sets():
  assert len(ntu.XSUB_TRAIN_PERFORMERS) == 20
  # NTU-120 cross-subject: 53 training subjects (Liu et al., TPAMI 2019).
  assert len(ntu.XSUB120_TRAIN_PERFORMERS) == 53
  assert ntu.XSUB_TRAIN_PERFORMERS < ntu.XSUB120_TRAIN_PERFORMERS
  assert {52, 59, 80, 86, 91, 95, 103} <= ntu.XSUB120_TRAIN_PERFORMERS
  assert not {3, 51, 60, 87, 90, 96, 99, 104, 106} & ntu.XSUB120_TRAIN_PERFORMERS


@pytest.mark.parametrize("name, protocol, expected", [
    ("S001C001P001R001A001", "xsub", "train"),
    ("S001C001P003R001A001", "xsub", "test"),
    ("S001C001P038R001A001", "xsub", "train"),
    ("S001C001P045R001A001", "xsub", "test"),  # NTU-120 training subject, not in NTU-60 xsub
    ("S001C001P001R001A001", "xview", "test"),
    ("S001C002P001R001A001", "xview", "train"),
    ("S001C003P003R001A001", "xview", "train"),
    ("S020C001P045R001A001", "xsub120", "train"),
    ("S020C001P044R001A001", "xsub120", "test"),
    ("S001C001P001R001A001", "xsub120", "train"),
    ("S002C001P003R001A001", "xset", "train"),
    ("S001C001P001R001A001", "xset", "test"),
    ("S032C001P001R001A001", "xset", "train"),
])
def test_split_of(name, protocol, expected):
  assert ntu.split_of(ntu.parse_sample_name(name), protocol) == expected


def test_split_of_unknown_protocol():
  with pytest.raises(ValueError) as info:
    ntu.split_of(ntu.parse_sample_name("S001C001P001R001A001"), "cross-view")
  message = str(info.value)
  assert "'cross-view'" in message
  for protocol in ("xsub", "xview", "xsub120", "xset"):
    assert protocol in message


def test_read_missing_skeletons_real_files():
  ntu60 = ntu.read_missing_skeletons(_ntu_file("NTU_RGBD_samples_with_missing_skeletons.txt"))
  ntu120 = ntu.read_missing_skeletons(_ntu_file("NTU_RGBD120_samples_with_missing_skeletons.txt"))
  assert len(ntu60) == 302
  assert len(ntu120) == 535
  assert "S001C002P005R002A008" in ntu60
  assert "S017C003P020R001A059" in ntu60
  assert ntu60 <= ntu120
  assert max(ntu.parse_sample_name(n).setup for n in ntu60) <= 17
  assert min(ntu.parse_sample_name(n).setup for n in ntu120 - ntu60) > 17
  # The two real skeleton files are usable samples.
  assert not {"S001C001P001R001A011", "S001C003P008R002A058"} & ntu120


def test_read_missing_skeletons_header_blank_lines_crlf(tmp_path):
  path = tmp_path / "missing.txt"
  path.write_bytes(b"Samples with missing skeletons\r\n=====\r\n\r\nS001C002P005R002A008\r\n"
                   b"\r\nS001C002P006R001A008\r\nS001C002P006R001A008\r\n\r\n")
  assert ntu.read_missing_skeletons(path) == {"S001C002P005R002A008", "S001C002P006R001A008"}


def test_read_missing_skeletons_bad_line(tmp_path):
  path = tmp_path / "missing.txt"
  path.write_text("header\nheader 2\nS001C002P005R002A008\nS001C002P005R002A08\n")
  with pytest.raises(DataFormatError) as info:
    ntu.read_missing_skeletons(path)
  assert info.value.line == 4
  assert str(info.value) == (f"{path}:4: expected a sample name SsssCcccPpppRrrrAaaa, "
                             "got 'S001C002P005R002A08'")


def test_read_missing_skeletons_invalid_name(tmp_path):
  path = tmp_path / "missing.txt"
  path.write_text("S001C002P005R002A008\nS001C009P005R002A008\n")
  with pytest.raises(DataFormatError, match=r":2: expected camera 1-3, got 9$") as info:
    ntu.read_missing_skeletons(path)
  assert info.value.path == str(path)


def test_read_missing_skeletons_no_names(tmp_path):
  path = tmp_path / "missing.txt"
  path.write_text("header\n\n")
  with pytest.raises(DataFormatError, match=r"expected at least one sample name, found none"):
    ntu.read_missing_skeletons(path)
