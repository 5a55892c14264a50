import numpy as np

from mlbert.batching import collate, encode, inference_batches, train_batches
from mlbert.encoders import load_tokenizer


def test_encode_truncates_and_counts_the_texts_cut(tiny_encoder):
    tok = load_tokenizer(tiny_encoder)
    enc = encode(tok, ["hello team", "refund " * 100, "refund " * 5], max_length=16)
    assert [len(x) for x in enc.input_ids] == [4, 16, 7]
    assert enc.n_truncated == 1 and abs(enc.truncated_share - 1 / 3) < 1e-9
    assert enc.input_ids[1][0] == tok.cls_token_id and enc.input_ids[1][-1] == tok.sep_token_id


def test_cutting_encoded_texts_gives_what_the_tokenizer_gives_at_that_length(tiny_encoder):
    tok = load_tokenizer(tiny_encoder)
    texts = ["refund " * 40, "short one", "the app crashes " * 9, "a b c d e f"]
    enc = encode(tok, texts, 32)
    assert enc.cut(12) == 2 and enc.n_truncated == 2
    short = encode(tok, texts, 12)
    assert [ids.tolist() for ids in enc.input_ids] == [ids.tolist() for ids in short.input_ids]
    assert enc.n_truncated == short.n_truncated
    assert enc.cut(64) == 0 and enc.n_truncated == 2  # a longer "cut" changes nothing


def test_train_batches_cover_every_example_once_and_replay_for_a_seed():
    lengths = np.random.default_rng(0).integers(3, 200, size=1000)
    batches = train_batches(lengths, 16, seed=1, epoch=0)
    assert sorted(np.concatenate(batches).tolist()) == list(range(1000))
    again = train_batches(lengths, 16, seed=1, epoch=0)
    assert all((a == b).all() for a, b in zip(batches, again))
    other = train_batches(lengths, 16, seed=1, epoch=1)
    assert any(len(a) != len(b) or (a != b).any() for a, b in zip(batches, other))


def test_length_bucketing_pads_far_less_than_random_batches():
    lengths = np.random.default_rng(0).integers(3, 200, size=2000)
    padded = sum(len(b) * lengths[b].max() for b in train_batches(lengths, 16, seed=0, epoch=0))
    rng = np.random.default_rng(0).permutation(2000)
    random_padded = sum(16 * lengths[rng[i : i + 16]].max() for i in range(0, 2000, 16))
    assert padded < 0.7 * random_padded


def test_inference_batches_are_sorted_by_length():
    lengths = np.array([5, 1, 9, 3, 7])
    batches = inference_batches(lengths, 2)
    flat = np.concatenate(batches)
    assert (np.diff(lengths[flat]) >= 0).all() and sorted(flat.tolist()) == list(range(5))


def test_collate_pads_to_the_longest_in_the_batch_only(tiny_encoder):
    tok = load_tokenizer(tiny_encoder)
    enc = encode(tok, ["a", "refund refund refund", "hello team"], max_length=32)
    targets = np.eye(3, dtype=np.float32)
    batch = collate(enc, [0, 2], targets)
    assert batch["input_ids"].shape == (2, 4)
    assert batch["attention_mask"].sum(1).tolist() == [3, 4]
    assert (batch["input_ids"][0, 3] == enc.pad_id).item()
    assert batch["labels"].tolist() == [[1, 0, 0], [0, 0, 1]]


def test_progress_bars_show_in_a_notebook_too(monkeypatch):
    # Issue 21: a notebook's stderr is no terminal, so fit showed no progress in Jupyter.
    import sys
    import types

    from mlbert.batching import show_progress

    class ZMQInteractiveShell:  # the kernel's shell class, by name
        pass

    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    assert not show_progress(True)
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=ZMQInteractiveShell))
    assert show_progress(True) and not show_progress(False)
