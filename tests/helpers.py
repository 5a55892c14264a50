"""Builders the tests share (import them: `from helpers import tiny_settings`); fixtures live in conftest.py.

The tiny BERT's vocabulary is the words of the demo generator, so the tiny model can actually learn
the demo task: tests check learning, not only shapes.
"""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path

from mlbert.demo_data import DISTRACTORS, FILLER, NEW_TICKETS, NO_TOPIC, OPENERS, PHRASES, SLOTS

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def interruptible() -> None:
    """Popen(preexec_fn=...) for a child the test stops with SIGINT: a suite started as a background job of a
    shell without job control inherits SIGINT ignored, and the child Python would then never see Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _words() -> list[str]:
    texts = (
        [s for phrases in [*PHRASES.values(), *DISTRACTORS.values()] for s in phrases]
        + FILLER
        + OPENERS
        + NO_TOPIC
        + NEW_TICKETS
    )
    texts += [v for values in SLOTS.values() for v in values]
    words = set()
    for t in texts:
        words.update(re.findall(r"[a-z0-9]+|[^\sa-z0-9]", t.lower()))
    return sorted(words)


def build_tiny_encoder(folder: Path, hidden: int = 32, layers: int = 2) -> Path:
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + _words()
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab={token: i for i, token in enumerate(vocab)}, do_lower_case=True)
    tokenizer.save_pretrained(folder)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=128,
    )
    import torch

    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    return folder


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def tiny_settings(encoder: Path, **extra):
    """Fast settings for the tiny encoder: a few seconds per fit."""
    # A random encoder needs far larger steps than a pretrained one; mean pooling starts it as a bag of words.
    return {
        "model": str(encoder),
        "max_length": 48,
        "batch_size": 8,
        "epochs": 2,
        "lr": 2e-3,
        "head_lr": 0.1,
        "pooling": "mean",
        "patience": 0,
        "save_steps": 0,
        **extra,
    }
