"""The report's figures: arrays in, SVG bytes out.

Built on `matplotlib.figure.Figure` directly (no pyplot): no global figure state, no display
backend needed, safe to call from any thread. Label names are user data, so `$` is escaped
before matplotlib could read it as mathtext.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from sklearn.metrics import precision_recall_curve

from ..thresholds import GRID, f1_by_global_threshold

BLUE, ORANGE, GREY = "#1f77b4", "#ff7f0e", "#888888"


def _text(s: str, limit: int = 24) -> str:
    s = s if len(s) <= limit else s[: limit - 1] + "…"
    return s.replace("$", r"\$")


def _svg(fig: Figure) -> bytes:
    buf = io.BytesIO()
    # A fixed salt and no date keep the same data giving the same bytes.
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    return buf.getvalue()


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    fig.set_facecolor("white")
    return fig


def training_curves(events: list[dict[str, Any]]) -> bytes | None:
    """Training loss per logged step and dev loss per epoch; dev micro/macro-F1 per epoch."""
    steps = [e for e in events if e.get("event") == "step" and "loss" in e]
    epochs = [e for e in events if e.get("event") == "epoch"]
    if not steps and not epochs:
        return None
    fig = _figure(9, 3.2)
    loss_ax, f1_ax = fig.subplots(1, 2)
    if steps:
        loss_ax.plot([e["step"] for e in steps], [e["loss"] for e in steps], color=BLUE, label="train loss (step)")
    dev = [e for e in epochs if e.get("dev_loss") is not None]
    if dev:
        loss_ax.plot(
            [e["step"] for e in dev], [e["dev_loss"] for e in dev], "o-", color=ORANGE, label="dev loss (epoch)"
        )
    loss_ax.set_xlabel("optimizer step")
    loss_ax.set_ylabel("loss")
    loss_ax.set_yscale("log")
    loss_ax.legend(fontsize=8)
    loss_ax.set_title("loss")
    scored = [e for e in epochs if e.get("dev_micro_f1") is not None]
    if scored:
        x = [e["epoch"] for e in scored]
        f1_ax.plot(x, [e["dev_micro_f1"] for e in scored], "o-", color=BLUE, label="dev micro-F1")
        f1_ax.plot(x, [e["dev_macro_f1"] for e in scored], "s-", color=ORANGE, label="dev macro-F1")
        f1_ax.set_xticks(x)
        f1_ax.set_ylim(0, 1)
        f1_ax.legend(fontsize=8)
    else:
        f1_ax.text(0.5, 0.5, "no dev scores logged", ha="center", va="center", transform=f1_ax.transAxes)
    f1_ax.set_xlabel("epoch")
    f1_ax.set_title("dev F1 (tuned global threshold)")
    return _svg(fig)


def f1_against_support(rows: list[dict[str, Any]]) -> bytes:
    """Labels ordered by support: support bars on a log scale above, F1 bars below — the long tail."""
    rows = sorted(rows, key=lambda r: (-r["support"], r["label"]))
    x = np.arange(len(rows))
    support = np.array([r["support"] for r in rows])
    f1 = np.array([r["f1"] for r in rows])
    fig = _figure(max(6.0, min(0.14 * len(rows) + 2, 14.0)), 4.6)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[1, 1])
    seen = support > 0  # labels without a positive here get no bars: there is nothing to score
    top.bar(x[seen], support[seen], color=GREY, width=0.8)
    top.set_yscale("log")
    top.set_ylabel("support (log)")
    top.set_title("per-label F1 against support, labels by support")
    bottom.bar(x[seen], f1[seen], color=BLUE, width=0.8)
    bottom.set_xlim(-0.6, len(rows) - 0.4)
    bottom.set_ylim(0, 1)
    bottom.set_ylabel("F1")
    if len(rows) <= 45:
        bottom.set_xticks(x, [_text(r["label"], 16) for r in rows], rotation=90, fontsize=7)
    else:
        bottom.set_xlabel(f"{len(rows)} labels, most frequent on the left (names in the table below)")
        bottom.set_xticks([])
    return _svg(fig)


def pr_curves(probs: np.ndarray, targets: np.ndarray, worst: list[int], names: list[str]) -> bytes:
    """Micro-averaged precision-recall curve and one curve per label in `worst` (column indices)."""
    fig = _figure(5.5, 4.2)
    ax = fig.subplots()
    present = targets.sum(axis=0) > 0
    if present.any():
        p, r, _ = precision_recall_curve(targets[:, present].ravel(), probs[:, present].ravel())
        ax.plot(r, p, color="black", lw=2, label="micro (all labels)")
    for j in worst:
        if targets[:, j].sum() == 0:
            continue
        p, r, _ = precision_recall_curve(targets[:, j], probs[:, j])
        ax.plot(r, p, lw=1, label=f"{_text(names[j])} (n={int(targets[:, j].sum())})")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title("precision-recall: micro and the worst labels")
    ax.legend(fontsize=7, loc="lower left")
    return _svg(fig)


def threshold_sweep(probs: np.ndarray, targets: np.ndarray, chosen: float) -> tuple[bytes, dict[str, list[float]]]:
    """Micro- and macro-F1 for one global threshold over the tuning grid, the tuned one marked.

    Returns the figure and the curve itself, so the page can state the numbers behind it.
    """
    grid = GRID[::2]
    f1 = f1_by_global_threshold(probs, targets, grid)
    curve = {"threshold": grid.tolist(), **{name: values.tolist() for name, values in f1.items()}}
    at = {name: float(values[0]) for name, values in f1_by_global_threshold(probs, targets, np.array([chosen])).items()}
    fig = _figure(5.5, 3.6)
    ax = fig.subplots()
    ax.plot(curve["threshold"], curve["micro_f1"], color=BLUE, label="micro-F1")
    ax.plot(curve["threshold"], curve["macro_f1"], color=ORANGE, label="macro-F1")
    ax.axvline(chosen, color=GREY, ls="--", lw=1)
    ax.plot([chosen], [at["micro_f1"]], "o", color=BLUE, ms=7)
    ax.annotate(
        f"tuned t={chosen:.2f}\nmicro-F1 {at['micro_f1']:.3f}",
        (chosen, at["micro_f1"]),
        xytext=(8, -28),
        textcoords="offset points",
        fontsize=8,
    )
    ax.set_xlabel("one threshold for every label")
    ax.set_ylabel("F1 on this data")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title("F1 against the global threshold")
    return _svg(fig), curve


def cooccurrence(targets: np.ndarray, predicted: np.ndarray, top: list[int], names: list[str]) -> bytes:
    """How often two of the `top` labels occur together: true labels beside predicted ones (log colour)."""
    true_counts = targets[:, top].T.astype(np.int64) @ targets[:, top].astype(np.int64)
    pred_counts = predicted[:, top].T.astype(np.int64) @ predicted[:, top].astype(np.int64)
    vmax = max(int(true_counts.max(initial=1)), int(pred_counts.max(initial=1)), 1)
    size = max(4.0, min(0.32 * len(top) + 2, 8.0))
    fig = _figure(2 * size + 1, size)
    axes = fig.subplots(1, 2)
    ticks = [_text(names[j], 14) for j in top]
    image = None
    for ax, counts, title in ((axes[0], true_counts, "true"), (axes[1], pred_counts, "predicted")):
        image = ax.imshow(np.maximum(counts, 0.5), norm=LogNorm(vmin=0.5, vmax=vmax), cmap="viridis")
        ax.set_xticks(range(len(top)), ticks, rotation=90, fontsize=7)
        ax.set_yticks(range(len(top)), ticks, fontsize=7)
        ax.set_title(f"co-occurrence, {title} labels")
    fig.colorbar(image, ax=axes, shrink=0.8, label="examples (log)")
    return _svg(fig)


def cardinality(targets: np.ndarray, predicted: np.ndarray) -> bytes:
    """Examples by number of labels: true beside predicted."""
    n_true, n_pred = targets.sum(axis=1).astype(int), predicted.sum(axis=1).astype(int)
    k = np.arange(max(int(n_true.max(initial=0)), int(n_pred.max(initial=0))) + 1)
    fig = _figure(5.5, 3.4)
    ax = fig.subplots()
    ax.bar(k - 0.2, np.bincount(n_true, minlength=len(k)), width=0.4, color=GREY, label="true")
    ax.bar(k + 0.2, np.bincount(n_pred, minlength=len(k)), width=0.4, color=BLUE, label="predicted")
    ax.set_xticks(k)
    ax.set_xlabel("labels per example")
    ax.set_ylabel("examples")
    ax.set_title("label cardinality")
    ax.legend(fontsize=8)
    return _svg(fig)


def reliability(calibration: dict[str, Any]) -> bytes:
    """The reliability diagram: each score bin's positive rate against its mean score (on the diagonal when a
    score of p means p), and how many (text, label) cells each bin holds."""
    rel = calibration["reliability"]
    count = np.asarray(rel["count"])
    used = count > 0
    fig = _figure(9, 3.4)
    curve_ax, count_ax = fig.subplots(1, 2)
    curve_ax.plot([0, 1], [0, 1], "--", color=GREY, linewidth=1, label="calibrated")
    curve_ax.plot(np.asarray(rel["mean_score"])[used], np.asarray(rel["positive_rate"])[used], "o-", color=BLUE,
                  label="this model")  # fmt: skip
    curve_ax.set_xlim(0, 1)
    curve_ax.set_ylim(0, 1)
    curve_ax.set_xlabel("mean score in the bin")
    curve_ax.set_ylabel("share of cells with the label")
    curve_ax.set_title(f"reliability: ECE {calibration['ece']:.4f}, Brier {calibration['brier']:.4f}")
    curve_ax.legend(fontsize=8)
    edges = np.linspace(0, 1, calibration["bins"] + 1)
    count_ax.bar(edges[:-1], count, width=np.diff(edges), align="edge", color=BLUE, edgecolor="white")
    count_ax.set_yscale("log")
    count_ax.set_xlim(0, 1)
    count_ax.set_xlabel("score")
    count_ax.set_ylabel("(text, label) cells")
    count_ax.set_title("scores given")
    return _svg(fig)
