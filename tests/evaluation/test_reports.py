"""Figures, per-sample score files, results.json and the results table."""

from __future__ import annotations

import json

import numpy as np
import pytest
from matplotlib import image as mpimg

from amfi_jax.evaluation import reports

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _read_png(path):
  assert path.read_bytes()[:8] == PNG_SIGNATURE
  return mpimg.imread(path)


def _blobs(per_class=30, dims=20, seed=0):
  """Three well separated Gaussian blobs: (90, dims) features and their labels."""
  rng = np.random.default_rng(seed)
  centres = np.zeros((3, dims))
  for c in range(3):
    centres[c, c] = 20.0
  features = np.concatenate([centres[c] + rng.normal(size=(per_class, dims)) for c in range(3)])
  return features.astype(np.float32), np.repeat(np.arange(3), per_class)


@pytest.mark.parametrize("num_classes", [5, 120])
def test_confusion_png_is_a_plausible_image(tmp_path, num_classes):
  rng = np.random.default_rng(0)
  labels = rng.integers(0, num_classes, size=20 * num_classes)
  predictions = np.where(rng.random(labels.size) < 0.7, labels,
                         rng.integers(0, num_classes, size=labels.size))
  confusion = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(confusion, (labels, predictions), 1)
  names = [f"action class number {i}" for i in range(num_classes)]
  path = tmp_path / "sub" / "confusion.png"
  reports.save_confusion_png(path, confusion, names, title="test")
  image = _read_png(path)
  height, width = image.shape[:2]
  assert image.ndim == 3 and image.shape[2] in (3, 4)
  # Big enough for 120 class names to get a row each, not absurd for 5.
  assert min(height, width) >= (1200 if num_classes == 120 else 300)
  assert max(height, width) <= 4000
  assert image[..., :3].std() > 0.05  # not a blank canvas


def test_confusion_png_rejects_wrong_names(tmp_path):
  with pytest.raises(ValueError, match="2 class names given for 3"):
    reports.save_confusion_png(tmp_path / "c.png", np.eye(3), ["a", "b"])


def test_tsne_embedding_separates_blobs_and_is_deterministic():
  features, labels = _blobs()
  embedding = reports.tsne_embedding(features, seed=0)
  assert embedding.shape == (90, 2)
  centroids = np.stack([embedding[labels == c].mean(axis=0) for c in range(3)])
  distances = np.linalg.norm(embedding[:, None, :] - centroids[None], axis=-1)
  # Every point is nearer its own blob's centroid, with a clear margin between blobs.
  np.testing.assert_array_equal(np.argmin(distances, axis=1), labels)
  spread = max(np.linalg.norm(embedding[labels == c] - centroids[c], axis=1).max()
               for c in range(3))
  between = min(np.linalg.norm(centroids[a] - centroids[b]) for a in range(3) for b in range(a))
  assert between > 2 * spread
  np.testing.assert_array_equal(embedding, reports.tsne_embedding(features, seed=0))


def test_tsne_embedding_small_sets():
  features, _ = _blobs(per_class=2)  # N = 6 < perplexity 30: clipped, still works
  assert reports.tsne_embedding(features).shape == (6, 2)
  with pytest.raises(ValueError, match="at least 5 points, got 4"):
    reports.tsne_embedding(features[:4])


def test_save_tsne_png_panels_and_subsample(tmp_path):
  features, labels = _blobs()
  path = tmp_path / "tsne.png"
  embeddings = reports.save_tsne_png(
      path, {"rgb": features, "skeleton": features[:, ::-1], "fused": 2 * features}, labels,
      ["wave", "clap", "sit"], title="features", max_points=45)
  assert sorted(embeddings) == ["fused", "rgb", "skeleton"]
  assert all(e.shape == (45, 2) for e in embeddings.values())
  image = _read_png(path)
  assert image.shape[1] > 2 * image.shape[0]  # three panels side by side
  assert image[..., :3].std() > 0.05
  np.testing.assert_array_equal(reports.subsample_indices(90, 45, seed=0),
                                reports.subsample_indices(90, 45, seed=0))


def test_tsne_figure_legend_only_for_few_classes():
  features, labels = _blobs(per_class=4)
  fig, _ = reports.tsne_figure({"rgb": features}, labels, ["wave", "clap", "sit"])
  assert [t.get_text() for t in fig.legends[0].get_texts()] == ["wave", "clap", "sit"]
  many = [f"class {i}" for i in range(25)]
  fig, _ = reports.tsne_figure({"rgb": features}, labels + 20, many, title="NTU")
  assert fig.legends == []
  assert "25 classes" in fig.get_suptitle()
  with pytest.raises(ValueError, match="labels must lie"):
    reports.tsne_figure({"rgb": features}, labels + 2, ["a", "b", "c"])


