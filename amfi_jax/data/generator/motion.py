"""Bodies, motions and cameras of the synthetic NTU generator (see `amfi_jax.data.generator.synthetic`).

Everything here is pure numpy and vectorised over time. Three coordinate frames are used:

- body frame: metres, origin on the floor under the pelvis, +x the performer's right, +y up,
  +z the performer's back (the performer faces -z);
- world frame: metres, origin on the floor at the scene centre, axes of camera 1 (so a performer
  with yaw 0 faces camera 1);
- camera space: the Kinect v2 convention NTU stores (+x the sensor's left, +y up, +z away from
  the sensor), so a performer facing the camera has the right shoulder at larger x, exactly as in
  the real files.
"""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np

NUM_JOINTS = 25
FPS = 30.0

# Kinect v2 geometry, fitted to the real NTU files in shared/data/ntu (the colour camera sits a few
# centimetres beside the depth camera, which is why colorX has an offset term).
COLOR_SIZE = (1920, 1080)
COLOR_FOCAL = 1045.0
COLOR_CENTER = (960.0, 540.0)
COLOR_BASELINE = 0.042
DEPTH_SIZE = (512, 424)
DEPTH_FOCAL = 366.0
DEPTH_CENTER = (256.0, 212.0)

# NTU views: camera 1 in front, cameras 2 and 3 at +45 and -45 degrees around the performer.
CAMERA_YAW_DEG = {1: 0.0, 2: 45.0, 3: -45.0}

# 0-based NTU joint indices used below (the file order; 1-based numbers in the comments).
SPINE_BASE, SPINE_MID, NECK, HEAD = 0, 1, 2, 3
L_SHOULDER, L_ELBOW, L_WRIST, L_HAND = 4, 5, 6, 7
R_SHOULDER, R_ELBOW, R_WRIST, R_HAND = 8, 9, 10, 11
L_HIP, L_KNEE, L_ANKLE, L_FOOT = 12, 13, 14, 15
R_HIP, R_KNEE, R_ANKLE, R_FOOT = 16, 17, 18, 19
SPINE_SHOULDER = 20
L_HAND_TIP, L_THUMB, R_HAND_TIP, R_THUMB = 21, 22, 23, 24

# Joints whose Kinect orientation is all zero in real files (ends of chains), and for every other
# joint the child whose bone defines its orientation.
END_JOINTS = (HEAD, L_FOOT, R_FOOT, L_HAND_TIP, L_THUMB, R_HAND_TIP, R_THUMB)
ORIENTATION_CHILD = {
    SPINE_BASE: SPINE_MID, SPINE_MID: SPINE_SHOULDER, NECK: HEAD, L_SHOULDER: L_ELBOW,
    L_ELBOW: L_WRIST, L_WRIST: L_HAND, L_HAND: L_HAND_TIP, R_SHOULDER: R_ELBOW, R_ELBOW: R_WRIST,
    R_WRIST: R_HAND, R_HAND: R_HAND_TIP, L_HIP: L_KNEE, L_KNEE: L_ANKLE, L_ANKLE: L_FOOT,
    R_HIP: R_KNEE, R_KNEE: R_ANKLE, R_ANKLE: R_FOOT, SPINE_SHOULDER: NECK,
}


def rng_for(seed: int, *parts: object) -> np.random.Generator:
  """A generator that depends only on `seed` and `parts`, stable across runs and platforms.

  Python's `hash` is salted per process, so the key is hashed with SHA-256 instead; this is what
  makes a sample's files independent of which other samples are generated alongside it.
  """
  digest = hashlib.sha256(repr((int(seed),) + tuple(parts)).encode()).digest()
  return np.random.default_rng([int.from_bytes(digest[i:i + 4], "little") for i in range(0, 16, 4)])


@dataclasses.dataclass(frozen=True)
class Body:
  """One person's proportions (metres) and clothing colours (RGB 0-255)."""

  pelvis_height: float
  spine_lower: float  # joint 1 -> 2
  spine_upper: float  # joint 2 -> 21
  neck: float  # joint 21 -> 3
  head: float  # joint 3 -> 4
  shoulder_half: float
  hip_half: float
  upper_arm: float
  forearm: float
  hand: float  # wrist -> hand joint
  hand_tip: float
  thumb: float
  thigh: float
  shank: float
  ankle_height: float
  foot: float
  girth: float  # multiplies the rendered limb radii
  skin: tuple[int, int, int]
  shirt: tuple[int, int, int]
  trousers: tuple[int, int, int]
  shoes: tuple[int, int, int]
  hair: tuple[int, int, int]
  long_sleeves: bool


