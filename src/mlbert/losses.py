"""Training losses: (logits, targets) -> scalar mean over all (example, label) cells.

Multi-label data are long-tailed: most cells are easy negatives, and plain BCE spends its gradient
on them. Focal loss (Lin et al. 2017) and asymmetric loss (ASL, Ridnik et al. 2021) turn easy cells
down; `pos_weight` turns positives up. Each takes an optional (n_labels,) `pos_weight`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def bce_loss(logits: torch.Tensor, targets: torch.Tensor, pos_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Binary cross-entropy with logits; `pos_weight` scales the positive term per label."""
    return F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype), pos_weight=pos_weight)


def focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, gamma: float = 2.0, pos_weight: torch.Tensor | None = None
) -> torch.Tensor:
    """-(1 - p_t)^gamma * log(p_t): a cell the model already gets right contributes almost nothing.

    gamma = 0 is plain BCE.
    """
    y = targets.to(logits.dtype)
    p = torch.sigmoid(logits)
    pos = -((1 - p) ** gamma) * F.logsigmoid(logits)
    neg = -(p**gamma) * F.logsigmoid(-logits)
    if pos_weight is not None:
        pos = pos * pos_weight
    return (y * pos + (1 - y) * neg).mean()


def asymmetric_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    gamma_pos: float = 0.0,
    gamma_neg: float = 4.0,
    clip: float = 0.05,
    pos_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """ASL: positives as in focal loss with gamma_pos; negatives focused harder (gamma_neg) and
    shifted by `clip` (p_m = max(p - clip, 0)), so very easy negatives, and likely mislabelled
    ones with high p, weigh less. gamma_pos = gamma_neg = clip = 0 is plain BCE.
    """
    y = targets.to(logits.dtype)
    p = torch.sigmoid(logits)
    pos = -((1 - p) ** gamma_pos) * F.logsigmoid(logits)
    if clip > 0:
        p_m = (p - clip).clamp(min=0)
        neg = -(p_m**gamma_neg) * torch.log((1 - p_m).clamp(min=1e-8))
    else:
        neg = -(p**gamma_neg) * F.logsigmoid(-logits)
    if pos_weight is not None:
        pos = pos * pos_weight
    return (y * pos + (1 - y) * neg).mean()


def make_loss(
    name: str,
    pos_weight: torch.Tensor | None = None,
    focal_gamma: float = 2.0,
    asl_gamma_pos: float = 0.0,
    asl_gamma_neg: float = 4.0,
    asl_clip: float = 0.05,
) -> LossFn:
    """The configured loss as a (logits, targets) -> loss function."""
    if name == "bce":
        return lambda logits, targets: bce_loss(logits, targets, pos_weight)
    if name == "focal":
        return lambda logits, targets: focal_loss(logits, targets, focal_gamma, pos_weight)
    if name == "asl":
        return lambda logits, targets: asymmetric_loss(
            logits, targets, asl_gamma_pos, asl_gamma_neg, asl_clip, pos_weight
        )
    raise ValueError(f"unknown loss {name!r}; expected bce, focal or asl")


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
