"""The Hugging Face recipe a user would write instead of mlbert: the peer in accuracy and speed benchmarks.

`AutoModelForSequenceClassification(problem_type="multi_label_classification")` on the same packaged
MiniLM, trained by `transformers.Trainer` with its own defaults (AdamW, lr 5e-5, linear decay, no
warm-up), tokenised the way tutorials do: `padding="max_length"` or, as the better-informed variant,
dynamic padding with `group_by_length=True`. Decisions at probability 0.5, as in the tutorials.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from dataclasses import dataclass

import numpy as np
import torch

from mlbert.encoders import quiet_transformers, resolve_encoder


@dataclass
class RecipeSettings:
    epochs: float = 1.0
    batch_size: int = 32
    lr: float = 5e-5  # TrainingArguments' default
    max_length: int = 128
    padding: str = "max_length"  # or "dynamic"
    group_by_length: bool = False
    max_steps: int = -1  # > 0 stops early: for speed measurements
    seed: int = 42


class _Rows(torch.utils.data.Dataset):
    def __init__(self, features: dict, targets: np.ndarray | None):
        self.features, self.targets = features, targets

    def __len__(self):
        return len(self.features["input_ids"])

    def __getitem__(self, i):
        row = {k: v[i] for k, v in self.features.items()}
        if self.targets is not None:
            row["labels"] = self.targets[i].astype(np.float32).tolist()
        return row


def _tokenize(tokenizer, texts: list[str], settings: RecipeSettings) -> dict:
    padding = "max_length" if settings.padding == "max_length" else False
    return dict(tokenizer(texts, truncation=True, max_length=settings.max_length, padding=padding))


def train_recipe(
    train_texts: list[str],
    train_targets: np.ndarray,
    labels: list[str],
    settings: RecipeSettings,
    encoder: str = "all-MiniLM-L6-v2",
):
    """Train the recipe -> (model, tokenizer, {"train_seconds", "train_examples_per_s"})."""
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    quiet_transformers()
    path = resolve_encoder(encoder)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(
        path,
        num_labels=len(labels),
        problem_type="multi_label_classification",
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
    )
    started = time.perf_counter()
    dataset = _Rows(_tokenize(tokenizer, train_texts, settings), train_targets)
    # transformers 5.x renamed `group_by_length=True` to a sampling strategy (older 5.x: the flag)
    fields = {f.name for f in dataclasses.fields(TrainingArguments)}
    sampling = (
        {"train_sampling_strategy": "group_by_length" if settings.group_by_length else "random"}
        if "train_sampling_strategy" in fields
        else {"group_by_length": settings.group_by_length}
    )
    with tempfile.TemporaryDirectory() as scratch:
        args = TrainingArguments(
            output_dir=scratch,
            num_train_epochs=settings.epochs,
            max_steps=settings.max_steps,
            per_device_train_batch_size=settings.batch_size,
            learning_rate=settings.lr,
            **sampling,
            save_strategy="no",
            report_to="none",
            logging_strategy="no",
            seed=settings.seed,
            use_cpu=not torch.cuda.is_available(),
            dataloader_num_workers=0,
            disable_tqdm=True,
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            data_collator=DataCollatorWithPadding(tokenizer),
        )
        result = trainer.train()
    seconds = time.perf_counter() - started
    steps = result.global_step
    return (
        model,
        tokenizer,
        {"train_seconds": seconds, "train_examples_per_s": steps * settings.batch_size / seconds, "steps": steps},
    )


@torch.inference_mode()
def recipe_proba(model, tokenizer, texts: list[str], settings: RecipeSettings, batch_size: int = 64) -> np.ndarray:
    """Sigmoid scores in input order, batched in input order (no length sorting) as a tutorial would."""
    model.eval()
    out = []
    padding = "max_length" if settings.padding == "max_length" else "longest"
    for start in range(0, len(texts), batch_size):
        enc = tokenizer(
            texts[start : start + batch_size],
            truncation=True,
            max_length=settings.max_length,
            padding=padding,
            return_tensors="pt",
        )
        enc = {k: v.to(model.device) for k, v in enc.items()}
        out.append(torch.sigmoid(model(**enc).logits).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.config.num_labels), dtype=np.float32)
