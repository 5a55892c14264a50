"""Heads that start from label texts (label_init.py), zero-shot classifiers (MultiLabelClassifier.from_labels,
`mlbert zero-shot`) and label texts in the model folder."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from helpers import tiny_settings, write_jsonl
from mlbert import MultiLabelClassifier
from mlbert.batching import encode
from mlbert.config import TrainConfig
from mlbert.encoders import load_encoder, load_tokenizer
from mlbert.heads import output_layer
from mlbert.label_init import SCALE, init_head_from_labels, label_priors
from mlbert.model import MultiLabelModel

# Words of the tiny encoder's vocabulary (the demo generator's): each is a label, and a text carries its label's word.
KEYWORDS = ["refund", "invoice", "password", "crashes", "dashboard", "subscription"]
FILLER = "i have a question about my order from last month and would like an answer soon please".split(" ")  # noqa: SIM905


def keyword_texts(n: int, seed: int) -> tuple[list[str], list[list[str]]]:
    rng = random.Random(seed)
    texts, labels = [], []
    for _ in range(n):
        label = rng.choice(KEYWORDS)
        words = rng.sample(FILLER, 8)
        words.insert(rng.randrange(len(words) + 1), label)
        texts.append(" ".join(words))
        labels.append([label])
    return texts, labels


def _model(encoder, head: str, pooling: str) -> MultiLabelModel:
    torch.manual_seed(0)
    config = TrainConfig(**tiny_settings(encoder, head=head, pooling=pooling, pool_layers=2))
    return MultiLabelModel.from_config(load_encoder(encoder, pretrained=True), len(KEYWORDS), config)


HEADS = [("linear", "mean"), ("linear", "layers"), ("mlp", "mean"), ("mlp", "cls"), ("cosine", "mean"),
         ("label-attention", "mean"), ("gru", "mean")]  # fmt: skip


@pytest.mark.parametrize(("head", "pooling"), HEADS)
def test_every_head_starts_from_the_label_texts(tiny_encoder, head, pooling):
    """Per label, the sample's logits have the prior's log-odds as mean and SCALE as deviation (the
    standardisation), the shapes stay, and the untrained model finds a text's keyword far above chance."""
    tokenizer = load_tokenizer(tiny_encoder)
    texts, labels = keyword_texts(120, seed=1)
    sample = encode(tokenizer, texts, 48)
    model = _model(tiny_encoder, head, pooling)
    shapes = [p.shape for p in model.parameters()]
    priors = label_priors(np.array([sum(k in t for t in labels) for k in KEYWORDS]), len(texts))
    init_head_from_labels(model, encode(tokenizer, KEYWORDS, 48), sample, priors)
    assert [p.shape for p in model.parameters()] == shapes
    assert all(torch.isfinite(p).all() for p in output_layer(model.classifier))
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(b["input_ids"], b["attention_mask"]) for b in _batches(sample)])
    prior_logits = torch.logit(torch.tensor(priors, dtype=torch.float32))
    torch.testing.assert_close(logits.mean(0), prior_logits, atol=1e-3, rtol=0)
    torch.testing.assert_close(logits.std(0, correction=0), torch.full((len(KEYWORDS),), SCALE), atol=1e-3, rtol=0)
    top = logits.argmax(1).numpy()
    accuracy = np.mean([KEYWORDS[j] == label[0] for j, label in zip(top, labels)])
    assert accuracy > 2 / len(KEYWORDS), f"{head}/{pooling}: right label first for {accuracy:.0%} of texts"