def muted_colour(rng: np.random.Generator, lo: float, hi: float, max_saturation: float):
  """A low-saturation colour, so clothing never looks like the saturated class cues."""
  value = rng.uniform(lo, hi)
  saturation = rng.uniform(0.0, max_saturation)
  hue = rng.uniform(0.0, 1.0)
  weights = 0.5 + 0.5 * np.cos(2 * np.pi * (hue - np.array([0.0, 1 / 3, 2 / 3])))
  rgb = value * (1 - saturation + saturation * weights)
  return tuple(int(round(c)) for c in np.clip(rgb, 0, 255))


def draw_body(rng: np.random.Generator) -> Body:
  """Anthropometric proportions (segment lengths as fractions of the height, after Winter's
  tables) with per-person variation of height, limb ratios and build."""
  height = rng.uniform(1.52, 1.92)
  legs, arms, torso, width = rng.normal(1.0, 0.04, size=4).clip(0.9, 1.1)
  tone = rng.uniform(0.35, 1.0)
  skin = tuple(int(round(c)) for c in np.array([224, 172, 140]) * tone + np.array([20, 10, 5]))
  return Body(
      pelvis_height=0.53 * height * legs,
      spine_lower=0.145 * height * torso,
      spine_upper=0.115 * height * torso,
      neck=0.035 * height,
      head=0.065 * height,
      shoulder_half=0.095 * height * width,
      hip_half=0.05 * height * width,
      upper_arm=0.18 * height * arms,
      forearm=0.145 * height * arms,
      hand=0.035 * height,
      hand_tip=0.045 * height,
      thumb=0.03 * height,
      thigh=0.245 * height * legs,
      shank=0.245 * height * legs,
      ankle_height=0.04 * height,
      foot=0.075 * height,
      girth=float(rng.uniform(0.85, 1.2)),
      skin=skin,
      shirt=muted_colour(rng, 50, 200, 0.35),
      trousers=muted_colour(rng, 30, 140, 0.3),
      shoes=muted_colour(rng, 15, 70, 0.2),
      hair=muted_colour(rng, 10, 90, 0.3),
      long_sleeves=bool(rng.uniform() < 0.5),
  )


# ---------------------------------------------------------------------------------------------
# Small vector helpers, all over trailing axis 3 and broadcasting over time.


def _unit(v):
  return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-9)


def _dot(a, b):
  return np.sum(a * b, axis=-1, keepdims=True)


def rot_y(angle):
  """Rotation matrices about +y, (..., 3, 3)."""
  c, s = np.cos(angle), np.sin(angle)
  zero, one = np.zeros_like(c), np.ones_like(c)
  return np.stack([np.stack([c, zero, s], -1), np.stack([zero, one, zero], -1),
                   np.stack([-s, zero, c], -1)], -2)


def rot_x(angle):
  """Rotation matrices about +x, (..., 3, 3)."""
  c, s = np.cos(angle), np.sin(angle)
  zero, one = np.zeros_like(c), np.ones_like(c)
  return np.stack([np.stack([one, zero, zero], -1), np.stack([zero, c, -s], -1),
                   np.stack([zero, s, c], -1)], -2)


def rot_z(angle):
  """Rotation matrices about +z, (..., 3, 3)."""
  c, s = np.cos(angle), np.sin(angle)
  zero, one = np.zeros_like(c), np.ones_like(c)
  return np.stack([np.stack([c, -s, zero], -1), np.stack([s, c, zero], -1),
                   np.stack([zero, zero, one], -1)], -2)


def apply_rotation(matrices, vectors):
  return np.einsum("...ij,...j->...i", matrices, vectors)


