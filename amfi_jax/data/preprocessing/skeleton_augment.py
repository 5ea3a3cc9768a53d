"""Training-time skeleton augmentation, pure numpy, for AGCN inputs (C, T, V, M).

Every function takes a float32 array x of shape (C, T, V, M) with C = 3 coordinates (x, y, z;
after pre-normalisation +z is the body's up axis and +x runs left -> right shoulder) and a
`numpy.random.Generator`, and returns a new float32 array of the same shape. The result depends
only on x and the generator's state, so a generator seeded per (seed, epoch) makes a run
deterministic. A frame is "padding" when all its coordinates of a person are exactly zero;
padding frames stay exactly zero (the transforms are linear without translation, and the
temporal ones only move valid frames among the valid positions).

`augment` chains them with the settings of the chosen recipe (FINDINGS.md).
"""

from __future__ import annotations

import numpy as np


def _valid_mask(x: np.ndarray) -> np.ndarray:
  """(T, M) bool: frame t of person m has some non-zero coordinate."""
  return np.any(x != 0, axis=(0, 2))


def _rot(axis: int, theta: float) -> np.ndarray:
  c, s = np.cos(theta), np.sin(theta)
  i, j = [(1, 2), (2, 0), (0, 1)][axis]
  r = np.eye(3)
  r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
  return r


def _apply_linear(x: np.ndarray, m: np.ndarray) -> np.ndarray:
  """x' = M x for every (t, v, m) point; zero points stay zero."""
  return np.einsum("ij,jtvm->itvm", m, x.astype(np.float64)).astype(np.float32)


def random_rotate(x: np.ndarray, rng: np.random.Generator,
                  max_degrees=(10.0, 10.0, 30.0)) -> np.ndarray:
  """Rotation by uniform angles in ±max_degrees about the x, y, z axes (z = vertical here)."""
  a = np.radians(rng.uniform(-1.0, 1.0, 3) * np.asarray(max_degrees, np.float64))
  m = _rot(2, a[2]) @ _rot(1, a[1]) @ _rot(0, a[0])
  return _apply_linear(x, m)


def random_scale(x: np.ndarray, rng: np.random.Generator, max_delta: float = 0.1,
                 per_axis: bool = True) -> np.ndarray:
  """Scaling by factors uniform in [1 - max_delta, 1 + max_delta] (one per axis or shared)."""
  f = 1.0 + rng.uniform(-max_delta, max_delta, 3 if per_axis else 1)
  return _apply_linear(x, np.diag(np.broadcast_to(f, (3,))))


def random_shear(x: np.ndarray, rng: np.random.Generator, max_shear: float = 0.2) -> np.ndarray:
  """The 2s-AGCN/CTR-GCN-style shear: off-diagonal entries uniform in ±max_shear."""
  m = np.eye(3) + rng.uniform(-max_shear, max_shear, (3, 3)) * (1.0 - np.eye(3))
  return _apply_linear(x, m)


def random_temporal_crop(x: np.ndarray, rng: np.random.Generator,
                         min_ratio: float = 0.8) -> np.ndarray:
  """Keeps a random window of min_ratio..1 of the valid frames and resamples it linearly onto
  the same valid positions. Uses person 0's valid frames (one person on UTD-MHAD); invalid
  frames stay zero."""
  valid = _valid_mask(x)[:, 0]
  idx = np.flatnonzero(valid)
  n = len(idx)
  if n < 2:
    return x.copy()
  ratio = rng.uniform(min_ratio, 1.0)
  length = max(2.0, ratio * (n - 1) + 1)
  start = rng.uniform(0.0, n - length)
  pos = start + np.linspace(0.0, length - 1, n)
  lo = np.clip(np.floor(pos).astype(np.int64), 0, n - 1)
  hi = np.minimum(lo + 1, n - 1)
  w = (pos - lo)[None, :, None, None]
  src = x[:, idx]
  out = np.zeros_like(x)
  out[:, idx] = (src[:, lo] * (1.0 - w) + src[:, hi] * w).astype(np.float32)
  # A person absent in some frame keeps zeros there.
  out *= _valid_mask(x)[None, :, None, :]
  return out


def random_jitter(x: np.ndarray, rng: np.random.Generator, sigma: float = 0.01) -> np.ndarray:
  """Independent Gaussian noise on every coordinate of valid frames."""
  noise = rng.normal(0.0, sigma, x.shape).astype(np.float32)
  return (x + noise * _valid_mask(x)[None, :, None, :]).astype(np.float32)


def augment(x: np.ndarray, rng: np.random.Generator, *, rotate=(10.0, 10.0, 30.0),
            scale: float = 0.1, shear: float = 0.0, crop: float = 0.8,
            jitter: float = 0.0) -> np.ndarray:
  """The chain of the chosen recipe; a zero / None setting skips that transform."""
  if crop:
    x = random_temporal_crop(x, rng, crop)
  if rotate is not None and any(rotate):
    x = random_rotate(x, rng, rotate)
  if scale:
    x = random_scale(x, rng, scale)
  if shear:
    x = random_shear(x, rng, shear)
  if jitter:
    x = random_jitter(x, rng, jitter)
  return x
