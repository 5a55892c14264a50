"""What scoring a split costs once the probabilities exist: mlbert's metrics against scikit-learn's, side by side.

    python bench/metrics_speed.py [--datasets goemotions,reuters] [--split test]

Every dev evaluation in training, `mlbert evaluate`, metrics.json and the HTML report compute the metrics of
metrics.py on an (n_texts, n_labels) score matrix. On the real label matrices of the shared datasets, with
scores drawn from a fixed seed (the values do not change the work, only the shape does), this times:
  lrap        metrics.label_ranking_average_precision vs sklearn.metrics.label_ranking_average_precision_score
  f1-curve    thresholds.f1_by_global_threshold over the report's threshold grid vs metrics.decision_metrics
              (scikit-learn's F1) at each cut-off, as the report's threshold plot computed it before
  report      metrics.evaluation_report (three threshold modes, per-label table, calibration), mlbert only
and checks that the paired results agree. Results: bench/results/metrics_speed.json and markdown on stdout.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from datetime import date

import numpy as np
from sklearn import metrics as skm

from common import RESULTS_DIR, SHARED_DATA, machine
from mlbert.data import binarize, label_vocabulary
from mlbert.metrics import decision_metrics, evaluation_report, label_ranking_average_precision
from mlbert.thresholds import GRID, Thresholds, f1_by_global_threshold

RESULTS = RESULTS_DIR / "metrics_speed.json"


def label_matrix(dataset: str, split: str) -> tuple[np.ndarray, list[str]]:
    with open(SHARED_DATA / dataset / f"{split}.jsonl", encoding="utf-8") as f:
        labels = [json.loads(line)["labels"] for line in f]
    vocab = label_vocabulary(labels)
    return binarize(labels, vocab)[0].astype(np.float32), vocab


def timed(fn, repeats: int = 3) -> tuple[float, object]:
    """The fastest of `repeats` calls -> (seconds, result)."""
    best, out = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - started)
    return best, out


def measure(dataset: str, split: str) -> list[dict]:
    y, vocab = label_matrix(dataset, split)
    rng = np.random.default_rng(0)
    probs = (1 / (1 + np.exp(-(3 * y - 2 + rng.normal(0, 1.2, y.shape))))).astype(np.float32)
    shape = {"dataset": dataset, "split": split, "n_texts": int(y.shape[0]), "n_labels": int(y.shape[1])}
    has = y.sum(axis=1) > 0
    ours_s, ours = timed(lambda: label_ranking_average_precision(probs, y))
    theirs_s, theirs = timed(lambda: skm.label_ranking_average_precision_score(y[has], probs[has]), repeats=1)
    grid = GRID[::2]
    curve_s, curve = timed(lambda: f1_by_global_threshold(probs, y, grid))
    per_cut_s, per_cut = timed(lambda: [decision_metrics(probs, y, float(t)) for t in grid], repeats=1)
    curve_gap = max(max(abs(curve[k][i] - m[k]) for i, m in enumerate(per_cut)) for k in ("micro_f1", "macro_f1"))
    thresholds = Thresholds(global_=0.3, per_label=np.full(y.shape[1], 0.3), fixed=0.5)
    report_s, _ = timed(lambda: evaluation_report(probs, y, vocab, thresholds, "global"))
    return [
        {**shape, "measure": "lrap", "mlbert_s": ours_s, "sklearn_s": theirs_s, "speedup": theirs_s / ours_s,
         "max_abs_diff": abs(ours - theirs)},
        {**shape, "measure": "f1-curve", "cut_offs": len(grid), "mlbert_s": curve_s, "sklearn_s": per_cut_s,
         "speedup": per_cut_s / curve_s, "max_abs_diff": float(curve_gap)},
        {**shape, "measure": "report", "mlbert_s": report_s},
    ]  # fmt: skip


def summary(records: list[dict]) -> str:
    lines = [
        "| dataset | texts × labels | measure | mlbert s | scikit-learn s | speed-up | max abs diff |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in records:
        sk = f"{r['sklearn_s']:.3f}" if "sklearn_s" in r else ""
        speedup = f"{r['speedup']:.0f}x" if "speedup" in r else ""
        diff = f"{r['max_abs_diff']:.1e}" if "max_abs_diff" in r else ""
        lines.append(
            f"| {r['dataset']} | {r['n_texts']:,} × {r['n_labels']} | {r['measure']} | {r['mlbert_s']:.3f} | {sk} "
            f"| {speedup} | {diff} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="goemotions,reuters")
    parser.add_argument("--split", default="test")
    args = parser.parse_args(argv)
    records = [r for dataset in args.datasets.split(",") for r in measure(dataset, args.split)]
    command = shlex.join(["python", "bench/metrics_speed.py", *(argv if argv is not None else sys.argv[1:])])
    from mlbert.fileio import write_json

    write_json(
        RESULTS, {"command": command, "date": date.today().isoformat(), "machine": machine(), "records": records}
    )
    print(summary(records))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
