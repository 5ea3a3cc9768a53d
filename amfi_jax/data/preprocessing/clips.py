"""RGB and depth clip preprocessing on the host (SPEC §3.3): body-centred crop, resize, and the
training augmentation. Everything stays uint8 (normalisation to [0, 1] happens on the device),
except depth, which has no uint8 form worth keeping.
"""

from __future__ import annotations

import av
import numpy as np

REFERENCE_HW = (1080, 1920)  # NTU RGB frame; colorX / colorY are pixels of this frame
CROP_SIZE = 1000  # the paper's crop, in reference pixels
# Depth scale for UTD-MHAD (Kinect v1, millimetres): 4095 is the largest 12-bit value and covers
# the sensor's 0.8-4 m default range (the dataset's maximum is 3975). A fixed scale keeps a
# clip's depth values comparable with every other clip's, which a per-clip maximum would not.
DEPTH_SCALE = 4095.0
# How a depth clip's values are stored: `absolute` (millimetres / DEPTH_SCALE) or `relative`
# (the performer's own depth range stretched over (0, 1], nearest = 1, background 0).
DEPTH_VALUES = ("absolute", "relative")
# `relative` spans the foreground between these percentiles of the clip's foreground depths
# (the extremes are edge pixels mixing body and background), and maps the far end to this floor
# so that the farthest body pixel stays distinct from the zero background.
RELATIVE_PERCENTILES = (1.0, 99.0)
RELATIVE_FLOOR = 0.1
# What each of a depth clip's K stored frames is: `sample`, the frame at the start of its
# interval (`video.sample_frame_indices`, the paper's rule: frames 0, d, ..., (K-1)d with
# d = floor(T/K), which leaves out the last T - (K-1)d - 1 frames, 15 % of a UTD-MHAD sequence on
# average at K = 16), `spread`, frames floor(i·T/K) (`spread_frame_indices`: the whole sequence,
# what a store for `select_clip_frames` needs), or `segment_mean`, the mean of all frames of its
# K-th of the sequence (`segment_means`), which keeps the path a moving hand took.
DEPTH_FRAMES = ("sample", "spread", "segment_mean")
# What a UTD-MHAD depth clip's channels show: `body`, the performer's bounding box (one channel),
# or `body_arms`, that and a second crop around the arms' path (`arms_box`), the region where
# most of the dataset's 27 actions differ (circles, triangles, waves, throws), at about twice
# the body crop's resolution there.
DEPTH_VIEWS = ("body", "body_arms")
DEPTH_VIEW_CHANNELS = {"body": 1, "body_arms": 2}
# Kinect v1 camera-space joints (metres) -> pixels of UTD-MHAD's 320x240 depth maps:
# u = cx + f·x/z, v = cy - f·y/z. Fitted on every 20th sequence of the release (44): 90.6 % of the
# joints land on a pixel whose depth is within 15 cm of the joint's (the sensor's nominal focal
# length at 640x480 halved, 285.6, with the best centre, 160 / 116: 90.0 %).
UTD_DEPTH_PROJECTION = {"f": 265.0, "cx": 158.0, "cy": 118.0}
# The joints whose path the arms crop frames (0-based, graphs.UTD_MHAD): head, shoulder centre,
# and both shoulders, elbows, wrists and hands.
UTD_ARM_JOINTS = (0, 1, 4, 5, 6, 7, 8, 9, 10, 11)
# Margin around the arms' path, a fraction of its longer side on each side: a hand joint marks
# the hand's centre, and the crop should hold the whole hand.
ARMS_MARGIN = 0.1


