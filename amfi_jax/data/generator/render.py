"""Procedural rendering and H.264/AVI encoding for the synthetic NTU generator.

The scene is drawn as a 1920x1080 Kinect colour frame scaled uniformly to the stored size: a
joint with colour coordinates (colorX, colorY) lands at pixel column colorX * width / 1920 and row
colorY * height / 1080 (pixel i covers [i, i + 1)). People are anti-aliased shaded capsules drawn
far-to-near. Hands and shoes are drawn as fixed shapes at the hand and ankle joints, so finger
(hand tip, thumb) and toe (foot) motion is deliberately invisible in the video: this is the
"detail the camera cannot resolve" that only the skeleton records.
"""

from __future__ import annotations

import dataclasses
import fractions
import functools
import os

import av
import numpy as np

from amfi_jax.data.generator import motion as sm

# Saturated colours of the class cues; clothing and backgrounds are kept muted so that these are
# the only strongly saturated things in a frame.
PROP_COLOURS = {
    "red_cup": (215, 35, 35),
    "blue_cup": (35, 70, 220),
    "yellow_hat": (240, 200, 20),
}


@dataclasses.dataclass
class Capsules:
  """A batch of capsule primitives over time: segment p0-p1 of radius `radius`, all in stored
  pixel coordinates, sorted at draw time by `depth` (camera z, metres; larger is drawn first)."""

  p0: np.ndarray  # (T, N, 2)
  p1: np.ndarray  # (T, N, 2)
  radius: np.ndarray  # (T, N)
  depth: np.ndarray  # (T, N)
  colour: np.ndarray  # (N, 3) float32


@dataclasses.dataclass(frozen=True)
class PersonView:
  """What the renderer needs about one person: clean camera-space joints and looks."""

  joints: np.ndarray  # (T, 25, 3) camera space, metres, before sensor noise
  forward: np.ndarray  # (T, 3) camera-space facing direction
  body: sm.Body
  prop: str | None  # "red_cup", "blue_cup", "yellow_hat" or None


def _scale(width: int, height: int) -> np.ndarray:
  return np.array([width / sm.COLOR_SIZE[0], height / sm.COLOR_SIZE[1]])


