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


@dataclass(frozen=True)
class Chunking:
    """Chunked reading of long texts (TrainConfig.long_text "chunk"): each text is cut into windows of
    max_length tokens on token boundaries, neighbours sharing `stride` tokens, at most `max_chunks` a text."""

    stride: int
    max_chunks: int
    combine: str = "max"  # how a text's window logits make its logits (chunking.combine_windows)


@dataclass
class Encoded:
    """Token ids of each text (no padding), kept for the whole run. With chunked reading (`starts` set) the
    rows of `input_ids` are windows, and text i is windows starts[i] .. starts[i+1]-1; `n_truncated` then
    counts the texts whose windows reached max_chunks before their end."""

    input_ids: list[np.ndarray]
    n_truncated: int
    pad_id: int
    starts: np.ndarray | None = None
    combine: str = "max"  # chunked reading: how a text's windows combine (chunking.combine_windows)

    def __len__(self) -> int:
        return len(self.starts) - 1 if self.starts is not None else len(self.input_ids)

    @property
    def lengths(self) -> np.ndarray:
        """Tokens per text (over all its windows when chunked): what batching sorts by."""
        sizes = np.fromiter((len(ids) for ids in self.input_ids), dtype=np.int64, count=len(self.input_ids))
        if self.starts is None:
            return sizes
        return np.add.reduceat(sizes, self.starts[:-1]) if len(sizes) else np.zeros(len(self), dtype=np.int64)

    @property
    def chunk_counts(self) -> np.ndarray:
        """Windows per text (1 each without chunking)."""
        return np.diff(self.starts) if self.starts is not None else np.ones(len(self), dtype=np.int64)

    @property
    def truncated_share(self) -> float:
        return self.n_truncated / max(len(self), 1)

    def windows(self, rows) -> tuple[np.ndarray, np.ndarray]:
        """(window indices, and for each the position in `rows` of the text it belongs to) of these texts."""
        rows = np.asarray(rows, dtype=np.int64)
        if self.starts is None:
            return rows, np.arange(len(rows))
        counts = self.starts[rows + 1] - self.starts[rows]
        owner = np.repeat(np.arange(len(rows)), counts)
        first = np.repeat(self.starts[rows], counts)
        offset = np.arange(len(owner)) - np.repeat(np.cumsum(counts) - counts, counts)
        return first + offset, owner

    def cut(self, max_length: int) -> int:
        """Keep each text's first max_length - 1 tokens and its last one (the closing special token), in place:
        the ids a tokenizer truncating at max_length gives (max_length "auto" under a budget halves it
        mid-run, and every holder of this Encoded must see it) -> how many texts were cut now."""
        if self.starts is not None:
            raise ValueError("texts read in windows are not cut: their windows have max_length tokens already")
        long = [i for i, ids in enumerate(self.input_ids) if len(ids) > max_length]
        for i in long:
            ids = self.input_ids[i]
            self.input_ids[i] = np.concatenate([ids[: max_length - 1], ids[-1:]])
        if long:  # the texts cut before are longer than this cut too: all of them are among `long`
            self.n_truncated = len(long)
        return len(long)

    def window_texts(self) -> Encoded:
        """Every window as a text of its own (what inference batches by length)."""
        return Encoded(input_ids=self.input_ids, n_truncated=0, pad_id=self.pad_id)


def take_rows(encoded, rows) -> Encoded:
    """These texts of an Encoded (chunked or not) or a memory-mapped TokenStore, in memory (a sample to predict);
    their truncation is not counted again."""
    starts = getattr(encoded, "starts", None)
    if starts is None:
        ids = [np.asarray(encoded.input_ids[i]) for i in rows]
        return Encoded(input_ids=ids, n_truncated=0, pad_id=encoded.pad_id)
    windows, owner = encoded.windows(rows)
    new_starts = np.concatenate([[0], np.cumsum(np.bincount(owner, minlength=len(rows)))]).astype(np.int64)
    ids = [np.asarray(encoded.input_ids[i]) for i in windows]
    return Encoded(input_ids=ids, n_truncated=0, pad_id=encoded.pad_id, starts=new_starts, combine=encoded.combine)


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


