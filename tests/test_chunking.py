"""Chunked reading of long texts (chunking.py, batching's windows): the combinations, the windows a text is
cut into, batches filled by windows, and a model that must read a text's end to find its label."""

from __future__ import annotations

import random
import typing

import numpy as np
import pytest
import torch

from helpers import tiny_settings
from mlbert import MultiLabelClassifier
from mlbert.batching import Chunking, Encoded, encode, take_rows, train_batches
from mlbert.chunking import COMBINATIONS, combine_windows
from mlbert.config import ChunkAggregation, TrainConfig
from mlbert.errors import ConfigError


def test_the_combinations_are_the_configs():
    assert set(COMBINATIONS) == set(typing.get_args(ChunkAggregation))


def test_window_logits_combine_per_text():
    logits = torch.tensor([[1.0, -2.0], [3.0, -4.0], [0.5, 0.5]])
    owner = torch.tensor([0, 0, 1])
    assert torch.equal(combine_windows(logits, owner, 2, "max"), torch.tensor([[3.0, -2.0], [0.5, 0.5]]))
    assert torch.equal(combine_windows(logits, owner, 2, "mean"), torch.tensor([[2.0, -3.0], [0.5, 0.5]]))
    lse = combine_windows(logits, owner, 2, "lse")
    expected = torch.logsumexp(logits[:2], 0) - torch.log(torch.tensor(2.0))
    torch.testing.assert_close(lse[0], expected)
    torch.testing.assert_close(lse[1], logits[2])  # one window: itself, whatever the combination
    assert (lse[0] >= torch.tensor([2.0, -3.0])).all() and (lse[0] <= torch.tensor([3.0, -2.0])).all()
    with pytest.raises(ValueError, match="median"):
        combine_windows(logits, owner, 2, "median")


def test_every_combination_passes_gradients_to_the_windows():
    for how in COMBINATIONS:
        logits = torch.tensor([[1.0], [3.0], [0.5]], requires_grad=True)
        combine_windows(logits, torch.tensor([0, 0, 1]), 2, how).sum().backward()
        assert logits.grad[2, 0] == 1.0 and logits.grad[:2].sum() > 0


def test_a_long_text_is_cut_into_overlapping_windows_up_to_max_chunks(tiny_encoder):
    from mlbert.encoders import load_tokenizer

    tokenizer = load_tokenizer(tiny_encoder)
    long_text = " ".join(["thanks"] * 40 + ["refund"])  # 41 word tokens
    texts = ["refund please", long_text]
    encoded = encode(tokenizer, texts, 16, chunking=Chunking(stride=4, max_chunks=16))
    assert len(encoded) == 2 and list(encoded.chunk_counts) == [1, 4]  # 14 tokens a window, 10 new after the first
    windows = [encoded.input_ids[i] for i in range(1, 5)]
    assert all(w[0] == tokenizer.cls_token_id and w[-1] == tokenizer.sep_token_id for w in windows)
    assert list(windows[0][-5:-1]) == list(windows[1][1:5])  # neighbours share 4 tokens
    assert tokenizer.convert_tokens_to_ids("refund") in windows[-1]  # the end is read
    assert encoded.n_truncated == 0 and encoded.lengths[1] == sum(len(w) for w in windows)
    capped = encode(tokenizer, texts, 16, chunking=Chunking(stride=4, max_chunks=2))
    assert list(capped.chunk_counts) == [1, 2] and capped.n_truncated == 1
    truncated = encode(tokenizer, texts, 16)
    assert truncated.starts is None and truncated.n_truncated == 1 and len(truncated.input_ids) == 2


def test_rows_of_a_chunked_text_set_keep_their_windows():
    encoded = Encoded(
        input_ids=[np.array([i]) for i in range(6)], n_truncated=0, pad_id=0, starts=np.array([0, 1, 4, 6])
    )
    windows, owner = encoded.windows([2, 1])
    assert list(windows) == [4, 5, 1, 2, 3] and list(owner) == [0, 0, 1, 1, 1]
    sample = take_rows(encoded, [2, 0])
    assert len(sample) == 2 and list(sample.starts) == [0, 2, 3]
    assert [int(w[0]) for w in sample.input_ids] == [4, 5, 0]


def test_training_batches_are_filled_by_windows():
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 12, size=200)
    lengths = sizes * 100
    batches = train_batches(lengths, 16, seed=3, epoch=0, sizes=sizes)
    assert sorted(np.concatenate(batches).tolist()) == list(range(200))  # each text once
    assert all(sizes[b].sum() <= 16 or len(b) == 1 for b in batches)


def test_chunk_settings_are_checked():
    with pytest.raises(ConfigError, match="chunk_stride"):
        TrainConfig(max_length=64, chunk_stride=40, long_text="chunk")
    assert TrainConfig(max_length=16).chunk_stride == 32  # truncating: the stride is not used
    with pytest.raises(ConfigError, match="max_chunks"):
        TrainConfig(max_chunks=0)
    with pytest.raises(ConfigError, match="data_on_disk"):
        TrainConfig(long_text="chunk", data_on_disk=True)


def _end_evidence_data(n: int, seed: int):
    """Texts of 40 filler words whose one label's only evidence is their last word."""
    rng = random.Random(seed)
    filler = ["thanks", "please", "help", "really", "frustrating", "already", "contacted", "you", "twice"]
    texts, labels = [], []
    for _ in range(n):
        label = rng.choice(["refund", "shipping"])
        word = "refund" if label == "refund" else "delivery"
        texts.append(" ".join(rng.choice(filler) for _ in range(40)) + " " + word)
        labels.append([label])
    return texts, labels


