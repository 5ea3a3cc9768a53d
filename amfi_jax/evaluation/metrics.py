"""Classification metrics computed on the host: top-k, mean class accuracy, confusion, loss.

The training loop runs the model on the devices and hands each evaluation batch to an
`EvalAccumulator` as numpy arrays (logits, labels, the padding mask and the record indices, and
optionally the stream features for the t-SNE figures). `EvalAccumulator.result()` then returns
an `EvalResult` with every metric of SPEC §2 and the per-sample arrays the reports need.

Conventions shared by every function here:
  - Accuracies are fractions in [0, 1]; reports multiply by 100.
  - Ties are broken towards the lowest class index, exactly as `np.argmax` does: the top-1
    prediction is the first maximal logit, and for top-k the label's rank is the number of
    classes with a strictly larger logit plus the number of classes with an EQUAL logit and a
    lower index. So a label tied with a lower-indexed class counts as correct only if k is large
    enough to hold both, and top-1 via `topk_accuracy(..., 1)` always agrees with argmax.
  - k of "top-5" is min(5, K): with fewer than five classes top-5 is trivially 1.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def _check_logits_labels(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  logits = np.asarray(logits)
  labels = np.asarray(labels)
  if logits.ndim != 2:
    raise ValueError(f"logits must be (N, K), got shape {logits.shape}")
  if labels.shape != (logits.shape[0],):
    raise ValueError(f"labels must be ({logits.shape[0]},) to match logits {logits.shape}, "
                     f"got shape {labels.shape}")
  if labels.size and (labels.min() < 0 or labels.max() >= logits.shape[1]):
    raise ValueError(f"labels must lie in [0, {logits.shape[1]}), got range "
                     f"[{labels.min()}, {labels.max()}]")
  return logits, labels.astype(np.int64)


def label_ranks(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """0-based rank of each sample's true class among its logits, ties to the lowest index.

  Args:
    logits: (N, K) scores (logits or probabilities: only the order matters).
    labels: (N,) int true classes.

  Returns:
    (N,) int64 ranks; rank 0 means the top-1 prediction (`argmax`) is the label.
  """
  logits, labels = _check_logits_labels(logits, labels)
  true_scores = np.take_along_axis(logits, labels[:, None], axis=1)
  lower_index = np.arange(logits.shape[1])[None, :] < labels[:, None]
  beaten_by = (logits > true_scores) | ((logits == true_scores) & lower_index)
  return beaten_by.sum(axis=1).astype(np.int64)


def topk_accuracy(logits: np.ndarray, labels: np.ndarray, k: int) -> float:
  """Fraction of samples whose label is among the k highest scores (ties: see module doc).

  Args:
    logits: (N, K) scores.
    labels: (N,) int true classes.
    k: 1 <= k; values above K are clipped to K.

  Returns:
    The accuracy in [0, 1], NaN for N = 0.
  """
  if k < 1:
    raise ValueError(f"k must be >= 1, got {k}")
  ranks = label_ranks(logits, labels)
  if ranks.size == 0:
    return math.nan
  return float(np.mean(ranks < k))


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
  """K x K int64 counts: rows are true classes, columns predicted classes.

  Raises:
    ValueError: shapes differ or a label / prediction lies outside [0, num_classes).
  """
  labels = np.asarray(labels).astype(np.int64).reshape(-1)
  predictions = np.asarray(predictions).astype(np.int64).reshape(-1)
  if labels.shape != predictions.shape:
    raise ValueError(f"labels {labels.shape} and predictions {predictions.shape} differ in length")
  for name, values in (("labels", labels), ("predictions", predictions)):
    if values.size and (values.min() < 0 or values.max() >= num_classes):
      raise ValueError(f"{name} must lie in [0, {num_classes}), got range "
                       f"[{values.min()}, {values.max()}]")
  flat = np.bincount(labels * num_classes + predictions, minlength=num_classes * num_classes)
  return flat.reshape(num_classes, num_classes).astype(np.int64)


def per_class_accuracy(confusion: np.ndarray) -> np.ndarray:
  """(K,) recall of each class (diagonal / row sum); NaN for classes absent from the labels."""
  confusion = np.asarray(confusion)
  support = confusion.sum(axis=1)
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(support > 0, np.diag(confusion) / np.maximum(support, 1), np.nan)


def mean_class_accuracy(confusion: np.ndarray) -> float:
  """Mean per-class recall over the classes that occur in the labels (rows with any count).

  Classes with no true samples are left out rather than counted as 0 or 1, so a split that
  lacks some classes (a small validation split) is not penalised or flattered by them.
  NaN when the matrix is empty.
  """
  recalls = per_class_accuracy(confusion)
  present = ~np.isnan(recalls)
  if not present.any():
    return math.nan
  return float(np.mean(recalls[present]))


def log_softmax(logits: np.ndarray) -> np.ndarray:
  """Numerically stable log-softmax over the last axis, in float64."""
  logits = np.asarray(logits, dtype=np.float64)
  shifted = logits - np.max(logits, axis=-1, keepdims=True)
  return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))


def softmax(logits: np.ndarray) -> np.ndarray:
  """Softmax over the last axis (float32), via the stable log-softmax."""
  return np.exp(log_softmax(logits)).astype(np.float32)


def ranking(logits: np.ndarray, class_names) -> list[tuple[str, float]]:
  """One sample's logits → [(class name, probability)], most probable first."""
  probs = softmax(np.asarray(logits)[None])[0]
  order = np.argsort(-probs, kind="stable")
  return [(class_names[i], float(probs[i])) for i in order]


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """(N,) float64 per-sample cross entropy -log softmax(logits)[label]."""
  logits, labels = _check_logits_labels(logits, labels)
  return -np.take_along_axis(log_softmax(logits), labels[:, None], axis=1)[:, 0]


