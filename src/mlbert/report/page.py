"""`mlbert report`: one self-contained HTML page that shows how good a model is, label by label.

Arrays and settings in, an HTML string out; `cli.jobs.report_job` reads the files and writes the page.
Everything the page needs is inside it: figures as SVG data URIs, the table-sorting script and the
style sheet inline and allowed only by their hashes in the page's Content-Security-Policy. Texts
and label names are user data: Jinja2 escapes them, and the policy would block any script they
smuggled in anyway.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score

from ..calibration import Calibration, calibration_report
from ..config import THRESHOLD_MODES
from ..metrics import apply_thresholds, metrics_by_mode, per_label_table
from ..thresholds import Thresholds
from . import plots

# The page's column titles of the threshold modes (config.ThresholdMode names them).
MODE_TITLES = {"fixed": "0.5", "global": "tuned global", "per_label": "tuned per label"}
MODES = tuple((mode, MODE_TITLES[mode]) for mode in THRESHOLD_MODES)
HEADLINE = (
    "micro_f1",
    "macro_f1",
    "samples_f1",
    "jaccard",
    "micro_precision",
    "micro_recall",
    "micro_roc_auc",
    "macro_roc_auc",
    "micro_pr_auc",
    "macro_pr_auc",
    "p_at_1",
    "hamming_loss",
    "subset_accuracy",
    "mean_labels_predicted",
)
SNIPPET_CHARS = 300


@dataclass
class ReportInput:
    """What one report is made of. `probs` and `targets` are (n_texts, n_labels), columns = `labels`."""

    probs: np.ndarray
    targets: np.ndarray
    texts: list[str]
    labels: list[str]
    thresholds: Thresholds
    default_mode: str
    events: list[dict[str, Any]] = field(default_factory=list)  # train_log.jsonl, when the folder has one
    about: dict[str, Any] = field(default_factory=dict)  # model folder, data file, settings: shown as given
    warnings: list[str] = field(default_factory=list)
    # Metrics under each threshold mode, when the caller has computed them already (metrics_by_mode).
    metrics: dict[str, dict[str, Any]] | None = None
    # Chunked reading: text -> its windows as (first char, end char, label probabilities)
    # (MultiLabelClassifier.window_scores), so a mistake shows the part of a long text that drove it.
    windows: Callable[[str], list[tuple[int, int, np.ndarray]]] | None = None
    # (text, label) -> every word of the text with its attribution to that label (explain.WordAttribution),
    # so a mistake highlights the words that drove its worst decision (MultiLabelClassifier.explain).
    explain: Callable[[str, str], list[Any]] | None = None
    # A calibrated model's map (MultiLabelClassifier.calibration_): the calibration section measures the scores
    # it shows (the rest of the page reads raw scores under the raw thresholds: the same decisions).
    calibration: Calibration | None = None


def data_uri(svg: bytes) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(svg).decode("ascii")


def per_label_rows(
    probs: np.ndarray, targets: np.ndarray, cut: np.ndarray | float, labels: list[str]
) -> list[dict[str, Any]]:
    """The metrics.py per-label table plus each label's PR-AUC (None where it has no positive)."""
    rows = per_label_table(probs, targets, cut, labels)
    for j, row in enumerate(rows):
        row["pr_auc"] = float(average_precision_score(targets[:, j], probs[:, j])) if row["support"] else None
    return rows


def confident_mistakes(
    probs: np.ndarray,
    targets: np.ndarray,
    texts: list[str],
    labels: list[str],
    cut: np.ndarray | float,
    n: int = 20,
    windows: Callable[[str], list[tuple[int, int, np.ndarray]]] | None = None,
    explain: Callable[[str, str], list[Any]] | None = None,
    n_words: int = 5,
) -> list[dict[str, Any]]:
    """The n examples whose worst decision was made with the most confidence.

    A false label counts with its probability, a missed one with 1 - probability, so a text that
    scored 0.99 on a wrong label or 0.01 on a true one comes first. With `windows` (chunked reading), a text
    read in several windows shows the window that scored its worst label highest instead of its start. With
    `explain`, the `n_words` words of the shown text that moved the worst label's score most are highlighted.
    """
    pred = apply_thresholds(probs, cut).astype(bool)
    y = targets.astype(bool)
    false_conf = np.where(pred & ~y, probs, 0.0)
    missed_conf = np.where(~pred & y, 1.0 - probs, 0.0)
    worst = np.maximum(false_conf.max(axis=1, initial=0), missed_conf.max(axis=1, initial=0))
    order = [i for i in np.argsort(-worst, kind="stable")[:n] if worst[i] > 0]
    out = []
    for i in order:
        text = texts[i]
        ranked = np.argsort(-probs[i], kind="stable")
        worst_label = int(np.argmax(np.maximum(false_conf[i], missed_conf[i])))
        window = _driving_window(text, worst_label, labels, windows) if windows is not None else None
        first = window["start"] if window else 0
        shown = text[first : window["end"]] if window else text
        snippet = shown if len(shown) <= SNIPPET_CHARS else shown[: SNIPPET_CHARS - 1]
        words = explain(text, labels[worst_label]) if explain is not None else []
        segments = highlighted(snippet, words, first, n_words)
        marked = sorted(((piece, a) for piece, kind, a in segments if kind), key=lambda m: -abs(m[1]))
        out.append(
            {
                "index": int(i),
                "text": snippet + ("…" if snippet != shown else ""),
                "segments": segments + ([("…", None, 0.0)] if snippet != shown else []),
                "explained": {"label": labels[worst_label], "words": marked} if words else None,
                "window": window,
                "confidence": float(worst[i]),
                "true": [labels[j] for j in ranked if y[i, j]],
                "predicted": [(labels[j], float(probs[i, j])) for j in ranked if pred[i, j]],
                "false": [(labels[j], float(probs[i, j])) for j in ranked if pred[i, j] and not y[i, j]],
                "missed": [(labels[j], float(probs[i, j])) for j in ranked if y[i, j] and not pred[i, j]],
            }
        )
    return out


