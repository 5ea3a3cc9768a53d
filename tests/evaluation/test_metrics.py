"""Metrics on hand-computed inputs, tie breaking, masking, and the accumulator across batches."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from amfi_jax.evaluation import metrics

# Five samples, K = 5 (class 4 never occurs in the labels). Hand-derived facts:
#   row 0: label 0, top logit          -> rank 0
#   row 1: label 2, class 1 above it   -> rank 1
#   row 2: label 1, TIED with class 0  -> rank 1 (the lower index wins), predicted 0
#   row 3: label 3, top logit          -> rank 0
#   row 4: label 2, class 0 above, class 1 tied with a lower index -> rank 2
LOGITS = np.array([
    [2.0, 1.0, 0.0, 0.0, -9.0],
    [0.0, 3.0, 1.0, 0.0, -9.0],
    [1.0, 1.0, 0.0, 0.0, -9.0],
    [0.0, 0.0, 0.0, 5.0, -9.0],
    [5.0, 0.0, 0.0, 0.0, -9.0],
], dtype=np.float32)
LABELS = np.array([0, 2, 1, 3, 2])
PREDICTIONS = np.array([0, 1, 0, 3, 0])


def test_label_ranks_break_ties_towards_the_lowest_index():
  np.testing.assert_array_equal(metrics.label_ranks(LOGITS, LABELS), [0, 1, 1, 0, 2])
  # top-1 through ranks agrees with argmax on the tie.
  np.testing.assert_array_equal(np.argmax(LOGITS, axis=1), PREDICTIONS)


def test_topk_accuracy_on_known_inputs():
  assert metrics.topk_accuracy(LOGITS, LABELS, 1) == pytest.approx(2 / 5)
  assert metrics.topk_accuracy(LOGITS, LABELS, 2) == pytest.approx(4 / 5)
  assert metrics.topk_accuracy(LOGITS, LABELS, 3) == pytest.approx(1.0)
  assert metrics.topk_accuracy(LOGITS, LABELS, 50) == pytest.approx(1.0)  # k clipped to K
  # All-equal logits: the label's rank is its index.
  flat = np.zeros((6, 6))
  assert metrics.topk_accuracy(flat, np.arange(6), 5) == pytest.approx(5 / 6)
  with pytest.raises(ValueError, match="k must be"):
    metrics.topk_accuracy(LOGITS, LABELS, 0)
  with pytest.raises(ValueError, match="labels must lie"):
    metrics.topk_accuracy(LOGITS, np.array([0, 1, 2, 3, 5]), 1)


def test_confusion_matrix_rows_true_columns_predicted():
  confusion = metrics.confusion_matrix(LABELS, PREDICTIONS, 5)
  expected = np.zeros((5, 5), np.int64)
  for t, p in [(0, 0), (2, 1), (1, 0), (3, 3), (2, 0)]:
    expected[t, p] += 1
  np.testing.assert_array_equal(confusion, expected)
  assert confusion.dtype == np.int64
  with pytest.raises(ValueError, match="predictions must lie"):
    metrics.confusion_matrix(LABELS, np.array([0, 1, 0, 3, 7]), 5)


def test_mean_class_accuracy_skips_absent_classes():
  confusion = metrics.confusion_matrix(LABELS, PREDICTIONS, 5)
  # Recalls: class 0 1/1, class 1 0/1, class 2 0/2, class 3 1/1; class 4 absent -> (1+0+0+1)/4.
  assert metrics.mean_class_accuracy(confusion) == pytest.approx(0.5)
  np.testing.assert_allclose(metrics.per_class_accuracy(confusion)[:4], [1, 0, 0, 1])
  assert math.isnan(metrics.per_class_accuracy(confusion)[4])
  assert math.isnan(metrics.mean_class_accuracy(np.zeros((3, 3))))


def test_cross_entropy_known_values_and_stability():
  logits = np.array([[0.0, 0.0], [np.log(3.0), 0.0], [1000.0, 0.0], [-1000.0, 1000.0]])
  loss = metrics.cross_entropy(logits, np.array([0, 0, 1, 1]))
  np.testing.assert_allclose(loss, [np.log(2.0), np.log(4.0 / 3.0), 1000.0, 0.0], atol=1e-9)
  assert np.all(np.isfinite(loss))


def test_accumulator_known_inputs_with_masked_rows():
  acc = metrics.EvalAccumulator()
  # The padding rows hold a NaN logit and label -1: a metric that used them would break.
  padding = np.full((2, 5), np.nan, np.float32)
  acc.add(np.concatenate([LOGITS[:3], padding[:1]]), np.array([0, 2, 1, -1]),
          np.array([True, True, True, False]), np.array([10, 11, 12, -1]))
  acc.add(np.concatenate([LOGITS[3:], padding[1:]]), np.array([3, 2, -1]),
          np.array([True, True, False]), np.array([13, 14, -1]))
  result = acc.result(5, class_names=["a", "b", "c", "d", "e"])
  assert result.num_samples == 5
  assert result.top1 == pytest.approx(0.4)
  assert result.topk == 5 and result.top5 == pytest.approx(1.0)
  assert result.mean_class_accuracy == pytest.approx(0.5)
  assert result.loss == pytest.approx(metrics.cross_entropy(LOGITS, LABELS).mean())
  np.testing.assert_array_equal(result.confusion,
                                metrics.confusion_matrix(LABELS, PREDICTIONS, 5))
  np.testing.assert_array_equal(result.indices, [10, 11, 12, 13, 14])
  np.testing.assert_array_equal(result.predictions, PREDICTIONS)
  np.testing.assert_allclose(result.probabilities.sum(axis=1), 1.0, rtol=1e-6)
  assert result.class_names == ("a", "b", "c", "d", "e")


def test_accumulator_topk_uses_min_5_k():
  acc = metrics.EvalAccumulator()
  acc.add(np.array([[3.0, 2.0, 1.0]]), [2], [True], [0])
  result = acc.result(3)
  assert result.topk == 3 and result.top5 == 1.0 and result.top1 == 0.0


def test_accumulator_across_batches_equals_one_shot():
  rng = np.random.default_rng(0)
  n, k = 97, 12
  logits = rng.normal(size=(n, k)).astype(np.float32)
  labels = rng.integers(0, k, size=n)
  features = rng.normal(size=(n, 7)).astype(np.float32)
  order = rng.permutation(n)  # batches arrive in an arbitrary index order
  acc = metrics.EvalAccumulator()
  batch = 16
  for start in range(0, n, batch):
    rows = order[start:start + batch]
    pad = batch - rows.size
    # Pad the last batch the way the eval pipeline does.
    acc.add(np.concatenate([logits[rows], np.zeros((pad, k), np.float32)]),
            np.concatenate([labels[rows], -np.ones(pad, int)]),
            np.concatenate([np.ones(rows.size, bool), np.zeros(pad, bool)]),
            np.concatenate([rows, -np.ones(pad, int)]),
            features={"fused": np.concatenate([features[rows], np.zeros((pad, 7), np.float32)])})
  result = acc.result(k)
  predictions = np.argmax(logits, axis=1)
  confusion = metrics.confusion_matrix(labels, predictions, k)
  assert result.num_samples == n
  assert result.top1 == pytest.approx(metrics.topk_accuracy(logits, labels, 1))
  assert result.top5 == pytest.approx(metrics.topk_accuracy(logits, labels, 5))
  assert result.mean_class_accuracy == pytest.approx(metrics.mean_class_accuracy(confusion))
  assert result.loss == pytest.approx(metrics.cross_entropy(logits, labels).mean(), rel=1e-6)
  np.testing.assert_array_equal(result.confusion, confusion)
  np.testing.assert_array_equal(result.indices, np.arange(n))
  np.testing.assert_array_equal(result.labels, labels)
  np.testing.assert_array_equal(result.logits, logits)
  np.testing.assert_array_equal(result.features["fused"], features)


def test_accumulator_given_loss_sum_and_errors():
  acc = metrics.EvalAccumulator()
  acc.add(LOGITS[:2], LABELS[:2], [True, True], [0, 1], loss_sum=3.0)
  acc.add(LOGITS[2:], LABELS[2:], [True, True, False], [2, 3, -1], loss_sum=1.0)
  assert acc.result(5).loss == pytest.approx(4.0 / 4)

  with pytest.raises(ValueError, match="no unmasked samples"):
    metrics.EvalAccumulator().result(5)
  with pytest.raises(ValueError, match="expected 6"):
    acc.result(6)
  repeated = metrics.EvalAccumulator()
  repeated.add(LOGITS[:2], LABELS[:2], [True, True], [4, 5])
  repeated.add(LOGITS[:2], LABELS[:2], [True, True], [5, 6])
  with pytest.raises(ValueError, match=r"more than once: \[5\]"):
    repeated.result(5)
  with pytest.raises(ValueError, match="features"):
    repeated.add(LOGITS[:1], LABELS[:1], [True], [9], features={"rgb": np.zeros((1, 2))})


def test_to_dict_is_json_with_nulls_for_non_finite():
  acc = metrics.EvalAccumulator()
  acc.add(LOGITS, LABELS, np.ones(5, bool), np.arange(5), loss_sum=float("nan"))
  as_dict = acc.result(5).to_dict()
  text = json.dumps(as_dict, allow_nan=False)
  back = json.loads(text)
  assert back["loss"] is None
  assert back["top1"] == pytest.approx(0.4)
  assert back["num_samples"] == 5 and back["topk"] == 5
  assert back["confusion"][2] == [1, 1, 0, 0, 0]
  assert "confusion" not in acc.result(5).to_dict(include_confusion=False)