@pytest.mark.parametrize(("head", "pooling"), HEADS)
def test_a_label_with_several_texts_reads_as_their_mean(tiny_encoder, head, pooling):
    """Each text given twice (in any order) starts the same head as each once; two different texts start it
    between them, and the keywords are still found."""
    tokenizer = load_tokenizer(tiny_encoder)
    texts, labels = keyword_texts(120, seed=1)
    sample = encode(tokenizer, texts, 48)
    priors = label_priors(np.array([sum(k in t for t in labels) for k in KEYWORDS]), len(texts))

    def start(label_words, owners=None):
        model = _model(tiny_encoder, head, pooling)
        init_head_from_labels(model, encode(tokenizer, label_words, 48), sample, priors, owners=owners)
        return model

    once = start(KEYWORDS)
    order = np.random.default_rng(0).permutation(2 * len(KEYWORDS))
    owners = np.tile(np.arange(len(KEYWORDS)), 2)[order]
    twice = start([KEYWORDS[i] for i in owners], owners)
    for a, b in zip(once.parameters(), twice.parameters()):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=2e-3)  # float32 sums in another order
    pairs = [text for k in KEYWORDS for text in (k, f"{k} please")]
    both = start(pairs, np.repeat(np.arange(len(KEYWORDS)), 2))
    other = start([f"{k} please" for k in KEYWORDS])
    weight = {name: output_layer(m.classifier)[0] for name, m in (("once", once), ("both", both), ("other", other))}
    assert not torch.allclose(weight["both"], weight["once"]) and not torch.allclose(weight["both"], weight["other"])
    both.eval()
    with torch.no_grad():
        logits = torch.cat([both(b["input_ids"], b["attention_mask"]) for b in _batches(sample)])
    accuracy = np.mean([KEYWORDS[j] == label[0] for j, label in zip(logits.argmax(1).numpy(), labels)])
    assert accuracy > 2 / len(KEYWORDS), f"{head}/{pooling}: right label first for {accuracy:.0%} of texts"
    with pytest.raises(ValueError, match="do not cover 6 labels"):
        start(KEYWORDS[:5] + ["refund"], np.array([0, 1, 2, 3, 4, 0]))


@pytest.mark.parametrize("head", ["linear", "cosine"])
def test_contrast_keeps_each_labels_scale_and_stops_a_text_like_every_label_taking_them_all(tiny_encoder, head):
    tokenizer = load_tokenizer(tiny_encoder)
    texts, labels = keyword_texts(120, seed=1)
    sample = encode(tokenizer, texts, 48)
    priors = label_priors(np.array([sum(k in t for t in labels) for k in KEYWORDS]), len(texts))
    prior_logits = torch.logit(torch.tensor(priors, dtype=torch.float32))
    every_label = encode(tokenizer, [" ".join(KEYWORDS + FILLER[:4])], 48)
    above = {}
    for contrast in (False, True):
        model = _model(tiny_encoder, head, "mean")
        init_head_from_labels(model, encode(tokenizer, KEYWORDS, 48), sample, priors, contrast=contrast)
        model.eval()
        with torch.no_grad():
            logits = torch.cat([model(b["input_ids"], b["attention_mask"]) for b in _batches(sample)])
            ([batch],) = [list(_batches(every_label))]
            above[contrast] = float(
                ((model(batch["input_ids"], batch["attention_mask"]) - prior_logits) / SCALE).mean()
            )
        # per label, still the prior's log-odds on average over the sample and SCALE per deviation
        torch.testing.assert_close(logits.mean(0), prior_logits, atol=1e-3, rtol=0)
        torch.testing.assert_close(logits.std(0, correction=0), torch.full((len(KEYWORDS),), SCALE), atol=1e-3, rtol=0)
        top = logits.argmax(1).numpy()
        assert np.mean([KEYWORDS[j] == label[0] for j, label in zip(top, labels)]) > 2 / len(KEYWORDS)
    assert above[False] > 1.0 and above[True] < above[False] - 0.5, above


def _batches(encoded, size: int = 32):
    from mlbert.batching import collate

    for start in range(0, len(encoded), size):
        yield collate(encoded, range(start, min(start + size, len(encoded))))


def test_random_heads_do_not_find_the_keywords(tiny_encoder):
    """The control for the test above: the same model with its random head is near chance."""
    tokenizer = load_tokenizer(tiny_encoder)
    texts, labels = keyword_texts(120, seed=1)
    model = _model(tiny_encoder, "linear", "mean").eval()
    with torch.no_grad():
        logits = torch.cat([model(b["input_ids"], b["attention_mask"]) for b in _batches(encode(tokenizer, texts, 48))])
    accuracy = np.mean([KEYWORDS[j] == label[0] for j, label in zip(logits.argmax(1).numpy(), labels)])
    assert accuracy < 0.4


