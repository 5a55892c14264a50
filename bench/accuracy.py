"""Accuracy side by side: mlbert runs and the baselines a user would otherwise pick, same splits, same metric code.

    python bench/accuracy.py --dataset reuters                               # the linear baselines
    python bench/accuracy.py --dataset reuters --systems hf-trainer --hf-epochs 4 --hf-max-length 256
    python bench/accuracy.py --dataset reuters --systems "" --mlbert-run runs/reuters   # + a finished run
    python bench/accuracy.py --dataset reuters --systems ""                  # print the stored table only

Systems:
  tfidf-linearsvc, tfidf-logreg   TF-IDF (word 1-2 grams) + one-vs-rest LinearSVC / LogisticRegression
  libmultilabel-linear            LibMultiLabel's linear one-vs-rest, run in bench/.venv-libmultilabel
  hf-trainer                      AutoModelForSequenceClassification + transformers.Trainer (bench/hf_recipe.py)

Every system's dev scores go through mlbert.classifier.tune and its test scores through mlbert's metric
code; the row's headline mode is per-label thresholds, except hf-trainer, whose recipe decides at 0.5
(its tuned-threshold metrics are kept in the record too). An mlbert row is read from the run's
metrics.json, which records the command that produced it. Records are merged into
bench/results/accuracy.json by (dataset, system).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import RESULTS_DIR, ROOT, SHARED_DATA, gpu_name
from mlbert.data import binarize, label_vocabulary, read_dataset
from mlbert.fileio import write_json
from mlbert.metrics import evaluation_report
from mlbert.thresholds import tune

RESULTS = RESULTS_DIR / "accuracy.json"
LML_PYTHON = ROOT / "bench" / ".venv-libmultilabel" / "bin" / "python"
COLUMNS = ("micro_f1", "macro_f1", "samples_f1", "micro_roc_auc", "macro_roc_auc", "p_at_1")
N_WORST = 10


def _summary(report: dict) -> dict:
    """The metrics of every threshold mode, without the per-label table."""
    return {mode: {k: report["metrics"][mode][k] for k in COLUMNS} for mode in report["metrics"]}


MIN_VIEW_SUPPORT = 5


def worst_labels(per_label: list[dict], n: int = N_WORST) -> list[dict]:
    """The n labels with the lowest test F1 among those with >= MIN_VIEW_SUPPORT test examples.

    Labels with one or two test examples score 0 or 1 by luck; ranking them says nothing, so they are
    counted apart (`zero_f1_labels`)."""
    rows = [r for r in per_label if r["support"] >= MIN_VIEW_SUPPORT]
    rows.sort(key=lambda r: (r["f1"], r["support"], r["label"]))
    return [{k: r[k] for k in ("label", "support", "f1", "roc_auc", "threshold")} for r in rows[:n]]


def zero_f1(per_label: list[dict]) -> int:
    """How many labels present in test are never predicted right."""
    return sum(1 for r in per_label if r["support"] > 0 and r["f1"] == 0)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -50, 50)))


def linear_scores(kind: str, splits: dict, y: dict) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.svm import LinearSVC

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2)
    x_train = vectorizer.fit_transform(splits["train"].texts)
    base = LinearSVC(C=1.0) if kind == "tfidf-linearsvc" else LogisticRegression(C=10.0, max_iter=1000)
    model = OneVsRestClassifier(base, n_jobs=2).fit(x_train, y["train"])

    def scores(texts):
        x = vectorizer.transform(texts)
        if kind == "tfidf-linearsvc":  # margins -> (0, 1), monotone: ranking kept, 0.5 = the SVM's own cut
            return _sigmoid(model.decision_function(x))
        return model.predict_proba(x)

    return scores(splits["dev"].texts), scores(splits["test"].texts)


def libmultilabel_scores(folder: Path, vocab: list[str]) -> tuple[np.ndarray, np.ndarray]:
    if not LML_PYTHON.exists():
        raise SystemExit(
            f"accuracy.py: {LML_PYTHON} missing; create it with: python3 -m venv bench/.venv-libmultilabel "
            "&& bench/.venv-libmultilabel/bin/pip install libmultilabel==0.10.0"
        )
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "scores.npz"
        subprocess.run(
            [str(LML_PYTHON), str(ROOT / "bench" / "libmultilabel_linear.py"), str(folder), str(out)], check=True
        )
        data = np.load(out)
        order = {name: j for j, name in enumerate(data["labels"].tolist())}

        def aligned(values):  # its columns -> our vocabulary; a label it never saw scores -inf-like
            cols = [values[:, order[name]] if name in order else np.full(len(values), -50.0) for name in vocab]
            return _sigmoid(np.stack(cols, axis=1))

        return aligned(data["dev"]), aligned(data["test"])


def hf_trainer_scores(splits: dict, y: dict, vocab: list[str], args) -> tuple[np.ndarray, np.ndarray]:
    from hf_recipe import RecipeSettings, recipe_proba, train_recipe

    settings = RecipeSettings(
        epochs=args.hf_epochs,
        batch_size=args.hf_batch_size,
        lr=args.hf_lr,
        max_length=args.hf_max_length,
        padding="dynamic",
        group_by_length=True,
    )
    model, tokenizer, _ = train_recipe(splits["train"].texts, y["train"], vocab, settings)
    return (
        recipe_proba(model, tokenizer, splits["dev"].texts, settings),
        recipe_proba(model, tokenizer, splits["test"].texts, settings),
    )


def run_system(system: str, folder: Path, splits: dict, vocab: list[str], args) -> dict:
    started = time.perf_counter()
    y = {name: binarize(d.labels, vocab)[0] for name, d in splits.items()}
    if system in ("tfidf-linearsvc", "tfidf-logreg"):
        dev, test = linear_scores(system, splits, y)
    elif system == "libmultilabel-linear":
        dev, test = libmultilabel_scores(folder, vocab)
    elif system == "hf-trainer":
        dev, test = hf_trainer_scores(splits, y, vocab, args)
    else:
        raise SystemExit(f"accuracy.py: unknown system {system!r}")
    seconds = time.perf_counter() - started
    headline = "fixed" if system == "hf-trainer" else "per_label"
    _, unseen = binarize(splits["test"].labels, vocab)
    report = evaluation_report(test, y["test"], vocab, tune(dev, y["dev"], min_support=3), headline, unseen)
    return {
        "test": _summary(report),
        "headline": headline,
        "worst_labels": worst_labels(report["per_label"]),
        "zero_f1_labels": zero_f1(report["per_label"]),
        "wall_seconds": round(seconds, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, help="folder name under --data-root (reuters, goemotions)")
    parser.add_argument("--data-root", default=str(SHARED_DATA))
    parser.add_argument(
        "--systems",
        default="tfidf-linearsvc,tfidf-logreg,libmultilabel-linear",
        help="comma-separated; '' adds no baseline",
    )
    parser.add_argument("--hf-epochs", type=float, default=4.0)
    parser.add_argument("--hf-max-length", type=int, default=256)
    parser.add_argument("--hf-batch-size", type=int, default=16)
    parser.add_argument("--hf-lr", type=float, default=5e-5)
    parser.add_argument(
        "--mlbert-run",
        action="append",
        default=[],
        metavar="DIR",
        help="a finished `mlbert train` folder to add as a row (repeatable)",
    )
    parser.add_argument(
        "--mlbert-command",
        metavar="CMD",
        help="the command(s) behind the --mlbert-run row, when metrics.json does not tell all",
    )
    parser.add_argument(
        "--mlbert-eval",
        metavar="JSON",
        help="test metrics for the --mlbert-run row from this `mlbert evaluate --json` report "
        "(e.g. after `mlbert tune`) instead of the run's metrics.json",
    )
    parser.add_argument("--mlbert-name", metavar="NAME", help="row name for the --mlbert-run (default: mlbert (DIR))")
    parser.add_argument(
        "--device",
        help="where this invocation's rows ran, for the table's 'ran on' column "
        "(default: the CUDA device when there is one, else 'CPU, N cores'); give it for an "
        "--mlbert-run that trained elsewhere",
    )
    parser.add_argument(
        "--write-benchmarks", action="store_true", help="also rewrite this dataset's generated table in BENCHMARKS.md"
    )
    args = parser.parse_args(argv)
    folder = Path(args.data_root) / args.dataset
    if not folder.is_dir():
        print(f"accuracy.py: {folder} not found; benchmarks need ../shared/data", file=sys.stderr)
        return 2
    command = shlex.join(["python", "bench/accuracy.py", *(argv if argv is not None else sys.argv[1:])])
    device = args.device or this_device()
    records = []
    systems = [s for s in args.systems.split(",") if s]
    if systems:
        splits = {name: read_dataset(folder / f"{name}.jsonl") for name in ("train", "dev", "test")}
        vocab = label_vocabulary(splits["train"].labels)
        for system in systems:
            records.append(
                {
                    "dataset": args.dataset,
                    "system": system,
                    **run_system(system, folder, splits, vocab, args),
                    "device": device,
                    "command": command,
                }
            )
    for run in args.mlbert_run:
        metrics = json.loads((Path(run) / "metrics.json").read_text())
        test = json.loads(Path(args.mlbert_eval).read_text()) if args.mlbert_eval else metrics["test"]
        records.append(
            {
                "dataset": args.dataset,
                "system": args.mlbert_name or f"mlbert ({Path(run).name})",
                "test": _summary(test),
                "headline": test["default_mode"],
                "worst_labels": worst_labels(test["per_label"]),
                "zero_f1_labels": zero_f1(test["per_label"]),
                "wall_seconds": metrics["train_seconds"],
                "epochs_run": metrics["epochs_run"],
                "best_epoch": metrics["best_epoch"],
                "device": device,
                "command": args.mlbert_command or metrics.get("command") or "(not recorded)",
            }
        )

    existing = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    keys = {(r["dataset"], r["system"]) for r in records}
    merged = [r for r in existing if (r["dataset"], r["system"]) not in keys] + records
    if records:
        write_json(RESULTS, merged)
    text = section(args.dataset, merged)
    if args.write_benchmarks:
        write_section(ROOT / "BENCHMARKS.md", f"accuracy:{args.dataset}", text)
    print(text)
    return 0


MODE_NAMES = {"per_label": "per-label", "global": "global", "fixed": "0.5"}
DEFAULT_DEVICE = "CPU, 2 cores"  # the rows recorded before devices were (all on the 2-core machine)


def this_device() -> str:
    return gpu_name() or f"CPU, {os.cpu_count()} cores"


def markdown_table(records: list[dict]) -> str:
    """The BENCHMARKS.md table: each row at its headline thresholds, the other modes beside, and its command."""
    lines = [
        "| system | thresholds | micro-F1 | macro-F1 | samples-F1 | micro ROC-AUC | macro ROC-AUC | P@1 "
        "| micro-F1 @0.5 / global / per-label | macro-F1 @0.5 / global / per-label | train wall s | ran on |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        headline = r.get("headline", "per_label")
        m = r["test"][headline]
        modes = [r["test"][mode] for mode in ("fixed", "global", "per_label")]
        micro = " / ".join(f"{x['micro_f1']:.4f}" for x in modes)
        macro = " / ".join(f"{x['macro_f1']:.4f}" for x in modes)
        lines.append(
            f"| {r['system']} | {MODE_NAMES[headline]} | {m['micro_f1']:.4f} | {m['macro_f1']:.4f} | "
            f"{m['samples_f1']:.4f} | {m['micro_roc_auc']:.4f} | {m['macro_roc_auc']:.4f} | "
            f"{m['p_at_1']:.4f} | {micro} | {macro} | {r['wall_seconds']:.0f} | "
            f"{r.get('device', DEFAULT_DEVICE)} |"
        )
    lines.append("")
    lines += [f"- {r['system']}: `{r['command']}`" for r in records]
    return "\n".join(lines)


def worst_table(records: list[dict]) -> str:
    """The per-label view: each system's 10 worst test labels as `label (support) F1`."""
    rows = [r for r in records if r.get("worst_labels")]
    if not rows:
        return ""
    lines = ["| rank | " + " | ".join(r["system"] for r in rows) + " |", "|---" * (len(rows) + 1) + "|"]
    for k in range(N_WORST):
        cells = []
        for r in rows:
            w = r["worst_labels"][k] if k < len(r["worst_labels"]) else None
            cells.append(f"{w['label']} ({w['support']}) {w['f1']:.2f}" if w else "")
        lines.append(f"| {k + 1} | " + " | ".join(cells) + " |")
    lines.append("| labels in test with F1 = 0 | " + " | ".join(str(r.get("zero_f1_labels", "")) for r in rows) + " |")
    return "\n".join(lines)


def section(dataset: str, records: list[dict]) -> str:
    mine = [r for r in records if r["dataset"] == dataset]
    intro = (
        f"Worst {N_WORST} labels on test among those with >= {MIN_VIEW_SUPPORT} test examples, "
        "`label (test support) F1` at the row's headline thresholds:"
    )
    worst = worst_table(mine)
    return f"{markdown_table(mine)}\n\n{intro}\n\n{worst}" if worst else markdown_table(mine)


def write_section(path: Path, key: str, text: str) -> None:
    """Replace the generated block `key` (say accuracy:reuters) in BENCHMARKS.md, between its begin/end markers."""
    begin, end = f"<!-- {key}:begin -->", f"<!-- {key}:end -->"
    doc = path.read_text()
    if begin not in doc or end not in doc:
        raise SystemExit(f"{path} has no {begin} ... {end} block; add the two markers where the table goes")
    head, rest = doc.split(begin, 1)
    _, tail = rest.split(end, 1)
    from mlbert.fileio import atomic_open

    with atomic_open(path, "w") as f:
        f.write(f"{head}{begin}\n{text}\n{end}{tail}")


if __name__ == "__main__":
    raise SystemExit(main())