def person_capsules(person: PersonView, width: int, height: int) -> Capsules:
  """All capsules of one person (and the prop it carries) for every frame."""
  j = person.joints
  b = person.body
  g = b.girth
  up = np.broadcast_to(np.array([0.0, 1.0, 0.0]), j[:, 0].shape)
  fwd = person.forward
  # (start, end, radius in metres, colour, depth bias). A negative bias draws the part later
  # (nearer) than its centre suggests: limbs at the side of the torso should stay visible.
  sleeve = b.shirt if b.long_sleeves else b.skin
  head = j[:, sm.HEAD]
  parts = [
      (j[:, sm.L_HIP], j[:, sm.L_KNEE], 0.075 * g, b.trousers, 0.0),
      (j[:, sm.L_KNEE], j[:, sm.L_ANKLE], 0.06 * g, b.trousers, 0.0),
      (j[:, sm.R_HIP], j[:, sm.R_KNEE], 0.075 * g, b.trousers, 0.0),
      (j[:, sm.R_KNEE], j[:, sm.R_ANKLE], 0.06 * g, b.trousers, 0.0),
      # Shoes are fixed to the ankle and the body's facing: the foot joint is never used.
      (j[:, sm.L_ANKLE] - 0.02 * up, j[:, sm.L_ANKLE] - 0.03 * up + 0.11 * fwd, 0.045, b.shoes,
       -0.01),
      (j[:, sm.R_ANKLE] - 0.02 * up, j[:, sm.R_ANKLE] - 0.03 * up + 0.11 * fwd, 0.045, b.shoes,
       -0.01),
      (j[:, sm.L_HIP], j[:, sm.R_HIP], 0.09 * g, b.trousers, 0.03),
      (j[:, sm.SPINE_BASE], j[:, sm.SPINE_SHOULDER], 0.125 * g, b.shirt, 0.08),
      (j[:, sm.L_SHOULDER], j[:, sm.R_SHOULDER], 0.065 * g, b.shirt, 0.06),
      (j[:, sm.SPINE_SHOULDER], j[:, sm.NECK], 0.045, b.skin, 0.02),
      (head + 0.025 * up - 0.02 * fwd, head + 0.025 * up - 0.02 * fwd, 0.1, b.hair, 0.0),
      (head, head, 0.095, b.skin, -0.01),
      (j[:, sm.L_SHOULDER], j[:, sm.L_ELBOW], 0.05 * g, b.shirt, -0.02),
      (j[:, sm.L_ELBOW], j[:, sm.L_WRIST], 0.04 * g, sleeve, -0.03),
      (j[:, sm.R_SHOULDER], j[:, sm.R_ELBOW], 0.05 * g, b.shirt, -0.02),
      (j[:, sm.R_ELBOW], j[:, sm.R_WRIST], 0.04 * g, sleeve, -0.03),
      # Hands: a blob at the hand joint; hand tips and thumbs are never drawn.
      (j[:, sm.L_HAND], j[:, sm.L_HAND], 0.05, b.skin, -0.04),
      (j[:, sm.R_HAND], j[:, sm.R_HAND], 0.05, b.skin, -0.04),
  ]
  if person.prop in ("red_cup", "blue_cup"):
    hand = j[:, sm.R_HAND]
    # Props are large (capsule radii: cup 7 cm, cap 11 cm) so that the demo's 48 × 48 clips show
    # them over ~20-30 pixels a frame: at 4.5 and 8.5 cm (6-18 pixels) the RGB stream confused
    # the twins on new performers (docs/results.md#embedded-demo).
    parts.append((hand - 0.08 * up, hand + 0.09 * up, 0.07, PROP_COLOURS[person.prop], -0.07))
  elif person.prop == "yellow_hat":
    colour = PROP_COLOURS[person.prop]
    parts.append((head + 0.06 * up, head + 0.13 * up, 0.11, colour, -0.08))
    brim = head + 0.055 * up
    parts.append((brim + 0.02 * fwd, brim + 0.2 * fwd, 0.045, colour, -0.09))
  elif person.prop is not None:
    raise ValueError(f"unknown prop {person.prop!r}")

  starts = np.stack([p[0] for p in parts], 1)  # (T, N, 3)
  ends = np.stack([p[1] for p in parts], 1)
  radii_m = np.array([p[2] for p in parts])
  bias = np.array([p[4] for p in parts])
  scale = _scale(width, height)
  p0 = sm.project_color(starts) * scale
  p1 = sm.project_color(ends) * scale
  mid_z = 0.5 * (starts[..., 2] + ends[..., 2])
  radius = sm.COLOR_FOCAL * radii_m[None, :] / np.maximum(mid_z, 0.1) * scale[0]
  return Capsules(p0=p0, p1=p1, radius=radius, depth=mid_z + bias[None, :],
                  colour=np.array([p[3] for p in parts], np.float32))


def draw_capsule(canvas: np.ndarray, p0, p1, radius: float, colour: np.ndarray) -> None:
  """Anti-aliased, cylinder-shaded capsule painted over planar `canvas` (3, H, W) float32 in
  place; `colour` is (3, 1, 1).

  Works on the capsule's bounding box only; scalar maths stays in Python floats because numpy's
  per-call overhead, not arithmetic, dominates at these sizes.
  """
  height, width = canvas.shape[1:]
  ax, ay, bx, by = float(p0[0]), float(p0[1]), float(p1[0]), float(p1[1])
  if radius <= 0:
    return
  x0 = max(int(min(ax, bx) - radius - 1.0), 0)
  x1 = min(int(max(ax, bx) + radius + 2.0), width)
  y0 = max(int(min(ay, by) - radius - 1.0), 0)
  y1 = min(int(max(ay, by) + radius + 2.0), height)
  if x0 >= x1 or y0 >= y1:
    return
  dx = _CENTRES[x0:x1][None, :] - np.float32(ax)
  dy = _CENTRES[y0:y1][:, None] - np.float32(ay)
  vx, vy = bx - ax, by - ay
  length2 = vx * vx + vy * vy
  if length2 > 1e-9:
    t = np.minimum(np.maximum((dx * np.float32(vx / length2) + dy * np.float32(vy / length2)),
                              0.0), 1.0)
    ex, ey = dx - t * np.float32(vx), dy - t * np.float32(vy)
    dist2 = ex * ex + ey * ey
  else:
    dist2 = dx * dx + dy * dy
  dist = np.sqrt(dist2)
  # Coverage of a pixel by the edge (a one-pixel ramp) so thin limbs do not flicker.
  alpha = np.minimum(np.maximum(np.float32(radius + 0.5) - dist, 0.0), 1.0)
  shade = 1.0 - np.float32(0.35 / max(radius, 0.5) ** 2) * np.minimum(dist2, np.float32(radius**2))
  region = canvas[:, y0:y1, x0:x1]
  region += alpha * (shade * colour - region)


