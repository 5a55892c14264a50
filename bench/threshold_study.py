"""Which data should thresholds be tuned on? Decided on dev only, never test.

    python bench/threshold_study.py --model runs/reuters --dataset reuters

Splits dev in two halves at random (5 times, both ways round): thresholds are tuned on one half,
alone or pooled with the model's predictions on the training set, and scored on the other half.
Prints micro/macro-F1 (macro over the labels present in the scored half) for: dev only, dev with
train pooled for labels under min_support dev positives, train + dev pooled for all labels, train only.
Model predictions are cached as <cache>/<dataset>_<split>.npz (arrays `probs`, `targets`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from sklearn.metrics import f1_score

from common import SHARED_DATA
from mlbert.thresholds import tune, tune_label_thresholds


def probabilities(model: str, data_dir: Path, dataset: str, split: str, cache: Path) -> tuple[np.ndarray, np.ndarray]:
    path = cache / f"{dataset}_{split}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as d:
            return d["probs"], d["targets"]
    from mlbert.classifier import MultiLabelClassifier
    from mlbert.data import binarize, read_dataset

    clf = MultiLabelClassifier.load(model)
    data = read_dataset(data_dir / f"{split}.jsonl")
    probs = clf.predict_proba(data.texts, progress=True)
    targets, _ = binarize(data.labels, clf.labels_)
    cache.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, probs=probs, targets=targets)
    return probs, targets


def scores(pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    present = y.sum(axis=0) > 0
    return np.array(
        [
            f1_score(y, pred, average="micro", zero_division=0),
            f1_score(y[:, present], pred[:, present], average="macro", zero_division=0),
        ]
    )


def study(
    dev: tuple[np.ndarray, np.ndarray],
    train: tuple[np.ndarray, np.ndarray],
    min_support: int = 3,
    repeats: int = 5,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    (pd_, yd), (ptr, ytr) = dev, train
    rng = np.random.default_rng(seed)
    results: dict[str, list[np.ndarray]] = {
        k: [] for k in ("dev only", "dev + train for rare labels", "train + dev", "train only")
    }
    for _ in range(repeats):
        order = rng.permutation(len(yd))
        halves = (order[: len(order) // 2], order[len(order) // 2 :])
        for a, b in ((0, 1), (1, 0)):
            tune_idx, score_idx = halves[a], halves[b]
            dev_only = tune(pd_[tune_idx], yd[tune_idx], min_support)
            pooled = tune_label_thresholds(
                np.concatenate([ptr, pd_[tune_idx]]), np.concatenate([ytr, yd[tune_idx]]), dev_only.global_, min_support
            )
            train_only = tune_label_thresholds(ptr, ytr, dev_only.global_, min_support)
            rare_mixed = np.where(yd[tune_idx].sum(axis=0) >= min_support, dev_only.per_label, pooled)
            for name, cut in (
                ("dev only", dev_only.per_label),
                ("dev + train for rare labels", rare_mixed),
                ("train + dev", pooled),
                ("train only", train_only),
            ):
                results[name].append(scores(pd_[score_idx] >= cut, yd[score_idx]))
    return {k: np.mean(v, axis=0) for k, v in results.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a model folder from mlbert train")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--data-root", default=str(SHARED_DATA))
    parser.add_argument("--cache", default="runs/probs", help="where model predictions are cached")
    args = parser.parse_args(argv)
    data_dir, cache = Path(args.data_root) / args.dataset, Path(args.cache)
    dev = probabilities(args.model, data_dir, args.dataset, "dev", cache)
    train = probabilities(args.model, data_dir, args.dataset, "train", cache)
    print("| thresholds tuned on | micro-F1 on the other dev half | macro-F1 on the other dev half |")
    print("|---|---|---|")
    for name, (micro, macro) in study(dev, train).items():
        print(f"| {name} | {micro:.4f} | {macro:.4f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
