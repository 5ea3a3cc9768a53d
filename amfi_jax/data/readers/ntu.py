"""NTU RGB+D 60 / 120 metadata: sample names, action names, evaluation splits, exclusion lists.

Facts from SPEC §3.1 and the dataset's official README (github.com/shahroudy/NTURGB-D).
"""

from __future__ import annotations

import dataclasses
import os
import re

from amfi_jax.data.errors import DataFormatError

_NAME_RE = re.compile(r"S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})")
# File-name endings that carry a sample name; the bare name is accepted too.
_SUFFIXES = (".skeleton", "_rgb.avi")

MAX_SETUP = 32  # NTU-120; NTU-60 uses setups 1-17.
MAX_ACTION = 120  # NTU-120; NTU-60 uses actions 1-60.
NUM_CAMERAS = 3


@dataclasses.dataclass(frozen=True)
class SampleName:
  """The five fields of an NTU sample name `SsssCcccPpppRrrrAaaa` (all 1-based)."""

  setup: int
  camera: int
  performer: int
  replication: int
  action: int

  @property
  def label(self) -> int:
    """0-based class index (action - 1)."""
    return self.action - 1

  @property
  def name(self) -> str:
    """The canonical name, e.g. 'S001C001P001R001A011'."""
    return (f"S{self.setup:03d}C{self.camera:03d}P{self.performer:03d}"
            f"R{self.replication:03d}A{self.action:03d}")

  def __str__(self) -> str:
    return self.name


def parse_sample_name(name_or_path: str | os.PathLike) -> SampleName:
  """Parses a bare sample name, or a `.skeleton` / `_rgb.avi` file name or path.

  Raises:
    DataFormatError: naming the input, when the name does not follow `SsssCcccPpppRrrrAaaa`
      (three digits per field, upper case), a field is zero, the camera is not 1-3, the setup
      exceeds 32 or the action exceeds 120.
  """
  text = os.fspath(name_or_path)
  base = os.path.basename(text)
  for suffix in _SUFFIXES:
    if base.endswith(suffix):
      base = base[: -len(suffix)]
      break
  match = _NAME_RE.fullmatch(base)
  if match is None:
    raise DataFormatError(
        text, "expected an NTU sample name SsssCcccPpppRrrrAaaa (3 digits per field), optionally "
        f"followed by one of {list(_SUFFIXES)}")
  setup, camera, performer, replication, action = (int(g) for g in match.groups())
  fields = dict(setup=setup, camera=camera, performer=performer, replication=replication,
                action=action)
  zero = [k for k, v in fields.items() if v == 0]
  if zero:
    raise DataFormatError(text, f"expected 1-based fields, got 0 for {', '.join(zero)}")
  if camera > NUM_CAMERAS:
    raise DataFormatError(text, f"expected camera 1-{NUM_CAMERAS}, got {camera}")
  if setup > MAX_SETUP:
    raise DataFormatError(text, f"expected setup 1-{MAX_SETUP}, got {setup}")
  if action > MAX_ACTION:
    raise DataFormatError(text, f"expected action 1-{MAX_ACTION}, got {action}")
  return SampleName(**fields)