# Pixel-centre coordinates, shared by every capsule (long enough for 1920x1080).
_CENTRES = np.arange(4096, dtype=np.float32) + np.float32(0.5)


def _bilinear_upsample(grid: np.ndarray, height: int, width: int) -> np.ndarray:
  """Smoothly interpolate a small (h, w, C) grid to (height, width, C)."""
  def weights(n_out, n_in):
    pos = (np.arange(n_out) + 0.5) / n_out * (n_in - 1)
    lo = np.clip(np.floor(pos).astype(int), 0, n_in - 2)
    frac = pos - lo
    m = np.zeros((n_out, n_in))
    m[np.arange(n_out), lo] = 1 - frac
    m[np.arange(n_out), lo + 1] = frac
    return m
  wy, wx = weights(height, grid.shape[0]), weights(width, grid.shape[1])
  return np.einsum("hi,ijc,wj->hwc", wy, grid, wx)


@functools.lru_cache(maxsize=16)
def background(seed: int, setup: int, camera_id: int, width: int, height: int) -> np.ndarray:
  """The empty room of a setup seen from one camera, float32 (H, W, 3), cached.

  A textured back wall and a tiled floor whose lines follow the true perspective of the camera,
  so the three views of a setup differ as real views do.
  """
  scene = setup_scene(seed, setup)
  rng = sm.rng_for(seed, "background", setup, camera_id)
  camera = scene.camera(camera_id)
  # Ray of every pixel centre, in world coordinates.
  scale = _scale(width, height)
  u = (np.arange(width) + 0.5) / scale[0]
  v = (np.arange(height) + 0.5) / scale[1]
  rays_cam = np.stack(np.broadcast_arrays(
      ((u[None, :] - sm.COLOR_CENTER[0]) / sm.COLOR_FOCAL),
      (-(v[:, None] - sm.COLOR_CENTER[1]) / sm.COLOR_FOCAL),
      np.ones((height, width))), -1)
  rays = rays_cam @ camera.rotation  # rows of `rotation` are the camera axes in the world
  origin = camera.position + sm.COLOR_BASELINE * camera.rotation[0]  # the colour lens
  # Back wall: a plane facing the camera `wall_distance` behind the scene centre.
  normal = camera.rotation[2] * np.array([1.0, 0.0, 1.0])
  normal /= np.linalg.norm(normal)
  wall_t = (scene.wall_distance - origin @ normal) / np.maximum(rays @ normal, 1e-6)
  floor_t = np.where(rays[..., 1] < -1e-6, -origin[1] / np.minimum(rays[..., 1], -1e-6), np.inf)
  is_floor = floor_t < wall_t
  hit_wall = origin + wall_t[..., None] * rays
  hit_floor = origin + np.where(is_floor, floor_t, 0.0)[..., None] * rays

  # Mostly luminance texture (plaster, uneven light) with a faint colour mottle.
  grid = rng.normal(0, 1, (7, 12, 1)) + 0.3 * rng.normal(0, 1, (7, 12, 3))
  wall = np.array(scene.wall_colour) * (1 + 0.06 * _bilinear_upsample(grid, height, width))
  wall += 3 * rng.normal(0, 1, (height, width, 1))
  # Wall shading falls off with height a little, as under ceiling lights.
  wall *= 1.05 - 0.1 * np.clip(hit_wall[..., 1:2] / 3.0, 0, 1)
  tile = scene.tile_size
  fx = np.abs((hit_floor[..., 0] / tile) - np.round(hit_floor[..., 0] / tile)) * tile
  fz = np.abs((hit_floor[..., 2] / tile) - np.round(hit_floor[..., 2] / tile)) * tile
  grout = ((np.minimum(fx, fz) < 0.012) & is_floor)[..., None]
  floor = np.array(scene.floor_colour) * (1 + 0.05 * _bilinear_upsample(
      rng.normal(0, 1, (5, 9, 1)), height, width)) * np.where(grout, 0.75, 1.0)
  image = np.where(is_floor[..., None], floor, wall)
  return np.clip(image, 0, 255).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class SetupScene:
  """Per-setup constants: camera placement and room look (NTU setups differ in both)."""

  distance: float
  camera_height: float
  pitch_deg: float
  wall_distance: float
  wall_colour: tuple[float, float, float]
  floor_colour: tuple[float, float, float]
  tile_size: float

  def camera(self, camera_id: int) -> sm.Camera:
    return sm.make_camera(camera_id, self.distance, self.camera_height, self.pitch_deg)


