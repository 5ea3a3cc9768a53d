"""Evaluation reports: confusion-matrix and t-SNE figures, per-sample scores, results.json.

Figures are drawn on a bare `matplotlib.figure.Figure`, which renders with the Agg canvas when
saved to PNG; pyplot is never imported, so nothing here opens a window, needs a display or
changes the process-wide matplotlib backend (the training loop may run under any backend).

Files written for a stage (paths chosen by the caller):
  confusion PNG      paper Fig. 9: row-normalised colours, class names on both axes.
  t-SNE PNG          paper Fig. 8: one panel per feature set ('rgb', 'skeleton', 'fused').
  scores .jsonl      one row per sample keyed by sample NAME, as PYSKL / MMAction2 users expect.
  results.json       one entry per stage: best step, validation and test metrics, selection
                     protocol, config; `format_results_table` prints it like the paper's tables.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

# t-SNE needs more points than its perplexity; below this many there is nothing to show.
MIN_TSNE_POINTS = 5
# Classes beyond this many get no legend (it would cover the plot) and a continuous colour map.
MAX_LEGEND_CLASSES = 20
# Display names of the training stages (amfi_jax.workdir.STAGES), in the paper's table order.
STAGE_TITLES = {"rgb": "RGB only", "skeleton": "Skeleton only", "fusion": "Fusion"}
SELECTION_PROTOCOLS = {
    "final": "last checkpoint, fixed schedule (no selection)",
    "validation": "best on validation (held-out training subjects)",
    "test": "best on test (paper Alg. 1, optimistic)",
}


def _class_names(class_names: Sequence[str] | None, num_classes: int) -> list[str]:
  if class_names is None:
    return [str(i) for i in range(num_classes)]
  if len(class_names) != num_classes:
    raise ValueError(f"{len(class_names)} class names given for {num_classes} classes")
  return [str(c) for c in class_names]


def _prepare_path(path: str | os.PathLike) -> Path:
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  return path


# --------------------------------------------------------------------------------------------
# Confusion matrix (paper Fig. 9)


def save_confusion_png(path: str | os.PathLike, confusion: np.ndarray,
                       class_names: Sequence[str] | None = None, title: str = "",
                       *, dpi: int = 100) -> None:
  """Saves a confusion matrix as a PNG: rows true classes, columns predictions.

  Colours are row-normalised (each true class's recall distribution), so rare and frequent
  classes are equally readable. Cells carry the row percentage when K <= 30 and also the count
  when K <= 10; beyond 30 classes numbers would not fit, the colours carry the information.
  The figure grows with K (about 0.15 inch a cell for 120 classes) and the fonts shrink with the
  cells, so the 60 / 120 NTU class names stay legible when zoomed.

  Args:
    path: output .png path (parent folders are created).
    confusion: (K, K) counts.
    class_names: K names for both axes (indices if None).
    title: figure title; the overall accuracy is appended.
    dpi: output resolution.
  """
  confusion = np.asarray(confusion)
  if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1]:
    raise ValueError(f"confusion must be (K, K), got shape {confusion.shape}")
  k = confusion.shape[0]
  names = _class_names(class_names, k)
  support = confusion.sum(axis=1, keepdims=True)
  normalised = np.where(support > 0, confusion / np.maximum(support, 1), 0.0)

  # Cell size in inches: large for a handful of classes, >= 0.15 inch for 120.
  cell = float(np.clip(6.0 / k, 0.15, 0.9))
  font = float(np.clip(cell * 72 * 0.6, 4.0, 11.0))
  side = k * cell
  longest = max(len(n) for n in names)
  margin = min(0.07 * longest * font / 7.0 + 0.6, 4.0)  # room for the class names
  fig = Figure(figsize=(side + margin + 1.5, side + margin + 0.8))
  ax = fig.add_subplot()
  image = ax.imshow(normalised, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
  colorbar = fig.colorbar(image, ax=ax, fraction=0.046 * max(1.0, 5.0 / side), pad=0.02)
  colorbar.set_label("fraction of the true class")
  ax.set_xticks(np.arange(k))
  ax.set_yticks(np.arange(k))
  ax.set_xticklabels(names, rotation=90 if k > 10 else 45, ha="center" if k > 10 else "right",
                     fontsize=font)
  ax.set_yticklabels(names, fontsize=font)
  ax.set_xlabel("predicted class")
  ax.set_ylabel("true class")
  total = confusion.sum()
  accuracy = np.trace(confusion) / total if total else math.nan
  summary = f"top-1 {100 * accuracy:.2f}% of {total} samples"
  ax.set_title(f"{title}\n{summary}" if title else summary)
  if k <= 30:
    for i in range(k):
      for j in range(k):
        if confusion[i, j] == 0:
          continue
        text = f"{100 * normalised[i, j]:.0f}%"
        if k <= 10:
          text = f"{confusion[i, j]}\n{text}"
        ax.text(j, i, text, ha="center", va="center", fontsize=font * 0.8,
                color="white" if normalised[i, j] > 0.5 else "black")
  fig.savefig(_prepare_path(path), dpi=dpi, bbox_inches="tight")


# --------------------------------------------------------------------------------------------
# t-SNE of the stream features (paper Fig. 8)


def subsample_indices(num_points: int, max_points: int, seed: int = 0) -> np.ndarray:
  """Sorted indices of a deterministic random subset of at most `max_points` of `num_points`."""
  if num_points <= max_points:
    return np.arange(num_points)
  rng = np.random.default_rng(seed)
  return np.sort(rng.choice(num_points, size=max_points, replace=False))


def tsne_embedding(features: np.ndarray, seed: int = 0, *, perplexity: float = 30.0,
                   pca_dims: int = 50, num_threads: int | None = None) -> np.ndarray:
  """2-D t-SNE embedding of (N, C) features with scikit-learn, deterministic for a seed.

  Features are first reduced to `pca_dims` dimensions with PCA when C is larger (the usual
  practice: it removes noise dimensions and makes t-SNE several times faster on 512-d
  features). The perplexity is clipped to (N - 1) / 3 so that small sets still work
  (scikit-learn requires perplexity < N, and the neighbourhoods it calibrates need ~3x that).

  `num_threads` caps the OpenMP / BLAS threads (default: half the CPUs, at least one).
  scikit-learn's OpenMP threads spin while they wait, and when another process holds a core
  (the input pipeline, a concurrent run) t-SNE with all cores was measured 10-20x slower
  than with half of them (a 2-core machine with one busy core: 30 s instead of 1 s).

  Raises:
    ValueError: fewer than MIN_TSNE_POINTS points, or features not 2-D.
  """
  from sklearn.decomposition import PCA
  from sklearn.manifold import TSNE
  from threadpoolctl import threadpool_limits

  features = np.asarray(features, dtype=np.float64)
  if features.ndim != 2:
    raise ValueError(f"features must be (N, C), got shape {features.shape}")
  n = features.shape[0]
  if n < MIN_TSNE_POINTS:
    raise ValueError(f"t-SNE needs at least {MIN_TSNE_POINTS} points, got {n}")
  if num_threads is None:
    num_threads = max(1, (os.cpu_count() or 1) // 2)
  with threadpool_limits(limits=num_threads):
    if features.shape[1] > pca_dims and n > pca_dims:
      features = PCA(n_components=pca_dims, svd_solver="full",
                     random_state=seed).fit_transform(features)
    tsne = TSNE(n_components=2, perplexity=min(perplexity, (n - 1) / 3.0), init="pca",
                learning_rate="auto", random_state=seed)
    return tsne.fit_transform(features).astype(np.float32)


def save_tsne_png(path: str | os.PathLike, features: Mapping[str, np.ndarray], labels: np.ndarray,
                  class_names: Sequence[str] | None = None, title: str = "", *,
                  max_points: int = 2000, seed: int = 0, perplexity: float = 30.0,
                  num_threads: int | None = None) -> dict[str, np.ndarray]:
  """Saves `tsne_figure(...)` as a PNG (parent folders are created).

  Returns:
    name -> (n, 2) embedding of the drawn subset (empty dict when skipped).
  """
  fig, embeddings = tsne_figure(features, labels, class_names, title, max_points=max_points,
                                seed=seed, perplexity=perplexity, num_threads=num_threads)
  fig.savefig(_prepare_path(path), dpi=100, bbox_inches="tight")
  return embeddings


def tsne_figure(features: Mapping[str, np.ndarray], labels: np.ndarray,
                class_names: Sequence[str] | None = None, title: str = "", *,
                max_points: int = 2000, seed: int = 0, perplexity: float = 30.0,
                num_threads: int | None = None) -> tuple[Figure, dict[str, np.ndarray]]:
  """One t-SNE panel per feature set, points coloured by true class.

  The SAME deterministic subset of at most `max_points` samples is drawn in every panel, so
  the panels compare the streams on identical samples. With at most MAX_LEGEND_CLASSES classes
  a legend names them; with more (NTU's 60 / 120) colours come from a continuous map and no
  legend is drawn (it would cover the panels).

  Too few points for t-SNE (< MIN_TSNE_POINTS, e.g. a smoke-test split) do not raise: the
  figure is still made, each panel saying why it is empty, so that a finished training run
  never fails at its very last report. Call `tsne_embedding` directly to get the ValueError.

  Args:
    features: name -> (N, C) features, e.g. {'rgb': ..., 'skeleton': ..., 'fused': ...}.
    labels: (N,) int classes.
    class_names: names for the legend (indices if None); its length sets K.
    title: figure title.
    max_points: subsample size.
    seed: subsample and t-SNE seed.
    perplexity: t-SNE perplexity before clipping for small N.
    num_threads: see `tsne_embedding`.

  Returns:
    (figure, name -> (n, 2) embedding of the drawn subset; empty when skipped).
  """
  if not features:
    raise ValueError("a t-SNE figure needs at least one feature set")
  labels = np.asarray(labels).astype(np.int64).reshape(-1)
  for name, value in features.items():
    if np.ndim(value) != 2 or np.shape(value)[0] != labels.size:
      raise ValueError(f"feature {name!r} must be ({labels.size}, C) to match the labels, "
                       f"got shape {np.shape(value)}")
  num_classes = (len(class_names) if class_names is not None
                 else int(labels.max()) + 1 if labels.size else 0)
  names = _class_names(class_names, num_classes)
  if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
    raise ValueError(f"labels must lie in [0, {num_classes}), got range "
                     f"[{labels.min()}, {labels.max()}]")
  chosen = subsample_indices(labels.size, max_points, seed)
  sub_labels = labels[chosen]
  legend = num_classes <= MAX_LEGEND_CLASSES

  panels = len(features)
  fig = Figure(figsize=(5.0 * panels + (2.0 if legend else 0.5), 5.4))
  if num_classes <= 10:
    colours = [_cmap("tab10")(i) for i in range(num_classes)]
  elif legend:
    colours = [_cmap("tab20")(i) for i in range(num_classes)]
  else:
    colours = [_cmap("nipy_spectral")(i / max(num_classes - 1, 1)) for i in range(num_classes)]
    title = f"{title} (colour = class, {num_classes} classes)".strip()
  if title:
    fig.suptitle(title)

  embeddings: dict[str, np.ndarray] = {}
  too_few = chosen.size < MIN_TSNE_POINTS
  for p, (name, value) in enumerate(features.items()):
    ax = fig.add_subplot(1, panels, p + 1)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"{name} ({chosen.size} samples)")
    if too_few:
      ax.text(0.5, 0.5, f"t-SNE skipped:\nneeds at least {MIN_TSNE_POINTS} samples,\n"
              f"got {chosen.size}", ha="center", va="center", transform=ax.transAxes)
      continue
    embedding = tsne_embedding(np.asarray(value)[chosen], seed, perplexity=perplexity,
                               num_threads=num_threads)
    embeddings[name] = embedding
    for c in np.unique(sub_labels):
      points = embedding[sub_labels == c]
      ax.scatter(points[:, 0], points[:, 1], s=6, color=colours[c], label=names[c],
                 linewidths=0)
  if not too_few and legend:
    handles, legend_names = fig.axes[-1].get_legend_handles_labels()
    fig.legend(handles, legend_names, loc="center right", markerscale=2.5, fontsize=8,
               frameon=False)
    fig.subplots_adjust(right=1.0 - 1.8 / fig.get_figwidth())
  return fig, embeddings


def _cmap(name: str):
  from matplotlib import colormaps
  return colormaps[name]


# --------------------------------------------------------------------------------------------
# Per-sample scores


def _float32_list(row: np.ndarray) -> list[float | None]:
  # str() of a float32 is its shortest round-tripping repr, about half the characters of the
  # float64 repr json.dumps would write, and it reads back to the identical float32.
  return [float(s) if math.isfinite(v) else None
          for s, v in zip(map(str, row.astype(np.float32)), row.astype(np.float32))]


def write_per_sample_scores(path: str | os.PathLike, sample_names: Sequence[str],
                            labels: np.ndarray, probabilities: np.ndarray,
                            class_names: Sequence[str] | None = None) -> None:
  """Writes one JSON Lines row per sample, keyed by sample name.

  Row: {"sample": name, "label": int, "label_name": str, "prediction": int, "scores": [K]},
  with prediction = argmax(scores) (ties to the lowest index). Users match rows by NAME (e.g.
  to ensemble the scores of two runs), never by line number. Written atomically.

  Raises:
    ValueError: lengths differ, or a sample name repeats.
  """
  probabilities = np.asarray(probabilities)
  labels = np.asarray(labels).astype(np.int64).reshape(-1)
  if probabilities.ndim != 2:
    raise ValueError(f"probabilities must be (N, K), got shape {probabilities.shape}")
  n, k = probabilities.shape
  if len(sample_names) != n or labels.size != n:
    raise ValueError(f"{len(sample_names)} sample names, {labels.size} labels and {n} score rows "
                     "must agree")
  if len(set(sample_names)) != n:
    raise ValueError("sample names must be unique: rows are keyed by name")
  names = _class_names(class_names, k)
  predictions = np.argmax(probabilities, axis=1) if n else np.zeros(0, np.int64)
  lines = []
  for name, label, prediction, row in zip(sample_names, labels, predictions, probabilities):
    lines.append(json.dumps({
        "sample": str(name), "label": int(label),
        "label_name": names[label] if 0 <= label < k else str(label),
        "prediction": int(prediction), "scores": _float32_list(row),
    }, allow_nan=False))
  _atomic_write_text(_prepare_path(path), "".join(line + "\n" for line in lines))


def read_per_sample_scores(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
  """Reads a scores file back: sample name -> row (as written, in file order).

  Raises:
    ValueError: a sample name repeats.
  """
  rows: dict[str, dict[str, Any]] = {}
  with open(path, encoding="utf-8") as f:
    for line_number, line in enumerate(f, 1):
      if not line.strip():
        continue
      row = json.loads(line)
      if row["sample"] in rows:
        raise ValueError(f"{path}:{line_number}: sample {row['sample']!r} appears twice")
      rows[row["sample"]] = row
  return rows


# --------------------------------------------------------------------------------------------
# results.json and the results table


def _jsonable(value: Any) -> Any:
  """numpy scalars / arrays -> Python; NaN / inf -> None; mappings and sequences recursively."""
  if not isinstance(value, Mapping) and hasattr(value, "to_dict"):
    value = value.to_dict()  # ml_collections ConfigDict
  if isinstance(value, Mapping):
    return {str(k): _jsonable(v) for k, v in value.items()}
  if isinstance(value, np.ndarray):
    return _jsonable(value.tolist())
  if isinstance(value, (list, tuple)):
    return [_jsonable(v) for v in value]
  if isinstance(value, (bool, np.bool_)):
    return bool(value)
  if isinstance(value, (int, np.integer)):
    return int(value)
  if isinstance(value, (float, np.floating)):
    return float(value) if math.isfinite(value) else None
  if value is None or isinstance(value, str):
    return value
  return str(value)


def _atomic_write_text(path: Path, text: str) -> None:
  # A crash (or preemption) mid-write leaves the old file intact: readers see old or new, never
  # a truncated file.
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
  try:
    with os.fdopen(fd, "w", encoding="utf-8") as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def stage_entry(*, best_step: int | None, selected_on: str,
                validation: Any = None, test: Any = None,
                config: Any = None,
                selection_metric: str = "top1", wall_seconds: float | None = None,
                resumed_from_step: int | None = None) -> dict[str, Any]:
  """Builds the results.json entry of one stage in the layout `format_results_table` reads.

  Args:
    best_step: step of the selected checkpoint.
    selected_on: the protocol: 'final' (last checkpoint), 'validation' (honest selection) or
      'test' (the paper's Algorithm 1).
    validation / test: an `EvalResult`, or its `to_dict()`, or None when not evaluated. The
      confusion matrix is left out (it is in the PNG and would dwarf the file for 120 classes).
    config: the stage's config: a (nested) mapping or an ml_collections ConfigDict.
    selection_metric: the metric the checkpoint was selected on.
    wall_seconds: wall-clock time of the stage (setup, training, reports) in the invocation
      that finished it; `resumed_from_step` says whether an earlier invocation did part of it.
  """
  def metrics(result):
    if result is None:
      return None
    as_dict = dict(result) if isinstance(result, Mapping) else result.to_dict(False)
    as_dict.pop("confusion", None)
    return as_dict

  return {
      "best_step": best_step,
      "selected_on": selected_on,
      "protocol": selected_on,
      "selection_metric": selection_metric,
      "selection_protocol": SELECTION_PROTOCOLS.get(selected_on, selected_on),
      "validation": metrics(validation),
      "test": metrics(test),
      "config": _jsonable(config),
      "wall_seconds": None if wall_seconds is None else round(float(wall_seconds), 1),
      "resumed_from_step": resumed_from_step,
  }


def update_results_json(path: str | os.PathLike, stage: str,
                        entry: Mapping[str, Any]) -> dict[str, Any]:
  """Sets `stage`'s entry in results.json, keeping every other stage's, atomically.

  The file maps stage name -> entry (see `stage_entry`). Only one process (process 0) should
  write it. Non-finite floats are stored as null, numpy values as plain JSON.

  Returns:
    The whole updated mapping.

  Raises:
    ValueError: the existing file is not a JSON object (it is left untouched).
  """
  path = _prepare_path(path)
  results: dict[str, Any] = {}
  if path.exists():
    with open(path, encoding="utf-8") as f:
      results = json.load(f)
    if not isinstance(results, dict):
      raise ValueError(f"{path} does not hold a JSON object of stage entries")
  results[str(stage)] = _jsonable(entry)
  _atomic_write_text(path, json.dumps(results, indent=2, allow_nan=False) + "\n")
  return results


def _percent(metrics: Mapping[str, Any] | None, name: str) -> str:
  value = None if metrics is None else metrics.get(name)
  return "-" if value is None else f"{100.0 * float(value):.2f}"


def _minutes(seconds: float | None, resumed_from_step: int | None) -> str:
  """Wall time in minutes; '+' marks a stage resumed (earlier invocations not counted)."""
  if seconds is None:
    return "-"
  return f"{seconds / 60:.1f}" + ("+" if resumed_from_step is not None else "")


def format_results_table(results: Mapping[str, Mapping[str, Any]]) -> str:
  """Plain-text table of test accuracies (%) per stage, with the selection protocol.

  Rows follow the paper's order (RGB only, Skeleton only, Fusion), then any other stages in
  file order; missing test metrics print as '-'.
  """
  order = [s for s in STAGE_TITLES if s in results] + [s for s in results if s not in STAGE_TITLES]
  header = ["Stage", "Top-1 (%)", "Top-5 (%)", "Mean class (%)", "Test N", "Best step",
            "Wall (min)", "Selection"]
  rows = []
  for stage in order:
    entry = results[stage]
    test = entry.get("test")
    rows.append([
        STAGE_TITLES.get(stage, stage),
        _percent(test, "top1"), _percent(test, "top5"), _percent(test, "mean_class_accuracy"),
        "-" if not test or test.get("num_samples") is None else str(test["num_samples"]),
        "-" if entry.get("best_step") is None else str(entry["best_step"]),
        _minutes(entry.get("wall_seconds"), entry.get("resumed_from_step")),
        str(entry.get("selection_protocol") or entry.get("selected_on") or "-"),
    ])
  widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]

  def line(cells):
    # Names and the protocol left-aligned, numbers right-aligned.
    return "  ".join(c.ljust(w) if i in (0, len(cells) - 1) else c.rjust(w)
                     for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

  out = [line(header), line(["-" * w for w in widths])] + [line(r) for r in rows]
  small_k = sorted({int(results[s]["test"]["topk"]) for s in order
                    if results[s].get("test") and results[s]["test"].get("topk", 5) < 5})
  if small_k:
    out.append(f"(top-5 is top-{small_k[0]}: fewer than 5 classes)")
  out.append("Accuracies on the test split. Wall: the invocation that finished the stage "
             "(+: resumed, earlier invocations not counted).")
  return "\n".join(out)