def highlighted(snippet: str, words: list[Any], first: int, k: int) -> list[tuple[str, str | None, float]]:
    """`snippet` (the text from character `first` on) cut into (piece, "for" / "against" / None, attribution):
    the k words of it with the largest attributions marked by their sign, the rest plain."""
    inside = [w for w in words if w.start >= first and w.end <= first + len(snippet)]
    # explain.top_words' rule, written out: importing explain.py would load torch into a page that never needs it
    marked = sorted(sorted(inside, key=lambda w: -abs(w.attribution))[:k], key=lambda w: w.start)
    pieces, at = [], 0
    for w in marked:
        start, end = w.start - first, w.end - first
        if start > at:
            pieces.append((snippet[at:start], None, 0.0))
        pieces.append((snippet[start:end], "for" if w.attribution > 0 else "against", float(w.attribution)))
        at = end
    if at < len(snippet):
        pieces.append((snippet[at:], None, 0.0))
    return pieces


def _driving_window(text: str, label: int, labels: list[str], windows) -> dict[str, Any] | None:
    """The window of `text` that scored `label` highest (None for a text read in one window)."""
    scored = windows(text)
    if len(scored) < 2:
        return None
    best = max(range(len(scored)), key=lambda w: scored[w][2][label])
    start, end, row = scored[best]
    return {"label": labels[label], "number": best + 1, "of": len(scored), "start": int(start), "end": int(end),
            "score": float(row[label])}  # fmt: skip


def build_context(data: ReportInput, n_mistakes: int = 20, n_top: int = 15, n_worst: int = 5) -> dict[str, Any]:
    """Every number and figure of the page, computed from the arrays (the template only lays them out)."""
    probs, y, labels = data.probs, data.targets.astype(np.int8), data.labels
    cut = data.thresholds.for_mode(data.default_mode)
    metrics = data.metrics if data.metrics is not None else metrics_by_mode(probs, y, data.thresholds)
    rows = per_label_rows(probs, y, cut, labels)
    for row in rows:
        row["rare"] = row["support"] < 3
    scored = [j for j, r in enumerate(rows) if r["support"] > 0]
    worst = sorted(scored, key=lambda j: (rows[j]["f1"], -rows[j]["support"]))[:n_worst]
    top = [j for j in np.argsort(-y.sum(axis=0), kind="stable")[:n_top] if y[:, j].sum() > 0]
    predicted = apply_thresholds(probs, cut)
    sweep_svg, sweep = plots.threshold_sweep(probs, y, data.thresholds.global_)
    calibration = calibration_report(probs, y, data.calibration)
    curves = plots.training_curves(data.events)
    figures = {
        "training": data_uri(curves) if curves is not None else None,
        "support": data_uri(plots.f1_against_support(rows)),
        "pr": data_uri(plots.pr_curves(probs, y, worst, labels)),
        "threshold": data_uri(sweep_svg),
        "cooccurrence": data_uri(plots.cooccurrence(y, predicted, top, labels)) if len(top) >= 2 else None,
        "cardinality": data_uri(plots.cardinality(y, predicted)),
        "reliability": data_uri(plots.reliability(calibration)),
    }
    best = int(np.argmax(sweep["micro_f1"]))
    return {
        "about": data.about,
        "warnings": data.warnings,
        "n_examples": int(y.shape[0]),
        "n_labels": len(labels),
        "n_labels_evaluated": metrics["fixed"]["n_labels_evaluated"],
        "default_mode": data.default_mode,
        "modes": MODES,
        "headline": HEADLINE,
        "metrics": metrics,
        "per_label": sorted(rows, key=lambda r: (-r["support"], r["label"])),
        "worst": [rows[j] for j in worst],
        "top_labels": [labels[j] for j in top],
        "figures": figures,
        "global_threshold": data.thresholds.global_,
        "sweep_best": {"threshold": sweep["threshold"][best], "micro_f1": sweep["micro_f1"][best]},
        "epochs": [e for e in data.events if e.get("event") == "epoch"],
        "mistakes": confident_mistakes(probs, y, data.texts, labels, cut, n_mistakes, data.windows, data.explain),
        "calibration": calibration,
        "mean_true": float(y.sum(axis=1).mean()) if len(y) else 0.0,
        "mean_predicted": float(predicted.sum(axis=1).mean()) if len(y) else 0.0,
    }


def _asset(name: str) -> str:
    return resources.files("mlbert.report").joinpath("templates", name).read_text(encoding="utf-8")


def _csp_hash(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode("utf-8")).digest()).decode("ascii") + "'"


def _num(value: Any, digits: int = 4) -> str:
    return "n/a" if value is None or value != value else f"{value:.{digits}f}"


def render(context: dict[str, Any]) -> str:
    """The page as one HTML string (autoescaped: user texts and label names cannot become markup)."""
    from jinja2 import Environment, PackageLoader, StrictUndefined

    env = Environment(
        loader=PackageLoader("mlbert.report", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = _num
    script, style = _asset("report.js"), _asset("report.css")
    csp = (
        f"default-src 'none'; img-src data:; style-src {_csp_hash(style)}; script-src {_csp_hash(script)}; "
        "base-uri 'none'; form-action 'none'"
    )
    return env.get_template("report.html.j2").render(**context, script=script, style=style, csp=csp)


def make_report(data: ReportInput, **options: Any) -> str:
    return render(build_context(data, **options))