@functools.lru_cache(maxsize=64)
def setup_scene(seed: int, setup: int) -> SetupScene:
  rng = sm.rng_for(seed, "setup", setup)
  distance = rng.uniform(2.9, 3.5)
  camera_height = rng.uniform(0.8, 1.3)
  # Aim at about hip height so the whole person is in frame, plus a small random tilt.
  pitch = float(np.rad2deg(np.arctan2(camera_height - 1.0, distance)) + rng.normal(0, 1.5))
  return SetupScene(
      distance=distance,
      camera_height=camera_height,
      pitch_deg=pitch,
      wall_distance=rng.uniform(1.8, 3.0),
      wall_colour=sm.muted_colour(rng, 110, 220, 0.25),
      floor_colour=sm.muted_colour(rng, 60, 160, 0.3),
      tile_size=float(rng.uniform(0.4, 0.8)),
  )


@dataclasses.dataclass(frozen=True)
class Lighting:
  """Per-sample photometric nuisance: exposure, white balance and sensor noise."""

  gain: float
  tint: tuple[float, float, float]
  noise: float


def draw_lighting(rng: np.random.Generator) -> Lighting:
  return Lighting(gain=float(rng.uniform(0.85, 1.15)),
                  tint=tuple(float(x) for x in rng.uniform(0.94, 1.06, size=3)),
                  noise=float(rng.uniform(0.8, 2.0)))