# Official action names, A1..A120 in order (README of shahroudy/NTURGB-D). Typographic apostrophes
# are written as ASCII "'" and the README's stray trailing ". ." removed; nothing else changed.
NTU120_CLASS_NAMES: tuple[str, ...] = (
    "drink water", "eat meal/snack", "brushing teeth", "brushing hair", "drop", "pickup", "throw",
    "sitting down", "standing up (from sitting position)", "clapping", "reading", "writing",
    "tear up paper", "wear jacket", "take off jacket", "wear a shoe", "take off a shoe",
    "wear on glasses", "take off glasses", "put on a hat/cap", "take off a hat/cap", "cheer up",
    "hand waving", "kicking something",
    "put something inside pocket / take out something from pocket",
    "hopping (one foot jumping)", "jump up", "make a phone call/answer phone",
    "playing with phone/tablet", "typing on a keyboard", "pointing to something with finger",
    "taking a selfie", "check time (from watch)", "rub two hands together", "nod head/bow",
    "shake head", "wipe face", "salute", "put the palms together",
    "cross hands in front (say stop)", "sneeze/cough", "staggering", "falling",
    "touch head (headache)", "touch chest (stomachache/heart pain)", "touch back (backache)",
    "touch neck (neckache)", "nausea or vomiting condition",
    "use a fan (with hand or paper)/feeling warm", "punching/slapping other person",
    "kicking other person", "pushing other person", "pat on back of other person",
    "point finger at the other person", "hugging other person",
    "giving something to other person", "touch other person's pocket", "handshaking",
    "walking towards each other", "walking apart from each other",
    # A61-A120: NTU RGB+D 120 only.
    "put on headphone", "take off headphone", "shoot at the basket", "bounce ball",
    "tennis bat swing", "juggling table tennis balls", "hush (quite)", "flick hair", "thumb up",
    "thumb down", "make ok sign", "make victory sign", "staple book", "counting money",
    "cutting nails", "cutting paper (using scissors)", "snapping fingers", "open bottle",
    "sniff (smell)", "squat down", "toss a coin", "fold paper", "ball up paper",
    "play magic cube", "apply cream on face", "apply cream on hand back", "put on bag",
    "take off bag", "put something into a bag", "take something out of a bag", "open a box",
    "move heavy objects", "shake fist", "throw up cap/hat", "hands up (both hands)",
    "cross arms", "arm circles", "arm swings", "running on the spot",
    "butt kicks (kick backward)", "cross toe touch", "side kick", "yawn", "stretch oneself",
    "blow nose", "hit other person with something", "wield knife towards other person",
    "knock over other person (hit with body)", "grab other person's stuff",
    "shoot at other person with a gun", "step on foot", "high-five", "cheers and drink",
    "carry something with other person", "take a photo of other person",
    "follow other person", "whisper in other person's ear",
    "exchange things with other person",
    "support somebody with one's hand (someone is sick, help him to walk)",
    "finger-guessing game (playing rock-paper-scissors)",
)
NTU60_CLASS_NAMES: tuple[str, ...] = NTU120_CLASS_NAMES[:60]

# Evaluation protocols (SPEC §3.1). Everything not listed as training is test.
XSUB_TRAIN_PERFORMERS: frozenset[int] = frozenset(
    (1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38))
XVIEW_TRAIN_CAMERAS: frozenset[int] = frozenset((2, 3))
XSUB120_TRAIN_PERFORMERS: frozenset[int] = XSUB_TRAIN_PERFORMERS | frozenset(
    (45, 46, 47, 49, 50, *range(52, 60), 70, 74, 78, *range(80, 87), 89, *range(91, 96), 97, 98,
     100, 103))
PROTOCOLS: tuple[str, ...] = ("xsub", "xview", "xsub120", "xset")


def is_train(sample: SampleName, protocol: str) -> bool:
  """True when `sample` belongs to the training part of `protocol`."""
  if protocol == "xsub":
    return sample.performer in XSUB_TRAIN_PERFORMERS
  if protocol == "xview":
    return sample.camera in XVIEW_TRAIN_CAMERAS
  if protocol == "xsub120":
    return sample.performer in XSUB120_TRAIN_PERFORMERS
  if protocol == "xset":
    # Cross-setup trains on even setup numbers.
    return sample.setup % 2 == 0
  raise ValueError(f"Unknown NTU protocol {protocol!r}; expected one of {list(PROTOCOLS)}")


def split_of(sample: SampleName, protocol: str) -> str:
  """'train' or 'test' for `sample` under `protocol` ('xsub', 'xview', 'xsub120', 'xset')."""
  return "train" if is_train(sample, protocol) else "test"


def read_missing_skeletons(path: str | os.PathLike) -> frozenset[str]:
  """Reads an official list of samples with missing skeletons.

  The SPEC describes two header lines before the names; the lists as published in the
  NTURGB-D repository have none. Both are accepted: any non-name lines before the first name are
  taken as a header, blank lines are ignored, CRLF is tolerated. A line that is not a sample name
  after the first name is an error, because silently skipping it could keep a broken sample in
  the dataset.

  Returns:
    The bare sample names ('S001C002P005R002A008', ...).

  Raises:
    DataFormatError: naming the file and line of a malformed entry, or when it lists no name.
  """
  path = os.fspath(path)
  with open(path, encoding="utf-8", errors="replace") as f:
    lines = f.read().splitlines()
  names: set[str] = set()
  for number, raw in enumerate(lines, start=1):
    line = raw.strip()
    if not line:
      continue
    if _NAME_RE.fullmatch(line) is None:
      if not names:
        continue  # header
      raise DataFormatError(path, f"expected a sample name SsssCcccPpppRrrrAaaa, got {line!r}",
                            line=number)
    try:
      parse_sample_name(line)
    except DataFormatError as e:
      raise DataFormatError(path, e.message, line=number) from None
    names.add(line)
  if not names:
    raise DataFormatError(path, "expected at least one sample name, found none")
  return frozenset(names)