def crop_box(color_xy: np.ndarray, frame_hw: tuple[int, int], crop_size: int = CROP_SIZE,
             reference_hw: tuple[int, int] = REFERENCE_HW) -> tuple[int, int, int]:
  """A square crop centred on the performers.

  The centre is the middle of the bounding box of all valid joints (every body, every frame):
  the box, unlike the mean, keeps two people who move apart both in view. A joint is valid when
  both coordinates are finite and not both zero (zero marks a missing body in the skeleton
  arrays). Coordinates are first clipped to the reference frame, so joints the Kinect placed off
  screen cannot drag the centre outside it. Without any valid joint the frame centre is used.

  Coordinates and `crop_size` are in `reference_hw` pixels and scaled to `frame_hw` (videos are
  often stored downscaled); the square side uses the smaller of the two scale factors. The box is
  then shifted to lie inside the frame, and shrunk only if the frame is smaller than it.

  Args:
    color_xy: (..., 2) colorX, colorY, e.g. SkeletonSequence.color_xy (T, B, 25, 2).
    frame_hw: (height, width) of the frames to crop.

  Returns:
    (top, left, size) in frame pixels.
  """
  height, width = frame_hw
  ref_h, ref_w = reference_hw
  scale_y, scale_x = height / ref_h, width / ref_w
  size = int(round(crop_size * min(scale_x, scale_y)))
  size = max(1, min(size, height, width))

  xy = np.asarray(color_xy, np.float64).reshape(-1, 2)
  valid = np.isfinite(xy).all(axis=1) & (xy != 0).any(axis=1)
  if valid.any():
    xy = xy[valid]
    x = np.clip(xy[:, 0], 0, ref_w)
    y = np.clip(xy[:, 1], 0, ref_h)
    cx = 0.5 * (x.min() + x.max()) * scale_x
    cy = 0.5 * (y.min() + y.max()) * scale_y
  else:
    cx, cy = width / 2, height / 2
  return _square_inside(cx, cy, size, (height, width))


def _square_inside(cx: float, cy: float, side: int, frame_hw: tuple[int, int]
                   ) -> tuple[int, int, int]:
  """(top, left, side) of the side x side square centred on (cx, cy), shifted to lie inside the
  frame (side must fit it)."""
  height, width = frame_hw
  top = int(np.clip(round(cy - side / 2), 0, height - side))
  left = int(np.clip(round(cx - side / 2), 0, width - side))
  return top, left, side


def _require_inside(box: tuple[int, int, int], frame_hw: tuple[int, int]) -> None:
  top, left, side = box
  height, width = frame_hw
  if not (0 <= top and 0 <= left and side > 0 and top + side <= height and left + side <= width):
    raise ValueError(f"crop box {box} does not lie inside {height}x{width} frames")


def crop_and_resize(frames: np.ndarray, box: tuple[int, int, int], size: int) -> np.ndarray:
  """Crops `box` (top, left, side) from every frame and resizes it to size x size.

  swscale (through PyAV) does the resize with area averaging: ~2 ms per 1000x1000 -> 112x112
  frame, where a numpy area resize takes ~20x longer.

  Args:
    frames: uint8 (K, H, W, 3) RGB.

  Returns:
    uint8 (K, size, size, 3).
  """
  if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
    raise ValueError(f"expected uint8 (K, H, W, 3) frames, got {frames.dtype} {frames.shape}")
  top, left, side = box
  _, height, width, _ = frames.shape
  _require_inside(box, (height, width))
  out = np.empty((len(frames), size, size, 3), np.uint8)
  for i, frame in enumerate(frames):
    crop = np.ascontiguousarray(frame[top:top + side, left:left + side])
    if side == size:
      out[i] = crop
      continue
    image = av.VideoFrame.from_ndarray(crop, format="rgb24")
    out[i] = image.reformat(width=size, height=size, interpolation="AREA").to_ndarray()
  return out


def _resize_matrix(n_in: int, n_out: int) -> np.ndarray:
  """(n_out, n_in) weights of a 1-D resize: area averaging to shrink, linear to enlarge."""
  if n_out <= n_in:
    # Output pixel i covers [i, i+1) * n_in / n_out of the input; weight = overlap / width.
    edges = np.arange(n_out + 1) * (n_in / n_out)
    lo, hi = edges[:-1, None], edges[1:, None]
    pixels = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(hi, pixels + 1) - np.maximum(lo, pixels), 0, None)
    return overlap / overlap.sum(axis=1, keepdims=True)
  # Linear interpolation between pixel centres (half-pixel convention), clamped at the borders.
  src = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0, n_in - 1)
  i0 = np.floor(src).astype(np.int64)
  i1 = np.minimum(i0 + 1, n_in - 1)
  w1 = src - i0
  m = np.zeros((n_out, n_in))
  np.add.at(m, (np.arange(n_out), i0), 1 - w1)
  np.add.at(m, (np.arange(n_out), i1), w1)
  return m


