"""Where a long text's windows should be combined, before the head or after it (issue 18): a probe on frozen
window vectors, every aggregation trained on the same features, seeds and schedule.

    python bench/chunk_aggregation.py --dataset reuters_long --seeds 1,2,3

The encoder (the packaged all-MiniLM-L6-v2 unless --model) reads every window exactly as `--long-text chunk`
makes them (max_length 256, stride 32, at most 16 windows) and mean-pools each into a vector, once (cached
under runs/). On those vectors, one linear layer per label is trained with each aggregation:
  after-max, after-mean, after-lse   the window logits combined as mlbert does today (chunking.combine_windows)
  before-max                         the element-wise maximum of the window vectors, then the head
  before-attention                   one learned attention over the windows (softmax of u . tanh(A v))
  before-label-attention             each label its own attention query over the windows
(mean before the head equals mean after it with a linear head, W.mean(v) + b = mean(W.v + b), so it is not
repeated). Each trains with AdamW on binary cross-entropy for up to --epochs epochs, keeps the epoch of the
best dev micro-F1 (one cut-off tuned on dev), and reports test micro/macro-F1 at that cut-off.

What this does and does not show: the ranking of the aggregations over features that do not move. In
`mlbert train` the encoder is fine-tuned through the aggregation, which can change the ranking; this probe
decides whether aggregating before the head promises enough to build it into every inference path (torch,
ONNX, server). Writes bench/results/chunk_aggregation.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from common import RESULTS_DIR, SHARED_DATA, WORK_DIR, machine

RESULTS = RESULTS_DIR / "chunk_aggregation.json"
AGGREGATIONS = (
    "after-max",
    "after-mean",
    "after-lse",
    "before-max",
    "before-attention",
    "before-label-attention",
)
BATCH_TEXTS = 32
ATTENTION_WIDTH = 128


def window_vectors(model: str, folder: Path, split: str, max_length: int, stride: int, max_chunks: int):
    """(windows, width) float32 mean-pooled vectors, (texts + 1,) window starts, (texts, labels) targets."""
    import torch

    from mlbert.batching import Chunking, collate, encode, inference_batches
    from mlbert.data import read_dataset
    from mlbert.encoders import load_encoder, load_tokenizer, resolve_encoder
    from mlbert.heads import pool

    path = resolve_encoder(model)
    tokenizer, encoder = load_tokenizer(path), load_encoder(path).eval()
    data = read_dataset(folder / f"{split}.jsonl")
    encoded = encode(tokenizer, data.texts, max_length, chunking=Chunking(stride, max_chunks))
    windows = encoded.window_texts()
    lengths = np.asarray([len(w) for w in windows.input_ids])
    out = np.zeros((len(lengths), encoder.config.hidden_size), dtype=np.float32)
    started = time.perf_counter()
    with torch.inference_mode():
        for k, rows in enumerate(inference_batches(lengths, 64)):
            batch = collate(windows, rows)
            hidden = encoder(**batch).last_hidden_state
            out[rows] = pool(hidden, batch["attention_mask"], "mean").numpy()
            if k % 20 == 0:
                print(f"  {split}: {rows.size * (k + 1)} / {len(lengths)} windows, "
                      f"{time.perf_counter() - started:.0f}s", file=sys.stderr, flush=True)  # fmt: skip
    return out, encoded.starts, data.labels


def features(args, folder: Path) -> dict:
    """Every split's window vectors, from the cache under runs/ when this encoder and reading made them."""
    from mlbert.data import binarize, label_vocabulary

    name = Path(args.model).name if Path(args.model).exists() else args.model
    cache = WORK_DIR / f"chunk-aggregation-{folder.name}-{name}-{args.max_length}-{args.stride}-{args.max_chunks}.npz"
    if not cache.is_file():
        arrays, labels = {}, {}
        for split in ("train", "dev", "test"):
            vectors, starts, labels[split] = window_vectors(
                args.model, folder, split, args.max_length, args.stride, args.max_chunks
            )
            arrays[f"{split}_x"], arrays[f"{split}_starts"] = vectors, starts
        vocab = label_vocabulary(labels["train"])
        for split in labels:
            arrays[f"{split}_y"] = binarize(labels[split], vocab)[0].astype(np.float32)
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, **arrays)
    with np.load(cache) as f:  # our own arrays: no pickles
        return {k: f[k] for k in f.files}


