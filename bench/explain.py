"""Faithfulness and cost of explanations (issue 20): delete the k words an explanation ranks highest for a label
and see how far that label's score falls, against deleting k random words of the same text.

    python bench/explain.py --model runs/explain-goemotions --dataset goemotions --split dev --steps 2,4,8,16
    python bench/explain.py --model runs/explain-goemotions --dataset goemotions --texts 500 --steps 8

The steps are chosen on dev (--split dev), the faithfulness reported on test once. For each of the first
--texts texts of the split with more than k words (in file order): the explained label is the
text's highest-scoring predicted label (default thresholds; the highest-scoring label when none passes); its
words are attributed by `MultiLabelClassifier.explain_labels` (Integrated Gradients, --steps); the k words with
the highest attributions (most for the label) are cut out of the text (their characters removed), and so are
k words drawn at random (seeded), and the label's probability is scored again on both. drop_top and
drop_random are the mean falls of that probability; their ratio is the faithfulness figure.

Cost: seconds_per_text_explain is explain_labels' time per text (one label each); seconds_per_text_plain is
`predict_proba` over the same texts in its usual batches, per text, and seconds_per_text_single one text per
call; all measured in this process, alone on the machine.

Records (merged into bench/results/explain.json by dataset, split, model and steps): dataset, split, model,
steps, top_k, n_texts, drop_top, drop_random, ratio, seconds_per_text_explain, seconds_per_text_plain,
seconds_per_text_single, cost_ratio (explain / plain), command, machine, date.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from common import RESULTS_DIR, SHARED_DATA, machine, merge_record
from mlbert import MultiLabelClassifier
from mlbert.data import read_dataset
from mlbert.explain import text_windows

RESULTS = RESULTS_DIR / "explain.json"


def without(text: str, spans: list[tuple[int, int]]) -> str:
    """`text` with the characters of these word spans cut out."""
    out, at = [], 0
    for start, end in sorted(spans):
        out.append(text[at:start])
        at = end
    out.append(text[at:])
    return "".join(out)


def explained_labels(clf: MultiLabelClassifier, probs: np.ndarray) -> list[int]:
    """Each text's highest-scoring label among those that pass the default thresholds, else its highest."""
    cut = np.broadcast_to(np.asarray(clf.thresholds_for(), dtype=np.float64), (probs.shape[1],))
    return [int(np.argmax(np.where(row >= cut, row, -1.0))) if (row >= cut).any() else int(np.argmax(row))
            for row in probs]  # fmt: skip


def timed(fn, *args, **kwargs):
    started = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - started


def measure(clf, texts: list[str], steps: int, k: int, seed: int) -> dict:
    probs, plain = timed(clf.predict_proba, texts)
    _, single = timed(lambda: [clf.predict_proba([t]) for t in texts])
    columns = explained_labels(clf, probs)
    names = [[clf.labels_[j]] for j in columns]
    reasons, explain_s = timed(clf.explain_labels, texts, names, None, steps)
    rng = np.random.default_rng(seed)
    top_texts, random_texts = [], []
    for text, [name], why in zip(texts, names, reasons):
        words = why[name]
        ranked = sorted(words, key=lambda w: -w.attribution)[:k]
        drawn = rng.choice(len(words), size=k, replace=False)
        top_texts.append(without(text, [(w.start, w.end) for w in ranked]))
        random_texts.append(without(text, [(words[i].start, words[i].end) for i in drawn]))
    rows = np.arange(len(texts))
    original = probs[rows, columns]
    after_top = clf.predict_proba(top_texts)[rows, columns]
    after_random = clf.predict_proba(random_texts)[rows, columns]
    drop_top, drop_random = float(np.mean(original - after_top)), float(np.mean(original - after_random))
    n = len(texts)
    return {
        "steps": steps,
        "top_k": k,
        "n_texts": n,
        "drop_top": drop_top,
        "drop_random": drop_random,
        "ratio": drop_top / drop_random if drop_random > 0 else None,
        "seconds_per_text_explain": explain_s / n,
        "seconds_per_text_plain": plain / n,
        "seconds_per_text_single": single / n,
        "cost_ratio": explain_s / plain,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a trained model folder")
    parser.add_argument("--dataset", required=True, help="folder name under --data-root (goemotions, reuters)")
    parser.add_argument("--data-root", default=str(SHARED_DATA))
    parser.add_argument("--split", default="test", choices=("dev", "test"), help="dev to choose, test to report")
    parser.add_argument("--texts", type=int, default=500, help="texts to explain (default 500)")
    parser.add_argument("--top-k", type=int, default=5, help="words deleted (default 5)")
    parser.add_argument("--steps", default="16", help="comma-separated Integrated Gradients steps to measure")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    command = shlex.join(["python", "bench/explain.py", *(argv if argv is not None else sys.argv[1:])])
    clf = MultiLabelClassifier.load(args.model)
    split = read_dataset(Path(args.data_root) / args.dataset / f"{args.split}.jsonl", require_labels=False)
    chunking = clf._chunking()
    long_enough = (
        t
        for t in split.texts
        if len(text_windows(clf.tokenizer_, t, clf.config.max_length, chunking).spans) > args.top_k
    )
    texts = list(itertools.islice(long_enough, args.texts))  # tokenizes only as far as it needs
    for steps in (int(s) for s in args.steps.split(",")):
        scores = measure(clf, texts, steps, args.top_k, args.seed)
        record = {"dataset": args.dataset, "split": args.split, "model": args.model, **scores,
                  "command": command, "machine": machine(), "date": datetime.date.today().isoformat()}  # fmt: skip
        merge_record(RESULTS, record, ("dataset", "split", "model", "steps"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
