"""Which int8 rule keeps a model's answers: per-tensor vs per-channel weights, head quantized or kept fp32.

    python bench/int8_rules.py --model runs/goemotions --data ../shared/data/goemotions/test.jsonl

Torch dynamic int8 of one trained model folder under each rule, against its fp32 predictions on the same
texts: largest probability difference, micro/macro-F1 at the model's per-label thresholds, examples/s
(batch 64, length-sorted, 2 threads). Results: bench/results/int8_rules.json and markdown on stdout. The
rule mlbert ships (quantize.KEEP_FP32, per-channel) is the last row.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from datetime import date

import numpy as np

from common import RESULTS_DIR

RESULTS = RESULTS_DIR / "int8_rules.json"
RULES = {  # name -> (module-name patterns kept fp32, per-channel weights)
    "all layers, per-tensor": ((), False),
    "all layers, per-channel": ((), True),
    "head fp32, per-tensor": (None, False),
    "head fp32, per-channel (shipped)": (None, True),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a trained mlbert model folder")
    parser.add_argument("--data", required=True, help="JSONL with text and labels (a test split)")
    args = parser.parse_args(argv)

    from mlbert import MultiLabelClassifier
    from mlbert.data import binarize, read_dataset
    from mlbert.metrics import compute_metrics
    from mlbert.quantize import KEEP_FP32, torch_int8

    clf = MultiLabelClassifier.load(args.model)
    data = read_dataset(args.data)
    texts, labels = data.texts, data.labels
    y, _ = binarize(labels, clf.labels_)
    fp32_model = clf.model_

    def measure(name: str) -> dict:
        clf.predict_proba(texts[:64])  # warm-up
        started = time.perf_counter()
        probs = clf.predict_proba(texts)
        seconds = time.perf_counter() - started
        m = compute_metrics(probs, y, clf.thresholds_.per_label)
        return {
            "rule": name,
            "probs": probs,
            "examples_per_s": len(texts) / seconds,
            "micro_f1": m["micro_f1"],
            "macro_f1": m["macro_f1"],
        }

    ref = measure("fp32")
    ref_probs = ref.pop("probs")
    records = [{**ref, "max_abs_prob_diff_vs_fp32": 0.0}]
    for name, (keep, per_channel) in RULES.items():
        clf.model_ = torch_int8(fp32_model, KEEP_FP32 if keep is None else keep, per_channel)
        r = measure(name)
        probs = r.pop("probs")
        records.append({**r, "max_abs_prob_diff_vs_fp32": float(np.abs(probs - ref_probs).max())})
    clf.model_ = fp32_model

    command = shlex.join(["python", "bench/int8_rules.py", *(argv if argv is not None else sys.argv[1:])])
    from mlbert.fileio import write_json

    write_json(
        RESULTS,
        {
            "command": command,
            "date": date.today().isoformat(),
            "model": args.model,
            "data": args.data,
            "n": len(texts),
            "records": records,
        },
    )
    print("| rule | max abs Δp vs fp32 | micro-F1 | macro-F1 | examples/s |\n|---|---|---|---|---|")
    for r in records:
        print(
            f"| {r['rule']} | {r['max_abs_prob_diff_vs_fp32']:.4f} | {r['micro_f1']:.4f} | {r['macro_f1']:.4f} | "
            f"{r['examples_per_s']:.0f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