def _accuracy(tiny_encoder, **reading):
    texts, labels = _end_evidence_data(160, 0)
    dev = _end_evidence_data(40, 1)
    clf = MultiLabelClassifier(
        **tiny_settings(tiny_encoder, max_length=16, epochs=6, pooling="max", token_cache=False, **reading)
    ).fit(texts, labels, dev=dev, progress=False)
    test_texts, test_labels = _end_evidence_data(60, 2)
    probs = clf.predict_proba(test_texts)
    chosen = [clf.labels_[int(j)] for j in probs.argmax(1)]
    return np.mean([c == y[0] for c, y in zip(chosen, test_labels)]), clf


def test_a_label_whose_only_evidence_ends_the_text_needs_chunked_reading(tiny_encoder, tmp_path):
    truncated, _ = _accuracy(tiny_encoder)
    chunked, clf = _accuracy(tiny_encoder, long_text="chunk", chunk_stride=2)
    assert truncated <= 0.7  # the first 16 tokens hold no evidence: about a coin toss
    assert chunked >= 0.95
    clf.save(tmp_path / "model")  # the reading travels with the model
    loaded = MultiLabelClassifier.load(tmp_path / "model")
    assert (loaded.config.long_text, loaded.config.chunk_stride) == ("chunk", 2)
    texts, _ = _end_evidence_data(5, 3)
    np.testing.assert_allclose(loaded.predict_proba(texts), clf.predict_proba(texts), atol=1e-6)


@pytest.fixture(scope="module")
def chunked_dir(tmp_path_factory, tiny_encoder):
    texts, labels = _end_evidence_data(96, 0)
    clf = MultiLabelClassifier(
        **tiny_settings(tiny_encoder, max_length=16, epochs=2, long_text="chunk", chunk_stride=2, token_cache=False)
    ).fit(texts, labels, dev=_end_evidence_data(24, 1), progress=False)
    folder = tmp_path_factory.mktemp("chunked") / "model"
    clf.save(folder)
    return folder


def test_onnx_scores_chunked_texts_like_torch(chunked_dir):
    pytest.importorskip("onnxruntime")
    from mlbert.export import export_onnx

    export_onnx(MultiLabelClassifier.load(chunked_dir), chunked_dir, None)
    texts, _ = _end_evidence_data(20, 4)
    texts += ["refund", " ".join(["thanks"] * 300)]  # one window; more windows than max_chunks (16)
    torch_probs = MultiLabelClassifier.load(chunked_dir).predict_proba(texts)
    onnx_probs = MultiLabelClassifier.load(chunked_dir, backend="onnx").predict_proba(texts)
    assert np.abs(onnx_probs - torch_probs).max() < 1e-4


def test_the_server_reads_a_long_text_as_one_item(chunked_dir):
    from fastapi.testclient import TestClient

    from mlbert.server import ServeSettings, create_app

    clf = MultiLabelClassifier.load(chunked_dir)
    text = _end_evidence_data(1, 5)[0][0]
    with TestClient(create_app(clf, ServeSettings())) as client:
        response = client.post("/v1/predict", json={"texts": [text], "threshold": 0.0})
    assert response.status_code == 200
    predictions = response.json()["predictions"]
    assert len(predictions) == 1
    expected = dict(zip(clf.labels_, clf.predict_proba([text])[0].tolist()))
    got = {x["label"]: x["score"] for x in predictions[0]["labels"]}
    assert got.keys() == expected.keys()
    assert max(abs(got[k] - expected[k]) for k in got) < 1e-5


def test_chunked_training_from_the_layer_cache_gives_the_uncached_weights(tiny_encoder):
    from mlbert.checkpoint import state_dict_cpu

    texts, labels = _end_evidence_data(48, 0)

    def fit(cache):
        torch.manual_seed(0)
        settings = tiny_settings(tiny_encoder, max_length=16, epochs=3, long_text="chunk", chunk_stride=2,
                                 freeze_layers=1, frozen_cache=cache, token_cache=False)  # fmt: skip
        return state_dict_cpu(MultiLabelClassifier(**settings).fit(texts, labels, progress=False).model_)

    uncached, cached = fit("off"), fit("fp32")
    for name in uncached:
        torch.testing.assert_close(cached[name], uncached[name], atol=1e-4, rtol=1e-4, msg=name)


def test_the_window_that_holds_the_evidence_scores_its_label_highest(chunked_dir):
    clf = MultiLabelClassifier.load(chunked_dir)
    text = " ".join(["thanks"] * 40) + " refund"
    windows = clf.window_scores(text)
    assert len(windows) == 4 and windows[0][0] == 0 and windows[-1][1] == len(text)
    assert text[windows[-1][0] : windows[-1][1]].endswith("refund")
    refund = clf.labels_.index("refund")
    assert max(range(4), key=lambda w: windows[w][2][refund]) == 3
    # the windows' combination (max) is the text's score
    text_score = float(clf.predict_proba([text], calibrated=False)[0, refund])  # raw, as the report reads them
    assert max(w[2][refund] for w in windows) == pytest.approx(text_score, abs=1e-5)


def test_the_reports_mistakes_show_the_window_that_drove_them(chunked_dir, tmp_path):
    from helpers import write_jsonl
    from mlbert.cli.jobs import report_job

    texts, labels = _end_evidence_data(30, 6)
    labels = [["shipping"] if y == ["refund"] else ["refund"] for y in labels]  # every label wrong: mistakes
    data = write_jsonl(tmp_path / "wrong.jsonl", [{"text": t, "labels": y} for t, y in zip(texts, labels)])
    html = report_job(chunked_dir, data, tmp_path / "report.html", progress=False).read_text(encoding="utf-8")
    assert "Window 4 of 4" in html and "long texts: chunk" in html
