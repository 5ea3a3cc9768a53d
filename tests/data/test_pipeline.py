"""Input pipelines: determinism, resumption, per-process slicing, eval padding, sharding.

Most tests feed the pipeline in-memory records shaped like the TFDS records (any random-access
sequence is a grain source), so they run in milliseconds; one test goes through a real
ArrayRecord build to check that the TFDS side plugs in.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from amfi_jax.data import pipeline
from amfi_jax.data.preprocessing import skeletons
from amfi_jax.models import graphs

from tests.conftest import cpu_env

REPO = Path(__file__).resolve().parents[2]
K, S, T, V, M = 4, 8, 10, 25, 2


def _records(n: int, *, rgb: bool = True) -> list[dict]:
  rng = np.random.default_rng(0)
  records = []
  for i in range(n):
    record = {
        "skeleton": rng.normal(size=(3, T, V, M)).astype(np.float32),
        "label": i % 5,
        "sample_name": f"sample{i}".encode(),
    }
    if rgb:
      record["clip"] = rng.integers(0, 256, size=(K, S, S, 3), dtype=np.uint8)
    records.append(record)
  return records


def _take(it, n):
  return [next(it) for _ in range(n)]


def _equal(a: dict, b: dict) -> bool:
  return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_train_batches_layout_and_dtypes():
  it = iter(pipeline.train_dataset(_records(20), batch_size=4, seed=0,
                                   modalities=("rgb", "skeleton"), process_index=0,
                                   process_count=1))
  batch = next(it)
  assert set(batch) == {"rgb", "skeleton", "label", "index"}
  assert batch["rgb"].shape == (4, K, S, S, 3) and batch["rgb"].dtype == np.uint8
  assert batch["skeleton"].shape == (4, 3, T, V, M) and batch["skeleton"].dtype == np.float32
  assert batch["label"].dtype == np.int32 and batch["index"].dtype == np.int32
  # Labels travel with their record (record i has label i % 5).
  np.testing.assert_array_equal(batch["label"], batch["index"] % 5)


def test_same_seed_same_batches_different_seed_different():
  records = _records(24)

  def first(seed):
    return _take(iter(pipeline.train_dataset(records, batch_size=4, seed=seed, process_index=0,
                                             process_count=1)), 3)

  a, b, c = first(7), first(7), first(8)
  assert all(_equal(x, y) for x, y in zip(a, b))
  assert not all(np.array_equal(x["index"], y["index"]) for x, y in zip(a, c))


def test_augmentation_is_random_but_reproducible_and_skeleton_untouched():
  records = _records(8)
  kwargs = dict(batch_size=8, seed=3, process_index=0, process_count=1)
  plain = next(iter(pipeline.train_dataset(records, augment=False, **kwargs)))
  aug = next(iter(pipeline.train_dataset(records, augment=True, **kwargs)))
  aug2 = next(iter(pipeline.train_dataset(records, augment=True, **kwargs)))
  np.testing.assert_array_equal(plain["index"], aug["index"])
  assert not np.array_equal(plain["rgb"], aug["rgb"])
  assert _equal(aug, aug2)
  np.testing.assert_array_equal(plain["skeleton"], aug["skeleton"])
  np.testing.assert_array_equal(
      aug["skeleton"], np.stack([records[i]["skeleton"] for i in aug["index"]]))


def _depth_records(n: int, frames: int = 12) -> list[dict]:
  # Frame f of record i holds the value 100 * i + f everywhere: the batch shows which it got.
  values = 100 * np.arange(n)[:, None] + np.arange(frames)[None, :]
  return [{"depth": np.broadcast_to(values[i][:, None, None, None], (frames, S, S, 1)
                                    ).astype(np.float32), "label": 0} for i in range(n)]


def test_clip_frames_drawn_per_group_in_training_and_the_middles_otherwise():
  records = _depth_records(8)
  kwargs = dict(batch_size=8, seed=1, modalities=("depth",), clip_frames=4, process_index=0,
                process_count=1, augment_kwargs={"rotate": False, "flip": False, "scale": None})
  aug = next(iter(pipeline.train_dataset(records, **kwargs)))
  again = next(iter(pipeline.train_dataset(records, **kwargs)))
  assert aug["depth"].shape == (8, 4, S, S, 1) and _equal(aug, again)
  frames = aug["depth"][:, :, 0, 0, 0] - 100 * aug["index"][:, None]
  np.testing.assert_array_equal(frames // 3, np.broadcast_to(np.arange(4), (8, 4)))
  assert len(np.unique(frames % 3)) > 1  # not always the same frame of a group
  middles = np.array([1, 4, 7, 10])
  plain = next(iter(pipeline.train_dataset(records, augment=False, **kwargs)))
  np.testing.assert_array_equal(plain["depth"][:, :, 0, 0, 0] - 100 * plain["index"][:, None],
                                np.broadcast_to(middles, (8, 4)))
  ev = next(iter(pipeline.eval_dataset(records, batch_size=8, modalities=("depth",),
                                       clip_frames=4, process_index=0, process_count=1)))
  np.testing.assert_array_equal(ev["depth"][:, :, 0, 0, 0],
                                100 * np.arange(8)[:, None] + middles[None])
  # The temporal crop (augment_kwargs' `crop`) reaches the frame choice: windows shorter than
  # the clip put some frames outside their uncropped group; evaluation stays on the middles.
  cropped = next(iter(pipeline.train_dataset(
      records, **{**kwargs, "augment_kwargs": {**kwargs["augment_kwargs"], "crop": 0.4}})))
  frames = cropped["depth"][:, :, 0, 0, 0] - 100 * cropped["index"][:, None]
  assert np.all(np.diff(frames, axis=1) > 0) and np.any(frames // 3 != np.arange(4))
  # The depth offset (augment_kwargs' `depth_offset`) moves each depth clip by one δ, after the
  # same frame choice; depth values in (0, 1) here.
  scaled = [{**r, "depth": (r["depth"] + 1) / 1000} for r in records]
  plain_kwargs = {**kwargs, "augment_kwargs": {**kwargs["augment_kwargs"], "depth_offset": 0.0}}
  unmoved = next(iter(pipeline.train_dataset(scaled, **plain_kwargs)))
  moved = next(iter(pipeline.train_dataset(scaled, **{**kwargs, "augment_kwargs": {
      **kwargs["augment_kwargs"], "depth_offset": 0.2}})))
  np.testing.assert_array_equal(moved["index"], unmoved["index"])
  delta = moved["depth"] - unmoved["depth"]
  assert np.all(np.abs(delta) <= 0.2 + 1e-6) and np.all(np.abs(delta[:, 0, 0, 0, 0]) > 0)
  np.testing.assert_allclose(delta, np.broadcast_to(delta[:, :1, :1, :1], delta.shape), atol=1e-6)


def test_clip_views_where_the_frames_are_fixed():
  records = _depth_records(8)
  kwargs = dict(batch_size=8, modalities=("depth",), clip_frames=4, clip_views=3,
                process_index=0, process_count=1)
  ev = next(iter(pipeline.eval_dataset(records, **kwargs)))
  assert ev["depth"].shape == (8, 3, 4, S, S, 1)
  groups = 3 * np.arange(4)
  np.testing.assert_array_equal(
      ev["depth"][..., 0, 0, 0],
      100 * np.arange(8)[:, None, None] + (np.arange(3)[:, None] + groups[None])[None])
  # Unaugmented training reads what evaluation reads; augmented training one random clip.
  plain = next(iter(pipeline.train_dataset(records, seed=1, augment=False, **kwargs)))
  assert plain["depth"].shape == (8, 3, 4, S, S, 1)
  np.testing.assert_array_equal(plain["depth"][..., 0, 0, 0] - 100 * plain["index"][:, None, None],
                                np.broadcast_to(np.arange(3)[:, None] + groups[None], (8, 3, 4)))
  aug = next(iter(pipeline.train_dataset(
      records, seed=1, augment_kwargs={"rotate": False, "flip": False, "scale": None},
      **kwargs)))
  assert aug["depth"].shape == (8, 4, S, S, 1)


def test_clip_frames_leave_cached_feature_vectors_whole():
  records = [{"rgb_features": np.arange(8, dtype=np.float32) + i,
              "skeleton_features": -np.arange(8, dtype=np.float32), "label": 0} for i in range(4)]
  batch = next(iter(pipeline.train_dataset(
      records, batch_size=4, seed=0, modalities=("rgb_features", "skeleton_features"),
      clip_frames=4, augment=False, process_index=0, process_count=1)))
  np.testing.assert_array_equal(batch["rgb_features"],
                                np.arange(8)[None] + batch["index"][:, None])
  np.testing.assert_array_equal(batch["skeleton_features"], np.broadcast_to(-np.arange(8), (4, 8)))


def test_restored_iterator_state_gives_the_same_next_batch():
  records = _records(30)

  def make():
    return iter(pipeline.train_dataset(records, batch_size=4, seed=1, process_index=0,
                                       process_count=1))

  it = make()
  _take(it, 9)  # past the first epoch (30 records / 4), so the epoch counter is exercised
  state = it.get_state()
  expected = _take(it, 2)
  resumed = make()
  resumed.set_state(json.loads(json.dumps(state)))  # states must survive serialisation
  assert all(_equal(x, y) for x, y in zip(expected, _take(resumed, 2)))


def test_process_slices_are_disjoint_and_cover_each_epoch():
  n, processes, batch = 36, 3, 4
  records = _records(n)
  seen = []
  for p in range(processes):
    it = iter(pipeline.train_dataset(records, batch_size=batch, seed=5, augment=False,
                                     process_index=p, process_count=processes))
    seen.append(np.concatenate([b["index"] for b in _take(it, n // processes // batch)]))
  for p in range(processes):
    for q in range(p + 1, processes):
      assert not set(seen[p]) & set(seen[q])
  np.testing.assert_array_equal(np.sort(np.concatenate(seen)), np.arange(n))


def test_eval_covers_every_record_once_with_padding_and_mask():
  n, processes, batch = 37, 3, 4
  records = _records(n)
  per_process = []
  for p in range(processes):
    batches = list(pipeline.eval_dataset(records, batch_size=batch, process_index=p,
                                         process_count=processes))
    assert len(batches) == pipeline.eval_num_batches(n, batch, processes) == 4
    per_process.append(batches)
  indices = np.concatenate([b["index"] for bs in per_process for b in bs])
  masks = np.concatenate([b["mask"] for bs in per_process for b in bs])
  assert masks.dtype == bool
  assert masks.sum() == n and (~masks).sum() == 4 * batch * processes - n
  np.testing.assert_array_equal(np.sort(indices[masks]), np.arange(n))
  assert np.all(indices[~masks] == -1)
  # Global batch b = the processes' b-th batches in process order = records in order.
  global_order = np.concatenate([per_process[p][b]["index"] for b in range(4)
                                 for p in range(processes)])
  np.testing.assert_array_equal(global_order[:n], np.arange(n))
  # Masked-in rows carry their own record.
  first = per_process[1][0]
  np.testing.assert_array_equal(first["skeleton"][0], records[first["index"][0]]["skeleton"])


def test_joint_bone_stream_and_skeleton_only():
  records = _records(4, rgb=False)
  batch = next(iter(pipeline.eval_dataset(records, batch_size=4, modalities=("skeleton",),
                                          skeleton_stream="joint_bone", process_index=0,
                                          process_count=1)))
  assert set(batch) == {"skeleton", "label", "index", "mask"}
  assert batch["skeleton"].shape == (4, 6, T, V, M)
  joints = records[batch["index"][2]]["skeleton"]
  np.testing.assert_array_equal(batch["skeleton"][2, :3], joints)
  np.testing.assert_array_equal(batch["skeleton"][2, 3:],
                                skeletons.joints_to_bones(joints, graphs.NTU))


def test_joint_bone_motion_stream_stops_at_the_stored_frame_count():
  records = _records(2, rgb=False)
  for r in records:
    r["frame_count"] = np.int32(T - 3)
  batch = next(iter(pipeline.eval_dataset(records, batch_size=2, modalities=("skeleton",),
                                          skeleton_stream="joint_bone_motion", process_index=0,
                                          process_count=1)))
  x = batch["skeleton"][0]
  assert x.shape == (12, T, V, M)
  joints = records[batch["index"][0]]["skeleton"]
  np.testing.assert_array_equal(x[:6], np.concatenate(
      [joints, skeletons.joints_to_bones(joints, graphs.NTU)]))
  np.testing.assert_allclose(x[6:9, :T - 4], joints[:, 1:T - 3] - joints[:, :T - 4], atol=1e-6)
  assert not x[6:, T - 4:].any()  # from the last stored frame on: no motion into the padding


def test_missing_modality_is_a_clear_error():
  with pytest.raises(ValueError, match="modality 'rgb' needs feature clip or rgb"):
    pipeline.train_dataset(_records(4, rgb=False), batch_size=2, seed=0,
                           modalities=("rgb",), process_index=0, process_count=1)


_SHARDING_SCRIPT = textwrap.dedent("""
    import jax, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec
    from amfi_jax.data import pipeline
    assert jax.device_count() == 8, jax.devices()
    records = [{"clip": np.full((2, 4, 4, 3), i, np.uint8),
                "skeleton": np.full((3, 5, 25, 2), i, np.float32), "label": i % 3}
               for i in range(13)]
    mesh = Mesh(np.array(jax.devices()), ("data",))
    sharding = NamedSharding(mesh, PartitionSpec("data"))
    batches = list(pipeline.eval_dataset(records, batch_size=8))
    assert len(batches) == 2
    g = pipeline.global_batch(batches[1], sharding)
    assert g["rgb"].shape == (8, 2, 4, 4, 3) and g["rgb"].dtype == np.uint8
    assert g["skeleton"].shape == (8, 3, 5, 25, 2)
    assert len(g["rgb"].addressable_shards) == 8
    assert all(s.data.shape == (1, 2, 4, 4, 3) for s in g["rgb"].addressable_shards)
    assert g["rgb"].sharding == sharding
    np.testing.assert_array_equal(np.asarray(g["index"]), [8, 9, 10, 11, 12, -1, -1, -1])
    np.testing.assert_array_equal(np.asarray(g["mask"]), [1, 1, 1, 1, 1, 0, 0, 0])
    shard5 = [s for s in g["skeleton"].addressable_shards if s.index[0].start == 4][0]
    assert float(np.asarray(shard5.data).max()) == 12.0
    print("OK")
""")


def test_global_batch_sharded_over_8_fake_devices():
  env = cpu_env(8)
  result = subprocess.run([sys.executable, "-c", _SHARDING_SCRIPT], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.strip().endswith("OK")
