"""Keep tokenized data between runs, keyed by the tokenizer, the max length and the texts themselves.

A settings search trains many times on the same files; tokenizing a large corpus each time costs
minutes that buy nothing. Entries are plain .npz arrays (never pickles), written atomically; a damaged
or unreadable entry is ignored and rewritten. Delete the folder at any time to reclaim the space.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .batching import Chunking, Encoded, encode

log = logging.getLogger("mlbert")
FORMAT = b"mlbert-tokens-v1"


def default_cache_dir() -> Path:
    """$MLBERT_CACHE_DIR, else ~/.cache/mlbert/tokens (XDG_CACHE_HOME respected)."""
    if os.environ.get("MLBERT_CACHE_DIR"):
        return Path(os.environ["MLBERT_CACHE_DIR"]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "mlbert" / "tokens"


def tokenizer_fingerprint(tokenizer) -> bytes:
    """The tokenizer's definition without its truncation/padding state, which every call may change."""
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    spec.pop("truncation", None)
    spec.pop("padding", None)
    return json.dumps(spec, sort_keys=True).encode()


def cache_key(tokenizer, texts: Sequence[str], max_length: int, chunking: Chunking | None = None) -> str:
    h = hashlib.sha256(FORMAT)
    h.update(tokenizer_fingerprint(tokenizer))
    h.update(f"\0{max_length}\0{len(texts)}\0".encode())
    if chunking is not None:  # windows: their overlap and number shape the entry (not how they combine)
        h.update(f"chunk\0{chunking.stride}\0{chunking.max_chunks}\0".encode())
    for text in texts:
        h.update(text.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()[:32]


def _read(path: Path) -> Encoded | None:
    try:
        with np.load(path, allow_pickle=False) as data:
            flat, offsets = data["ids"].astype(np.int64), data["offsets"]
            ids = [flat[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]
            starts = data["starts"].astype(np.int64) if "starts" in data.files else None
            return Encoded(input_ids=ids, n_truncated=int(data["n_truncated"]), pad_id=int(data["pad_id"]),
                           starts=starts)  # fmt: skip
    except Exception as e:  # noqa: BLE001 - a bad entry is only a miss
        log.warning("ignoring unreadable token cache entry %s (%s)", path, e)
        return None


def _write(path: Path, encoded: Encoded) -> None:
    rows = len(encoded.input_ids)
    lengths = np.fromiter((len(x) for x in encoded.input_ids), dtype=np.int64, count=rows)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    flat = np.concatenate(encoded.input_ids) if rows else np.zeros(0, dtype=np.int64)
    extra = {"starts": encoded.starts} if encoded.starts is not None else {}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(
                f,
                ids=flat.astype(np.int32),
                offsets=offsets,
                n_truncated=encoded.n_truncated,
                pad_id=encoded.pad_id,
                **extra,
            )
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def encode_cached(
    tokenizer,
    texts: Sequence[str],
    max_length: int,
    cache_dir: Path | None,
    progress: bool = False,
    chunking: Chunking | None = None,
) -> Encoded:
    """`batching.encode`, through the cache when `cache_dir` is given (None: no cache)."""
    if cache_dir is None or not getattr(tokenizer, "is_fast", False):
        return encode(tokenizer, texts, max_length, progress, chunking)
    path = Path(cache_dir) / f"{cache_key(tokenizer, texts, max_length, chunking)}.npz"
    if path.is_file():
        hit = _read(path)
        if hit is not None and len(hit) == len(texts) and (hit.starts is not None) == (chunking is not None):
            if chunking is not None:
                hit.combine = chunking.combine
            return hit
    encoded = encode(tokenizer, texts, max_length, progress, chunking)
    try:
        _write(path, encoded)
    except OSError as e:  # a read-only or full disk costs speed, not the run
        log.warning("could not write the token cache %s (%s); continuing without it", path, e)
    return encoded
