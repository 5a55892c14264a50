"""The memory-mapped token store: same ids and labels as the in-memory path, zero-copy, atomic, and
training from it gives the same model as training from memory."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from helpers import tiny_settings, write_jsonl
from mlbert.batching import encode
from mlbert.checkpoint import load_weights
from mlbert.cli import main
from mlbert.data import binarize, iter_examples, read_dataset
from mlbert.encoders import load_tokenizer
from mlbert.errors import DataError
from mlbert.token_store import TokenStore, build_store


@pytest.fixture(scope="module")
def tokenizer(tiny_encoder):
    return load_tokenizer(tiny_encoder)


def test_store_holds_what_encode_and_binarize_give(tmp_path, tokenizer, demo_files, monkeypatch):
    import mlbert.token_store as ts

    monkeypatch.setattr(ts, "CHUNK", 64)  # several record batches, so lookups cross chunk borders
    data = read_dataset(demo_files["train"])
    path = tmp_path / "train.arrow"
    assert build_store(iter_examples(demo_files["train"]), tokenizer, 12, path) == len(data)
    store = TokenStore(path)
    ref = encode(tokenizer, data.texts, 12)
    assert len(store) == len(ref) and store.n_truncated == ref.n_truncated > 0 and store.pad_id == ref.pad_id
    assert np.array_equal(store.lengths, ref.lengths)
    for i in (0, 63, 64, 65, len(ref) - 1):
        assert np.array_equal(store.input_ids[i], ref.input_ids[i])
    vocab = store.vocabulary()
    y, _ = binarize(data.labels, vocab)
    rows = store.targets(vocab)
    idx = np.array([5, 64, 0, len(ref) - 1])
    assert np.array_equal(rows[idx], y[idx])
    assert np.array_equal(rows.sum(axis=0), y.sum(axis=0))


def test_opening_a_store_reads_nothing_into_memory(tmp_path, tokenizer, demo_files):
    path = tmp_path / "train.arrow"
    build_store(iter_examples(demo_files["train"]), tokenizer, 48, path)
    before = pa.total_allocated_bytes()
    store = TokenStore(path)
    ids = store.input_ids[3]
    assert pa.total_allocated_bytes() == before  # views into the mapped file, not copies
    assert not ids.flags.owndata


def test_fingerprint_follows_the_labels(tmp_path, tokenizer, demo_splits):
    rows = demo_splits["dev"][:50]
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    write_jsonl(a, rows)
    write_jsonl(b, [*rows[:-1], {**rows[-1], "labels": ["other"]}])
    prints = []
    for src in (a, b, a):
        build_store(iter_examples(src), tokenizer, 48, tmp_path / f"{src.stem}.arrow")
        prints.append(TokenStore(tmp_path / f"{src.stem}.arrow").fingerprint())
    assert prints[0] != prints[1] and prints[0] == prints[2]


def test_bad_line_leaves_no_store_behind(tmp_path, tokenizer, demo_splits):
    src = tmp_path / "bad.jsonl"
    write_jsonl(src, demo_splits["dev"][:30])
    with src.open("a") as f:
        f.write('{"text": "no labels field"}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:31"):
        build_store(iter_examples(src), tokenizer, 48, tmp_path / "s.arrow")
    assert list(tmp_path.glob("*.arrow*")) == [] and list(tmp_path.glob(".s.arrow*")) == []


def test_training_from_disk_gives_the_model_training_from_memory_gives(tmp_path, tiny_encoder, demo_files):
    flags = []
    for key, value in tiny_settings(tiny_encoder).items():
        flags += [f"--{key.replace('_', '-')}", str(value)]
    common = ["train", "--train", str(demo_files["train"]), "--dev", str(demo_files["dev"]), *flags, "--quiet"]
    assert main([*common, "--out", str(tmp_path / "memory")]) == 0
    assert main([*common, "--out", str(tmp_path / "disk"), "--data-on-disk", "--no-token-cache"]) == 0
    assert list((tmp_path / "disk" / "data").glob("*.arrow"))  # without the cache, the store sits in the run
    a, b = (load_weights(tmp_path / d / "model.safetensors") for d in ("memory", "disk"))
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-6
    ma, mb = (json.loads((tmp_path / d / "mlbert.json").read_text()) for d in ("memory", "disk"))
    assert ma["labels"] == mb["labels"] and ma["thresholds"] == mb["thresholds"]


def test_data_on_disk_reports_a_bad_training_file_before_writing(tmp_path, tiny_encoder, demo_files, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine", "labels": ["billing"]}\n{"text": "", "labels": []}\n', encoding="utf-8")
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--train",
                str(bad),
                "--dev",
                str(demo_files["dev"]),
                "--out",
                str(out),
                "--model",
                str(tiny_encoder),
                "--data-on-disk",
                "--quiet",
            ]
        )
        == 2
    )
    assert f"{bad}:2" in capsys.readouterr().err and not out.exists()


def test_max_steps_stops_training_there(tmp_path, tiny_encoder, demo_files):
    from mlbert.cli.jobs import train_job
    from mlbert.config import TrainConfig

    metrics = train_job(
        TrainConfig(**tiny_settings(tiny_encoder, epochs=5, max_steps=7)),
        demo_files["train"],
        demo_files["dev"],
        tmp_path / "run",
        progress=False,
    )
    assert metrics["epochs_run"] == 1 and metrics["history"][0]["step"] == 7 and metrics["stopped_early"]
