"""Training losses: (logits, targets) -> scalar, plus the positive-class weights they may use."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def bce_loss(logits: torch.Tensor, targets: torch.Tensor, pos_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean binary cross-entropy over all (example, label) cells; `pos_weight` (n_labels,) scales positives."""
    return F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype), pos_weight=pos_weight)


def pos_weights(targets: np.ndarray, mode: str, cap: float = 100.0) -> np.ndarray | None:
    """Per-label weight of positive targets from training label counts.

    A label on 1 % of texts sees 99 negatives per positive, so plain BCE learns to say "no";
    `auto` weighs its positives by n_neg / n_pos (capped, since a label with 1 positive would
    otherwise dominate), `sqrt` by the square root of that, a gentler push.

    Args:
        targets: (n_texts, n_labels) 0/1 training matrix.
    Returns:
        (n_labels,) float32 weights, or None for mode "none".
    """
    if mode == "none":
        return None
    n = targets.shape[0]
    pos = targets.sum(axis=0)
    ratio = (n - pos) / np.maximum(pos, 1.0)
    weights = np.clip(ratio, 1.0, cap)
    if mode == "sqrt":
        weights = np.sqrt(weights)
    elif mode != "auto":
        raise ValueError(f"unknown pos_weight mode {mode!r}; expected none, auto or sqrt")
    return weights.astype(np.float32)