def test_save_tsne_png_too_few_points_still_writes(tmp_path):
  features, labels = _blobs(per_class=1)
  path = tmp_path / "tsne.png"
  assert reports.save_tsne_png(path, {"rgb": features}, labels) == {}
  assert _read_png(path).shape[0] > 100
  with pytest.raises(ValueError, match="must be \\(3, C\\)"):
    reports.save_tsne_png(path, {"rgb": features[:2]}, labels)


def test_per_sample_scores_round_trip(tmp_path):
  rng = np.random.default_rng(1)
  probabilities = rng.dirichlet(np.ones(4), size=3).astype(np.float32)
  names = ["S001C001P001R001A001", "S001C001P001R001A002", "S002C003P004R002A004"]
  path = tmp_path / "scores.jsonl"
  reports.write_per_sample_scores(path, names, np.array([1, 0, 3]), probabilities,
                                  ["a", "b", "c", "d"])
  rows = reports.read_per_sample_scores(path)
  assert list(rows) == names
  row = rows["S002C003P004R002A004"]
  assert row["label"] == 3 and row["label_name"] == "d"
  assert row["prediction"] == int(np.argmax(probabilities[2]))
  np.testing.assert_array_equal(np.array(rows[names[0]]["scores"], np.float32), probabilities[0])
  assert len(path.read_text().splitlines()) == 3
  with pytest.raises(ValueError, match="unique"):
    reports.write_per_sample_scores(path, ["x", "x", "y"], np.zeros(3, int), probabilities)
  path.write_text(path.read_text() + path.read_text().splitlines()[0] + "\n")
  with pytest.raises(ValueError, match="appears twice"):
    reports.read_per_sample_scores(path)


def _entry(top1, step, selected_on="validation"):
  return reports.stage_entry(
      best_step=step, selected_on=selected_on,
      validation={"top1": top1 + 0.01, "top5": 0.99, "mean_class_accuracy": 0.9},
      test={"top1": np.float32(top1), "top5": 0.9876, "mean_class_accuracy": top1 - 0.01,
            "loss": float("nan"), "num_samples": np.int64(16487), "topk": 5,
            "confusion": [[1]]},
      config={"lr": 0.1, "batch_size": 64})


def test_update_results_json_preserves_other_stages(tmp_path):
  path = tmp_path / "run" / "results.json"
  reports.update_results_json(path, "rgb", _entry(0.8512, 1000))
  reports.update_results_json(path, "skeleton", _entry(0.8801, 2000))
  reports.update_results_json(path, "rgb", _entry(0.8600, 3000))
  results = json.loads(path.read_text())
  assert list(results) == ["rgb", "skeleton"]
  assert results["rgb"]["best_step"] == 3000
  assert results["skeleton"]["test"]["top1"] == pytest.approx(0.8801, rel=1e-6)
  assert results["skeleton"]["test"]["loss"] is None  # NaN stored as null
  assert "confusion" not in results["skeleton"]["test"]
  assert results["skeleton"]["selection_protocol"].startswith("best on validation")
  assert [p.name for p in path.parent.iterdir()] == ["results.json"]  # no temp files left
  path.write_text("[1, 2]")
  with pytest.raises(ValueError, match="JSON object"):
    reports.update_results_json(path, "fusion", _entry(0.9, 1))


def test_format_results_table_contains_the_numbers():
  results = {"fusion": {**_entry(0.9123, 30, selected_on="test"), "wall_seconds": 90.0,
                        "resumed_from_step": 12},
             "rgb": {**_entry(0.8512, 10), "wall_seconds": 754.2},
             "skeleton": {"best_step": None, "selected_on": "validation", "test": None}}
  table = reports.format_results_table(results)
  lines = table.splitlines()
  assert lines[0].split()[:2] == ["Stage", "Top-1"]
  rgb, skeleton, fusion = lines[2], lines[3], lines[4]  # paper order, whatever the dict order
  assert rgb.startswith("RGB only") and "85.12" in rgb and "98.76" in rgb and "84.12" in rgb
  assert "16487" in rgb and "best on validation" in rgb
  assert skeleton.startswith("Skeleton only") and skeleton.count(" - ") >= 3
  assert fusion.startswith("Fusion") and "91.23" in fusion and "paper Alg. 1" in fusion
  assert " 12.6 " in rgb and " 1.5+ " in fusion  # minutes; + = resumed
