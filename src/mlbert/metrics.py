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


def apply_thresholds(probs: np.ndarray, thresholds: np.ndarray | float) -> np.ndarray:
    """(n, L) probabilities -> (n, L) 0/1 predictions; a label is on when its probability >= its threshold."""
    return (probs >= np.asarray(thresholds, dtype=probs.dtype)).astype(np.int8)


def precision_at_k(probs: np.ndarray, targets: np.ndarray, k: int) -> float:
    k = min(k, probs.shape[1])
    top = np.argpartition(-probs, k - 1, axis=1)[:, :k]
    return float(np.take_along_axis(targets, top, axis=1).sum(axis=1).mean() / k)


def compute_metrics(probs: np.ndarray, targets: np.ndarray, thresholds: np.ndarray | float = 0.5) -> dict[str, Any]:
    """All summary metrics for one split under one set of thresholds.

    Args:
        probs: (n_texts, n_labels) probabilities.
        targets: (n_texts, n_labels) 0/1 truth.
        thresholds: a scalar or (n_labels,) cut-offs.
    """
    if probs.shape != targets.shape or probs.ndim != 2:
        raise ValueError(f"probs {probs.shape} and targets {targets.shape} must be the same (n, L) shape")
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

    both = np.flatnonzero((y.sum(axis=0) > 0) & (y.sum(axis=0) < y.shape[0]))
    out["roc_auc_labels_skipped"] = int(y.shape[1] - len(both))
    if len(both):
        out["micro_roc_auc"] = float(skm.roc_auc_score(y[:, both], probs[:, both], average="micro"))
        out["macro_roc_auc"] = float(skm.roc_auc_score(y[:, both], probs[:, both], average="macro"))
    else:
        out["micro_roc_auc"] = out["macro_roc_auc"] = float("nan")
    if len(present):
        out["micro_pr_auc"] = float(skm.average_precision_score(y[:, present], probs[:, present], average="micro"))
        out["macro_pr_auc"] = float(skm.average_precision_score(y[:, present], probs[:, present], average="macro"))
    else:
        out["micro_pr_auc"] = out["macro_pr_auc"] = float("nan")

    # Multi-label accuracy: per text |true & predicted| / |true | predicted|, a text with neither counting 1.
    out["jaccard"] = float(skm.jaccard_score(y_ml, pred_ml, average="samples", zero_division=1))
    out["hamming_loss"] = float(skm.hamming_loss(y, pred))
    out["subset_accuracy"] = float(skm.accuracy_score(y, pred))
    has_label = y.sum(axis=1) > 0  # LRAP is undefined for examples with no true label
    out["lrap"] = (
        float(skm.label_ranking_average_precision_score(y[has_label], probs[has_label]))
        if has_label.any()
        else float("nan")
    )
    for k in TOP_K:
        out[f"p_at_{k}"] = precision_at_k(probs, y, k)
    out["mean_labels_true"] = float(y.sum(axis=1).mean())
    out["mean_labels_predicted"] = float(pred.sum(axis=1).mean())
    return out


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
    """`compute_metrics` under each threshold mode, in config order."""
    return {mode: compute_metrics(probs, targets, thresholds.for_mode(mode)) for mode in THRESHOLD_MODES}


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
