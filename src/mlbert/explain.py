"""Explanations: how much each word of a text raised or lowered one label's logit, by Integrated Gradients
over the word embeddings (Captum's IntegratedGradients), mapped back to character spans of the text.

Why this method: it needs only the gradients of the model we already have (no second model to fit, unlike
LIME or SHAP's samplers), its attributions add up to the change of the label's logit between the text and a
baseline with every word removed (special tokens and padding kept; `completeness`), and they are signed: a
negative word argues against the label. Word pieces of one word are summed into the word. A long text read in
windows (long_text chunk) is one input, its windows side by side, so that the attributions explain the text's
combined logit; a word two overlapping windows share gets the sum of both.

The path from the baseline to the text has `steps` Gauss-Legendre points (Captum's default method), so the
cost of one (text, label) pair is `steps` forward and backward passes over the text's windows; the
labels of one text go through together in batches of at most MAX_TOKENS tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

from .batching import Chunking
from .chunking import combine_windows
from .config import EXPLAIN_STEPS, EXPLAIN_WORDS

# Tokens in one forward and backward pass (the steps x labels copies of a text are cut into such batches): bounds
# the backward pass's memory whatever the text's length (0.8 GB above the loaded model for MiniLM, measured).
MAX_TOKENS = 4096


@dataclass(frozen=True)
class WordAttribution:
    """One word of the text (`text[start:end]`) and its signed share of the label's logit."""

    start: int
    end: int
    text: str
    attribution: float

    def to_dict(self) -> dict:
        return {**asdict(self), "attribution": round(self.attribution, 6)}


@dataclass(frozen=True)
class Windows:
    """A text as the model reads it: token ids of its windows padded to one width (with `pad_id`), each token's
    word (-1: a special token or padding) and the character span of every word."""

    input_ids: torch.Tensor  # (windows, width)
    attention_mask: torch.Tensor  # (windows, width)
    word_of: np.ndarray  # (windows, width) word index or -1
    spans: dict[int, tuple[int, int]]
    pad_id: int

    def window_spans(self) -> list[tuple[int, int]]:
        """Each window's characters: from its first word's start to its last word's end ((0, 0): no word)."""
        out = []
        for row in self.word_of:
            words = [self.spans[int(w)] for w in np.unique(row[row >= 0])]
            out.append((min(a for a, _ in words), max(b for _, b in words)) if words else (0, 0))
        return out


def text_windows(tokenizer, text: str, max_length: int, chunking: Chunking | None) -> Windows:
    """Tokenize `text` as training did: its first window, or with `chunking` up to max_chunks windows."""
    out = tokenizer(
        [text],
        truncation=True,
        max_length=max_length,
        stride=chunking.stride if chunking is not None else 0,
        return_overflowing_tokens=chunking is not None,
        return_offsets_mapping=True,
        return_attention_mask=False,
        return_token_type_ids=False,
    )
    n_windows = min(len(out["input_ids"]), chunking.max_chunks if chunking is not None else 1)
    width = max(len(out["input_ids"][w]) for w in range(n_windows))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = np.full((n_windows, width), pad_id, dtype=np.int64)
    mask = np.zeros((n_windows, width), dtype=np.int64)
    word_of = np.full((n_windows, width), -1, dtype=np.int64)
    spans: dict[int, tuple[int, int]] = {}
    for w in range(n_windows):
        row, offsets, words = out["input_ids"][w], out["offset_mapping"][w], out.word_ids(w)
        ids[w, : len(row)] = row
        mask[w, : len(row)] = 1
        for t, (word, (a, b)) in enumerate(zip(words, offsets)):
            if word is None or b <= a:  # special tokens map to no characters
                continue
            word_of[w, t] = word
            start, end = spans.get(word, (a, b))
            spans[word] = (min(start, a), max(end, b))
    return Windows(torch.from_numpy(ids), torch.from_numpy(mask), word_of, spans, pad_id)


def explain_text(
    model: torch.nn.Module,
    tokenizer,
    text: str,
    columns: Sequence[int],
    max_length: int,
    chunking: Chunking | None = None,
    steps: int = EXPLAIN_STEPS,
) -> list[list[WordAttribution]]:
    """For each label column, every word of `text` with its attribution to that label's logit, in text order.

    `model` is the torch MultiLabelModel (fp32; it is put in eval mode for the call). The baseline replaces
    every word's tokens by padding tokens that stay attended, so only the words' embeddings change.
    """
    from captum.attr import IntegratedGradients

    if not columns:
        return []
    windows = text_windows(tokenizer, text, max_length, chunking)
    n_windows, width = windows.input_ids.shape
    device = next(model.parameters()).device
    ids, mask = windows.input_ids.to(device), windows.attention_mask.to(device)
    baseline_ids = torch.where(torch.from_numpy(windows.word_of >= 0).to(device), windows.pad_id, ids)
    embed = model.encoder.get_input_embeddings()
    combine = chunking.combine if chunking is not None else "max"

    def text_logits(embeds: torch.Tensor, flat_mask: torch.Tensor) -> torch.Tensor:
        """(rows, windows*width, hidden) word embeddings -> (rows, labels) logits of the text they stand for."""
        rows = embeds.shape[0]
        logits = model(None, flat_mask.reshape(rows * n_windows, width),
                       inputs_embeds=embeds.reshape(rows * n_windows, width, -1))  # fmt: skip
        if n_windows == 1:
            return logits
        owner = torch.arange(rows, device=logits.device).repeat_interleave(n_windows)
        return combine_windows(logits, owner, rows, combine)

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            inputs = embed(ids).reshape(1, n_windows * width, -1)
            baselines = embed(baseline_ids).reshape(1, n_windows * width, -1)
        k = len(columns)
        attributions = IntegratedGradients(text_logits).attribute(
            inputs.expand(k, -1, -1),
            baselines=baselines.expand(k, -1, -1),
            target=[int(c) for c in columns],
            additional_forward_args=(mask.reshape(1, -1).expand(k, -1),),
            n_steps=steps,
            internal_batch_size=max(1, MAX_TOKENS // (n_windows * width)),
        )
    finally:
        model.train(was_training)
    per_token = attributions.sum(dim=-1).detach().cpu().numpy().reshape(k, n_windows, width)
    return [_words(text, windows, row) for row in per_token]


def _words(text: str, windows: Windows, per_token: np.ndarray) -> list[WordAttribution]:
    """Token attributions (windows, width) summed into words, in text order."""
    valid = windows.word_of >= 0
    totals = np.bincount(windows.word_of[valid], weights=per_token[valid], minlength=max(windows.spans, default=-1) + 1)
    out = []
    for word in sorted(windows.spans, key=lambda w: windows.spans[w]):
        start, end = windows.spans[word]
        out.append(WordAttribution(start, end, text[start:end], float(totals[word])))
    return out


def top_words(words: Sequence[WordAttribution], k: int = EXPLAIN_WORDS) -> list[WordAttribution]:
    """The k words with the largest attributions by size (either sign), largest first."""
    return sorted(words, key=lambda w: -abs(w.attribution))[:k]
