"""Accuracy side by side: mlbert runs and linear baselines on the same splits, same metric code.

    python bench/accuracy.py --dataset reuters                       # baselines
    python bench/accuracy.py --dataset reuters --mlbert-run runs/reuters   # + a finished `mlbert train` run
    python bench/accuracy.py --dataset reuters --systems ""            # print the stored table only

Baselines: TF-IDF (word 1-2 grams) + one-vs-rest LinearSVC and LogisticRegression (scikit-learn), with
thresholds tuned on dev exactly as mlbert tunes its own (mlbert.classifier.tune) and scored by
mlbert's metric code. An mlbert row is read from the run's metrics.json, which records the command
that produced it. Records are merged into bench/results/accuracy.json by (dataset, system).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from mlbert.classifier import evaluation_report, tune
from mlbert.data import binarize, label_vocabulary, read_dataset
from mlbert.fileio import write_json

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "accuracy.json"
COLUMNS = ("micro_f1", "macro_f1", "samples_f1", "micro_roc_auc", "macro_roc_auc", "p_at_1")


def _summary(report: dict) -> dict:
    """The metrics of every threshold mode, without the per-label table."""
    return {mode: {k: report["metrics"][mode][k] for k in COLUMNS} for mode in report["metrics"]}


def linear_baseline(kind: str, splits: dict, vocab: list[str]) -> tuple[dict, float]:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.svm import LinearSVC

    started = time.perf_counter()
    y = {name: binarize(d.labels, vocab)[0] for name, d in splits.items()}
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2)
    x_train = vectorizer.fit_transform(splits["train"].texts)
    base = LinearSVC(C=1.0) if kind == "tfidf-linearsvc" else LogisticRegression(C=10.0, max_iter=1000)
    model = OneVsRestClassifier(base, n_jobs=2).fit(x_train, y["train"])

    def scores(texts):
        x = vectorizer.transform(texts)
        if kind == "tfidf-linearsvc":  # margins -> (0, 1), monotone: ranking kept, 0.5 = the SVM's own cut
            return 1.0 / (1.0 + np.exp(-model.decision_function(x)))
        return model.predict_proba(x)

    thresholds = tune(scores(splits["dev"].texts), y["dev"], min_support=3)
    test_scores = scores(splits["test"].texts)
    seconds = time.perf_counter() - started
    _, unseen = binarize(splits["test"].labels, vocab)
    report = evaluation_report(test_scores, y["test"], vocab, thresholds, "per_label", unseen)
    return report, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, help="folder name under --data-root (reuters, goemotions)")
    parser.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--systems", default="tfidf-linearsvc,tfidf-logreg")
    parser.add_argument("--mlbert-run", action="append", default=[], metavar="DIR",
                        help="a finished `mlbert train` folder to add as a row (repeatable)")
    parser.add_argument("--mlbert-command", metavar="CMD",
                        help="the command of an --mlbert-run whose metrics.json predates command recording")
    args = parser.parse_args(argv)
    folder = Path(args.data_root) / args.dataset
    if not folder.is_dir():
        print(f"accuracy.py: {folder} not found; benchmarks need ../shared/data", file=sys.stderr)
        return 2
    command = shlex.join(["python", "bench/accuracy.py", *(argv if argv is not None else sys.argv[1:])])
    records = []
    systems = [s for s in args.systems.split(",") if s]
    if systems:
        splits = {name: read_dataset(folder / f"{name}.jsonl") for name in ("train", "dev", "test")}
        vocab = label_vocabulary(splits["train"].labels)
        for system in systems:
            report, seconds = linear_baseline(system, splits, vocab)
            records.append({"dataset": args.dataset, "system": system, "test": _summary(report),
                            "wall_seconds": round(seconds, 1), "command": command})
    for run in args.mlbert_run:
        metrics = json.loads((Path(run) / "metrics.json").read_text())
        records.append({"dataset": args.dataset, "system": f"mlbert ({Path(run).name})", "test": _summary(metrics["test"]),
                        "wall_seconds": metrics["train_seconds"], "epochs_run": metrics["epochs_run"],
                        "best_epoch": metrics["best_epoch"],
                        "command": metrics.get("command") or args.mlbert_command or "(not recorded)"})

    existing = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    keys = {(r["dataset"], r["system"]) for r in records}
    merged = [r for r in existing if (r["dataset"], r["system"]) not in keys] + records
    if records:
        write_json(RESULTS, merged)
    print(markdown_table([r for r in merged if r["dataset"] == args.dataset]))
    return 0


def markdown_table(records: list[dict]) -> str:
    """The BENCHMARKS.md table: per-label-threshold metrics, the 0.5 / global micro-F1, and each row's command."""
    lines = ["| system | micro-F1 | macro-F1 | samples-F1 | micro ROC-AUC | macro ROC-AUC | P@1 | micro-F1 @0.5 / global "
             "| macro-F1 @0.5 / global | train wall s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        m, f, g = (r["test"][mode] for mode in ("per_label", "fixed", "global"))
        lines.append(f"| {r['system']} | {m['micro_f1']:.4f} | {m['macro_f1']:.4f} | {m['samples_f1']:.4f} | "
                     f"{m['micro_roc_auc']:.4f} | {m['macro_roc_auc']:.4f} | {m['p_at_1']:.4f} | "
                     f"{f['micro_f1']:.4f} / {g['micro_f1']:.4f} | {f['macro_f1']:.4f} / {g['macro_f1']:.4f} | "
                     f"{r['wall_seconds']:.0f} |")
    lines.append("")
    lines += [f"- {r['system']}: `{r['command']}`" for r in records]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