def two_bone_ik(root, target, upper, lower, pole):
  """Middle and end joints of a two-bone chain reaching from `root` towards `target`.

  Bone lengths are preserved exactly; a target out of reach is approached along the line to it.
  `pole` is the direction the middle joint (elbow, knee) bends towards. All arrays (T, 3).
  """
  offset = target - root
  dist = np.linalg.norm(offset, axis=-1, keepdims=True)
  direction = offset / np.maximum(dist, 1e-9)
  reach = np.clip(dist, abs(upper - lower) + 1e-3, (upper + lower) * 0.999)
  cos_a = (upper**2 + reach**2 - lower**2) / (2 * upper * reach)
  bend = _unit(pole - _dot(pole, direction) * direction)
  middle = root + upper * (cos_a * direction + np.sqrt(np.clip(1 - cos_a**2, 0, 1)) * bend)
  return middle, root + reach * direction


def smoothstep(x):
  x = np.clip(x, 0.0, 1.0)
  return x * x * (3 - 2 * x)


def envelope(u, start, rise, stop):
  """0 -> 1 -> 0 activity over normalised clip time `u`: up from `start`, down from `stop`."""
  return smoothstep((u - start) / rise) * (1 - smoothstep((u - stop) / rise))


# ---------------------------------------------------------------------------------------------
# Motion programs. Each person is described by a `PersonMotion`: where the wrists go, how the
# fingers curl and how the feet lift, all as functions of time, in the body frame.


@dataclasses.dataclass
class PersonMotion:
  """Time series (T, ...) that drive one person's pose, in the body frame."""

  right_wrist: np.ndarray  # (T, 3) target
  left_wrist: np.ndarray  # (T, 3) target
  right_curl: np.ndarray  # (T,) finger curl angle, radians
  left_curl: np.ndarray  # (T,)
  right_toe: np.ndarray  # (T,) toe lift angle, radians
  left_toe: np.ndarray  # (T,)
  lean_forward: np.ndarray  # (T,) radians
  lean_side: np.ndarray  # (T,) radians
  sway: np.ndarray  # (T,) pelvis shift along x, metres


def shoulder_rest(body: Body, side: float) -> np.ndarray:
  """Shoulder position (3,) in the body frame, upright posture; `side` +1 right, -1 left."""
  top = body.pelvis_height + body.spine_lower + body.spine_upper
  return np.array([side * body.shoulder_half, top - 0.03, 0.0])


def idle_motion(body: Body, t: np.ndarray, rng: np.random.Generator) -> PersonMotion:
  """Standing still with arms hanging, breathing sway and a little drift of the hands."""
  num = t.shape[0]
  reach = body.upper_arm + body.forearm

  def hanging(side):
    base = shoulder_rest(body, side) + np.array([side * 0.06, -0.97 * reach, -0.06])
    freq, phase = rng.uniform(0.2, 0.5), rng.uniform(0, 2 * np.pi)
    drift = rng.uniform(0.005, 0.02) * np.sin(2 * np.pi * freq * t + phase)
    return base[None, :] + drift[:, None] * np.array([0.3, 0.2, 1.0])

  sway_freq, sway_phase = rng.uniform(0.2, 0.6), rng.uniform(0, 2 * np.pi)
  return PersonMotion(
      right_wrist=hanging(1.0),
      left_wrist=hanging(-1.0),
      right_curl=np.zeros(num),
      left_curl=np.zeros(num),
      right_toe=np.zeros(num),
      left_toe=np.zeros(num),
      lean_forward=np.full(num, rng.uniform(-0.05, 0.08)),
      lean_side=rng.uniform(0.0, 0.03) * np.sin(2 * np.pi * sway_freq * t + sway_phase),
      sway=rng.uniform(0.0, 0.02) * np.sin(2 * np.pi * sway_freq * t + sway_phase),
  )


def _activity(u: np.ndarray, rng: np.random.Generator, hold_to_end: float):
  """Random rise/hold/fall envelope; with probability `hold_to_end` the arm never comes down."""
  start = rng.uniform(0.0, 0.15)
  rise = rng.uniform(0.15, 0.25)
  stop = 2.0 if rng.uniform() < hold_to_end else rng.uniform(0.62, 0.78)
  return envelope(u, start, rise, stop)


def _blend(rest, active, weight):
  return rest + weight[:, None] * (active - rest)