def project_utd_joints(xyz: np.ndarray) -> np.ndarray:
  """(..., 3) UTD-MHAD camera-space joints (metres) -> (..., 2) (column, row) pixels of the
  320x240 depth maps (`UTD_DEPTH_PROJECTION`); joints at z <= 0 (none in the release) give NaN."""
  xyz = np.asarray(xyz, np.float64)
  p = UTD_DEPTH_PROJECTION
  with np.errstate(divide="ignore", invalid="ignore"):
    z = np.where(xyz[..., 2] > 0, xyz[..., 2], np.nan)
    return np.stack([p["cx"] + p["f"] * xyz[..., 0] / z, p["cy"] - p["f"] * xyz[..., 1] / z], -1)


def arms_box(xyz: np.ndarray, frame_hw: tuple[int, int], margin: float = ARMS_MARGIN
             ) -> tuple[int, int, int] | None:
  """The square (top, left, side) around the path of the head, shoulders and arms
  (`UTD_ARM_JOINTS`) over a whole UTD-MHAD sequence, in depth-map pixels: the bounding box of the
  projected joints of every frame, `margin` of its longer side added on each side, shifted (or
  shrunk) to lie inside the frame. None when no joint projects to a finite pixel.

  Args:
    xyz: (T, 20, 3) joints, `utd_mhad.read_skeleton_mat`.
    frame_hw: (height, width) of the depth maps.
  """
  if xyz.ndim != 3 or xyz.shape[1:] != (20, 3):
    raise ValueError(f"expected (T, 20, 3) UTD-MHAD joints, got shape {xyz.shape}")
  uv = project_utd_joints(xyz[:, UTD_ARM_JOINTS]).reshape(-1, 2)
  uv = uv[np.isfinite(uv).all(axis=1)]
  if not len(uv):
    return None
  height, width = frame_hw
  lo, hi = uv.min(axis=0), uv.max(axis=0)
  side = (hi - lo).max() * (1 + 2 * margin)
  side = int(np.clip(round(side), 1, min(height, width)))
  cx, cy = (lo + hi) / 2
  return _square_inside(cx, cy, side, (height, width))


def body_box(depth: np.ndarray) -> tuple[int, int, int]:
  """The square (top, left, side) around the performer over a whole UTD-MHAD depth clip (T, H, W).

  UTD-MHAD depth maps have the background removed (zero), so the performer is the bounding box
  of the non-zero pixels over the whole clip. The square has the box's longer side, is centred on
  it and shifted (or shrunk) to stay inside the frame. A clip without foreground gives the
  central square.
  """
  _, height, width = depth.shape
  foreground = depth > 0
  rows = np.flatnonzero(foreground.any(axis=(0, 2)))
  cols = np.flatnonzero(foreground.any(axis=(0, 1)))
  if len(rows):
    side = max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1)
    cy, cx = (rows[0] + rows[-1] + 1) / 2, (cols[0] + cols[-1] + 1) / 2
  else:
    side, cy, cx = min(height, width), height / 2, width / 2
  side = int(min(side, height, width))
  return _square_inside(cx, cy, side, (height, width))


