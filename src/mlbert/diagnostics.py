"""Signs that a run went wrong, said plainly with the likely fix.

The classic failure of BERT multi-label fine-tuning is collapse to the label base rates: every
score sits near its label's prior, nothing crosses a threshold, macro-F1 is ~0. It looks like a
converged run in the loss curve, so we check for it explicitly after every dev evaluation.
"""

from __future__ import annotations

import numpy as np

# Mean gap between a label's scores on its positives and on its negatives below which the model
# no longer tells texts apart.
MIN_SEPARATION = 0.05
MAX_COLLAPSED_MACRO_F1 = 0.1


def score_separation(probs: np.ndarray, targets: np.ndarray) -> float:
    """Mean over labels with dev positives of (mean score on positives - mean score on negatives)."""
    y = targets > 0
    gaps = [
        probs[y[:, j], j].mean() - probs[~y[:, j], j].mean()
        for j in range(y.shape[1])
        if 0 < y[:, j].sum() < y.shape[0]
    ]
    return float(np.mean(gaps)) if gaps else float("nan")


def collapse_warning(probs: np.ndarray, targets: np.ndarray, macro_f1: float) -> str | None:
    """A warning when dev scores stay at the label priors, else None."""
    separation = score_separation(probs, targets)
    if not (separation < MIN_SEPARATION and macro_f1 < MAX_COLLAPSED_MACRO_F1):
        return None
    return (
        f"the model has collapsed to the label base rates: dev scores barely differ between texts that have a "
        f"label and texts that do not (mean gap {separation:.3f}) and dev macro-F1 is {macro_f1:.3f}. Likely "
        "fixes: a lower --lr (e.g. 3e-5), a higher --head-lr, --pos-weight sqrt or --loss asl, or more epochs"
    )
