"""Labels with meaning (issue 19): heads started from label texts against random ones, and zero-shot models
from label names alone, each run through the public CLI in a fresh process.

    python bench/labels.py zero-shot --dataset goemotions --dev-examples 0,100,500
    python bench/labels.py init --dataset goemotions --fractions 0.01,0.1 --seeds 1 --epochs 3
    python bench/labels.py zero-shot --dataset reuters --descriptions bench/label_descriptions/reuters.json
    python bench/labels.py add-labels --dataset goemotions --fractions 0.1 --epochs 3 --old-labels keep,distill

zero-shot  `mlbert zero-shot --labels labels.txt [--dev dev.jsonl --dev-examples N] --test test.jsonl`, and
           beside each N > 0 TF-IDF + LinearSVC trained on the same N dev examples (its thresholds tuned on
           5-fold out-of-fold scores of those examples, as the zero-shot model's are tuned on them).
init       `mlbert train` on a seeded share of train with --label-init random and label-text, same settings.
add-labels `mlbert train` on every other label (labels.txt order), `mlbert add-labels` with the whole data (once
           per --old-labels mode, at its default epochs: keep the model's own, distill DISTILL_EPOCHS), and
           `mlbert train` on all labels (both trainings --epochs): old-label and new-label micro-F1 on test,
           and the wall times, whole (wall_s) and less the scoring of the test split (training_s,
           all_labels_training_s: the issue's "training time").

Records (merged into bench/results/labels.json by experiment, dataset, fraction, init, seed, dev_examples,
label_text, epochs, train_flags and system; the last three init's): those fields, label_text being "names" or
the descriptions file's name, epochs the --epochs given (0: mlbert's auto schedule); micro_f1, macro_f1 (test,
the model's default thresholds), dev_micro_f1 / dev_macro_f1 (init: the same on dev, where a default is
decided), epochs_run, zero_f1_labels (labels present in test never predicted right), wall_s, command,
machine, date.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from common import RESULTS_DIR, SHARED_DATA, WORK_DIR, machine

RESULTS = RESULTS_DIR / "labels.json"
KEY = ("experiment", "dataset", "fraction", "init", "seed", "dev_examples", "label_text", "epochs", "train_flags")


def zero_f1(per_label: list[dict]) -> int:
    return sum(1 for r in per_label if r["support"] > 0 and r["f1"] == 0)


def _cli(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mlbert", *argv], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def _scores(out: Path) -> dict:
    metrics = json.loads((out / "metrics.json").read_text())
    test = metrics["test"]
    mode = test["default_mode"]
    scores = {
        "micro_f1": test["metrics"][mode]["micro_f1"],
        "macro_f1": test["metrics"][mode]["macro_f1"],
        "headline": mode,
        "zero_f1_labels": zero_f1(test["per_label"]),
        "n_test_labels": sum(1 for r in test["per_label"] if r["support"] > 0),
    }
    if "dev" in metrics:  # where a default is decided
        dev = metrics["dev"]["metrics"][mode]
        scores.update(dev_micro_f1=dev["micro_f1"], dev_macro_f1=dev["macro_f1"])
    if "epochs_run" in metrics:
        scores["epochs_run"] = metrics["epochs_run"]
    return scores


def _descriptions(path: str | None) -> list[str]:
    return ["--label-descriptions", path] if path else []


def zero_shot(folder: Path, n_dev: int, seed: int, descriptions: str | None) -> list[dict]:
    out = WORK_DIR / f"labels-zs-{folder.name}-{n_dev}{'-described' if descriptions else ''}"
    argv = ["zero-shot", "--labels", str(folder / "labels.txt"), "--test", str(folder / "test.jsonl"),
            "--out", str(out), "--overwrite", "--quiet", "--seed", str(seed), *_descriptions(descriptions)]  # fmt: skip
    if n_dev:
        argv += ["--dev", str(folder / "dev.jsonl"), "--dev-examples", str(n_dev)]
    wall = _cli(argv)
    records = [{"init": "label-text", "system": "mlbert zero-shot", **_scores(out), "wall_s": round(wall, 1),
                "command": shlex.join(["mlbert", *argv])}]  # fmt: skip
    if n_dev:
        records.append(tfidf_on_dev(folder, n_dev, seed))
    return records


def tfidf_on_dev(folder: Path, n_dev: int, seed: int) -> dict:
    """TF-IDF + LinearSVC trained on the zero-shot model's N dev examples (the same seeded sample)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.model_selection import KFold
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.svm import LinearSVC

    from accuracy import _sigmoid
    from mlbert.data import binarize, read_dataset
    from mlbert.label_init import sample_rows
    from mlbert.label_text import read_label_list
    from mlbert.metrics import evaluation_report
    from mlbert.thresholds import tune

    started = time.perf_counter()
    labels = read_label_list(folder / "labels.txt")
    dev, test = read_dataset(folder / "dev.jsonl"), read_dataset(folder / "test.jsonl")
    rows = sample_rows(len(dev), seed, n_dev)
    texts = [dev.texts[i] for i in rows]
    y, _ = binarize([dev.labels[i] for i in rows], labels)
    y_test, unseen = binarize(test.labels, labels)

    def fit(train_texts, train_y):
        vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
        x = vectorizer.fit_transform(train_texts)
        cols = train_y.sum(0) > 0  # LinearSVC needs both classes; a label never seen scores lowest
        model = OneVsRestClassifier(LinearSVC(C=1.0)).fit(x, train_y[:, cols])

        def scores(new_texts):
            out = np.full((len(new_texts), train_y.shape[1]), -50.0)
            out[:, cols] = model.decision_function(vectorizer.transform(new_texts)).reshape(len(new_texts), -1)
            return _sigmoid(out)

        return scores

    heldout = np.zeros(y.shape)
    for train_rows, test_rows in KFold(5, shuffle=True, random_state=seed).split(texts):
        heldout[test_rows] = fit([texts[i] for i in train_rows], y[train_rows])([texts[i] for i in test_rows])
    thresholds = tune(heldout, y, min_support=3)
    report = evaluation_report(fit(texts, y)(test.texts), y_test, labels, thresholds, "per_label", unseen)
    return {
        "init": None,
        "system": "tfidf-linearsvc on the dev examples",
        "micro_f1": report["metrics"]["per_label"]["micro_f1"],
        "macro_f1": report["metrics"]["per_label"]["macro_f1"],
        "headline": "per_label",
        "zero_f1_labels": zero_f1(report["per_label"]),
        "wall_s": round(time.perf_counter() - started, 1),
        "command": f"bench/labels.py tfidf_on_dev({folder.name!r}, {n_dev}, seed={seed})",
    }