def depth_crop(depth: np.ndarray, size: int, values: str = "absolute",
               box: tuple[int, int, int] | None = None) -> np.ndarray:
  """A square crop of a UTD-MHAD depth clip, resized and scaled to [0, 1].

  The square is `box` (top, left, side) or, without one, the performer's (`body_box`); it is
  area-resized (linearly enlarged when smaller than `size`).

  Values (before the resize; background pixels stay 0):
    absolute: millimetres / DEPTH_SCALE (fixed, see there), clipped to [0, 1]. The performer
      stands 2.2-3.2 m away, so the body fills about a fifth of the range and an arm reaching
      towards the camera changes a pixel by ~0.1.
    relative: the clip's foreground depths between their RELATIVE_PERCENTILES mapped linearly to
      [RELATIVE_FLOOR, 1], nearest = 1 (clipped): the body's relief spans the whole range.

  Args:
    depth: uint16 (T, H, W), millimetres.
    size: output side.
    values: one of DEPTH_VALUES.
    box: the square to crop, inside the frame.

  Returns:
    float32 (T, size, size, 1).
  """
  if depth.ndim != 3:
    raise ValueError(f"expected depth (T, H, W), got shape {depth.shape}")
  if values not in DEPTH_VALUES:
    raise ValueError(f"depth values must be one of {DEPTH_VALUES}, got {values!r}")
  _, height, width = depth.shape
  top, left, side = box = body_box(depth) if box is None else box
  _require_inside(box, (height, width))
  crop = depth[:, top:top + side, left:left + side].astype(np.float32)
  if values == "absolute":
    crop = np.clip(crop / np.float32(DEPTH_SCALE), 0.0, 1.0)
  else:
    crop = _relative_depth(crop)
  # Separable resize as two plain 2-D matrix products (one GEMM each, not T small ones): columns
  # first, then rows through a transpose.
  num_frames = len(crop)
  weights = _resize_matrix(side, size).astype(np.float32)  # (size, side), square crop: same both
  cols = (crop.reshape(num_frames * side, side) @ weights.T).reshape(num_frames, side, size)
  rows_t = cols.transpose(0, 2, 1).reshape(num_frames * size, side) @ weights.T
  resized = rows_t.reshape(num_frames, size, size).transpose(0, 2, 1)
  return np.clip(resized, 0.0, 1.0)[..., None].astype(np.float32)


def crop_depth_views(depth: np.ndarray, xyz: np.ndarray, size: int, values: str = "absolute",
                views: str = "body") -> np.ndarray:
  """A UTD-MHAD depth clip as `views` says (DEPTH_VIEWS): float32 (T, size, size, C), channel 0
  the body crop, for `body_arms` channel 1 the arms crop (`arms_box` of the sequence's joints
  `xyz`; the body crop again if no joint projects into the frame)."""
  if views not in DEPTH_VIEWS:
    raise ValueError(f"depth views must be one of {DEPTH_VIEWS}, got {views!r}")
  body = depth_crop(depth, size, values)
  if views == "body":
    return body
  box = arms_box(xyz, depth.shape[1:])
  arms = body if box is None else depth_crop(depth, size, values, box)
  return np.concatenate([body, arms], axis=-1)


def spread_frame_indices(num_frames: int, k: int) -> np.ndarray:
  """Indices floor(i·T/K), i < K: K frames spread over the whole T-frame sequence (first to
  last K-th), repeating frames only when T < K (then as `video.sample_frame_indices` does)."""
  if k <= 0 or num_frames <= 0:
    raise ValueError(f"need k > 0 and num_frames > 0, got k={k}, num_frames={num_frames}")
  return (np.arange(k, dtype=np.int64) * num_frames) // k