def apply_arm_program(program: str, body: Body, motion: PersonMotion, t: np.ndarray,
                      rng: np.random.Generator) -> None:
  """Overwrites the right-wrist target of `motion` with a coarse, visible arm action.

  `rng` is the motion stream: classes that share a program draw identical numbers from it.
  """
  u = t / max(t[-1], 1e-6)
  shoulder = shoulder_rest(body, 1.0)
  head_top = body.pelvis_height + body.spine_lower + body.spine_upper + body.neck + body.head
  speed = rng.uniform(0.8, 1.25)
  phase = rng.uniform(0, 2 * np.pi)
  if program == "drink":
    # Hand to the mouth, a small tilt while "sipping", then back down.
    weight = _activity(u, rng, hold_to_end=0.0)
    mouth = np.array([rng.uniform(0.02, 0.07), head_top - body.head - rng.uniform(0.1, 0.15),
                      -rng.uniform(0.12, 0.18)])
    sip = 0.02 * np.sin(2 * np.pi * 1.2 * speed * t + phase)
    active = mouth[None, :] + sip[:, None] * np.array([0.0, 1.0, -0.5])
    motion.right_wrist = _blend(motion.right_wrist, active, weight)
  elif program == "wave":
    # Hand raised above the shoulder, swinging side to side.
    weight = _activity(u, rng, hold_to_end=0.5)
    centre = shoulder + np.array([rng.uniform(0.08, 0.2), rng.uniform(0.3, 0.42),
                                  -rng.uniform(0.05, 0.15)])
    amplitude = rng.uniform(0.1, 0.18)
    swing = amplitude * np.sin(2 * np.pi * rng.uniform(1.0, 1.6) * speed * t + phase)
    active = centre[None, :] + swing[:, None] * np.array([1.0, -0.15, 0.0])
    motion.right_wrist = _blend(motion.right_wrist, active, weight)
  elif program == "hold_out":
    # Arm held out forward at chest-to-shoulder height, then nearly still.
    weight = _activity(u, rng, hold_to_end=0.6)
    reach = body.upper_arm + body.forearm
    target = shoulder + np.array([rng.uniform(-0.02, 0.08), -rng.uniform(0.05, 0.2),
                                  -rng.uniform(0.8, 0.95) * reach])
    drift = rng.uniform(0.005, 0.02) * np.sin(2 * np.pi * rng.uniform(0.3, 0.8) * t + phase)
    active = target[None, :] + drift[:, None] * np.array([0.3, 1.0, 0.0])
    motion.right_wrist = _blend(motion.right_wrist, active, weight)
  else:
    raise ValueError(f"unknown arm program {program!r}")


def apply_handshake(motions: list[PersonMotion], meeting: np.ndarray, t: np.ndarray,
                    rng: np.random.Generator) -> None:
  """Both persons reach their right hands to `meeting` (each in its own body frame, (P, 3)) and
  pump them up and down together."""
  u = t / max(t[-1], 1e-6)
  weight = _activity(u, rng, hold_to_end=0.3)
  freq = rng.uniform(1.8, 2.8)
  amplitude = rng.uniform(0.03, 0.07)
  pump = amplitude * np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi))
  for motion, target in zip(motions, meeting):
    active = target[None, :] + pump[:, None] * np.array([0.0, 1.0, 0.0])
    motion.right_wrist = _blend(motion.right_wrist, active, weight)


def static_fine(motion: PersonMotion, rng: np.random.Generator, curl_max: float,
                toe_max: float) -> None:
  """Fingers and toes held still at random angles from the same ranges the moving classes use,
  so that pairs differ in motion and not in average posture."""
  num = motion.right_curl.shape[0]
  motion.right_curl = np.full(num, rng.uniform(0.0, curl_max))
  motion.left_curl = np.full(num, rng.uniform(0.0, curl_max))
  motion.right_toe = np.full(num, rng.uniform(0.0, toe_max))
  motion.left_toe = np.full(num, rng.uniform(0.0, toe_max * 0.3))


def beckon(motion: PersonMotion, t: np.ndarray, rng: np.random.Generator, curl_max: float) -> None:
  """Right fingers curl in and out repeatedly ("come here")."""
  freq = rng.uniform(1.6, 2.6)
  phase = rng.uniform(0, 2 * np.pi)
  motion.right_curl = curl_max * 0.5 * (1 - np.cos(2 * np.pi * freq * t + phase))


def tap_foot(motion: PersonMotion, t: np.ndarray, rng: np.random.Generator, toe_max: float) -> None:
  """Right toes lift and drop repeatedly while the heel stays on the floor."""
  freq = rng.uniform(2.0, 3.0)
  phase = rng.uniform(0, 2 * np.pi)
  motion.right_toe = toe_max * 0.5 * (1 - np.cos(2 * np.pi * freq * t + phase))


