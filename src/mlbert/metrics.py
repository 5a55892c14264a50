"""Multi-label metrics: arrays in, a dict of floats out. No files, no globals.

Conventions (also in the README):
- macro averages run over the labels with at least one positive in the evaluated split, so a
  label that never occurs there neither scores 0 nor 1 by convention; `n_labels_evaluated` says how many.
- ROC-AUC needs both classes: labels with only one class in the split are skipped and counted.
- samples-F1: an example with no true and no predicted labels scores 1 (nothing to find, nothing claimed).
- p_at_k: share of the k highest-scored labels that are true, averaged over examples.
- calibration (threshold-free; calibration.py): expected calibration error over CALIBRATION_BINS equal-width
  score bins, over all (text, label) cells and as the mean over the labels with a positive; Brier score over all cells.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
from sklearn import metrics as skm

from .calibration import Calibration, calibration_report
from .calibration import calibration_metrics as calibration_metrics  # its home until 2026-12-01: still importable here
from .config import THRESHOLD_MODES
from .thresholds import Thresholds

TOP_K = (1, 3, 5)
# compute_metrics' keys in the order metrics.json has always shown them.
METRIC_ORDER = (
    "n_examples", "n_labels", "n_labels_evaluated",
    *(f"{avg}_{m}" for avg in ("micro", "macro", "weighted", "samples") for m in ("precision", "recall", "f1")),
    "roc_auc_labels_skipped", "micro_roc_auc", "macro_roc_auc", "micro_pr_auc", "macro_pr_auc",
    "jaccard", "hamming_loss", "subset_accuracy", "lrap", *(f"p_at_{k}" for k in TOP_K),
    "mean_labels_true", "mean_labels_predicted",
)  # fmt: skip


def apply_thresholds(probs: np.ndarray, thresholds: np.ndarray | float) -> np.ndarray:
    """(n, L) probabilities -> (n, L) 0/1 predictions; a label is on when its probability >= its threshold."""
    return (probs >= np.asarray(thresholds, dtype=probs.dtype)).astype(np.int8)


def precision_at_k(probs: np.ndarray, targets: np.ndarray, k: int) -> float:
    k = min(k, probs.shape[1])
    top = np.argpartition(-probs, k - 1, axis=1)[:, :k]
    return float(np.take_along_axis(targets, top, axis=1).sum(axis=1).mean() / k)


def label_ranking_average_precision(probs: np.ndarray, targets: np.ndarray, block: int = 1 << 22) -> float:
    """LRAP as scikit-learn defines it (tied scores share the lowest rank; a text whose labels are all true or
    all false scores 1), over the texts with a true label; NaN when none has one.

    scikit-learn ranks each text in a Python loop: 3.3 s for GoEmotions' 5,426 dev texts, paid by every dev
    evaluation in training. Here the texts are sorted together, `block` scores at a time (bounded memory).
    """
    has_label = targets.sum(axis=1) > 0
    if not has_label.any():
        return float("nan")
    y, scores = targets[has_label].astype(bool), probs[has_label]
    n_texts, n_labels = scores.shape
    rows = max(1, block // n_labels)
    total = 0.0
    for start in range(0, n_texts, rows):
        total += _lrap_sum(scores[start : start + rows], y[start : start + rows])
    return total / n_texts


def _lrap_sum(scores: np.ndarray, y: np.ndarray) -> float:
    """The sum over texts (each with a true label) of their label ranking average precision."""
    n_labels = scores.shape[1]
    order = np.argsort(-scores, axis=1, kind="stable")
    ranked = np.take_along_axis(scores, order, axis=1)
    true = np.take_along_axis(y, order, axis=1)
    # A label's rank is the number of labels scored at least as high: the position of the last label of its tie.
    ends = np.ones_like(ranked, dtype=bool)
    ends[:, :-1] = ranked[:, :-1] != ranked[:, 1:]
    end_at = np.where(ends, np.arange(n_labels), n_labels)
    last = np.minimum.accumulate(end_at[:, ::-1], axis=1)[:, ::-1]
    true_above = np.take_along_axis(np.cumsum(true, axis=1), last, axis=1)
    per_text = np.where(true, true_above / (last + 1), 0.0).sum(axis=1) / true.sum(axis=1)
    per_text[true.all(axis=1)] = 1.0
    return float(per_text.sum())


def ranking_metrics(probs: np.ndarray, targets: np.ndarray) -> dict[str, Any]:
    """The metrics of the scores' order, which no threshold changes: ROC-AUC, PR-AUC, LRAP, precision at k."""
    _check_shapes(probs, targets)
    y = targets.astype(np.int8)
    out: dict[str, Any] = {}
    counts = y.sum(axis=0)
    both = np.flatnonzero((counts > 0) & (counts < y.shape[0]))
    out["roc_auc_labels_skipped"] = int(y.shape[1] - len(both))
    if len(both):
        out["micro_roc_auc"] = float(skm.roc_auc_score(y[:, both], probs[:, both], average="micro"))
        out["macro_roc_auc"] = float(skm.roc_auc_score(y[:, both], probs[:, both], average="macro"))
    else:
        out["micro_roc_auc"] = out["macro_roc_auc"] = float("nan")
    present = np.flatnonzero(counts > 0)
    if len(present):
        out["micro_pr_auc"] = float(skm.average_precision_score(y[:, present], probs[:, present], average="micro"))
        out["macro_pr_auc"] = float(skm.average_precision_score(y[:, present], probs[:, present], average="macro"))
    else:
        out["micro_pr_auc"] = out["macro_pr_auc"] = float("nan")
    out["lrap"] = label_ranking_average_precision(probs, y)
    for k in TOP_K:
        out[f"p_at_{k}"] = precision_at_k(probs, y, k)
    return out


