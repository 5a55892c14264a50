"""How a zero-shot model scores (issue 19): the head (`linear` over the mean-pooled vector, or `cosine`: the
vector less the sample's mean at unit length) and the label contrast (a text's standardised similarity to a
label less its mean over all labels), decided on data no test split sees.

    python bench/zero_shot_scoring.py --dataset goemotions \
        --descriptions bench/label_descriptions/goemotions_phrases.json
    python bench/zero_shot_scoring.py --dataset reuters --descriptions bench/label_descriptions/reuters.json

Each variant starts its head from the label texts with mlbert's own code (label_init.init_head_from_labels,
centred on 256 of the tuning texts), tunes thresholds on a seeded sample of 500 dev texts (as `mlbert zero-shot
--dev-examples 500`), and is scored on a seeded sample of 3,000 training texts: labelled texts that a
zero-shot model never sees, so the choice is made without the test split. The encoder runs once per text;
the heads read the pooled vectors. Records (one per variant and label text) go to
bench/results/zero_shot_scoring.json, merged by dataset, label_text, head and contrast.
"""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path

import torch

from common import RESULTS_DIR, SHARED_DATA, machine
from mlbert import MultiLabelClassifier, read_dataset
from mlbert.batching import collate, encode, inference_batches, take_rows
from mlbert.data import binarize
from mlbert.encoders import load_encoder
from mlbert.heads import pool
from mlbert.label_init import init_head_from_labels, label_priors, sample_rows
from mlbert.label_text import flat_texts, label_texts, read_label_descriptions
from mlbert.metrics import compute_metrics
from mlbert.model import MultiLabelModel
from mlbert.thresholds import tune

RESULTS = RESULTS_DIR / "zero_shot_scoring.json"
KEY = ("dataset", "label_text", "head", "contrast")


@torch.inference_mode()
def pooled(model: MultiLabelModel, encoded, batch_size: int = 64) -> torch.Tensor:
    out = torch.empty(len(encoded), model.encoder.config.hidden_size)
    for rows in inference_batches(encoded.lengths, batch_size):
        batch = collate(encoded, rows)
        hidden = model.token_states(batch["input_ids"], batch["attention_mask"])
        out[torch.as_tensor(rows)] = pool(hidden, batch["attention_mask"], "mean").float()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--data-root", default=str(SHARED_DATA))
    parser.add_argument(
        "--descriptions", action="append", default=[], help="a label descriptions file to compare with the label names"
    )
    parser.add_argument("--contrast", choices=("both", "on", "off"), default="both")
    parser.add_argument("--heads", default="linear,cosine", help="comma-separated heads to compare")
    parser.add_argument("--dev-examples", type=int, default=500)
    parser.add_argument("--eval-texts", type=int, default=3000, help="training texts to score the variants on")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    folder = Path(args.data_root) / args.dataset
    labels = (folder / "labels.txt").read_text(encoding="utf-8").split()
    dev, train = read_dataset(folder / "dev.jsonl"), read_dataset(folder / "train.jsonl")
    tune_rows = sample_rows(len(dev.texts), args.seed, args.dev_examples)
    eval_rows = sample_rows(len(train.texts), args.seed, args.eval_texts)
    tune_texts, tune_y = [dev.texts[i] for i in tune_rows], binarize([dev.labels[i] for i in tune_rows], labels)[0]
    eval_texts, eval_y = [train.texts[i] for i in eval_rows], binarize([train.labels[i] for i in eval_rows], labels)[0]

    clf = MultiLabelClassifier(pooling="mean", head="linear")
    clf._resolve_config()
    tokenizer, max_length = clf.tokenizer_, clf.config.max_length
    tune_enc, eval_enc = encode(tokenizer, tune_texts, max_length), encode(tokenizer, eval_texts, max_length)
    sample = take_rows(tune_enc, sample_rows(len(tune_enc), args.seed))
    priors = label_priors(tune_y.sum(0), len(tune_y))
    texts_by_name = {"names": label_texts(labels)}
    for path in args.descriptions:
        texts_by_name[Path(path).name] = label_texts(labels, read_label_descriptions(path))
    encoder = load_encoder(clf.encoder_path_, pretrained=True)  # shared by every variant: only heads change
    vectors = None
    records = []
    for name, texts in texts_by_name.items():
        flat, owners = flat_texts(texts)
        label_enc = encode(tokenizer, flat, max_length)
        for head in args.heads.split(","):
            for contrast in (False, True) if args.contrast == "both" else (args.contrast == "on",):
                torch.manual_seed(0)
                model = MultiLabelModel.from_config(encoder, len(labels), clf.config.replace(head=head)).eval()
                init_head_from_labels(model, label_enc, sample, priors, clf.config.eval_batch_size, contrast, owners)
                if vectors is None:
                    vectors = (pooled(model, tune_enc), pooled(model, eval_enc))
                with torch.inference_mode():
                    tune_p, eval_p = (torch.sigmoid(model.classifier(v)).numpy() for v in vectors)
                thresholds = tune(tune_p, tune_y, clf.config.min_threshold_support)
                scores = {m: compute_metrics(eval_p, eval_y, thresholds.for_mode(m)) for m in ("global", "per_label")}
                record = {
                    "dataset": args.dataset,
                    "label_text": name,
                    "head": head,
                    "contrast": contrast,
                    **{f"{m}_{k}": round(scores[m][k], 4) for m in scores for k in ("micro_f1", "macro_f1")},
                    "dev_examples": len(tune_y),
                    "eval_texts": len(eval_y),
                    "command": "python bench/zero_shot_scoring.py "
                    + " ".join(
                        f"--{k.replace('_', '-')} {x}"
                        for k, v in vars(args).items()
                        if v and k != "data_root"
                        for x in (v if isinstance(v, list) else [v])
                    ),
                    "machine": machine(),
                    "date": datetime.date.today().isoformat(),
                }
                records.append(record)
                print(
                    f"{name:28s} {head:7s} contrast={contrast!s:5s} global {record['global_micro_f1']:.3f} / "
                    f"{record['global_macro_f1']:.3f}  per_label {record['per_label_micro_f1']:.3f} / "
                    f"{record['per_label_macro_f1']:.3f}",
                    flush=True,
                )
    old = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    keys = {tuple(r[k] for k in KEY) for r in records}
    RESULTS.write_text(json.dumps([r for r in old if tuple(r[k] for k in KEY) not in keys] + records, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