def make_probe(kind: str, width: int, n_labels: int):
    import torch
    from torch import nn

    from mlbert.chunking import combine_windows

    class Probe(nn.Module):
        def __init__(self):
            super().__init__()
            self.out = nn.Linear(width, n_labels)
            if kind == "before-attention":
                self.score = nn.Sequential(nn.Linear(width, ATTENTION_WIDTH), nn.Tanh(), nn.Linear(ATTENTION_WIDTH, 1))
            if kind == "before-label-attention":
                self.queries = nn.Parameter(torch.zeros(n_labels, width))

        def forward(self, x: torch.Tensor, owner: torch.Tensor, n: int) -> torch.Tensor:
            if kind.startswith("after-"):
                return combine_windows(self.out(x), owner, n, kind.removeprefix("after-"))
            if kind == "before-max":
                index = owner.unsqueeze(1).expand_as(x)
                pooled = x.new_full((n, x.shape[1]), -torch.inf).scatter_reduce(0, index, x, "amax")
                return self.out(pooled)
            if kind == "before-attention":
                weights = _softmax_by_owner(self.score(x).squeeze(1), owner, n)  # (windows,)
                pooled = torch.zeros(n, x.shape[1]).index_add(0, owner, weights.unsqueeze(1) * x)
                return self.out(pooled)
            # before-label-attention: label l weighs the windows by q_l . v, then reads its own pooled vector
            weights = _softmax_by_owner(x @ self.queries.T, owner, n)  # (windows, labels)
            pooled = torch.zeros(n, *self.queries.shape).index_add(0, owner, weights.unsqueeze(2) * x.unsqueeze(1))
            return (pooled * self.out.weight).sum(-1) + self.out.bias

    return Probe()


def _softmax_by_owner(scores, owner, n: int):
    """Softmax of window scores ((windows,) or (windows, k)) within each text."""
    import torch

    shape = (n, *scores.shape[1:])
    index = owner.view(-1, *[1] * (scores.dim() - 1)).expand_as(scores)
    top = scores.new_full(shape, -torch.inf).scatter_reduce(0, index, scores.detach(), "amax")
    e = torch.exp(scores - top[owner])
    return e / torch.zeros(shape).index_add(0, owner, e)[owner]


def text_batch(x: np.ndarray, starts: np.ndarray, rows: np.ndarray):
    """The windows of these texts, and for each its position in `rows`."""
    import torch

    counts = starts[rows + 1] - starts[rows]
    index = np.concatenate([np.arange(starts[r], starts[r + 1]) for r in rows])
    return torch.from_numpy(x[index]), torch.from_numpy(np.repeat(np.arange(len(rows)), counts))


def scores(probe, x: np.ndarray, starts: np.ndarray) -> np.ndarray:
    import torch

    rows = np.arange(len(starts) - 1)
    with torch.inference_mode():
        windows, owner = text_batch(x, starts, rows)
        return torch.sigmoid(probe(windows, owner, len(rows))).numpy()


