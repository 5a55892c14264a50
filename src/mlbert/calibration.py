"""Per-label calibration maps: scores in, scores that can be read as probabilities out (issue 20).

Each map is fitted per label on held-out scores and their truth (the data the thresholds are tuned on) and is
strictly increasing in the score for `temperature` and `platt` (so a threshold re-expressed through the map
takes the same decisions, see `map_thresholds`), non-decreasing for `isotonic`:
- temperature: sigmoid(z / T_l), one parameter per label (Guo et al. 2017, per label);
- platt: sigmoid(a_l z + b_l), a_l > 0 (Platt 1999, per label);
- isotonic: a non-decreasing step function of the score per label (Zadrozny & Elkan 2002; scikit-learn).
z is the label's logit. Pure functions on numpy arrays; the affine maps are fitted jointly for all labels by
L-BFGS on the summed binary cross-entropy, which separates by label.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

METHODS = ("temperature", "platt", "isotonic")
EPS = 1e-7
# The product's maps (`Calibration`) keep the slope a_l in [MIN_SCALE, MAX_SCALE] and b_l in [MIN_SHIFT, MAX_SHIFT]:
# a_l > 0 keeps the map increasing, and the upper bounds keep every tuned cut-off (0.01-0.99: logit within
# +-4.6) mapped to a calibrated logit below 19, where float64 still tells neighbouring float32 scores apart;
# beyond it they would round to the same calibrated score and tie with the cut-off (unbounded maps fitted on
# perfectly separated labels did: BENCHMARKS.md "Calibration"; tests/test_calibration.py checks the bounds).
MIN_SCALE = 0.05
MAX_SCALE = 3.0
MIN_SHIFT = -8.0
MAX_SHIFT = 5.0
CALIBRATION_BINS = 15


def logits_of(probs: np.ndarray) -> np.ndarray:
    p = np.clip(probs.astype(np.float64), EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def fit_affine(probs: np.ndarray, targets: np.ndarray, method: str, max_iter: int = 200) -> dict[str, np.ndarray]:
    """(n, L) held-out scores and 0/1 truth -> {"scale": a (L,), "shift": b (L,)} of sigmoid(a z + b); for
    `temperature` the shift is 0 and a = 1 / T. A label without both classes keeps the identity map."""
    if method not in ("temperature", "platt"):
        raise ValueError(f"unknown affine calibration {method!r}; expected temperature or platt")
    import torch  # here, not at the top: metrics.py and the report read this module and never fit a map

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
    scale = np.clip(log_scale.detach().exp().numpy(), MIN_SCALE, MAX_SCALE)
    offset = np.clip(shift.detach().numpy(), MIN_SHIFT, MAX_SHIFT)
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


def calibration_metrics(probs: np.ndarray, targets: np.ndarray, bins: int = CALIBRATION_BINS) -> dict[str, Any]:
    """Whether a score of p means a label is there p of the time: ECE (|mean score - positive rate| per score
    bin, weighted by the bin's share of cells) over all (text, label) cells and as the mean over labels with a
    positive, the Brier score (mean squared error of the scores), and the bins of the reliability diagram."""
    if probs.shape != targets.shape or probs.ndim != 2:
        raise ValueError(f"probs {probs.shape} and targets {targets.shape} must be the same (n, L) shape")
    p = probs.astype(np.float64)
    y = targets.astype(np.float64)
    n, n_labels = p.shape
    index = np.minimum((p * bins).astype(np.int64), bins - 1)  # bin b holds scores in [b/bins, (b+1)/bins)
    cell = (index + bins * np.arange(n_labels)).ravel()  # one set of bins per label
    count = np.bincount(cell, minlength=bins * n_labels).reshape(n_labels, bins)
    score = np.bincount(cell, weights=p.ravel(), minlength=bins * n_labels).reshape(n_labels, bins)
    positive = np.bincount(cell, weights=y.ravel(), minlength=bins * n_labels).reshape(n_labels, bins)
    per_label = np.abs(score - positive).sum(axis=1) / max(n, 1)
    present = y.sum(axis=0) > 0
    total = count.sum(axis=0)
    return {
        "ece": float(np.abs(score.sum(axis=0) - positive.sum(axis=0)).sum() / max(p.size, 1)),
        "ece_label_mean": float(per_label[present].mean()) if present.any() else float("nan"),
        "brier": float(np.mean((p - y) ** 2)) if p.size else float("nan"),
        "bins": bins,
        "reliability": {
            "count": total.tolist(),
            "mean_score": [float(v) for v in np.divide(score.sum(axis=0), np.maximum(total, 1))],
            "positive_rate": [float(v) for v in np.divide(positive.sum(axis=0), np.maximum(total, 1))],
        },
    }


# -- the product's calibration: one map per label, saved with the model -------------------------------------
PRODUCT_METHODS = ("temperature", "platt")  # increasing maps only: isotonic cannot keep the decisions
MIN_GAIN = 0.10  # a map must lower the held-out ECE by a tenth to be used: smaller gains were noise on dev halves
MIN_HELDOUT = 20
# Rows a map is fitted on at most: one or two parameters a label need far fewer, and the time a budgeted run
# spends here stays a few seconds (100,000 x 90 scores took 45 s on 2 cores; 20,000 take about a fifth).
MAX_FIT_ROWS = 20_000


@dataclass
class Calibration:
    """sigmoid(scale * z + shift) per label, z the label's logit: the scores a calibrated model shows.

    Decisions keep their meaning: a cut-off t on raw scores becomes `cut_offs(t)` on calibrated ones, and
    `raw >= t` exactly when `calibrated >= cut_offs(t)` (both float64, bounded slope: see MAX_SCALE)."""

    method: str
    scale: np.ndarray
    shift: np.ndarray

    def apply(self, probs: np.ndarray) -> np.ndarray:
        """(n, L) raw probabilities -> (n, L) calibrated ones, float64 (float32 would round the upper tail to 1)."""
        if probs.ndim != 2 or probs.shape[1] != len(self.scale):
            raise ValueError(f"scores of shape {probs.shape} for a calibration of {len(self.scale)} labels")
        return apply_affine(probs, {"scale": self.scale, "shift": self.shift})

    def cut_offs(self, thresholds: np.ndarray | float) -> np.ndarray:
        """Cut-offs on raw scores -> the same decisions' cut-offs on calibrated scores, (L,) float64. Raw scores
        are float32 and meet their cut-offs in float32 (metrics.apply_thresholds, predict.chosen_columns), so
        the cut-off mapped is float32(t)."""
        cuts = np.asarray(thresholds, dtype=np.float64).astype(np.float32).astype(np.float64)
        return map_thresholds(cuts, {"scale": self.scale, "shift": self.shift}, len(self.scale))

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "scale": [round(float(a), 6) for a in self.scale],
                "shift": [round(float(b), 6) for b in self.shift]}  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any], n_labels: int) -> Calibration:
        """Raises ValueError on a map that is not one of PRODUCT_METHODS over n_labels positive slopes."""
        scale = np.asarray(d.get("scale", []), dtype=np.float64)
        shift = np.asarray(d.get("shift", []), dtype=np.float64)
        if d.get("method") not in PRODUCT_METHODS:
            raise ValueError(f"method must be one of {', '.join(PRODUCT_METHODS)}, got {d.get('method')!r}")
        if scale.shape != (n_labels,) or shift.shape != (n_labels,):
            raise ValueError(f"scale and shift must hold {n_labels} numbers each (one per label)")
        if not (np.isfinite(scale).all() and np.isfinite(shift).all() and (scale > 0).all()):
            raise ValueError("scale must be positive and finite, shift finite")
        return cls(str(d["method"]), np.clip(scale, MIN_SCALE, MAX_SCALE), np.clip(shift, MIN_SHIFT, MAX_SHIFT))

    @classmethod
    def identity(cls, n_labels: int) -> Calibration:
        """The map that leaves every score as it is (scale 1, shift 0)."""
        return cls("temperature", np.ones(n_labels), np.zeros(n_labels))


RAW_KEYS = ("ece", "ece_label_mean", "brier")  # what an evaluation keeps of the raw scores beside a map's


def calibration_report(probs: np.ndarray, targets: np.ndarray, calibration: Calibration | None) -> dict[str, Any]:
    """The `calibration` object of an evaluation: `calibration_metrics` of the scores the model shows (the raw
    `probs` mapped by `calibration`, if any), the map's `method` ("none" without one) and, beside a map, the raw
    scores' RAW_KEYS under `raw`."""
    if calibration is None:
        return {**calibration_metrics(probs, targets), "method": "none"}
    raw = calibration_metrics(probs, targets)
    return {**calibration_metrics(calibration.apply(probs), targets), "method": calibration.method,
            "raw": {k: raw[k] for k in RAW_KEYS}}  # fmt: skip


def fit_calibration(probs: np.ndarray, targets: np.ndarray, method: str) -> Calibration:
    if method not in PRODUCT_METHODS:
        raise ValueError(f"calibration must be one of {', '.join(PRODUCT_METHODS)}, got {method!r}")
    fitted = fit_affine(probs, targets, method)
    return Calibration(method, fitted["scale"], fitted["shift"])


def choose_calibration(
    probs: np.ndarray, targets: np.ndarray, heldout: np.ndarray, setting: str, seed: int = 0
) -> tuple[Calibration | None, dict[str, Any]]:
    """The calibration a model keeps -> (map or None for raw scores, what was measured and why).

    `setting` "none" keeps raw scores, a method name fits that map on all rows; "auto" scores raw scores and
    each map on the two seeded halves of the `heldout` rows (dev), each map fitted on every other row as
    thresholds.choose_mode does, and keeps the map with the lowest mean held-out ECE if it is at least MIN_GAIN
    below the raw scores' (a well-trained model's scores are already close to calibrated: measured)."""
    if setting == "none":
        return None, {"method": "none", "why": "calibration none: raw scores"}
    if len(probs) > MAX_FIT_ROWS:  # every held-out row (up to the cap), the rest a seeded sample of the others
        rng = np.random.default_rng(seed)
        held = np.sort(rng.permutation(heldout)[:MAX_FIT_ROWS])
        others = np.setdiff1d(np.arange(len(probs)), held)
        rows = np.sort(np.concatenate([held, rng.choice(others, MAX_FIT_ROWS - len(held), replace=False)]))
        return choose_calibration(probs[rows], targets[rows], np.flatnonzero(np.isin(rows, held)), setting, seed)
    if setting != "auto":
        return fit_calibration(probs, targets, setting), {"method": setting, "why": f"calibration {setting}"}
    if len(heldout) < MIN_HELDOUT:
        return None, {
            "method": "none",
            "why": f"only {len(heldout)} held-out texts, too few to judge a map; raw scores",
        }
    halves = np.array_split(np.random.default_rng(seed).permutation(heldout), 2)
    ece: dict[str, list[float]] = {"none": [], **{m: [] for m in PRODUCT_METHODS}}
    for half in halves:
        rest = np.ones(len(probs), dtype=bool)
        rest[half] = False
        ece["none"].append(calibration_metrics(probs[half], targets[half])["ece"])
        for method in PRODUCT_METHODS:
            shown = fit_calibration(probs[rest], targets[rest], method).apply(probs[half])
            ece[method].append(calibration_metrics(shown, targets[half])["ece"])
    mean = {m: round(float(np.mean(v)), 5) for m, v in ece.items()}
    best = min(PRODUCT_METHODS, key=lambda m: mean[m])
    shown = ", ".join(f"{m} {v:.4f}" for m, v in mean.items())
    note = {"heldout_ece": mean}
    if mean[best] <= (1 - MIN_GAIN) * mean["none"]:
        why = f"lowest ECE on held-out halves of the tuning data ({shown})"
        return fit_calibration(probs, targets, best), {"method": best, **note, "why": why}
    why = f"no map lowered the held-out ECE by {MIN_GAIN:.0%} ({shown}); raw scores"
    return None, {"method": "none", **note, "why": why}


def join_calibrations(first: Calibration | None, n_first: int, second: Calibration | None, n_second: int):
    """The map of a model whose label columns are `first`'s then `second`'s (add-labels): a side without a
    map keeps its raw scores (the identity: scale 1, shift 0); None when neither has one."""
    if first is None and second is None:
        return None
    parts = [c if c is not None else Calibration.identity(n) for c, n in ((first, n_first), (second, n_second))]
    method = "temperature" if all(c.method == "temperature" for c in parts) else "platt"  # platt holds both
    return Calibration(method, np.concatenate([c.scale for c in parts]), np.concatenate([c.shift for c in parts]))
