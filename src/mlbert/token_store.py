"""Tokenized training data on disk, memory-mapped: for training sets larger than memory.

`build_store` streams a data file through the tokenizer in chunks into one Arrow IPC file
(columns `input_ids: list<int32>`, `labels: list<string>`, `truncated: bool`); `TokenStore` maps
it into memory without reading it, and serves the same interface as `batching.Encoded` (lengths,
`input_ids[i]`), so the training loop cuts its length-sorted batches from it unchanged. Resident
memory then holds the pages of the batches in use, not the dataset: a few bytes per example for the
length array and the epoch's shuffled order, nothing for the texts.

Why pyarrow directly rather than the `datasets` library: Arrow IPC is the same memory-mapped
format `datasets` keeps on disk, pyarrow is already a dependency, and we need none of what
`datasets` adds on top (its own cache folders and fingerprints, multiprocessing map, hub access).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc  # a submodule: `import pyarrow` alone does not load it

from .batching import encode_chunk, show_progress
from .data import Example

log = logging.getLogger("mlbert")

FORMAT = "mlbert-token-store-v1"
CHUNK = 8192
SCHEMA = pa.schema([("input_ids", pa.list_(pa.int32())), ("labels", pa.list_(pa.string())), ("truncated", pa.bool_())])


def _chunks(examples: Iterable[Example], size: int) -> Iterator[list[Example]]:
    chunk: list[Example] = []
    for example in examples:
        chunk.append(example)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def build_store(
    examples: Iterable[Example], tokenizer, max_length: int, path: str | Path, progress: bool = False
) -> int:
    """Tokenize labelled examples chunk by chunk into an Arrow IPC file at `path` -> examples written.

    Memory stays at one chunk of texts whatever the input size. The file appears only when complete.
    """
    from tqdm.auto import tqdm

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    schema = SCHEMA.with_metadata({"format": FORMAT, "pad_id": str(pad_id), "max_length": str(max_length)})
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    n = 0
    bar = tqdm(desc="tokenize to disk", unit="ex", disable=not show_progress(progress), leave=False)
    try:
        with pa.OSFile(tmp, "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
            for chunk in _chunks(examples, CHUNK):
                ids, _, truncated = encode_chunk(tokenizer, [e.text for e in chunk], max_length)
                writer.write_batch(
                    pa.record_batch(
                        [
                            pa.array([x.astype(np.int32) for x in ids], type=pa.list_(pa.int32())),
                            pa.array([e.labels or [] for e in chunk], type=pa.list_(pa.string())),
                            pa.array(truncated, type=pa.bool_()),
                        ],
                        schema=schema,
                    )
                )
                n += len(chunk)
                bar.update(len(chunk))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        bar.close()
    return n


def _locate(starts: np.ndarray, i: int) -> tuple[int, int]:
    """Row i of the file -> (record batch, row within it); `starts` holds each batch's first row."""
    c = int(np.searchsorted(starts, i, side="right")) - 1
    return c, i - int(starts[c])


class _Rows(Sequence):
    """`input_ids[i]` -> that text's token ids as a numpy view into the mapped file (no copy)."""

    def __init__(self, chunks: list[tuple[np.ndarray, np.ndarray]], starts: np.ndarray):
        self._chunks, self._starts = chunks, starts

    def __len__(self) -> int:
        return int(self._starts[-1])

    def __getitem__(self, i):  # type: ignore[override]
        i = int(i)
        if not 0 <= i < len(self):
            raise IndexError(i)
        c, j = _locate(self._starts, i)
        offsets, values = self._chunks[c]
        return values[offsets[j] : offsets[j + 1]]


class LabelRows:
    """The 0/1 label matrix of a store, built a batch of rows at a time: `rows[idx]` -> (len(idx), n_labels)."""

    def __init__(self, store: TokenStore, vocabulary: Sequence[str]):
        self._store, self.vocabulary = store, list(vocabulary)
        self._index = {label: j for j, label in enumerate(self.vocabulary)}
        self.shape = (len(store), len(self.vocabulary))

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, indices) -> np.ndarray:
        indices = np.atleast_1d(np.asarray(indices))
        out = np.zeros((len(indices), self.shape[1]), dtype=np.float32)
        for k, i in enumerate(indices):
            for label in self._store.labels_of(int(i)):
                j = self._index.get(label)
                if j is not None:
                    out[k, j] = 1.0
        return out

    def sum(self, axis: int = 0) -> np.ndarray:
        """Positives per label (axis 0), counted from the file without a dense matrix."""
        if axis != 0:
            raise ValueError("LabelRows sums over examples only (axis=0)")
        counts = self._store.label_counts()
        return np.array([counts.get(label, 0) for label in self.vocabulary], dtype=np.float64)


class TokenStore:
    """A memory-mapped store written by `build_store`; duck-types `batching.Encoded` for training."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._source = pa.memory_map(str(self.path), "r")
        self._table = pa.ipc.open_file(self._source).read_all()  # zero-copy views into the mapping
        meta = self._table.schema.metadata or {}
        if meta.get(b"format") != FORMAT.encode():
            raise ValueError(f"{self.path}: not an mlbert token store")
        self.pad_id = int(meta[b"pad_id"])
        chunks, sizes = [], []
        for arr in self._table.column("input_ids").chunks:
            offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32)[arr.offset : arr.offset + len(arr) + 1]
            values = np.frombuffer(arr.values.buffers()[1], dtype=np.int32)
            chunks.append((offsets, values))
            sizes.append(len(arr))
        self._starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.input_ids = _Rows(chunks, self._starts)
        self._labels = self._table.column("labels")
        self.n_truncated = int(pc.sum(self._table.column("truncated")).as_py() or 0)

    def __len__(self) -> int:
        return self._table.num_rows

    @property
    def lengths(self) -> np.ndarray:
        """(n,) token counts: 4 bytes per example, the one per-example array kept in memory."""
        return np.concatenate([np.diff(offsets) for offsets, _ in self.input_ids._chunks]).astype(np.int32)

    @property
    def truncated_share(self) -> float:
        return self.n_truncated / max(len(self), 1)

    def labels_of(self, i: int) -> list[str]:
        c, j = _locate(self._starts, i)
        return self._labels.chunk(c)[j].as_py()

    def label_counts(self) -> Counter:
        flat = pc.list_flatten(self._labels)
        counts = pc.value_counts(flat)
        return Counter({v["values"].as_py(): v["counts"].as_py() for v in counts})

    def vocabulary(self) -> list[str]:
        return sorted(self.label_counts())

    def targets(self, vocabulary: Sequence[str]) -> LabelRows:
        return LabelRows(self, vocabulary)

    def fingerprint(self) -> str:
        """A hash of the token ids and labels, read chunk by chunk."""
        h = hashlib.sha256(FORMAT.encode())
        for offsets, values in self.input_ids._chunks:
            h.update(offsets.tobytes())
            h.update(values[offsets[0] : offsets[-1]].tobytes())
        for chunk in self._labels.chunks:  # list offsets, string offsets and bytes: which text has which labels
            for buf in chunk.buffers():
                if buf is not None:
                    h.update(buf)
        return h.hexdigest()[:16]
