"""`mlbert demo`: the whole product in one command, on data it makes itself."""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..classifier import MultiLabelClassifier
from ..config import TrainConfig
from ..demo_data import LABELS, NEW_TICKETS, make_dataset
from ..fileio import atomic_open
from .display import metrics_table, per_label_lines
from .jobs import predict_job, train_job


def write_demo_data(folder: Path, n_examples: int) -> dict[str, Path]:
    splits = make_dataset(n_examples)
    paths = {}
    for name, rows in splits.items():
        paths[name] = folder / f"{name}.jsonl"
        with atomic_open(paths[name]) as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
    with atomic_open(folder / "labels.txt") as f:
        f.write("\n".join(LABELS) + "\n")
    return paths


def run_demo(
    out: Path, n_examples: int = 2400, epochs: int = 3, model: str = TrainConfig.model, progress: bool = True
) -> dict:
    started = time.perf_counter()
    paths = write_demo_data(out / "data", n_examples)
    print(f"[1/4] wrote {n_examples} support tickets with {len(LABELS)} labels to {out / 'data'}")
    # Tickets are short: 64 tokens hold nearly all of them, and short batches train fast on a CPU.
    config = TrainConfig(model=model, epochs=epochs, max_length=64, batch_size=16, patience=0, save_steps=0)
    print(f"[2/4] fine-tuning {model} for {epochs} epochs on {paths['train']}")
    model_dir = out / "model"
    metrics = train_job(
        config, paths["train"], paths["dev"], model_dir, test=paths["test"], overwrite=True, progress=progress
    )
    print("\n[3/4] test metrics (thresholds tuned on dev; * = the model's default)\n")
    print(metrics_table(metrics["test"], title="test"))
    print("\nper label on test (per-label thresholds):")
    print(per_label_lines(metrics["test"]["per_label"]))

    predictions = out / "test_predictions.jsonl"
    predict_job(model_dir, paths["test"], predictions, progress=False)
    clf = MultiLabelClassifier.load(model_dir)
    print(f"\n[4/4] predictions for new tickets (all of test: {predictions})\n")
    probs = clf.predict_proba(NEW_TICKETS)
    for text, labels, row in zip(NEW_TICKETS, clf.predict(NEW_TICKETS, at_least_one=True), probs):
        scores = ", ".join(f"{name} {row[clf.labels_.index(name)]:.2f}" for name in labels)
        print(f"  {text}\n    -> {scores}")
    print(
        f"\ndone in {time.perf_counter() - started:.0f}s. Try:\n"
        f"  mlbert evaluate --model {model_dir} --data {paths['test']}\n"
        f"  mlbert predict --model {model_dir} --input {paths['test']} --output preds.jsonl\n"
        f"  mlbert serve --model {model_dir}    # then see README: Serving over HTTP"
    )
    return metrics