def select_clip_frames(clip: np.ndarray, clip_frames: int,
                       rng: np.random.Generator | None = None, views: int = 1,
                       crop: float = 0.0) -> np.ndarray:
  """`clip_frames` of a stored clip's K frames, one from each of `clip_frames` consecutive
  groups of m = K / clip_frames stored frames (segment sampling as in TSN): a random frame of
  each group with `rng` (the training augmentation: the model sees other moments of the action
  every epoch), the middle one, (m - 1) // 2, without (evaluation, deterministic).

  `crop` > 0 (with `rng`; temporal crop): the groups divide a random window of the stored frames
  instead of all of them, its length a fraction ~ U(crop, 1) of K (at least `clip_frames`
  frames), its start uniform: the action seen faster or slower and cut at either end, as the
  skeleton augmentation's crop does (`skeleton_augment.augment`). Evaluation sees the whole clip.

  `views` > 1 (without `rng`): that many clips of the same groups stacked on a new first axis,
  view v taking frame v·m // views + (m // views - 1) // 2 of each group (the middles of
  `views` equal parts of it; with views = m every stored frame once) — multi-view testing,
  whose scores the model averages (`models.resnet3d.ResNet3D.features`).

  Args:
    clip: (K, ...) stored frames, K a multiple of `clip_frames`.
    clip_frames: frames the model sees; 0 keeps the clip as stored.
    views: clips of fixed frames to return, 1 ≤ views ≤ m (1: one clip, no view axis).
    crop: the shortest window, a fraction of K in (0, 1]; 0 = off (the groups span all K).

  Returns:
    (clip_frames, ...), or (views, clip_frames, ...) when views > 1: a new array (or `clip`
    itself when clip_frames is 0).
  """
  if clip_frames == 0:
    if views != 1:
      raise ValueError(f"config.data.clip_views={views} needs config.data.clip_frames > 0")
    return clip
  stored = len(clip)
  if clip_frames < 0 or stored % clip_frames:
    raise ValueError(f"config.data.clip_frames={clip_frames} must divide the {stored} frames "
                     "the dataset stores per clip (0 uses them all)")
  group = stored // clip_frames
  if not 1 <= views <= group or (views > 1 and rng is not None):
    raise ValueError(f"config.data.clip_views={views} must be in [1, {group}] (the stored "
                     f"frames per group of clip_frames={clip_frames}), and 1 when drawing "
                     "frames at random")
  if not 0 <= crop <= 1 or (crop and rng is None):
    raise ValueError(f"config.data.clip_augment.crop={crop} must be in [0, 1] (0 = off), and "
                     "only crops when drawing frames at random (training)")
  if rng is not None and crop:
    length = max(clip_frames, int(round(stored * rng.uniform(crop, 1.0))))
    start = int(rng.integers(stored - length + 1))
    # Group edges within the window; each group is at least one frame (length ≥ clip_frames).
    edges = start + np.arange(clip_frames + 1) * length // clip_frames
    return clip[edges[:-1] + rng.integers(edges[1:] - edges[:-1])]
  starts = np.arange(clip_frames) * group
  if rng is not None:
    return clip[starts + rng.integers(group, size=clip_frames)]
  offsets = np.arange(views) * group // views + (group // views - 1) // 2
  if views == 1:
    return clip[starts + offsets[0]]
  return clip[starts[None, :] + offsets[:, None]]


