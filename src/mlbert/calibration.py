"""Per-label calibration maps: scores in, scores that can be read as probabilities out (issue 20).

Each map is fitted per label on held-out scores and their truth (the data the thresholds are tuned on) and is
strictly increasing in the score for `temperature` and `platt` (so a threshold re-expressed through the map
takes exactly the same decisions, see `map_thresholds`), non-decreasing for `isotonic`:
- temperature: sigmoid(z / T_l), one parameter per label (Guo et al. 2017, per label);
- platt: sigmoid(a_l z + b_l), a_l > 0 (Platt 1999, per label);
- isotonic: a non-decreasing step function of the score per label (Zadrozny & Elkan 2002; scikit-learn).
z is the label's logit. Pure functions on numpy arrays; the affine maps are fitted jointly for all labels by
L-BFGS on the summed binary cross-entropy, which separates by label.
"""

from __future__ import annotations

import numpy as np
import torch

METHODS = ("temperature", "platt", "isotonic")
EPS = 1e-7
MIN_SCALE = 1e-3  # a_l (1 / T_l) stays positive: the map stays increasing


def logits_of(probs: np.ndarray) -> np.ndarray:
    p = np.clip(probs.astype(np.float64), EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def fit_affine(probs: np.ndarray, targets: np.ndarray, method: str, max_iter: int = 200) -> dict[str, np.ndarray]:
    """(n, L) held-out scores and 0/1 truth -> {"scale": a (L,), "shift": b (L,)} of sigmoid(a z + b); for
    `temperature` the shift is 0 and a = 1 / T. A label without both classes keeps the identity map."""
    if method not in ("temperature", "platt"):
        raise ValueError(f"unknown affine calibration {method!r}; expected temperature or platt")
    z = torch.from_numpy(logits_of(probs))
    y = torch.from_numpy(targets.astype(np.float64))
    log_scale = torch.zeros(z.shape[1], dtype=torch.float64, requires_grad=True)
    shift = torch.zeros(z.shape[1], dtype=torch.float64, requires_grad=method == "platt")
    params = [log_scale, shift] if method == "platt" else [log_scale]
    optimizer = torch.optim.LBFGS(params, max_iter=max_iter, line_search_fn="strong_wolfe")

    def loss() -> torch.Tensor:
        optimizer.zero_grad()
        value = torch.nn.functional.binary_cross_entropy_with_logits(
            z * log_scale.exp() + shift, y, reduction="sum"
        ) / max(len(z), 1)
        value.backward()
        return value

    optimizer.step(loss)
    scale = np.maximum(log_scale.detach().exp().numpy(), MIN_SCALE)
    offset = shift.detach().numpy().copy()
    both = (targets.sum(axis=0) > 0) & (targets.sum(axis=0) < len(targets))
    scale[~both], offset[~both] = 1.0, 0.0
    return {"scale": scale, "shift": offset}


def apply_affine(probs: np.ndarray, fitted: dict[str, np.ndarray]) -> np.ndarray:
    z = np.clip(logits_of(probs) * fitted["scale"] + fitted["shift"], -500.0, 500.0)  # exp stays finite
    return 1.0 / (1.0 + np.exp(-z))


def fit_isotonic(probs: np.ndarray, targets: np.ndarray) -> list:
    """One scikit-learn IsotonicRegression per label (None for a label without both classes: identity)."""
    from sklearn.isotonic import IsotonicRegression

    models = []
    for j in range(probs.shape[1]):
        if 0 < targets[:, j].sum() < len(targets):
            models.append(
                IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(probs[:, j], targets[:, j])
            )
        else:
            models.append(None)
    return models


def apply_isotonic(probs: np.ndarray, models: list) -> np.ndarray:
    out = probs.astype(np.float64).copy()
    for j, model in enumerate(models):
        if model is not None:
            out[:, j] = model.predict(probs[:, j])
    return out


def fit(probs: np.ndarray, targets: np.ndarray, method: str):
    return fit_isotonic(probs, targets) if method == "isotonic" else fit_affine(probs, targets, method)


def apply(probs: np.ndarray, fitted, method: str) -> np.ndarray:
    return apply_isotonic(probs, fitted) if method == "isotonic" else apply_affine(probs, fitted)


def map_thresholds(thresholds: np.ndarray | float, fitted: dict[str, np.ndarray], n_labels: int) -> np.ndarray:
    """Cut-offs on raw scores -> the same cut-offs on calibrated scores, per label (an affine map is strictly
    increasing, so `raw >= t` and `calibrated >= map(t)` decide alike)."""
    cuts = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (n_labels,))
    return apply_affine(cuts[None, :], fitted)[0]