# ---------------------------------------------------------------------------------------------
# Forward kinematics.


def pose_from_motion(body: Body, motion: PersonMotion) -> np.ndarray:
  """Joint positions (T, 25, 3) in the body frame, with exact bone lengths for this body."""
  num = motion.right_wrist.shape[0]
  joints = np.zeros((num, NUM_JOINTS, 3))
  pelvis = np.zeros((num, 3))
  pelvis[:, 0] = motion.sway
  pelvis[:, 1] = body.pelvis_height
  upper = rot_x(-motion.lean_forward) @ rot_z(-motion.lean_side)  # lean forward = towards -z
  up = np.array([0.0, 1.0, 0.0])

  def from_pelvis(offset):
    return pelvis + apply_rotation(upper, np.broadcast_to(offset, (num, 3)))

  spine = body.spine_lower + body.spine_upper
  joints[:, SPINE_BASE] = pelvis
  joints[:, SPINE_MID] = from_pelvis(body.spine_lower * up)
  joints[:, SPINE_SHOULDER] = from_pelvis(spine * up)
  joints[:, NECK] = from_pelvis((spine + body.neck) * up)
  joints[:, HEAD] = from_pelvis((spine + body.neck + body.head) * up + np.array([0, 0, -0.015]))

  for side, s_j, e_j, w_j, h_j, tip_j, th_j, wrist_target, curl in (
      (-1.0, L_SHOULDER, L_ELBOW, L_WRIST, L_HAND, L_HAND_TIP, L_THUMB, motion.left_wrist,
       motion.left_curl),
      (1.0, R_SHOULDER, R_ELBOW, R_WRIST, R_HAND, R_HAND_TIP, R_THUMB, motion.right_wrist,
       motion.right_curl)):
    shoulder_offset = shoulder_rest(body, side) - np.array([0.0, body.pelvis_height, 0.0])
    shoulder = from_pelvis(shoulder_offset)
    # Elbows bend outwards, backwards and down.
    pole = np.broadcast_to(np.array([side * 0.5, -0.6, 0.6]), (num, 3))
    elbow, wrist = two_bone_ik(shoulder, pelvis * np.array([1, 0, 1]) + wrist_target,
                               body.upper_arm, body.forearm, pole)
    forearm = _unit(wrist - elbow)
    hand = wrist + body.hand * forearm
    # Palm normal, perpendicular to the forearm; the tiny constant keeps it defined when the
    # forearm points straight sideways.
    palm = _unit(np.cross(forearm, np.broadcast_to(np.array([side, 0.0, 0.0]), (num, 3))) +
                 1e-3 * np.array([0.0, 0.0, -1.0]))
    curl = curl[:, None]
    tip = hand + body.hand_tip * (np.cos(curl) * forearm + np.sin(curl) * palm)
    thumb_dir = _unit(0.6 * forearm + 0.8 * _unit(np.cross(palm, forearm)) * -side + 0.3 * palm)
    joints[:, s_j], joints[:, e_j], joints[:, w_j], joints[:, h_j] = shoulder, elbow, wrist, hand
    joints[:, tip_j], joints[:, th_j] = tip, hand + body.thumb * thumb_dir

  for side, hip_j, knee_j, ankle_j, foot_j, toe in (
      (-1.0, L_HIP, L_KNEE, L_ANKLE, L_FOOT, motion.left_toe),
      (1.0, R_HIP, R_KNEE, R_ANKLE, R_FOOT, motion.right_toe)):
    hip = pelvis + np.array([side * body.hip_half, -0.03, 0.0])
    # Ankles stay planted on the floor; the pelvis sway bends the legs instead.
    ankle = np.broadcast_to(np.array([side * (body.hip_half + 0.02), body.ankle_height, 0.0]),
                            (num, 3))
    pole = np.broadcast_to(np.array([0.0, 0.0, -1.0]), (num, 3))
    knee, ankle = two_bone_ik(hip, ankle, body.thigh, body.shank, pole)
    foot_rest = np.array([0.0, -0.6 * body.ankle_height, -body.foot])
    foot = ankle + apply_rotation(rot_x(toe), np.broadcast_to(foot_rest, (num, 3)))
    joints[:, hip_j], joints[:, knee_j] = hip, knee
    joints[:, ankle_j], joints[:, foot_j] = ankle, foot
  return joints


