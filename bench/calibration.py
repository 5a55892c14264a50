"""Calibration of a trained model's scores (issue 20): per-label temperature scaling against Platt scaling and
isotonic regression, each fitted on the data the thresholds are tuned on (a sample of train + dev, as the
model's own run did) and measured on test; and on dev halves (fit on train sample + one half, measure on the
other) for which generalises.

    python bench/calibration.py --model runs/tta-goemotions-15m --dataset goemotions
    python bench/calibration.py --model runs/tta-goemotions-15m --dataset goemotions --methods auto

`auto` is the product's rule (calibration.choose_calibration, what `mlbert train` keeps by default): raw
scores and each bounded map scored on the dev halves, a map kept only if it lowers that ECE by a tenth; its
record says which (`chosen`). Decisions: the model's default thresholds on raw scores (before), and the same
thresholds mapped through the calibration on calibrated scores (after; identical label sets for the strictly
increasing maps). Records (merged into bench/results/calibration.json by dataset, model and method):
ece_before, ece_after, ece_label_mean_before/after, brier_before, brier_after, micro_f1_before/after,
macro_f1_before/after, dev_halves_ece_before/after, label_sets_changed, command, machine, date.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import sys
from pathlib import Path

import numpy as np

from common import RESULTS_DIR, SHARED_DATA, machine, merge_record
from mlbert import MultiLabelClassifier
from mlbert.calibration import METHODS, Calibration, apply, choose_calibration, fit, map_thresholds
from mlbert.data import binarize, read_dataset
from mlbert.label_init import sample_rows
from mlbert.metrics import apply_thresholds, calibration_metrics, compute_metrics

RESULTS = RESULTS_DIR / "calibration.json"
DEFAULT_TRAIN_SAMPLE = 2000


def _probs(clf: MultiLabelClassifier, texts: list[str]) -> np.ndarray:
    return clf.predict_proba(texts, progress=False, calibrated=False)  # float32, as the thresholds meet them


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a trained model folder (with metrics.json)")
    parser.add_argument("--dataset", required=True, help="folder name under --data-root")
    parser.add_argument("--data-root", default=str(SHARED_DATA))
    parser.add_argument("--methods", default=",".join(METHODS), help=f"of {', '.join(METHODS)}, auto")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    folder = Path(args.data_root) / args.dataset
    if not folder.is_dir():
        print(f"calibration.py: {folder} not found; benchmarks need ../shared/data", file=sys.stderr)
        return 2
    command = shlex.join(["python", "bench/calibration.py", *(argv if argv is not None else sys.argv[1:])])
    clf = MultiLabelClassifier.load(args.model, calibrated=False)
    metrics = json.loads((Path(args.model) / "metrics.json").read_text())
    n_train = (metrics.get("threshold_tuning") or {}).get("n_train_examples") or DEFAULT_TRAIN_SAMPLE
    splits = {name: read_dataset(folder / f"{name}.jsonl") for name in ("train", "dev", "test")}
    rows = sample_rows(len(splits["train"]), args.seed, n_train)
    train_texts = [splits["train"].texts[i] for i in rows]
    y = {name: binarize(d.labels, clf.labels_)[0] for name, d in splits.items()}
    y["train"] = y["train"][rows]
    probs = {"train": _probs(clf, train_texts), "dev": _probs(clf, splits["dev"].texts),
             "test": _probs(clf, splits["test"].texts)}  # fmt: skip
    tune_p, tune_y = np.concatenate([probs["train"], probs["dev"]]), np.concatenate([y["train"], y["dev"]])
    half = np.random.default_rng(args.seed).permutation(len(probs["dev"])) < len(probs["dev"]) // 2
    cut = clf.thresholds_for()
    cuts = np.broadcast_to(np.asarray(cut, dtype=np.float64), (len(clf.labels_),))
    raw_decisions = apply_thresholds(probs["test"], cut)
    before = calibration_metrics(probs["test"], y["test"])
    scores_before = compute_metrics(probs["test"], y["test"], cut)
    base = {"dataset": args.dataset, "model": str(args.model), "n_fit": len(tune_p), "n_test": len(probs["test"])}
    for method in [m for m in args.methods.split(",") if m]:
        if method == "auto":  # the product's rule on the same tuning data, dev rows held out
            heldout = np.arange(len(probs["train"]), len(tune_p))
            chosen, note = choose_calibration(tune_p, tune_y, heldout, "auto", args.seed)
            if chosen is None:  # raw scores: the identity map
                chosen = Calibration.identity(len(clf.labels_))
            extra = {"chosen": note["method"], "why": note["why"], "heldout_ece": note.get("heldout_ece")}
            calibrated, mapped = chosen.apply(probs["test"]), chosen.cut_offs(cut)
        else:
            fitted = fit(tune_p, tune_y, method)
            calibrated = apply(probs["test"], fitted, method)
            if method == "isotonic":  # a step function: a threshold's image, decided with >=, as close as it gets
                mapped = np.array([m.predict([t])[0] if m is not None else t for t, m in zip(cuts, fitted)])
            else:
                mapped = map_thresholds(cut, fitted, len(clf.labels_))
            halves = []
            for held in (half, ~half):  # fit on the train sample + one dev half, measure on the other
                part_p = np.concatenate([probs["train"], probs["dev"][~held]])
                part = fit(part_p, np.concatenate([y["train"], y["dev"][~held]]), method)
                held_p, held_y = probs["dev"][held], y["dev"][held]
                halves.append((calibration_metrics(held_p, held_y)["ece"],
                               calibration_metrics(apply(held_p, part, method), held_y)["ece"]))  # fmt: skip
            extra = {"dev_halves_ece_before": float(np.mean([h[0] for h in halves])),
                     "dev_halves_ece_after": float(np.mean([h[1] for h in halves]))}  # fmt: skip
        after = calibration_metrics(calibrated, y["test"])
        scores_after = compute_metrics(calibrated, y["test"], mapped)
        record = {
            **base,
            "method": method,
            **extra,
            "ece_before": before["ece"],
            "ece_after": after["ece"],
            "ece_label_mean_before": before["ece_label_mean"],
            "ece_label_mean_after": after["ece_label_mean"],
            "brier_before": before["brier"],
            "brier_after": after["brier"],
            "micro_f1_before": scores_before["micro_f1"],
            "micro_f1_after": scores_after["micro_f1"],
            "macro_f1_before": scores_before["macro_f1"],
            "macro_f1_after": scores_after["macro_f1"],
            "label_sets_changed": int((apply_thresholds(calibrated, mapped) != raw_decisions).any(axis=1).sum()),
            "default_mode": clf.default_mode_,
            "command": command,
            "machine": machine(),
            "date": datetime.date.today().isoformat(),
        }
        merge_record(RESULTS, record, ("dataset", "model", "method"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