def compute_metrics(
    probs: np.ndarray,
    targets: np.ndarray,
    thresholds: np.ndarray | float = 0.5,
    ranking: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """All summary metrics for one split under one set of thresholds.

    Args:
        probs: (n_texts, n_labels) probabilities.
        targets: (n_texts, n_labels) 0/1 truth.
        thresholds: a scalar or (n_labels,) cut-offs.
        ranking: `ranking_metrics(probs, targets)` when the caller has it (they do not depend on thresholds).
    """
    out = decision_metrics(probs, targets, thresholds)
    out.update(ranking if ranking is not None else ranking_metrics(probs, targets))
    return {key: out[key] for key in METRIC_ORDER}


def decision_metrics(probs: np.ndarray, targets: np.ndarray, thresholds: np.ndarray | float) -> dict[str, Any]:
    """The metrics of the decisions `thresholds` make: precision, recall and F1 averages, Jaccard, Hamming
    loss, subset accuracy, label counts."""
    _check_shapes(probs, targets)
    y = targets.astype(np.int8)
    pred = apply_thresholds(probs, thresholds)
    present = np.flatnonzero(y.sum(axis=0) > 0)
    out: dict[str, Any] = {
        "n_examples": int(y.shape[0]),
        "n_labels": int(y.shape[1]),
        "n_labels_evaluated": len(present),
    }
    # scikit-learn reads a one-column matrix as binary data, which has no per-text averages: one label more that no
    # text has and none is given changes no count and keeps the matrices multi-label (a model of one label).
    y_ml, pred_ml = (_with_empty_label(y), _with_empty_label(pred)) if y.shape[1] == 1 else (y, pred)
    for avg in ("micro", "macro", "weighted", "samples"):
        labels = present if avg in ("macro", "weighted") else None
        if avg in ("macro", "weighted") and len(present) == 0:
            p = r = f = 0.0
        else:
            p, r, _, _ = skm.precision_recall_fscore_support(y_ml, pred_ml, average=avg, labels=labels, zero_division=0)
            f = skm.f1_score(y_ml, pred_ml, average=avg, labels=labels, zero_division=1 if avg == "samples" else 0)
        out[f"{avg}_precision"], out[f"{avg}_recall"], out[f"{avg}_f1"] = float(p), float(r), float(f)
    # Multi-label accuracy: per text |true & predicted| / |true | predicted|, a text with neither counting 1.
    out["jaccard"] = float(skm.jaccard_score(y_ml, pred_ml, average="samples", zero_division=1))
    out["hamming_loss"] = float(skm.hamming_loss(y, pred))
    out["subset_accuracy"] = float(skm.accuracy_score(y, pred))
    out["mean_labels_true"] = float(y.sum(axis=1).mean())
    out["mean_labels_predicted"] = float(pred.sum(axis=1).mean())
    return out


def _check_shapes(probs: np.ndarray, targets: np.ndarray) -> None:
    if probs.shape != targets.shape or probs.ndim != 2:
        raise ValueError(f"probs {probs.shape} and targets {targets.shape} must be the same (n, L) shape")


def _with_empty_label(matrix: np.ndarray) -> np.ndarray:
    return np.concatenate([matrix, np.zeros((len(matrix), 1), dtype=matrix.dtype)], axis=1)


def per_label_table(
    probs: np.ndarray, targets: np.ndarray, thresholds: np.ndarray | float, label_names: list[str]
) -> list[dict[str, Any]]:
    """One row per label: support, precision, recall, F1, ROC-AUC (None with one class) and threshold."""
    y = targets.astype(np.int8)
    pred = apply_thresholds(probs, thresholds)
    p, r, f, support = skm.precision_recall_fscore_support(y, pred, average=None, zero_division=0)
    cut = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (y.shape[1],))
    rows = []
    for j, name in enumerate(label_names):
        n_pos = int(support[j])
        auc = float(skm.roc_auc_score(y[:, j], probs[:, j])) if 0 < n_pos < y.shape[0] else None
        rows.append(
            {
                "label": name,
                "support": n_pos,
                "predicted": int(pred[:, j].sum()),
                "precision": float(p[j]),
                "recall": float(r[j]),
                "f1": float(f[j]),
                "roc_auc": auc,
                "threshold": float(cut[j]),
            }
        )
    return rows


def metrics_by_mode(probs: np.ndarray, targets: np.ndarray, thresholds: Thresholds) -> dict[str, dict[str, Any]]:
    """`compute_metrics` under each threshold mode, in config order (the ranking metrics computed once)."""
    ranking = ranking_metrics(probs, targets)
    return {mode: compute_metrics(probs, targets, thresholds.for_mode(mode), ranking) for mode in THRESHOLD_MODES}


def evaluation_report(
    probs: np.ndarray,
    targets: np.ndarray,
    labels: list[str],
    thresholds: Thresholds,
    default_mode: str,
    unseen: Counter | None = None,
    calibration: Calibration | None = None,
) -> dict[str, Any]:
    """The report shape of `mlbert evaluate --json` and metrics.json (README, Metrics), less truncated_share.
    `probs` are raw scores, decided under the raw `thresholds`; `calibration` (a model's map, if any) is what the
    `calibration` object measures (calibration.calibration_report)."""
    return {
        "n_examples": int(targets.shape[0]),
        "default_mode": default_mode,
        "metrics": metrics_by_mode(probs, targets, thresholds),
        "per_label": per_label_table(probs, targets, thresholds.for_mode(default_mode), labels),
        "calibration": calibration_report(probs, targets, calibration),
        "unseen_labels": dict((unseen or Counter()).most_common()),
    }