def _json_float(value: float) -> float | None:
  """A float JSON can hold: NaN / inf become None (JSON has no literal for them)."""
  value = float(value)
  return value if math.isfinite(value) else None


@dataclasses.dataclass
class EvalResult:
  """Metrics of one evaluation, plus the per-sample arrays the reports need.

  Per-sample arrays are sorted by record index, so two evaluations of the same split line up
  whatever order the batches (or processes) delivered them in.

  Attributes:
    top1, top5: accuracies in [0, 1]; top5 uses k = `topk` = min(5, K).
    topk: the k used for `top5`.
    mean_class_accuracy: mean per-class recall over classes present in the labels.
    loss: mean cross entropy over the unmasked samples.
    num_samples: N, the unmasked samples seen.
    num_classes: K.
    confusion: (K, K) int64, rows true, columns predicted.
    indices: (N,) int64 record indices in the split.
    labels: (N,) int64.
    predictions: (N,) int64 argmax of the logits (ties to the lowest index).
    logits: (N, K) float32.
    features: name -> (N, C) float32 (e.g. 'rgb', 'skeleton', 'fused'); empty if none given.
    class_names: K names, or None.
  """

  top1: float
  top5: float
  topk: int
  mean_class_accuracy: float
  loss: float
  num_samples: int
  num_classes: int
  confusion: np.ndarray
  indices: np.ndarray
  labels: np.ndarray
  predictions: np.ndarray
  logits: np.ndarray
  features: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
  class_names: tuple[str, ...] | None = None

  @property
  def probabilities(self) -> np.ndarray:
    """(N, K) float32 softmax of the logits."""
    return softmax(self.logits)

  @property
  def per_class_accuracy(self) -> np.ndarray:
    """(K,) recall per class, NaN for classes absent from this split."""
    return per_class_accuracy(self.confusion)

  def scalars(self) -> dict[str, float]:
    """The scalar metrics, for a metric writer: top1, top5, mean_class_accuracy, loss."""
    return {"top1": self.top1, "top5": self.top5,
            "mean_class_accuracy": self.mean_class_accuracy, "loss": self.loss}

  def to_dict(self, include_confusion: bool = True) -> dict[str, Any]:
    """JSON-ready summary: the scalars (non-finite as None), N, K, k and the confusion lists.

    The per-sample arrays and features are left out; `reports.write_per_sample_scores` stores
    the per-sample scores keyed by sample name.
    """
    out: dict[str, Any] = {name: _json_float(value) for name, value in self.scalars().items()}
    out.update(topk=int(self.topk), num_samples=int(self.num_samples),
               num_classes=int(self.num_classes))
    if include_confusion:
      out["confusion"] = self.confusion.astype(np.int64).tolist()
    return out


