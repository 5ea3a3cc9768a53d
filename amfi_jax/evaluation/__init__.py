"""Host-side evaluation: metrics over a whole split, and the figures / files that report them."""

from amfi_jax.evaluation.metrics import (EvalAccumulator, EvalResult, confusion_matrix,
                                         cross_entropy, mean_class_accuracy, topk_accuracy)
from amfi_jax.evaluation.reports import (format_results_table, read_per_sample_scores,
                                         save_confusion_png, save_tsne_png, stage_entry,
                                         tsne_embedding, tsne_figure, update_results_json,
                                         write_per_sample_scores)

__all__ = ["EvalAccumulator", "EvalResult", "confusion_matrix", "cross_entropy",
           "format_results_table", "mean_class_accuracy", "read_per_sample_scores",
           "save_confusion_png", "save_tsne_png", "stage_entry", "topk_accuracy",
           "tsne_embedding", "tsne_figure", "update_results_json", "write_per_sample_scores"]
