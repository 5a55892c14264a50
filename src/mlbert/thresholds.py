"""Pick decision thresholds on dev data so that F1 is as high as it can be.

One global 0.5 leaves rare labels never predicted, because their probabilities rarely climb that
high; a tuned global cut-off fixes the overall calibration, and a per-label cut-off recovers rare
labels at little cost to frequent ones. Labels with too few dev positives would overfit their own
cut-off, so they fall back to the global one.
"""

from __future__ import annotations

import numpy as np

GRID = np.round(np.arange(0.01, 1.0, 0.01), 2)


def _f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    denom = 2 * tp + fp + fn
    return np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)


def _middle_of_best(scores: np.ndarray, grid: np.ndarray) -> tuple[float, float]:
    """The grid value in the middle of the best-scoring run: ties are common on small dev sets,
    and the middle of a plateau is the cut-off least likely to sit on its edge on new data."""
    best = scores.max()
    candidates = np.flatnonzero(np.isclose(scores, best, rtol=0, atol=1e-12))
    return float(grid[candidates[len(candidates) // 2]]), float(best)


def tune_global_threshold(probs: np.ndarray, targets: np.ndarray, grid: np.ndarray = GRID) -> tuple[float, float]:
    """One cut-off for all labels that maximises micro-F1 on (n, L) dev arrays -> (threshold, micro_f1)."""
    y = targets.astype(bool)
    scores = np.empty(len(grid))
    for k, t in enumerate(grid):
        pred = probs >= t
        tp = np.count_nonzero(pred & y)
        scores[k] = _f1(np.array(tp), np.array(np.count_nonzero(pred) - tp), np.array(np.count_nonzero(y) - tp))
    return _middle_of_best(scores, grid)


def tune_label_thresholds(probs: np.ndarray, targets: np.ndarray, fallback: float, min_support: int = 3,
                          grid: np.ndarray = GRID) -> np.ndarray:
    """Each label's cut-off maximising its own F1 on dev; `fallback` where it has < min_support positives.

    Returns:
        (n_labels,) thresholds.
    """
    y = targets.astype(bool)
    n_pos = y.sum(axis=0)
    scores = np.empty((len(grid), y.shape[1]))
    for k, t in enumerate(grid):
        pred = probs >= t
        tp = (pred & y).sum(axis=0)
        scores[k] = _f1(tp, pred.sum(axis=0) - tp, n_pos - tp)
    out = np.full(y.shape[1], fallback, dtype=np.float64)
    for j in range(y.shape[1]):
        if n_pos[j] >= max(min_support, 1):
            out[j] = _middle_of_best(scores[:, j], grid)[0]
    return out
