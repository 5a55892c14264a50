"""Pick decision thresholds on dev data so that F1 is as high as it can be.

One global 0.5 leaves rare labels never predicted, because their probabilities rarely climb that
high; a tuned global cut-off fixes the overall calibration, and a per-label cut-off recovers rare
labels at little cost to frequent ones. Labels with too few dev positives would overfit their own
cut-off, so they fall back to the global one.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .config import THRESHOLD_MODES
from .errors import ConfigError

GRID = np.round(np.arange(0.01, 1.0, 0.01), 2)


def _f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, empty: float = 0.0) -> np.ndarray:
    """F1 from counts; `empty` where nothing was true or predicted (scikit-learn's zero_division)."""
    denom = 2 * tp + fp + fn
    return np.where(denom > 0, 2 * tp / np.maximum(denom, 1), empty)


def _middle_of_best(scores: np.ndarray, grid: np.ndarray) -> tuple[float, float]:
    """The grid value in the middle of the best-scoring run: ties are common on small dev sets,
    and the middle of a plateau is the cut-off least likely to sit on its edge on new data."""
    best = scores.max()
    candidates = np.flatnonzero(np.isclose(scores, best, rtol=0, atol=1e-12))
    return float(grid[candidates[len(candidates) // 2]]), float(best)


def f1_by_global_threshold(probs: np.ndarray, targets: np.ndarray, grid: np.ndarray = GRID) -> dict[str, np.ndarray]:
    """Micro- and macro-F1 (macro over the labels with a positive, as metrics.py) at each one-for-all cut-off
    of `grid` -> {"micro_f1": (len(grid),), "macro_f1": (len(grid),)}: the report's threshold plot."""
    y = targets.astype(bool)
    n_pos = y.sum(axis=0)
    present = n_pos > 0
    micro, macro = np.empty(len(grid)), np.empty(len(grid))
    for k, t in enumerate(grid):
        pred = probs >= t
        tp, n_pred = np.count_nonzero(pred & y, axis=0), np.count_nonzero(pred, axis=0)
        micro[k] = _f1(tp.sum(), n_pred.sum() - tp.sum(), n_pos.sum() - tp.sum())
        macro[k] = _f1(tp, n_pred - tp, n_pos - tp)[present].mean() if present.any() else 0.0
    return {"micro_f1": micro, "macro_f1": macro}


def tune_global_threshold(probs: np.ndarray, targets: np.ndarray, grid: np.ndarray = GRID) -> tuple[float, float]:
    """One cut-off for all labels that maximises micro-F1 on (n, L) dev arrays -> (threshold, micro_f1)."""
    # Whole-matrix counts: twice as fast as f1_by_global_threshold's per-label ones, and run at every evaluation.
    y = targets.astype(bool)
    scores = np.empty(len(grid))
    for k, t in enumerate(grid):
        pred = probs >= t
        tp = np.count_nonzero(pred & y)
        scores[k] = _f1(np.array(tp), np.array(np.count_nonzero(pred) - tp), np.array(np.count_nonzero(y) - tp))
    return _middle_of_best(scores, grid)


def tune_label_thresholds(
    probs: np.ndarray, targets: np.ndarray, fallback: float, min_support: int = 3, grid: np.ndarray = GRID
) -> np.ndarray:
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


@dataclass
class Thresholds:
    """The cut-offs of the three decision modes (config.ThresholdMode); `per_label` is (n_labels,)."""

    global_: float
    per_label: np.ndarray
    fixed: float = 0.5
    default: str | None = None  # the mode `choose_mode` picked, for models with threshold_mode auto

    def for_mode(self, mode: str) -> np.ndarray | float:
        if mode == "fixed":
            return self.fixed
        if mode == "global":
            return self.global_
        if mode == "per_label":
            return self.per_label
        raise ConfigError(f"unknown threshold mode {mode!r}; expected one of {', '.join(THRESHOLD_MODES)}")

    def to_dict(self) -> dict[str, Any]:
        out = {"fixed": self.fixed, "global": self.global_, "per_label": [round(float(t), 4) for t in self.per_label]}
        return out if self.default is None else {**out, "default": self.default}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Thresholds:
        default = d.get("default")
        return cls(
            global_=float(d["global"]),
            per_label=np.asarray(d["per_label"], dtype=np.float64),
            fixed=float(d.get("fixed", 0.5)),
            default=default if default in THRESHOLD_MODES else None,
        )


def tune(probs: np.ndarray, targets: np.ndarray, min_support: int) -> Thresholds:
    """Global and per-label thresholds from the probabilities of labelled texts."""
    cut, _ = tune_global_threshold(probs, targets)
    return Thresholds(global_=cut, per_label=tune_label_thresholds(probs, targets, cut, min_support))


# On a tie the first of these wins: per-label thresholds were the default before `auto`.
MODE_PREFERENCE = ("per_label", "global", "fixed")
MIN_HELDOUT = 20  # fewer held-out texts than this cannot tell the modes apart


def micro_f1(probs: np.ndarray, targets: np.ndarray, cut: np.ndarray | float) -> float:
    return f1(probs, targets, cut, "micro")


def f1(probs: np.ndarray, targets: np.ndarray, cut: np.ndarray | float, average: str) -> float:
    """F1 of the decisions `probs >= cut` averaged as metrics.decision_metrics averages it (micro, macro and
    weighted over the labels some text has, samples with a text that has and gets none counting 1), from
    counts alone: choose_mode scores dozens of candidate cut-offs, and scikit-learn's report computes all
    four averages and more to give one."""
    pred = probs >= np.asarray(cut)
    y = targets.astype(bool)
    axis = {"micro": None, "samples": 1, "macro": 0, "weighted": 0}[average]
    tp, fp, fn = ((pred & y).sum(axis=axis), (pred & ~y).sum(axis=axis), (~pred & y).sum(axis=axis))
    if average == "micro":
        return float(_f1(np.array(tp), np.array(fp), np.array(fn)))
    if average == "samples":
        return float(_f1(tp, fp, fn, empty=1.0).mean())
    support = y.sum(axis=0)
    present = support > 0
    if not present.any():
        return 0.0
    weights = support[present] if average == "weighted" else None
    return float(np.average(_f1(tp, fp, fn)[present], weights=weights))


@dataclass(frozen=True)
class ModeChoice:
    """What choose_mode picked and on what evidence (metrics.json `threshold_mode_choice`)."""

    mode: str
    scores: dict[str, float]  # each mode's mean held-out score (`name`)
    why: str
    tie_scores: dict[str, float] | None = None  # each mode's held-out `tie_name` score, where a tie was broken
    standard_errors: dict[str, float] | None = None  # of each mode's held-out gap to the best, by the bootstrap


def choose_mode(
    probs: np.ndarray,
    targets: np.ndarray,
    heldout: np.ndarray,
    min_support: int,
    seed: int = 0,
    score: Callable[[np.ndarray, np.ndarray, np.ndarray | float], float] = micro_f1,
    name: str = "micro_f1",
    tie_break: Callable[[np.ndarray, np.ndarray, np.ndarray | float], float] | None = None,
    tie_name: str = "",
) -> ModeChoice:
    """The threshold mode to use by default, with the held-out scores and why.

    Scored only on texts the thresholds were not tuned on: the `heldout` rows (dev) are split into two
    seeded halves; the thresholds are tuned on all other rows and scored on one half, then the other way
    round. A weak model's per-label thresholds can fit the tuning data and fail elsewhere (one undertrained
    model predicted 16.7 labels a text under them against 1.0 under the global one); this catches it.
    `score(probs, targets, cut-offs)`, called `name`: what "best" means (micro-F1 unless the caller's run
    is judged by another metric of the decisions, TrainConfig.metric).

    With `tie_break` (called `tie_name`): modes whose held-out `score` is within one standard error of the
    best's (the paired bootstrap of the held-out rows, TIE_RESAMPLES draws) are a tie that the held-out data
    cannot resolve; of those, the best by `tie_break` wins: the one-standard-error rule (Breiman et al. 1984).
    A few hundred dev texts cannot tell 0.899 from 0.901 micro-F1, yet the two modes may differ by points of
    macro-F1 (BENCHMARKS.md, "threshold_mode auto").
    """
    if len(heldout) < MIN_HELDOUT:
        return ModeChoice(
            "per_label", {}, f"only {len(heldout)} held-out texts, too few to compare modes; per_label kept"
        )
    halves = np.array_split(np.random.default_rng(seed).permutation(heldout), 2)
    scores: dict[str, list[float]] = {mode: [] for mode in MODE_PREFERENCE}
    decided = {mode: np.zeros((len(heldout), targets.shape[1]), dtype=np.float32) for mode in MODE_PREFERENCE}
    placed = 0
    for half in halves:
        rest = np.ones(len(probs), dtype=bool)
        rest[half] = False
        tuned = tune(probs[rest], targets[rest], min_support)
        for mode in MODE_PREFERENCE:
            scores[mode].append(score(probs[half], targets[half], tuned.for_mode(mode)))
            decided[mode][placed : placed + len(half)] = probs[half] >= np.asarray(tuned.for_mode(mode))
        placed += len(half)
    mean = {mode: round(float(np.mean(v)), 4) for mode, v in scores.items()}
    best = max(MODE_PREFERENCE, key=lambda m: (mean[m], -MODE_PREFERENCE.index(m)))
    shown = ", ".join(f"{m} {mean[m]:.3f}" for m in MODE_PREFERENCE)
    why = f"best {_shown_name(name)} on held-out halves of the tuning data ({shown})"
    if tie_break is None:
        return ModeChoice(best, mean, why)
    truth = targets[np.concatenate(halves)]
    errors = _gap_standard_errors(decided, truth, best, score, seed)
    tied = [m for m in MODE_PREFERENCE if mean[best] - mean[m] <= errors[m]]
    tie = {m: round(float(np.mean([tie_break(decided[m][h], truth[h], 0.5) for h in _spans(halves)])), 4)
           for m in MODE_PREFERENCE}  # fmt: skip
    chosen = max(tied, key=lambda m: (tie[m], -MODE_PREFERENCE.index(m)))
    if chosen != best:
        why += (f"; {chosen} is within one standard error ({errors[chosen]:.3f}) of {best} and ahead on "
                f"{_shown_name(tie_name)} ({tie[chosen]:.3f} against {tie[best]:.3f})")  # fmt: skip
    return ModeChoice(chosen, mean, why, tie, {m: round(v, 4) for m, v in errors.items()})


TIE_RESAMPLES = 200  # bootstrap draws of the held-out rows for the standard error of a gap between two modes


def _spans(halves: list[np.ndarray]) -> list[slice]:
    """Where each half's rows lie in the pooled held-out decisions."""
    ends = np.cumsum([0, *map(len, halves)])
    return [slice(int(a), int(b)) for a, b in itertools.pairwise(ends)]


def _gap_standard_errors(
    decided: dict[str, np.ndarray], truth: np.ndarray, best: str, score: Callable, seed: int
) -> dict[str, float]:
    """Each mode's standard error of (best's score - its score) over bootstrap draws of the held-out rows,
    the two modes' decisions drawn on the same rows (paired)."""
    rng = np.random.default_rng(seed)
    gaps: dict[str, list[float]] = {mode: [] for mode in decided}
    for _ in range(TIE_RESAMPLES):
        rows = rng.integers(0, len(truth), len(truth))
        top = score(decided[best][rows], truth[rows], 0.5)
        for mode, decisions in decided.items():
            gaps[mode].append(top - score(decisions[rows], truth[rows], 0.5))
    return {mode: float(np.std(v)) for mode, v in gaps.items()}


def _shown_name(metric: str) -> str:
    return metric.replace("_f1", "-F1")