def test_zero_shot_tunes_on_dev_and_round_trips(tiny_encoder, tmp_path):
    dev_texts, dev_labels = keyword_texts(60, seed=2)
    test_texts, test_labels = keyword_texts(60, seed=3)
    descriptions = {"refund": ["refund", "money back"], "unknown-label": "never seen"}
    clf = MultiLabelClassifier.from_labels(
        KEYWORDS, descriptions, dev=(dev_texts, dev_labels), **tiny_settings(tiny_encoder)
    )
    assert clf.config.label_init == "label-text" and clf.training_["zero_shot"] and clf.training_["dev_examples"] == 60
    assert clf.label_texts_ == [["refund", "money back"], *KEYWORDS[1:]]
    assert clf.evaluate(test_texts, test_labels)["metrics"]["per_label"]["p_at_1"] > 0.5  # chance: 1/6
    clf.save(tmp_path / "zs")
    manifest = json.loads((tmp_path / "zs" / "mlbert.json").read_text())
    assert manifest["label_texts"] == clf.label_texts_ and manifest["config"]["label_init"] == "label-text"
    loaded = MultiLabelClassifier.load(tmp_path / "zs")
    assert loaded.label_texts_ == clf.label_texts_
    np.testing.assert_allclose(loaded.predict_proba(test_texts), clf.predict_proba(test_texts), atol=1e-6)
    assert loaded.predict(test_texts) == clf.predict(test_texts)


@pytest.mark.parametrize("unlabelled", [False, True])
def test_zero_shot_without_dev_uses_default_thresholds(tiny_encoder, unlabelled, caplog):
    texts, labels = keyword_texts(60, seed=4)
    with caplog.at_level("WARNING", logger="mlbert"):
        clf = MultiLabelClassifier.from_labels(
            KEYWORDS, texts=keyword_texts(80, seed=9)[0] if unlabelled else None, **tiny_settings(tiny_encoder)
        )
    assert ("the label texts stand in" in caplog.text) != unlabelled
    assert clf.training_["dev_examples"] == 0 and float(clf.thresholds_.global_) == 0.5
    probs = clf.predict_proba(texts)
    assert probs.shape == (60, len(KEYWORDS))
    right = np.array([[k in label for k in KEYWORDS] for label in labels])
    assert probs[right].mean() > probs[~right].mean()
    if unlabelled:  # scaled on texts like these: about 1/len(KEYWORDS) of the scores reach 0.5
        assert 0.02 < (probs >= 0.5).mean() < 0.5


def test_zero_shot_needs_distinct_labels(tiny_encoder):
    from mlbert.errors import DataError

    with pytest.raises(DataError, match="distinct"):
        MultiLabelClassifier.from_labels(["a", "a"], **tiny_settings(tiny_encoder))


def test_training_from_label_texts_saves_them(tiny_encoder, tmp_path, caplog):
    texts, labels = keyword_texts(80, seed=5)
    dev = keyword_texts(30, seed=6)
    settings = tiny_settings(tiny_encoder, label_init="label-text", epochs=1)
    with caplog.at_level("INFO", logger="mlbert"):
        clf = MultiLabelClassifier(**settings).fit(
            texts, labels, dev=dev, progress=False, label_descriptions={"refund": "money back", "gold": "gold"}
        )
    assert "per-label weights from the 6 label texts" in caplog.text
    assert "descriptions for 1 labels the data do not have, not used: gold" in caplog.text
    assert clf.label_texts_[clf.labels_.index("refund")] == "money back"
    clf.save(tmp_path / "m")
    assert MultiLabelClassifier.load(tmp_path / "m").label_texts_ == clf.label_texts_


def test_old_folders_read_labels_as_their_names(trained_dir, tmp_path):
    import shutil

    folder = shutil.copytree(trained_dir, tmp_path / "old")
    manifest = json.loads((folder / "mlbert.json").read_text())
    manifest.pop("label_texts", None)
    (folder / "mlbert.json").write_text(json.dumps(manifest))
    clf = MultiLabelClassifier.load(folder)
    assert clf.label_texts_ == [name.replace("_", " ") for name in clf.labels_]