class EvalAccumulator:
  """Collects evaluation batches on the host and computes an `EvalResult` at the end.

  Typical use:

    acc = EvalAccumulator()
    for batch in eval_batches:
      out = eval_step(state, batch)
      acc.add(np.asarray(out.logits), batch["label"], batch["mask"], batch["index"],
              features={"rgb": np.asarray(out.rgb_features)})
    result = acc.result(num_classes, class_names)

  Rows whose mask is False (the padding of the last global batch) are dropped on `add`. Each
  record index may be seen only once: `result()` raises on repeats, because a repeated index
  means the evaluation pipeline visited a record twice (e.g. a repeating dataset) and every
  metric would be silently biased.
  """

  def __init__(self):
    self._logits: list[np.ndarray] = []
    self._labels: list[np.ndarray] = []
    self._indices: list[np.ndarray] = []
    self._features: dict[str, list[np.ndarray]] | None = None
    # Loss is summed per batch, either as handed in or computed from that batch's logits, so a
    # caller may mix the two without double counting.
    self._loss_sum = 0.0
    self._num_samples = 0

  @property
  def num_samples(self) -> int:
    """Unmasked samples added so far."""
    return self._num_samples

  def add(self, logits: np.ndarray, labels: np.ndarray, mask: np.ndarray, indices: np.ndarray,
          features: Mapping[str, np.ndarray] | None = None,
          loss_sum: float | None = None) -> None:
    """Adds one batch; rows with mask False are ignored.

    Args:
      logits: (B, K) scores.
      labels: (B,) int classes (padding rows may hold anything, e.g. -1).
      mask: (B,) bool, True for real samples.
      indices: (B,) int record indices in the split.
      features: optional name -> (B, C) arrays; every batch must give the same names.
      loss_sum: optional SUM of the per-sample loss over this batch's unmasked rows (e.g. the
        device-side loss including extra terms); when None the cross entropy is computed here
        from the logits.
    """
    logits = np.asarray(logits)
    if logits.ndim != 2:
      raise ValueError(f"logits must be (B, K), got shape {logits.shape}")
    batch = logits.shape[0]
    labels, mask, indices = (np.asarray(x).reshape(-1) for x in (labels, mask, indices))
    for name, x in (("labels", labels), ("mask", mask), ("indices", indices)):
      if x.shape != (batch,):
        raise ValueError(f"{name} must have {batch} entries to match logits {logits.shape}, "
                         f"got {x.shape}")
    if self._logits and logits.shape[1] != self._logits[0].shape[1]:
      raise ValueError(f"logits have {logits.shape[1]} classes, earlier batches had "
                       f"{self._logits[0].shape[1]}")
    names = None if features is None else sorted(features)
    known = None if self._features is None else sorted(self._features)
    if self._logits and names != known:
      raise ValueError(f"features {names} differ from earlier batches' {known}")

    features = {} if features is None else {name: np.asarray(v) for name, v in features.items()}
    for name, value in features.items():
      if value.ndim != 2 or value.shape[0] != batch:
        raise ValueError(f"feature {name!r} must be ({batch}, C), got shape {value.shape}")

    # Everything is checked before anything is stored, so a rejected batch leaves no trace.
    mask = mask.astype(bool)
    # np.array copies, so a caller may reuse its batch buffers after `add` returns.
    kept_logits = np.array(logits[mask], dtype=np.float32)
    kept_labels = labels[mask].astype(np.int64)
    _check_logits_labels(kept_logits, kept_labels)
    self._logits.append(kept_logits)
    self._labels.append(kept_labels)
    self._indices.append(indices[mask].astype(np.int64))
    if names is not None:
      if self._features is None:
        self._features = {name: [] for name in features}
      for name, value in features.items():
        self._features[name].append(np.array(value[mask], dtype=np.float32))
    if loss_sum is None:
      self._loss_sum += float(np.sum(cross_entropy(kept_logits, kept_labels)))
    else:
      self._loss_sum += float(loss_sum)
    self._num_samples += int(mask.sum())

  def result(self, num_classes: int, class_names: Sequence[str] | None = None) -> EvalResult:
    """Computes every metric over the samples added so far.

    Raises:
      ValueError: nothing was added, K differs from `num_classes`, `class_names` has the wrong
        length, or a record index was added twice.
    """
    if self._num_samples == 0:
      raise ValueError("EvalAccumulator.result(): no unmasked samples were added")
    if class_names is not None and len(class_names) != num_classes:
      raise ValueError(f"{len(class_names)} class names given for {num_classes} classes")
    logits = np.concatenate(self._logits)
    if logits.shape[1] != num_classes:
      raise ValueError(f"logits have {logits.shape[1]} classes, expected {num_classes}")
    labels = np.concatenate(self._labels)
    indices = np.concatenate(self._indices)
    order = np.argsort(indices, kind="stable")
    indices, labels, logits = indices[order], labels[order], logits[order]
    repeated = indices[1:][indices[1:] == indices[:-1]]
    if repeated.size:
      raise ValueError(f"record indices seen more than once: {np.unique(repeated)[:10].tolist()} "
                       f"({repeated.size} repeats); the evaluation must visit each record once")
    features = {}
    if self._features is not None:
      features = {name: np.concatenate(parts)[order] for name, parts in self._features.items()}

    predictions = np.argmax(logits, axis=1).astype(np.int64)
    confusion = confusion_matrix(labels, predictions, num_classes)
    topk = min(5, num_classes)
    ranks = label_ranks(logits, labels)
    return EvalResult(
        top1=float(np.mean(ranks < 1)),
        top5=float(np.mean(ranks < topk)),
        topk=topk,
        mean_class_accuracy=mean_class_accuracy(confusion),
        loss=self._loss_sum / self._num_samples,
        num_samples=int(labels.size),
        num_classes=int(num_classes),
        confusion=confusion,
        indices=indices,
        labels=labels,
        predictions=predictions,
        logits=logits,
        features=features,
        class_names=None if class_names is None else tuple(str(c) for c in class_names),
    )
