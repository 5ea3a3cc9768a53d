r"""Synthetic NTU RGB+D data: raw `.skeleton` files and `_rgb.avi` videos in the real layout.

    python -m amfi_jax.data.generator.synthetic --out=/tmp/ntu_synth            # 480 samples, 320x180
    python -m amfi_jax.data.generator.synthetic --out=/tmp/one --performers=1 --cameras=1 \
        --replications=1 --num_classes=1 --full_size                  # one 1920x1080 sample

Writes `OUT/nturgb+d_skeletons/SsssCcccPpppRrrrAaaa.skeleton` (exact NTU text format: CRLF, the
Kinect SDK's 7-significant-digit numbers, 10-value body lines, 12-value joint lines, frames
with 0 bodies), `OUT/nturgb+d_rgb/SsssCcccPpppRrrrAaaa_rgb.avi` (H.264 yuv420p in AVI, 30 fps)
and `OUT/class_names.txt` (class i on line i + 1; label = action - 1 as in NTU). The skeleton's
colorX/colorY are pixels of a 1920x1080 frame; a smaller video is that frame scaled uniformly,
so colorX * width / 1920 is the column in the stored video.

Every sample is a function of (seed, sample name) only, so a subset of a run reproduces the same
files; performers keep their body and clothes across samples (from (seed, performer)), setups
their room and camera placement (from (seed, setup)). Cameras 1, 2, 3 look from 0, +45 and -45
degrees; in odd replications the performer turns towards camera 2, in even ones towards camera 3,
as in NTU.

Class design. The classes come in pairs that only one modality can tell apart, so each single
stream is capped at 75 % (8 classes) while a fusion of both can reach 100 %:

  action  name                      persons  differs from its twin by              seen only by
  1       drink_red_cup             1        the cup is red                         RGB
  2       drink_blue_cup            1        the cup is blue                        RGB
  3       hold_out_hand             1        fingers held still                     skeleton
  4       beckon                    1        fingers curl in and out ("come here")  skeleton
  5       wave_yellow_hat           1        wears a yellow cap                     RGB
  6       wave_bare_head            1        no cap                                 RGB
  7       shake_hands               2        the performer's toes stay still        skeleton
  8       shake_hands_tapping_foot  2        the performer taps the right toes      skeleton

Between pairs the coarse motion differs (hand to mouth / arm held forward / hand waving above
the head / two people shaking hands), visible to both streams. Within an RGB-only pair the
skeleton comes from the same code path and random streams, so it is identically distributed
(and identical for the same random key). Within a skeleton-only pair every drawn pixel is
identical: the renderer draws hands and shoes as fixed shapes at the hand and ankle joints, so
hand-tip, thumb and foot joints never reach the video (at 112x112 a finger is about a pixel),
and the still class holds its fingers/toes at random angles from the moving class's range so
the pair differs in motion, not in mean posture. `--num_classes` takes the first N classes;
4 gives one pair of each kind.

Nuisances per sample: clip length, speed, amplitude, phase and timing of the actions, position
and facing, breathing sway, Kinect joint noise and occasional "inferred" joints, exposure, white
balance and sensor noise; per performer: height, limb ratios, build, skin and clothing; per setup:
camera distance, height and tilt, wall and floor.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import multiprocessing
import os
import sys
import time
from collections.abc import Sequence

import numpy as np
from absl import flags

from amfi_jax.data.generator import motion as sm
from amfi_jax.data.generator import render as sr

SKELETON_DIR = "nturgb+d_skeletons"
RGB_DIR = "nturgb+d_rgb"
CLASS_NAMES_FILE = "class_names.txt"
BODY_ID_BASE = 72057594037927936  # 2**56: Kinect body tracking ids look like 2**56 + a counter


@dataclasses.dataclass(frozen=True)
class ClassSpec:
  """One synthetic action: the arm program, people, prop and fine (skeleton-only) motion."""

  name: str
  program: str  # "drink", "hold_out", "wave", "handshake"
  persons: int
  prop: str | None  # appearance cue, RGB only
  fine: str | None  # "beckon" or "tap_foot": skeleton-only motion
  twin: int  # 1-based action of the class it is confused with by one modality
  seen_by: str  # the only modality that separates it from its twin


CLASSES = (
    ClassSpec("drink_red_cup", "drink", 1, "red_cup", None, 2, "rgb"),
    ClassSpec("drink_blue_cup", "drink", 1, "blue_cup", None, 1, "rgb"),
    ClassSpec("hold_out_hand", "hold_out", 1, None, None, 4, "skeleton"),
    ClassSpec("beckon", "hold_out", 1, None, "beckon", 3, "skeleton"),
    ClassSpec("wave_yellow_hat", "wave", 1, "yellow_hat", None, 6, "rgb"),
    ClassSpec("wave_bare_head", "wave", 1, None, None, 5, "rgb"),
    ClassSpec("shake_hands", "handshake", 2, None, None, 8, "skeleton"),
    ClassSpec("shake_hands_tapping_foot", "handshake", 2, None, "tap_foot", 7, "skeleton"),
)


# Raised whenever the generator's code changes what a given SyntheticConfig draws, so data of an
# earlier design is never reused as if current: it is part of every config (and so of the digests
# that name generated and built data directories). 2: the larger cups and cap.
DESIGN_REVISION = 2


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
  """What to generate. Samples are the Cartesian product of the id lists, in name order.

  The defaults give 480 samples that both NTU-60 protocols split: cross-subject trains on
  performers 1 2 4 5 8 9 and tests on 3 6 7 10; cross-view trains on cameras 2, 3 and tests on 1.
  """

  num_classes: int = 8
  setups: tuple[int, ...] = (1,)
  cameras: tuple[int, ...] = (1, 2, 3)
  performers: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
  replications: tuple[int, ...] = (1, 2)
  frames: tuple[int, int] = (40, 64)  # inclusive range of frames per sample
  width: int = 320
  height: int = 180
  seed: int = 0
  zero_body_fraction: float = 0.15  # samples whose first frames have no tracked body
  modalities: tuple[str, ...] = ("skeleton", "rgb")
  crf: int = 23
  workers: int = 1
  design_revision: int = DESIGN_REVISION

  def __post_init__(self):
    if not 1 <= self.num_classes <= len(CLASSES):
      raise ValueError(f"num_classes must be in 1..{len(CLASSES)}, got {self.num_classes}")
    for field, hi in (("setups", 999), ("performers", 999), ("replications", 999)):
      values = getattr(self, field)
      if not values or any(not 1 <= v <= hi for v in values):
        raise ValueError(f"{field} must be non-empty ids in 1..{hi}, got {values}")
    if not self.cameras or any(c not in sm.CAMERA_YAW_DEG for c in self.cameras):
      raise ValueError(f"cameras must be among 1, 2, 3, got {self.cameras}")
    lo, hi = self.frames
    if not 2 <= lo <= hi:
      raise ValueError(f"frames must be a range lo-hi with 2 <= lo <= hi, got {self.frames}")
    if self.width < 2 or self.height < 2 or self.width % 2 or self.height % 2:
      raise ValueError(f"width and height must be even (yuv420p), got {self.width}x{self.height}")
    if not 0.0 <= self.zero_body_fraction <= 1.0:
      raise ValueError(f"zero_body_fraction must be in [0, 1], got {self.zero_body_fraction}")
    if not self.modalities or set(self.modalities) - {"skeleton", "rgb"}:
      raise ValueError(f"modalities must be among skeleton, rgb, got {self.modalities}")


@dataclasses.dataclass(frozen=True)
class GeneratedSummary:
  """What `generate` wrote: sample names (sorted) and the class names (index = label)."""

  sample_names: list[str]
  class_names: list[str]


def class_names(num_classes: int = len(CLASSES)) -> list[str]:
  return [c.name for c in CLASSES[:num_classes]]


def sample_name(setup: int, camera: int, performer: int, replication: int, action: int) -> str:
  return f"S{setup:03d}C{camera:03d}P{performer:03d}R{replication:03d}A{action:03d}"


def parse_name(name: str) -> tuple[int, int, int, int, int]:
  """`SsssCcccPpppRrrrAaaa` -> (setup, camera, performer, replication, action)."""
  if len(name) != 20 or [name[i] for i in range(0, 20, 4)] != list("SCPRA"):
    raise ValueError(f"not an NTU sample name: {name!r}")
  return tuple(int(name[i + 1:i + 4]) for i in range(0, 20, 4))


def sample_names(config: SyntheticConfig) -> list[str]:
  return sorted(
      sample_name(s, c, p, r, a)
      for s in config.setups for c in config.cameras for p in config.performers
      for r in config.replications for a in range(1, config.num_classes + 1))


@dataclasses.dataclass(frozen=True)
class SyntheticSample:
  """One generated sample: the skeleton file's content as arrays, and what the video shows.

  `joints[..., :]` holds exactly the 12 values per joint written to the file (before rounding to
  7 significant digits) and `body_info` the 10 values per body; entries of bodies absent from a
  frame are zero. `people` are the clean (noise-free) people the video renders.
  """

  name: str
  rng_key: str  # what the randomness was derived from (with the seed); the name by default
  label: int
  body_counts: np.ndarray  # (T,) int
  body_ids: np.ndarray  # (B,) int, the bodyID of each body slot
  body_info: np.ndarray  # (T, B, 10) float64
  joints: np.ndarray  # (T, B, 25, 12) float64
  people: tuple[sr.PersonView, ...]
  lighting: sr.Lighting

  @property
  def num_frames(self) -> int:
    return int(self.body_counts.shape[0])

  @property
  def xyz(self) -> np.ndarray:
    return self.joints[..., 0:3]

  @property
  def color_xy(self) -> np.ndarray:
    return self.joints[..., 5:7]


def _facing_vector(yaw):
  return np.stack([-np.sin(yaw), np.zeros_like(yaw), -np.cos(yaw)], -1)


def _motion_for_class(spec: ClassSpec, bodies, yaws, positions, t, key, seed):
  """Per-person `PersonMotion` in body frames. Random streams are separated by role so that the
  two classes of a pair draw identical numbers for everything they share."""
  motions = [sm.idle_motion(b, t, sm.rng_for(seed, "idle", key, i)) for i, b in enumerate(bodies)]
  motion_rng = sm.rng_for(seed, "motion", key)
  if spec.program == "handshake":
    height = min(b.pelvis_height for b in bodies) + motion_rng.uniform(0.0, 0.15)
    meeting_world = 0.5 * (positions[0] + positions[1]) + np.array([0.0, height, 0.0])
    meeting = []
    for yaw, pos in zip(yaws, positions):
      local = sm.rot_y(yaw).T @ (meeting_world - pos)
      meeting.append(local + np.array([0.0, 0.0, 0.06]))  # wrists stop short; the hands meet
    sm.apply_handshake(motions, np.array(meeting), t, motion_rng)
  else:
    sm.apply_arm_program(spec.program, bodies[0], motions[0], t, motion_rng)

  fine_rng = sm.rng_for(seed, "fine", key)
  curl_max = fine_rng.uniform(1.1, 1.6)
  toe_max = fine_rng.uniform(0.45, 0.65)
  for i, motion in enumerate(motions):
    sm.static_fine(motion, sm.rng_for(seed, "fine", key, i), curl_max, toe_max)
  if spec.fine == "beckon":
    sm.beckon(motions[0], t, fine_rng, curl_max)
  elif spec.fine == "tap_foot":
    sm.tap_foot(motions[0], t, fine_rng, toe_max)
  elif spec.fine is not None:
    raise ValueError(f"unknown fine motion {spec.fine!r}")
  return motions


def simulate(name: str, config: SyntheticConfig, rng_key: str | None = None) -> SyntheticSample:
  """Builds sample `name` (skeleton arrays and renderable people) without writing anything.

  Randomness comes from (config.seed, rng_key or name). Passing the same `rng_key` for two
  classes gives both identical nuisances, which is how the tests check the class design.
  """
  setup, camera_id, performer, replication, action = parse_name(name)
  if not 1 <= action <= len(CLASSES):
    raise ValueError(f"{name}: action {action} has no synthetic class (1..{len(CLASSES)})")
  spec = CLASSES[action - 1]
  seed = config.seed
  key = name if rng_key is None else rng_key

  frames_rng = sm.rng_for(seed, "frames", key)
  num_frames = int(frames_rng.integers(config.frames[0], config.frames[1] + 1))
  t = np.arange(num_frames) / sm.FPS

  scene_rng = sm.rng_for(seed, "scene", key)
  bodies = [sm.draw_body(sm.rng_for(seed, "performer", performer))]
  if spec.persons == 2:
    bodies.append(sm.draw_body(sm.rng_for(seed, "partner", key)))
  # Odd replications face camera 2 (+45 degrees), even ones camera 3, softened and jittered.
  facing = np.deg2rad((30.0 if replication % 2 else -30.0) + scene_rng.normal(0.0, 8.0))
  centre = np.array([scene_rng.uniform(-0.25, 0.25), 0.0, scene_rng.uniform(-0.3, 0.3)])
  if spec.persons == 1:
    yaws, positions = [facing], [centre]
  else:
    # Face to face across camera 1's view (turned a little by the replication), so every camera
    # sees both people, partly overlapping from the side cameras as in NTU's interactions.
    gap = scene_rng.uniform(0.95, 1.1)
    yaw_a = 0.5 * facing - np.pi / 2
    towards_b = _facing_vector(yaw_a)
    yaws = [yaw_a, yaw_a + np.pi]
    positions = [centre - 0.5 * gap * towards_b, centre + 0.5 * gap * towards_b]
  motions = _motion_for_class(spec, bodies, yaws, positions, t, key, seed)

  scene = sr.setup_scene(seed, setup)
  camera = scene.camera(camera_id)
  people, clean, lean = [], [], []
  for body, motion, yaw, pos in zip(bodies, motions, yaws, positions):
    world = sm.apply_rotation(sm.rot_y(yaw), sm.pose_from_motion(body, motion)) + pos
    cam = camera.to_camera(world)
    forward = np.broadcast_to(camera.direction_to_camera(_facing_vector(np.float64(yaw))),
                              (num_frames, 3))
    prop = spec.prop if not people else None
    people.append(sr.PersonView(joints=cam, forward=forward, body=body, prop=prop))
    right = camera.direction_to_camera(sm.rot_y(yaw) @ np.array([1.0, 0.0, 0.0]))
    clean.append((cam, np.broadcast_to(right, (num_frames, 3))))
    lean.append((motion.lean_side, motion.lean_forward))

  # Kinect slots are not ordered by who is the performer.
  order = list(range(len(people)))
  if len(order) == 2 and scene_rng.uniform() < 0.3:
    order.reverse()
  first_tracked = 0
  if scene_rng.uniform() < config.zero_body_fraction:
    first_tracked = int(scene_rng.integers(1, max(2, num_frames // 6) + 1))
  body_ids = np.array([BODY_ID_BASE + int(scene_rng.integers(1000, 60000)) for _ in order])
  hand_states = [scene_rng.choice([[1, 1, 1, 1], [1, 1, 0, 0], [1, 2, 1, 2], [0, 0, 1, 3]])
                 for _ in order]

  noise_rng = sm.rng_for(seed, "sensor", key)
  num_bodies = len(order)
  joints = np.zeros((num_frames, num_bodies, sm.NUM_JOINTS, 12))
  info = np.zeros((num_frames, num_bodies, 10))
  extremity = np.zeros(sm.NUM_JOINTS, bool)
  extremity[[sm.L_HAND, sm.R_HAND, sm.L_HAND_TIP, sm.R_HAND_TIP, sm.L_THUMB, sm.R_THUMB,
             sm.L_FOOT, sm.R_FOOT]] = True
  for slot, person in enumerate(order):
    cam, right = clean[person]
    # Kinect v2 joint noise is a few millimetres; "inferred" joints (mostly hands and feet)
    # are guessed and worse.
    sigma = noise_rng.uniform(0.0015, 0.004)
    inferred = noise_rng.uniform(size=cam.shape[:2]) < np.where(extremity, 0.06, 0.02)
    noise = noise_rng.normal(0.0, 1.0, cam.shape) * np.where(inferred, 0.01, sigma)[..., None]
    xyz = cam + noise
    depth_xy = sm.project_depth(xyz)
    joints[:, slot, :, 0:3] = xyz
    joints[:, slot, :, 3:5] = depth_xy
    joints[:, slot, :, 5:7] = sm.project_color(xyz)
    joints[:, slot, :, 7:11] = sm.joint_orientations(cam, right)
    joints[:, slot, :, 11] = np.where(inferred, 1, 2)
    # Kinect FrameEdges flags: right 1, left 2, top 4, bottom 8 of the depth image.
    edges = (1 * (depth_xy[..., 0] >= sm.DEPTH_SIZE[0]).any(-1)
             + 2 * (depth_xy[..., 0] < 0).any(-1)
             + 4 * (depth_xy[..., 1] < 0).any(-1)
             + 8 * (depth_xy[..., 1] >= sm.DEPTH_SIZE[1]).any(-1))
    side, forward = lean[person]
    info[:, slot, 0] = body_ids[slot]
    info[:, slot, 1] = edges
    info[:, slot, 2:6] = hand_states[slot]
    info[:, slot, 7] = np.clip(3.0 * side + noise_rng.normal(0, 0.02, num_frames), -1, 1)
    info[:, slot, 8] = np.clip(3.0 * forward + noise_rng.normal(0, 0.02, num_frames), -1, 1)
    info[:, slot, 9] = 2
  body_counts = np.full(num_frames, num_bodies, np.int64)
  body_counts[:first_tracked] = 0
  joints[:first_tracked] = 0.0
  info[:first_tracked] = 0.0
  return SyntheticSample(
      name=name, rng_key=key, label=action - 1, body_counts=body_counts, body_ids=body_ids,
      body_info=info, joints=joints, people=tuple(people),
      lighting=sr.draw_lighting(sm.rng_for(seed, "light", key)))


_JOINT_LINE = " ".join(["%.7g"] * 11 + ["%d"])
_INFO_LINE = " ".join(["%d"] * 7 + ["%.7g"] * 2 + ["%d"])


def skeleton_text(sample: SyntheticSample) -> str:
  """The `.skeleton` file content, formatted as the Kinect SDK tool that wrote NTU does.

  Numbers have 7 significant digits with C#'s notation (exponent only below 1e-4, written
  `E-05`), no negative zero, and every line ends in CRLF, including the last.
  """
  lines = [str(sample.num_frames)]
  joints = sample.joints + 0.0  # turns -0.0 into 0.0
  info = sample.body_info + 0.0
  for t in range(sample.num_frames):
    count = int(sample.body_counts[t])
    lines.append(str(count))
    for b in range(count):
      row = info[t, b]
      lines.append(_INFO_LINE % ((int(sample.body_ids[b]),) + tuple(row[1:])))
      lines.append(str(sm.NUM_JOINTS))
      lines.extend(_JOINT_LINE % tuple(values) for values in joints[t, b])
  return ("\r\n".join(lines) + "\r\n").replace("e", "E")


def render_sample(sample: SyntheticSample, config: SyntheticConfig):
  """Yields the sample's video frames at the configured size as I420 arrays (3H/2, W) uint8
  (`render.yuv420p_to_rgb` turns one into RGB)."""
  setup, camera_id = parse_name(sample.name)[:2]
  base = sr.background(config.seed, setup, camera_id, config.width, config.height)
  return sr.render_frames(list(sample.people), base, sample.lighting,
                          sm.rng_for(config.seed, "pixels", sample.rng_key))


def write_sample(out_dir: str, name: str, config: SyntheticConfig) -> None:
  """Generates one sample and writes its skeleton file and/or video under `out_dir`."""
  sample = simulate(name, config)
  if "skeleton" in config.modalities:
    path = os.path.join(out_dir, SKELETON_DIR, f"{name}.skeleton")
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", newline="", encoding="ascii") as f:
      f.write(skeleton_text(sample))
    os.replace(tmp, path)
  if "rgb" in config.modalities:
    path = os.path.join(out_dir, RGB_DIR, f"{name}_rgb.avi")
    sr.encode_avi(path, render_sample(sample, config), config.width, config.height, crf=config.crf)


def _write_many(out_dir: str, names: Sequence[str], config: SyntheticConfig) -> int:
  for name in names:
    write_sample(out_dir, name, config)
  return len(names)


def generate(out_dir: str, config: SyntheticConfig = SyntheticConfig(), *,
             names: Sequence[str] | None = None, verbose: bool = True) -> GeneratedSummary:
  """Writes the NTU raw layout for `config` (or only `names`, a subset) into `out_dir`.

  With `config.workers > 1` samples are spread over spawned processes (not forked: the caller
  may hold JAX or other threads that do not survive a fork). Files are identical either way.
  """
  all_names = sample_names(config) if names is None else sorted(names)
  for name in all_names:
    parse_name(name)
  os.makedirs(out_dir, exist_ok=True)
  for sub, modality in ((SKELETON_DIR, "skeleton"), (RGB_DIR, "rgb")):
    if modality in config.modalities:
      os.makedirs(os.path.join(out_dir, sub), exist_ok=True)
  names_out = class_names(config.num_classes)
  with open(os.path.join(out_dir, CLASS_NAMES_FILE), "w", encoding="utf-8") as f:
    f.write("".join(n + "\n" for n in names_out))
  with open(os.path.join(out_dir, "synthetic_config.json"), "w", encoding="utf-8") as f:
    json.dump(dataclasses.asdict(config), f, indent=2)

  total = len(all_names)
  start = time.perf_counter()
  step = max(1, total // 20)
  done = 0

  def report(n):
    nonlocal done
    before, done = done, done + n
    if verbose and (done // step > before // step or done == total):
      rate = done / max(time.perf_counter() - start, 1e-9)
      print(f"synthetic NTU: {done}/{total} samples ({rate:.1f} samples/s)", flush=True)

  workers = min(config.workers, total)
  if workers <= 1:
    for name in all_names:
      write_sample(out_dir, name, config)
      report(1)
  else:
    chunks = [all_names[i:i + 4] for i in range(0, total, 4)]
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
      futures = [pool.submit(_write_many, out_dir, chunk, config) for chunk in chunks]
      for future in concurrent.futures.as_completed(futures):
        report(future.result())
  return GeneratedSummary(sample_names=list(all_names), class_names=names_out)


def _int_list(text: str) -> tuple[int, ...]:
  """`1,2,5-8` -> (1, 2, 5, 6, 7, 8)."""
  values = []
  for part in text.split(","):
    part = part.strip()
    if "-" in part:
      lo, hi = part.split("-")
      values.extend(range(int(lo), int(hi) + 1))
    elif part:
      values.append(int(part))
  return tuple(values)


def _frame_range(text: str) -> tuple[int, int]:
  """`48` -> (48, 48); `40-64` or `40,64` -> (40, 64)."""
  parts = [int(p) for p in text.replace(",", "-").split("-") if p.strip()]
  if len(parts) == 1:
    return parts[0], parts[0]
  if len(parts) == 2:
    return parts[0], parts[1]
  raise ValueError(f"expected N or LO-HI, got {text!r}")


def _flags() -> flags.FlagValues:
  """The command line's flags, in their own FlagValues so `main(argv)` can run more than once."""
  defaults = SyntheticConfig()
  ids = lambda values: ",".join(map(str, values))  # noqa: E731
  fv = flags.FlagValues()
  flags.DEFINE_string("out", None, "Output directory.", flag_values=fv)
  flags.DEFINE_integer("num_classes", defaults.num_classes,
                       f"First N of the {len(CLASSES)} classes.", flag_values=fv)
  flags.DEFINE_string("setups", ids(defaults.setups), "Setup ids, e.g. 1,2 or 1-3.",
                      flag_values=fv)
  flags.DEFINE_string("cameras", ids(defaults.cameras), "Camera ids among 1,2,3.",
                      flag_values=fv)
  flags.DEFINE_string("performers", ids(defaults.performers), "Performer ids.", flag_values=fv)
  flags.DEFINE_string("replications", ids(defaults.replications), "Replication ids.",
                      flag_values=fv)
  flags.DEFINE_string("frames", "%d-%d" % defaults.frames, "Frames per sample, N or LO-HI.",
                      flag_values=fv)
  flags.DEFINE_integer("width", defaults.width, "Video width (even).", flag_values=fv)
  flags.DEFINE_integer("height", defaults.height, "Video height (even).", flag_values=fv)
  flags.DEFINE_bool("full_size", False,
                    "Write 1920x1080 videos like NTU (overrides --width/--height).", flag_values=fv)
  flags.DEFINE_integer("seed", defaults.seed, "Random seed.", flag_values=fv)
  flags.DEFINE_string("modalities", ",".join(defaults.modalities),
                      "skeleton,rgb or one of them.", flag_values=fv)
  flags.DEFINE_float("zero_body_fraction", defaults.zero_body_fraction,
                     "Fraction of samples starting with frames without a tracked body.",
                     flag_values=fv)
  flags.DEFINE_integer("crf", defaults.crf, "x264 quality (lower = better).", flag_values=fv)
  flags.DEFINE_integer("workers", 0, "Processes; 0 = one per CPU core (the files are the same "
                       "for any value).", flag_values=fv)
  return fv


