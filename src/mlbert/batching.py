"""Tokenize once, then cut length-sorted batches padded only to their own longest text.

On a CPU the cost of a batch is its padded size, so sorting by length is the big win: a batch
of short texts costs what short texts cost, not what the corpus's longest text costs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .errors import ConfigError

# Sorting happens inside buckets of this many batches: batches stay random across the epoch
# while each one holds texts of similar length.
BUCKET_BATCHES = 50
TOKENIZE_CHUNK = 2048


@dataclass
class Encoded:
    """Token ids of each text (no padding), kept for the whole run."""

    input_ids: list[np.ndarray]
    n_truncated: int
    pad_id: int

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(ids) for ids in self.input_ids), dtype=np.int64, count=len(self.input_ids))

    @property
    def truncated_share(self) -> float:
        return self.n_truncated / max(len(self.input_ids), 1)


def take_rows(encoded, rows) -> Encoded:
    """These rows of an Encoded or a memory-mapped TokenStore, in memory (a sample to predict); their truncation
    is not counted again."""
    return Encoded(input_ids=[np.asarray(encoded.input_ids[i]) for i in rows], n_truncated=0, pad_id=encoded.pad_id)


def show_progress(wanted: bool) -> bool:
    """Bars on a terminal and in a Jupyter notebook (tqdm.auto draws a widget there); in logs and CI they
    are noise, and log lines say the same."""
    import sys

    return wanted and (sys.stderr.isatty() or in_notebook())


def in_notebook() -> bool:
    """Whether this runs in a Jupyter kernel (whose stderr is not a terminal, yet shows bars)."""
    import sys

    ipython = sys.modules.get("IPython")
    shell = getattr(ipython, "get_ipython", lambda: None)() if ipython is not None else None
    return type(shell).__name__ == "ZMQInteractiveShell"


def encode(tokenizer, texts: Sequence[str], max_length: int, progress: bool = False) -> Encoded:
    """Tokenize every text once, truncating at `max_length` tokens and counting the texts cut."""
    from tqdm.auto import tqdm

    ids: list[np.ndarray] = []
    n_truncated = 0
    chunks = range(0, len(texts), TOKENIZE_CHUNK)
    for start in tqdm(
        chunks, desc="tokenize", unit="chunk", disable=not show_progress(progress) or len(chunks) < 2, leave=False
    ):
        chunk_ids, cut = encode_chunk(tokenizer, list(texts[start : start + TOKENIZE_CHUNK]), max_length)
        ids += chunk_ids
        n_truncated += int(cut.sum())
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return Encoded(input_ids=ids, n_truncated=n_truncated, pad_id=pad_id)


def encode_chunk(tokenizer, texts: list[str], max_length: int) -> tuple[list[np.ndarray], np.ndarray]:
    """One call of the fast tokenizer -> (token ids per text, (n,) bool: was the text truncated)."""
    # Overflowing windows tell which texts were cut; we keep only each text's first window.
    out = tokenizer(
        texts,
        truncation=True,
        max_length=max_length,
        return_overflowing_tokens=True,
        return_attention_mask=False,
        return_token_type_ids=False,
    )
    mapping = out["overflow_to_sample_mapping"]
    ids: list[np.ndarray] = []
    seen = -1
    for window, sample in zip(out["input_ids"], mapping):
        if sample == seen:
            continue
        if sample != seen + 1:  # a text that produced no window at all (should not happen)
            raise RuntimeError(f"tokenizer returned no tokens for text {seen + 1} of the chunk")
        seen = sample
        ids.append(np.asarray(window, dtype=np.int64))
    # Texts with more than one window were truncated.
    return ids, np.bincount(np.asarray(mapping, dtype=np.int64), minlength=len(texts)) > 1


def train_batches(lengths: np.ndarray, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """Index batches for one training epoch: random buckets, length-sorted inside, random batch order.

    Depends only on (seed, epoch), so a resumed run replays the same batches.
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    bucket = batch_size * BUCKET_BATCHES
    batches: list[np.ndarray] = []
    for start in range(0, len(order), bucket):
        chunk = order[start : start + bucket]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def rank_batches(
    lengths: np.ndarray, batch_size: int, seed: int, epoch: int, rank: int, world: int
) -> list[np.ndarray]:
    """One process's training batches of one epoch: every world-th batch of the shared seeded order.

    All processes must take the same number of steps, or one would wait forever in a gradient
    all-reduce, so the last len % world batches are left out (a different few each epoch, since
    the order is reshuffled). With world processes, step k holds batches k*world ... k*world+world-1,
    exactly what one process with grad_accum=world would put in its step k.
    """
    batches = train_batches(lengths, batch_size, seed, epoch)
    if len(batches) < world:
        raise ConfigError(
            f"{len(batches)} training batches for {world} processes: every process needs at least "
            "one; use fewer processes or a smaller --batch-size"
        )
    return batches[rank : len(batches) - len(batches) % world : world]


def inference_batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Index batches sorted by length over the whole input; the caller puts results back in order."""
    order = np.argsort(lengths, kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def collate(encoded: Encoded, indices: Sequence[int], targets: np.ndarray | None = None) -> dict[str, torch.Tensor]:
    """Pad the chosen texts to the longest among them: input_ids, attention_mask (and labels)."""
    rows = [encoded.input_ids[i] for i in indices]
    width = max(len(r) for r in rows)
    input_ids = np.full((len(rows), width), encoded.pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for k, r in enumerate(rows):
        input_ids[k, : len(r)] = r
        mask[k, : len(r)] = 1
    batch = {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(mask)}
    if targets is not None:
        batch["labels"] = torch.from_numpy(np.ascontiguousarray(targets[np.asarray(indices)]))
    return batch