def init_run(folder: Path, init: str, seed: int, epochs: int, extra: list[str]) -> list[dict]:
    described = "-described" if "--label-descriptions" in extra else ""
    out = WORK_DIR / f"labels-init-{folder.name}-{init}-{seed}-e{epochs}{described}"
    argv = ["train", "--train", str(folder / "train.jsonl"), "--dev", str(folder / "dev.jsonl"),
            "--test", str(folder / "test.jsonl"), "--out", str(out), "--overwrite", "--quiet",
            "--label-init", init, "--seed", str(seed), "--epochs", str(epochs), *extra]  # fmt: skip
    wall = _cli(argv)
    return [{"init": init, "system": "mlbert", **_scores(out), "wall_s": round(wall, 1),
             "command": shlex.join(["mlbert", *argv])}]  # fmt: skip


def subset_micro_f1(per_label: list[dict], labels: set[str]) -> float:
    """Micro-F1 over some labels only, from the per-label table (true positives = recall x support)."""
    rows = [r for r in per_label if r["label"] in labels]
    tp = sum(round(r["recall"] * r["support"]) for r in rows)
    total = sum(r["support"] + r["predicted"] for r in rows)
    return 2 * tp / total if total else 0.0


def half_labels_folder(folder: Path) -> tuple[Path, set[str], set[str]]:
    """train/dev of `folder` with every other label (in labels.txt order) removed: the old model's data."""
    labels = (folder / "labels.txt").read_text(encoding="utf-8").split()
    old, new = set(labels[::2]), set(labels[1::2])
    out = WORK_DIR / "data" / f"{folder.name}-half"
    out.mkdir(parents=True, exist_ok=True)
    for split in ("train", "dev"):
        rows = [json.loads(line) for line in (folder / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()]
        kept = [{**r, "labels": [x for x in r["labels"] if x in old]} for r in rows]
        (out / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
    return out, old, new


def add_labels(folder: Path, seed: int, epochs: int, extra: list[str], modes: list[str]) -> list[dict]:
    """The old model on half the labels, the other half added (once per --old-labels mode), and one model
    trained on all labels."""
    half, old_labels, new_labels = half_labels_folder(folder)
    test = str(folder / "test.jsonl")
    common = ["--seed", str(seed), "--overwrite", "--quiet"]  # add-labels takes its own epochs (keep: the model's)
    trained = [*common, "--epochs", str(epochs)]
    name = f"{folder.name}-{seed}"
    old_out, all_out = (WORK_DIR / f"labels-add-{name}-{kind}" for kind in ("old", "all"))
    old_argv = ["train", "--train", str(half / "train.jsonl"), "--dev", str(half / "dev.jsonl"), "--test", test,
                "--out", str(old_out), *trained, *extra]  # fmt: skip
    old_wall = _cli(old_argv)
    added = {}
    for mode in modes:
        out = WORK_DIR / f"labels-add-{name}-added" if mode == "keep" else WORK_DIR / f"labels-add-{name}-{mode}"
        argv = ["add-labels", "--model", str(old_out), "--train", str(folder / "train.jsonl"), "--dev",
                str(folder / "dev.jsonl"), "--test", test, "--out", str(out), "--old-labels", mode,
                *common]  # fmt: skip
        added[mode] = (out, argv, _cli(argv))
    all_argv = ["train", "--train", str(folder / "train.jsonl"), "--dev", str(folder / "dev.jsonl"), "--test", test,
                "--out", str(all_out), "--label-init", "random", *trained, *extra]  # fmt: skip
    all_wall = _cli(all_argv)

    def per_label(out: Path) -> list[dict]:
        return json.loads((out / "metrics.json").read_text())["test"]["per_label"]

    def training_s(out: Path, wall: float) -> float:
        """The run's wall time less its scoring of the test split (and, for `train`, its dev report)."""
        metrics = json.loads((out / "metrics.json").read_text())
        phases = metrics["added_labels"]["training"]["phases"] if "added_labels" in metrics else metrics["phases"]
        return round(wall - phases["score_s"], 1)

    return [
        {
            "init": "label-text",
            "system": "mlbert add-labels" if mode == "keep" else f"mlbert add-labels --old-labels {mode}",
            **_scores(out),
            "old_micro_f1": subset_micro_f1(per_label(out), old_labels),
            "new_micro_f1": subset_micro_f1(per_label(out), new_labels),
            "old_micro_f1_before": subset_micro_f1(per_label(old_out), old_labels),
            "all_labels_old_micro_f1": subset_micro_f1(per_label(all_out), old_labels),
            "all_labels_new_micro_f1": subset_micro_f1(per_label(all_out), new_labels),
            "all_labels_micro_f1": _scores(all_out)["micro_f1"],
            "all_labels_macro_f1": _scores(all_out)["macro_f1"],
            "wall_s": round(wall, 1),
            "old_model_wall_s": round(old_wall, 1),
            "all_labels_wall_s": round(all_wall, 1),
            "training_s": training_s(out, wall),
            "all_labels_training_s": training_s(all_out, all_wall),
            "command": " && ".join(shlex.join(["mlbert", *a]) for a in (old_argv, argv, all_argv)),
        }
        for mode, (out, argv, wall) in added.items()
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", choices=("zero-shot", "init", "add-labels"))
    parser.add_argument("--dataset", required=True, help="folder name under --data-root (goemotions, reuters)")
    parser.add_argument("--data-root", default=str(SHARED_DATA))
    parser.add_argument("--dev-examples", default="0,100,500", help="zero-shot: dev examples to tune on")
    parser.add_argument("--fractions", default="0.01,0.1,1", help="init: shares of the training split")
    parser.add_argument("--seeds", default="1", help="comma-separated seeds")
    parser.add_argument(
        "--epochs",
        type=int,
        default=3,
        help="init: epochs of every run (0: mlbert's auto schedule); add-labels: of the two trainings",
    )
    parser.add_argument("--train-flags", default="", help="init: more `mlbert train` flags for both inits")
    parser.add_argument("--inits", default="random,label-text", help="init: which initialisations to run")
    parser.add_argument("--old-labels", default="keep", help="add-labels: comma-separated --old-labels modes")
    parser.add_argument(
        "--descriptions", metavar="FILE", help="label descriptions (--label-descriptions); default: the label names"
    )
    args = parser.parse_args(argv)
    folder = Path(args.data_root) / args.dataset
    if not folder.is_dir():
        print(f"labels.py: {folder} not found; benchmarks need ../shared/data", file=sys.stderr)
        return 2
    command = shlex.join(["python", "bench/labels.py", *(argv if argv is not None else sys.argv[1:])])
    records = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    seeds = [int(s) for s in args.seeds.split(",")]
    jobs = []
    label_text = Path(args.descriptions).stem if args.descriptions else "names"  # the descriptions file's name
    if args.experiment == "zero-shot":
        for seed in seeds:
            for n in (int(x) for x in args.dev_examples.split(",")):
                fields = {"fraction": 0.0, "seed": seed, "dev_examples": n, "label_text": label_text}
                jobs.append((fields, functools.partial(zero_shot, folder, n, seed, args.descriptions)))
    else:
        from time_to_accuracy import train_share_folder

        flags = [*shlex.split(args.train_flags), *_descriptions(args.descriptions)]
    if args.experiment == "add-labels":
        for fraction in (float(x) for x in args.fractions.split(",")):
            data = train_share_folder(folder, fraction) if fraction < 1 else folder
            for seed in seeds:
                fields = {"fraction": fraction, "seed": seed, "dev_examples": None, "label_text": label_text}
                jobs.append(
                    (fields, functools.partial(add_labels, data, seed, args.epochs, flags, args.old_labels.split(",")))
                )
    elif args.experiment == "init":
        for fraction in (float(x) for x in args.fractions.split(",")):
            data = train_share_folder(folder, fraction) if fraction < 1 else folder
            for seed in seeds:
                for init in args.inits.split(","):
                    fields = {"fraction": fraction, "seed": seed, "dev_examples": None, "label_text": label_text,
                              "epochs": args.epochs, "train_flags": args.train_flags}  # fmt: skip
                    jobs.append((fields, functools.partial(init_run, data, init, seed, args.epochs, flags)))
    for fields, run in jobs:
        for point in run():
            record = {"experiment": args.experiment, "dataset": args.dataset, **fields, **point, "machine": machine(),
                      "date": datetime.date.today().isoformat(), "bench_command": command}  # fmt: skip
            key = tuple(record.get(k) for k in KEY) + (record["system"],)
            records = [r for r in records if tuple(r.get(k) for k in KEY) + (r["system"],) != key] + [record]
            RESULTS.write_text(json.dumps(records, indent=2) + "\n")  # after every point: a cut run keeps it
            shown = ("dataset", "fraction", "init", "dev_examples", "system", "micro_f1", "macro_f1", "zero_f1_labels")
            print(json.dumps({k: record[k] for k in (*shown, "wall_s")}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