def main(argv: Sequence[str] | None = None) -> int:
  """`python -m amfi_jax.data.generator.synthetic --out=DIR [...]`; returns the exit code."""
  fv = _flags()
  args = list(sys.argv[1:] if argv is None else argv)
  if "--help" in args or "-h" in args:
    print("Generate synthetic NTU RGB+D data (raw .skeleton files and _rgb.avi videos) whose "
          "classes need both modalities; see the module docstring for the classes.\n\n"
          "python -m amfi_jax.data.generator.synthetic --out=DIR [--num_classes=N] [--full_size] "
          "[--workers=N] [flags below]\n")
    print(fv.get_help())
    raise SystemExit(0)
  try:
    fv(["synthetic"] + args)
  except flags.Error as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  if fv.out is None:
    print("error: --out is required", file=sys.stderr)
    return 2
  width, height = (1920, 1080) if fv.full_size else (fv.width, fv.height)
  try:
    config = SyntheticConfig(
        num_classes=fv.num_classes, setups=_int_list(fv.setups), cameras=_int_list(fv.cameras),
        performers=_int_list(fv.performers), replications=_int_list(fv.replications),
        frames=_frame_range(fv.frames), width=width, height=height, seed=fv.seed,
        zero_body_fraction=fv.zero_body_fraction,
        modalities=tuple(m.strip() for m in fv.modalities.split(",") if m.strip()),
        crf=fv.crf, workers=fv.workers or (os.cpu_count() or 1))
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  start = time.perf_counter()
  summary = generate(fv.out, config)
  print(f"wrote {len(summary.sample_names)} samples of {config.num_classes} classes to "
        f"{fv.out} in {time.perf_counter() - start:.1f} s")
  return 0


if __name__ == "__main__":
  sys.exit(main())
