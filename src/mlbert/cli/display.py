"""Plain-text tables for the terminal: metrics side by side per threshold mode, worst labels."""

from __future__ import annotations

from typing import Any

SUMMARY = (
    "micro_f1",
    "macro_f1",
    "samples_f1",
    "jaccard",
    "weighted_f1",
    "micro_precision",
    "micro_recall",
    "micro_roc_auc",
    "macro_roc_auc",
    "micro_pr_auc",
    "macro_pr_auc",
    "lrap",
    "p_at_1",
    "p_at_3",
    "hamming_loss",
    "subset_accuracy",
    "mean_labels_predicted",
    "mean_labels_true",
)
# The terminal's column titles of the threshold modes (config.ThresholdMode names them).
MODE_TITLES = {"fixed": "t=0.5", "global": "global t", "per_label": "per-label t"}


def _num(v: Any) -> str:
    return "   n/a" if v is None or v != v else f"{v:.4f}"


def metrics_table(report: dict[str, Any], title: str = "") -> str:
    """Rows = metrics, columns = threshold modes (the model's default mode marked with *)."""
    modes = list(report["metrics"])
    head = [MODE_TITLES[m] + ("*" if m == report.get("default_mode") else "") for m in modes]
    lines = []
    if title:
        lines.append(
            f"{title}: {report['n_examples']} examples, "
            f"{report['metrics'][modes[0]]['n_labels_evaluated']} labels with positives"
        )
    lines.append(f"{'metric':<22}" + "".join(f"{h:>14}" for h in head))
    for name in SUMMARY:
        lines.append(f"{name:<22}" + "".join(f"{_num(report['metrics'][m][name]):>14}" for m in modes))
    calibration = report.get("calibration")
    if calibration:  # threshold-free: one line, not a column per mode
        ece, ece_labels, brier = (_num(calibration[k]).strip() for k in ("ece", "ece_label_mean", "brier"))
        line = f"calibration: ECE {ece} over all cells, {ece_labels} mean over labels; Brier {brier}"
        if calibration.get("raw"):  # a calibrated model: its map, and what the raw scores had
            raw = calibration["raw"]
            line += (f" ({calibration.get('method')}-calibrated scores; raw scores: ECE {_num(raw['ece']).strip()}, "
                     f"Brier {_num(raw['brier']).strip()})")  # fmt: skip
        lines.append(line)
    if report.get("unseen_labels"):
        n = len(report["unseen_labels"])
        lines.append(
            f"({n} label(s) unknown to the model left out: {', '.join(list(report['unseen_labels'])[:8])}"
            f"{' ...' if n > 8 else ''})"
        )
    return "\n".join(lines)


def per_label_lines(rows: list[dict[str, Any]], limit: int | None = None, worst_first: bool = False) -> str:
    rows = [r for r in rows if r["support"] > 0]
    rows = (
        sorted(rows, key=lambda r: (r["f1"], -r["support"]))
        if worst_first
        else sorted(rows, key=lambda r: -r["support"])
    )
    if limit:
        rows = rows[:limit]
    width = max([len(r["label"]) for r in rows] + [5])
    out = [f"{'label':<{width}} {'support':>8} {'prec':>7} {'recall':>7} {'f1':>7} {'roc_auc':>8} {'thresh':>7}"]
    for r in rows:
        out.append(
            f"{r['label']:<{width}} {r['support']:>8} {r['precision']:>7.3f} {r['recall']:>7.3f} "
            f"{r['f1']:>7.3f} {_num(r['roc_auc']):>8} {r['threshold']:>7.2f}"
        )
    return "\n".join(out)