# ---------------------------------------------------------------------------------------------
# Cameras.


@dataclasses.dataclass(frozen=True)
class Camera:
  """A Kinect placed in the world: camera-space p_cam = rotation @ (p_world - position)."""

  rotation: np.ndarray  # (3, 3), rows are the camera axes in world coordinates
  position: np.ndarray  # (3,)

  def to_camera(self, points):
    return apply_rotation(self.rotation, points - self.position)

  def direction_to_camera(self, vectors):
    return apply_rotation(self.rotation, vectors)


def make_camera(camera_id: int, distance: float, height: float, pitch_deg: float) -> Camera:
  """A camera `distance` metres from the scene centre at `height`, looking at it from the NTU view
  angle of `camera_id`, tilted down by `pitch_deg`."""
  yaw = np.deg2rad(CAMERA_YAW_DEG[camera_id])
  pitch = np.deg2rad(pitch_deg)
  forward = np.array([np.sin(yaw) * np.cos(pitch), -np.sin(pitch), np.cos(yaw) * np.cos(pitch)])
  flat = np.array([np.sin(yaw), 0.0, np.cos(yaw)])
  position = np.array([0.0, height, 0.0]) - distance * flat
  y_axis = _unit(np.array([0.0, 1.0, 0.0]) - np.dot([0.0, 1.0, 0.0], forward) * forward)
  x_axis = np.cross(y_axis, forward)  # Kinect: +x is the sensor's left (right-handed frame)
  return Camera(rotation=np.stack([x_axis, y_axis, forward]), position=position)


def project_color(xyz):
  """Camera space (..., 3) -> pixel coordinates (..., 2) in the 1920x1080 colour frame."""
  z = np.maximum(xyz[..., 2], 1e-3)
  u = COLOR_CENTER[0] + COLOR_FOCAL * (xyz[..., 0] - COLOR_BASELINE) / z
  v = COLOR_CENTER[1] - COLOR_FOCAL * xyz[..., 1] / z
  return np.stack([u, v], -1)


def project_depth(xyz):
  """Camera space (..., 3) -> pixel coordinates (..., 2) in the 512x424 depth image."""
  z = np.maximum(xyz[..., 2], 1e-3)
  u = DEPTH_CENTER[0] + DEPTH_FOCAL * xyz[..., 0] / z
  v = DEPTH_CENTER[1] - DEPTH_FOCAL * xyz[..., 1] / z
  return np.stack([u, v], -1)


def _quaternion_from_matrix(m):
  """(..., 3, 3) rotation matrices -> (..., 4) quaternions (w, x, y, z) with w >= 0."""
  trace = m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]
  w = np.sqrt(np.maximum(1 + trace, 0)) / 2
  x = np.sqrt(np.maximum(1 + m[..., 0, 0] - m[..., 1, 1] - m[..., 2, 2], 0)) / 2
  y = np.sqrt(np.maximum(1 - m[..., 0, 0] + m[..., 1, 1] - m[..., 2, 2], 0)) / 2
  z = np.sqrt(np.maximum(1 - m[..., 0, 0] - m[..., 1, 1] + m[..., 2, 2], 0)) / 2
  x = np.copysign(x, m[..., 2, 1] - m[..., 1, 2])
  y = np.copysign(y, m[..., 0, 2] - m[..., 2, 0])
  z = np.copysign(z, m[..., 1, 0] - m[..., 0, 1])
  return np.stack([w, x, y, z], -1)


def joint_orientations(xyz, facing_right):
  """Kinect-style bone orientations (T, 25, 4) as (w, x, y, z) from camera-space joints (T, 25, 3).

  As in the SDK, a joint's local +y follows the bone to its child and +x stays close to the
  body's right direction `facing_right` (T, 3); end joints have no orientation (all zeros).
  """
  out = np.zeros(xyz.shape[:2] + (4,))
  for joint, child in ORIENTATION_CHILD.items():
    y_axis = _unit(xyz[:, child] - xyz[:, joint])
    x_axis = _unit(facing_right - _dot(facing_right, y_axis) * y_axis)
    z_axis = np.cross(x_axis, y_axis)
    out[:, joint] = _quaternion_from_matrix(np.stack([x_axis, y_axis, z_axis], -1))
  return out