def render_frames(people: list[PersonView], base: np.ndarray, lighting: Lighting,
                  rng: np.random.Generator):
  """Yields the frames of one sample as planar I420 (yuv420p) uint8 arrays (3H/2, W).

  The scene is drawn directly in (Y - 16, U - 128, V - 128) space: that is a linear map of RGB,
  and everything drawn (alpha blending, shading, exposure) is linear too, so the result equals
  rendering in RGB and converting, without a per-frame colour conversion (it was a third of the
  time). BT.601 limited range, which decoders assume for untagged streams; doing the conversion
  here rather than in swscale also keeps the bytes independent of the CPU's SIMD paths.
  `rng` drives the sensor noise.
  """
  height, width = base.shape[:2]
  caps = [person_capsules(p, width, height) for p in people]
  p0 = np.concatenate([c.p0 for c in caps], 1)
  p1 = np.concatenate([c.p1 for c in caps], 1)
  radius = np.concatenate([c.radius for c in caps], 1)
  depth = np.concatenate([c.depth for c in caps], 1)
  # Exposure and white balance act on RGB, once, on the palette and the room.
  photometric = (lighting.gain * np.array(lighting.tint)).astype(np.float32)
  colour = ((np.concatenate([c.colour for c in caps], 0) * photometric) @ _RGB_TO_YUV)
  colour = colour[:, :, None, None]
  # Planar (3, H, W): the luma and chroma planes are then contiguous for the output.
  room = ((base * photometric).reshape(-1, 3) @ _RGB_TO_YUV).T.reshape(3, height, width).copy()
  order = np.argsort(-depth, axis=1, kind="stable")
  half_h, half_w = height // 2, width // 2
  for t in range(p0.shape[0]):
    canvas = room.copy()
    for k in order[t]:
      draw_capsule(canvas, p0[t, k], p1[t, k], float(radius[t, k]), colour[k])
    # Luminance noise on 2x2 blocks: cheap, and blotchy like real sensor noise after demosaicing.
    noise = rng.normal(0.0, lighting.noise, (half_h, 1, half_w, 1)).astype(np.float32)
    luma = canvas[0].reshape(half_h, 2, half_w, 2) + (noise + _YUV_OFFSET[0])
    c = canvas[1:]
    chroma = c[:, 0::2, 0::2] + c[:, 1::2, 0::2] + c[:, 0::2, 1::2] + c[:, 1::2, 1::2]
    chroma *= 0.25
    chroma += _YUV_OFFSET[1:, None, None]
    flat = np.empty(height * width * 3 // 2, np.float32)
    flat[:height * width] = luma.reshape(-1)
    flat[height * width:] = chroma.reshape(-1)
    np.clip(flat, 0, 255, out=flat)
    yield flat.astype(np.uint8).reshape(height * 3 // 2, width)


def rgb_to_yuv420p(rgb: np.ndarray) -> np.ndarray:
  """(H, W, 3) uint8 RGB -> (3H/2, W) uint8 planar I420, BT.601 limited range (as rendered)."""
  h, w = rgb.shape[:2]
  yuv = (rgb.reshape(-1, 3).astype(np.float32) @ _RGB_TO_YUV + _YUV_OFFSET).reshape(h, w, 3)
  c = yuv[..., 1:]
  chroma = 0.25 * (c[0::2, 0::2] + c[1::2, 0::2] + c[0::2, 1::2] + c[1::2, 1::2])
  planes = [yuv[..., 0].reshape(-1), chroma[..., 0].reshape(-1), chroma[..., 1].reshape(-1)]
  return np.clip(np.concatenate(planes), 0, 255).astype(np.uint8).reshape(h * 3 // 2, w)


def yuv420p_to_rgb(frame: np.ndarray) -> np.ndarray:
  """Inverse of `rgb_to_yuv420p` (chroma upsampled by repetition), for inspection and tests."""
  h, w = frame.shape[0] * 2 // 3, frame.shape[1]
  flat = frame.reshape(-1).astype(np.float32)
  quarter = (h // 2) * (w // 2)
  y = flat[:h * w].reshape(h, w)
  u = flat[h * w:h * w + quarter].reshape(h // 2, w // 2).repeat(2, 0).repeat(2, 1)
  v = flat[h * w + quarter:].reshape(h // 2, w // 2).repeat(2, 0).repeat(2, 1)
  yuv = np.stack([y, u, v], -1) - (_YUV_OFFSET - 0.5)
  rgb = yuv.reshape(-1, 3) @ np.linalg.inv(_RGB_TO_YUV).astype(np.float32)
  return np.clip(rgb + 0.5, 0, 255).astype(np.uint8).reshape(h, w, 3)


_RGB_TO_YUV = np.array([[0.256788, -0.148223, 0.439216],
                        [0.504129, -0.290993, -0.367788],
                        [0.097906, 0.439216, -0.071427]], np.float32)
_YUV_OFFSET = np.array([16.5, 128.5, 128.5], np.float32)  # + 0.5 rounds on the uint8 cast


def encode_avi(path: str, frames, width: int, height: int, *, crf: int = 23,
               preset: str = "ultrafast") -> int:
  """Writes I420 frames (3H/2, W) as H.264 (libx264, yuv420p, 30 fps) in AVI, like NTU's videos.

  The encoder runs single-threaded: x264's output depends on its thread count, and a fixed
  count keeps the files identical on machines with different numbers of cores. The file is
  written under a temporary name and renamed, so an interrupted run leaves no truncated video.
  Returns the number of frames written.
  """
  if width % 2 or height % 2:
    raise ValueError(f"yuv420p needs even frame sizes, got {width}x{height}")
  tmp = f"{path}.tmp{os.getpid()}"
  count = 0
  try:
    with av.open(tmp, "w", format="avi") as container:
      stream = container.add_stream("libx264", rate=30)
      stream.width, stream.height = width, height
      stream.pix_fmt = "yuv420p"
      stream.codec_context.thread_count = 1
      stream.options = {"preset": preset, "crf": str(crf)}
      time_base = fractions.Fraction(1, 30)
      for i420 in frames:
        frame = av.VideoFrame.from_ndarray(i420, format="yuv420p")
        frame.pts = count
        frame.time_base = time_base
        for packet in stream.encode(frame):
          container.mux(packet)
        count += 1
      for packet in stream.encode():
        container.mux(packet)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
  return count