def encode(
    tokenizer, texts: Sequence[str], max_length: int, progress: bool = False, chunking: Chunking | None = None
) -> Encoded:
    """Tokenize every text once: its first `max_length` tokens (the texts cut are counted), or with `chunking`
    its windows (the texts whose windows stop at max_chunks are counted)."""
    from tqdm.auto import tqdm

    ids: list[np.ndarray] = []
    counts: list[np.ndarray] = []
    n_truncated = 0
    chunks = range(0, len(texts), TOKENIZE_CHUNK)
    for start in tqdm(
        chunks, desc="tokenize", unit="chunk", disable=not show_progress(progress) or len(chunks) < 2, leave=False
    ):
        chunk_ids, per_text, cut = encode_chunk(tokenizer, list(texts[start : start + TOKENIZE_CHUNK]), max_length,
                                                chunking)  # fmt: skip
        ids += chunk_ids
        counts.append(per_text)
        n_truncated += int(cut.sum())
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    if chunking is None:
        return Encoded(input_ids=ids, n_truncated=n_truncated, pad_id=pad_id)
    sizes = np.concatenate(counts) if counts else np.zeros(0, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    return Encoded(input_ids=ids, n_truncated=n_truncated, pad_id=pad_id, starts=starts, combine=chunking.combine)


def encode_chunk(
    tokenizer, texts: list[str], max_length: int, chunking: Chunking | None = None
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """One call of the fast tokenizer -> (token ids of the windows kept, (n,) windows kept per text, (n,) bool:
    was the text cut). Without `chunking` a text keeps its first window only."""
    out = tokenizer(
        texts,
        truncation=True,
        max_length=max_length,
        stride=chunking.stride if chunking is not None else 0,
        return_overflowing_tokens=True,
        return_attention_mask=False,
        return_token_type_ids=False,
    )
    mapping = np.asarray(out["overflow_to_sample_mapping"], dtype=np.int64)
    windows = np.bincount(mapping, minlength=len(texts))
    if (windows == 0).any():  # a text that produced no window at all (should not happen)
        raise RuntimeError(f"tokenizer returned no tokens for text {int(np.argmin(windows))} of the chunk")
    keep = 1 if chunking is None else chunking.max_chunks
    first = np.concatenate([[0], np.cumsum(windows)[:-1]])
    position = np.arange(len(mapping)) - first[mapping]  # each window's place in its text
    ids = [np.asarray(w, dtype=np.int64) for w, pos in zip(out["input_ids"], position) if pos < keep]
    return ids, np.minimum(windows, keep), windows > keep


def train_batches(
    lengths: np.ndarray, batch_size: int, seed: int, epoch: int, sizes: np.ndarray | None = None
) -> list[np.ndarray]:
    """Index batches for one training epoch: random buckets, length-sorted inside, random batch order.

    `sizes` (chunked reading: each text's windows) fill a batch up to `batch_size` windows instead of texts,
    so that a batch's memory is bounded by windows, whatever its texts' lengths (a text with more windows
    than batch_size is a batch of its own). Depends only on (seed, epoch), so a resumed run replays the
    same batches.
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    bucket = batch_size * BUCKET_BATCHES
    batches: list[np.ndarray] = []
    for start in range(0, len(order), bucket):
        chunk = order[start : start + bucket]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        if sizes is None:
            batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
        else:
            batches.extend(_fill(chunk, sizes, batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def _fill(rows: np.ndarray, sizes: np.ndarray, limit: int) -> list[np.ndarray]:
    """Consecutive runs of `rows` whose sizes sum to at most `limit` (at least one row each)."""
    out, current, total = [], [], 0
    for row in rows:
        if current and total + sizes[row] > limit:
            out.append(np.asarray(current))
            current, total = [], 0
        current.append(row)
        total += int(sizes[row])
    if current:
        out.append(np.asarray(current))
    return out


def rank_batches(
    lengths: np.ndarray, batch_size: int, seed: int, epoch: int, rank: int, world: int, sizes: np.ndarray | None = None
) -> list[np.ndarray]:
    """One process's training batches of one epoch: every world-th batch of the shared seeded order.

    All processes must take the same number of steps, or one would wait forever in a gradient
    all-reduce, so the last len % world batches are left out (a different few each epoch, since
    the order is reshuffled). With world processes, step k holds batches k*world ... k*world+world-1,
    exactly what one process with grad_accum=world would put in its step k.
    """
    batches = train_batches(lengths, batch_size, seed, epoch, sizes)
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