def segment_means(frames: np.ndarray, k: int) -> np.ndarray:
  """(T, ...) → (K, ...): the mean of each of K consecutive, equal (± 1 frame) segments.

  Segment i holds frames floor(i·T/K) … floor((i+1)·T/K) − 1; with T < K, where some of those
  would be empty, segment i is frame floor(i·T/K) alone (the order `sample_frame_indices` keeps).
  """
  if k <= 0:
    raise ValueError(f"k must be positive, got {k}")
  num_frames = len(frames)
  if num_frames == 0:
    raise ValueError("segment_means needs at least one frame")
  starts = (np.arange(k) * num_frames) // k
  ends = np.maximum((np.arange(1, k + 1) * num_frames) // k, starts + 1)
  sums = np.cumsum(np.concatenate([np.zeros_like(frames[:1], np.float64), frames], 0), axis=0)
  counts = (ends - starts).reshape((k,) + (1,) * (frames.ndim - 1))
  return ((sums[ends] - sums[starts]) / counts).astype(frames.dtype)


def _relative_depth(crop: np.ndarray) -> np.ndarray:
  """Foreground millimetres → [RELATIVE_FLOOR, 1] (nearest = 1) over the clip; zeros stay 0."""
  foreground = crop > 0
  if not foreground.any():
    return np.zeros_like(crop)
  near, far = np.percentile(crop[foreground], RELATIVE_PERCENTILES)
  span = max(float(far - near), 1.0)  # a flat foreground (one depth) maps to 1
  scaled = 1.0 - (1.0 - RELATIVE_FLOOR) * np.clip((crop - near) / span, 0.0, 1.0)
  return np.where(foreground, scaled, 0.0).astype(np.float32)


def augment_clip(clip: np.ndarray, rng: np.random.Generator, rotate: bool = True,
                 flip: bool = True, scale: tuple[float, float] | None = (0.8, 1.2),
                 shift: float = 0.0) -> np.ndarray:
  """Training augmentation of SPEC §3.3, one random transform shared by all frames of the clip.

  In this order, each drawn from `rng` only when enabled (so results are reproducible for a
  given generator state and flags):
    rotate: by 0, 90, 180 or 270 degrees (uniform).
    flip: none, horizontal or vertical (uniform).
    scale: zoom by a factor f ~ U(scale): the frame is resized to round(f*S) and centre-cropped
      (f > 1) or centre-padded with zeros (f < 1) back to S; bilinear sampling.
    shift: > 0: the content moves by (dy, dx) ~ U(-shift, shift) * S pixels (not in the paper;
      for performers who do not always stand in the frame's centre), zero-filled where it
      uncovers the border. Zoom and shift are one resampling.

  Args:
    clip: (K, S, S, C) frames, uint8 (any dtype works; it is kept).
    rng: the generator.

  Returns:
    A new array of the same shape and dtype.
  """
  if clip.ndim != 4 or clip.shape[1] != clip.shape[2]:
    raise ValueError(f"expected square frames (K, S, S, C), got shape {clip.shape}")
  if not 0 <= shift < 0.5:
    raise ValueError(f"shift must be in [0, 0.5) (a fraction of the frame side), got {shift}")
  out = clip
  if rotate:
    out = np.rot90(out, k=int(rng.integers(4)), axes=(1, 2))
  if flip:
    mode = int(rng.integers(3))
    if mode == 1:
      out = out[:, :, ::-1]
    elif mode == 2:
      out = out[:, ::-1]
  factor = float(rng.uniform(*scale)) if scale is not None else 1.0
  dy, dx = rng.uniform(-shift, shift, size=2) * out.shape[1] if shift > 0 else (0.0, 0.0)
  out = _zoom(out, factor, float(dy), float(dx))
  return np.array(out, order="C")  # always a new array, never a view of the caller's clip


def offset_depth(clip: np.ndarray, rng: np.random.Generator, offset: float) -> np.ndarray:
  """A depth clip's foreground (values > 0) moved by one δ ~ U(-offset, offset), as if the
  performer stood that much nearer or farther (in units of DEPTH_SCALE: 0.03 ≈ 12 cm), kept in
  (0, 1] so that it stays apart from the zero background; the background stays 0.

  Args:
    clip: (K, S, S, 1) float depth values in [0, 1].
    rng: the generator (drawn from only when offset > 0).
    offset: the largest move; 0 = off (the clip itself is returned).
  """
  if not 0 <= offset < 1:
    raise ValueError(f"config.data.clip_augment.depth_offset must be in [0, 1), got {offset}")
  if not offset:
    return clip
  delta = np.float32(rng.uniform(-offset, offset))
  return np.where(clip > 0, np.clip(clip + delta, 1.0 / DEPTH_SCALE, 1.0), clip).astype(clip.dtype)


def _zoom(clip: np.ndarray, factor: float, dy: float = 0.0, dx: float = 0.0) -> np.ndarray:
  """Resizes (K, S, S, C) frames to round(factor*S), centre-crops / zero-pads back to S and moves
  the content by (dy, dx) pixels (zeros fill what it uncovers), in one bilinear resampling of the
  output grid (separable: rows, then columns)."""
  side = clip.shape[1]
  scaled = max(1, int(round(factor * side)))
  if scaled == side and dy == 0 and dx == 0:
    return clip
  f = scaled / side
  offset = (scaled - side) / 2  # output pixel i is pixel i + offset of the scaled image

  def axis_weights(move):
    # Source coordinate of each output pixel centre (half-pixel convention).
    src = (np.arange(side) - move + offset + 0.5) / f - 0.5
    inside = (src >= -0.5) & (src <= side - 0.5)  # outside: zero padding
    src = np.clip(src, 0, side - 1)
    i0 = np.floor(src).astype(np.int64)
    return i0, np.minimum(i0 + 1, side - 1), (src - i0).astype(np.float32), inside

  r0, r1, wr, inside_r = axis_weights(dy)
  c0, c1, wc, inside_c = axis_weights(dx)
  x = clip.astype(np.float32)
  rows = x[:, r0] * (1 - wr)[None, :, None, None] + x[:, r1] * wr[None, :, None, None]
  both = rows[:, :, c0] * (1 - wc)[None, None, :, None] + rows[:, :, c1] * wc[None, None, :, None]
  both *= (inside_r[:, None] & inside_c[None, :])[None, :, :, None]
  if np.issubdtype(clip.dtype, np.integer):
    info = np.iinfo(clip.dtype)
    both = np.clip(np.rint(both), info.min, info.max)
  return both.astype(clip.dtype)