def train_probe(kind: str, data: dict, seed: int, epochs: int, lr: float) -> dict:
    import torch

    from mlbert.metrics import compute_metrics
    from mlbert.thresholds import tune_global_threshold

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    x = {s: data[f"{s}_x"] for s in ("train", "dev", "test")}
    mean, std = x["train"].mean(0), x["train"].std(0) + 1e-6  # standardised on train windows
    x = {s: (v - mean) / std for s, v in x.items()}
    y_train = torch.from_numpy(data["train_y"])
    probe = make_probe(kind, x["train"].shape[1], y_train.shape[1])
    optimizer = torch.optim.AdamW(probe.parameters(), lr=lr, weight_decay=0.01)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    best = {"dev_micro_f1": -1.0}
    started = time.perf_counter()
    n_train = len(data["train_starts"]) - 1
    for epoch in range(1, epochs + 1):
        probe.train()
        order = rng.permutation(n_train)
        for i in range(0, n_train, BATCH_TEXTS):
            rows = order[i : i + BATCH_TEXTS]
            windows, owner = text_batch(x["train"], data["train_starts"], rows)
            loss = loss_fn(probe(windows, owner, len(rows)), y_train[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        probe.eval()
        dev = scores(probe, x["dev"], data["dev_starts"])
        cut, dev_f1 = tune_global_threshold(dev, data["dev_y"])
        if dev_f1 > best["dev_micro_f1"]:
            m_dev = compute_metrics(dev, data["dev_y"], cut)
            m_test = compute_metrics(scores(probe, x["test"], data["test_starts"]), data["test_y"], cut)
            best = {
                "epoch": epoch,
                "threshold": round(float(cut), 3),
                "dev_micro_f1": float(m_dev["micro_f1"]),
                "dev_macro_f1": float(m_dev["macro_f1"]),
                "micro_f1": float(m_test["micro_f1"]),
                "macro_f1": float(m_test["macro_f1"]),
            }
    return {**best, "train_s": round(time.perf_counter() - started, 1)}


def summary(records: list[dict]) -> list[dict]:
    """Mean and deviation over seeds of each aggregation's test scores."""
    rows = []
    for kind in dict.fromkeys(r["aggregation"] for r in records):
        mine = [r for r in records if r["aggregation"] == kind]
        row = {"aggregation": kind, "seeds": len(mine)}
        for key in ("dev_micro_f1", "dev_macro_f1", "micro_f1", "macro_f1"):
            values = np.asarray([r[key] for r in mine])
            row[key], row[key + "_std"] = round(float(values.mean()), 4), round(float(values.std()), 4)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    from mlbert.config import DEFAULT_ENCODER

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="reuters_long")
    parser.add_argument("--data-root", default=str(SHARED_DATA))
    parser.add_argument("--model", default=DEFAULT_ENCODER, help="the encoder whose window vectors are probed")
    parser.add_argument("--aggregations", default=",".join(AGGREGATIONS))
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--stride", type=int, default=32)
    parser.add_argument("--max-chunks", type=int, default=16)
    args = parser.parse_args(argv)
    folder = Path(args.data_root) / args.dataset
    if not (folder / "train.jsonl").is_file():
        print(f"chunk_aggregation.py: {folder} not found; benchmarks need ../shared/data", file=sys.stderr)
        return 2
    started = time.perf_counter()
    data = features(args, folder)
    features_s = round(time.perf_counter() - started, 1)
    records = []
    for kind in args.aggregations.split(","):
        if kind not in AGGREGATIONS:
            parser.error(f"unknown aggregation {kind!r}; expected some of {AGGREGATIONS}")
        for seed in (int(s) for s in args.seeds.split(",")):
            record = {"aggregation": kind, "seed": seed, **train_probe(kind, data, seed, args.epochs, args.lr)}
            print(json.dumps(record), flush=True)
            records.append(record)
    out = {
        "dataset": args.dataset,
        "encoder": args.model,
        "windows": {s: len(data[f"{s}_x"]) for s in ("train", "dev", "test")},
        "features_s": features_s,
        "summary": summary(records),
        "records": records,
        "machine": machine(),
        "date": datetime.date.today().isoformat(),
        "command": shlex.join(["python", "bench/chunk_aggregation.py", *(argv if argv is not None else sys.argv[1:])]),
    }
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    for row in out["summary"]:
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