def test_the_zero_shot_command(tiny_encoder, tmp_path, capsys):
    from mlbert.cli import main

    (tmp_path / "labels.txt").write_text("\n".join(KEYWORDS) + "\n", encoding="utf-8")
    dev_texts, dev_labels = keyword_texts(40, seed=7)
    write_jsonl(tmp_path / "dev.jsonl", [{"text": t, "labels": ls} for t, ls in zip(dev_texts, dev_labels)])
    out = tmp_path / "zs"
    argv = ["zero-shot", "--labels", str(tmp_path / "labels.txt"), "--dev", str(tmp_path / "dev.jsonl"),
            "--dev-examples", "30", "--test", str(tmp_path / "dev.jsonl"), "--out", str(out), "--model",
            str(tiny_encoder), "--max-length", "48", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dev_examples"] == 30 and metrics["test"]["n_examples"] == 40
    assert "zero-shot model for 6 labels" in capsys.readouterr().out
    assert main(["predict", "--model", str(out), "--input", str(tmp_path / "dev.jsonl"), "--output",
                 str(tmp_path / "p.jsonl"), "--quiet"]) == 0  # fmt: skip
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == 40
    assert main([*argv[:-1], "--quiet"]) == 2  # the folder exists: --overwrite needed
    unlabelled = ["zero-shot", "--labels", str(tmp_path / "labels.txt"), "--texts", str(tmp_path / "dev.jsonl"),
                  "--out", str(tmp_path / "zt"), "--model", str(tiny_encoder), "--quiet"]  # fmt: skip
    assert main(unlabelled) == 0
    metrics = json.loads((tmp_path / "zt" / "metrics.json").read_text())
    assert metrics["dev_examples"] == 0 and metrics["files"]["texts"].endswith("dev.jsonl")
    (tmp_path / "empty.txt").write_text("\n", encoding="utf-8")
    assert main(["zero-shot", "--labels", str(tmp_path / "empty.txt"), "--out", str(tmp_path / "z2")]) == 2
    assert not (tmp_path / "z2").exists()


def test_a_chunked_sample_counts_its_windows(tiny_encoder):
    """Long-text models sample windows: each window is a text of the sample."""
    from mlbert.batching import Chunking

    tokenizer = load_tokenizer(tiny_encoder)
    texts, _ = keyword_texts(40, seed=8)
    sample = encode(tokenizer, [t + " " + t for t in texts], 12, chunking=Chunking(stride=2, max_chunks=8))
    assert len(sample.input_ids) > len(sample)
    model = _model(tiny_encoder, "mlp", "mean")
    init_head_from_labels(model, encode(tokenizer, KEYWORDS, 12), sample, np.full(len(KEYWORDS), 0.2))
    windows = sample.window_texts()
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(b["input_ids"], b["attention_mask"]) for b in _batches(windows)])
    torch.testing.assert_close(logits.std(0, correction=0), torch.full((len(KEYWORDS),), SCALE), atol=1e-3, rtol=0)


def test_a_chunked_sample_reads_at_most_sample_texts_windows(tiny_encoder, monkeypatch):
    """Long texts make many windows; the start reads a seeded sample of SAMPLE_TEXTS of them (it had read
    every window of 256 texts, twice: minutes of a time budget on long documents)."""
    from mlbert import label_init
    from mlbert.batching import Chunking, take_rows

    monkeypatch.setattr(label_init, "SAMPLE_TEXTS", 16)
    tokenizer = load_tokenizer(tiny_encoder)
    texts, _ = keyword_texts(40, seed=8)
    sample = encode(tokenizer, [t + " " + t for t in texts], 12, chunking=Chunking(stride=2, max_chunks=8))
    windows = sample.window_texts()
    assert len(windows) > 16
    model = _model(tiny_encoder, "linear", "mean")
    init_head_from_labels(model, encode(tokenizer, KEYWORDS, 12), sample, np.full(len(KEYWORDS), 0.2))
    read = take_rows(windows, label_init.sample_rows(len(windows), label_init.SAMPLE_SEED, 16))
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(b["input_ids"], b["attention_mask"]) for b in _batches(read)])
    # standardised over exactly these 16 windows: their logits spread by SCALE
    torch.testing.assert_close(logits.std(0, correction=0), torch.full((len(KEYWORDS),), SCALE), atol=1e-3, rtol=0)
