"""The token cache: a hit returns what tokenizing returns, keys separate what differs, damage is a miss."""

import numpy as np

from mlbert import batching
from mlbert.encoders import load_tokenizer
from mlbert.token_cache import cache_key, encode_cached


def _same(a, b):
    return (
        len(a) == len(b)
        and a.n_truncated == b.n_truncated
        and a.pad_id == b.pad_id
        and all(np.array_equal(x, y) for x, y in zip(a.input_ids, b.input_ids))
    )


def test_second_call_is_a_hit_equal_to_tokenizing(tmp_path, tiny_encoder, monkeypatch):
    tok = load_tokenizer(tiny_encoder)
    texts = ["refund my order please", "the app crashes " * 30, "hello"]
    first = encode_cached(tok, texts, 16, tmp_path)
    assert _same(first, batching.encode(tok, texts, 16)) and first.n_truncated == 1
    calls = []
    monkeypatch.setattr("mlbert.token_cache.encode", lambda *a, **k: calls.append(1))
    assert _same(encode_cached(tok, texts, 16, tmp_path), first) and not calls


def test_keys_change_with_texts_and_max_length(tiny_encoder):
    tok = load_tokenizer(tiny_encoder)
    base = cache_key(tok, ["a", "b"], 16)
    assert base != cache_key(tok, ["a", "c"], 16)
    assert base != cache_key(tok, ["a", "b"], 32)
    assert base != cache_key(tok, ["ab"], 16)
    assert base == cache_key(tok, ["a", "b"], 16)


def test_a_damaged_entry_is_recomputed(tmp_path, tiny_encoder):
    tok = load_tokenizer(tiny_encoder)
    texts = ["refund my order", "login fails"]
    encode_cached(tok, texts, 16, tmp_path)
    (entry,) = tmp_path.glob("*.npz")
    entry.write_bytes(b"not a zip file")
    assert _same(encode_cached(tok, texts, 16, tmp_path), batching.encode(tok, texts, 16))
    assert entry.read_bytes()[:2] == b"PK"  # rewritten
