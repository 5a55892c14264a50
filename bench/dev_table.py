"""Dev-set table of finished `mlbert train` runs: the record of a settings search (never test numbers).

    python bench/dev_table.py runs/goemotions runs/goe-lr3e-5 runs/goe-lr3e-4

One row per run: the settings that differ between the runs, the best epoch's dev micro/macro-F1 at
the global threshold tuned during training (the same rule for every run, whatever --threshold-data
says), dev macro ROC-AUC (threshold-free), whether a collapse was flagged, and training seconds.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def load(run: Path) -> dict:
    metrics = json.loads((run / "metrics.json").read_text())
    config = json.loads((run / "mlbert.json").read_text())["config"]
    best = next(h for h in metrics["history"] if h["epoch"] == metrics["best_epoch"])
    return {"run": run.name, "config": config, "best": best, "metrics": metrics}


def table(runs: list[dict]) -> str:
    shared = set.intersection(*(set(r["config"]) for r in runs))  # older runs lack newer settings
    keys = sorted(k for k in shared if len({json.dumps(r["config"][k]) for r in runs}) > 1)
    head = ["run", *keys, "best epoch", "dev micro-F1", "dev macro-F1", "dev macro ROC-AUC", "collapsed", "train s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in runs:
        auc = r["best"].get("dev_macro_roc_auc")
        collapsed = any(h.get("collapsed") for h in r["metrics"]["history"])
        cells = [
            r["run"],
            *(str(r["config"].get(k)) for k in keys),
            str(r["metrics"]["best_epoch"]),
            f"{r['best']['dev_micro_f1']:.4f}",
            f"{r['best']['dev_macro_f1']:.4f}",
            f"{auc:.4f}" if auc is not None else "",
            "yes" if collapsed else "no",
            f"{r['metrics']['train_seconds']:.0f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    print(table([load(Path(a)) for a in argv]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
