"""Explanations (explain.py): attributions add up to the logit's change on every head, words map to the right
characters (non-ASCII too), long texts in windows, the trained model's reasons, predict --explain and the API."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from helpers import write_jsonl
from mlbert.batching import Chunking
from mlbert.chunking import combine_windows
from mlbert.classifier import MultiLabelClassifier
from mlbert.cli import main
from mlbert.demo_data import PHRASES
from mlbert.encoders import load_encoder, load_tokenizer
from mlbert.errors import DataError
from mlbert.explain import explain_text, text_windows, top_words
from mlbert.model import MultiLabelModel


def _logit_change(model, tokenizer, text, column, max_length, chunking=None) -> float:
    """The label's logit on the text less on the baseline (every word's tokens padding): what IG splits up."""
    windows = text_windows(tokenizer, text, max_length, chunking)
    base = torch.where(torch.from_numpy(windows.word_of >= 0), tokenizer.pad_token_id, windows.input_ids)
    owner = torch.zeros(len(base), dtype=torch.long)
    how = chunking.combine if chunking is not None else "max"
    with torch.no_grad():
        text_logit, base_logit = (combine_windows(model(ids, windows.attention_mask), owner, 1, how)[0, column].item()
                                  for ids in (windows.input_ids, base))  # fmt: skip
    return text_logit - base_logit


@pytest.mark.parametrize(
    ("pooling", "head"),
    [("cls", "linear"), ("mean", "mlp"), ("layers", "mlp"), ("mean", "label-attention"), ("mean", "gru")],
)
def test_attributions_add_up_to_the_logit_change_on_every_head(tiny_encoder, pooling, head):
    torch.manual_seed(0)
    model = MultiLabelModel(load_encoder(tiny_encoder), 3, pooling=pooling, head=head, pool_layers=2).eval()
    tok = load_tokenizer(tiny_encoder)
    text = "i was charged twice for my subscription, please refund the payment"
    [words_0, words_2] = explain_text(model, tok, text, [0, 2], 48, steps=64)
    for column, words in ((0, words_0), (2, words_2)):
        total = sum(w.attribution for w in words)
        assert total == pytest.approx(_logit_change(model, tok, text, column, 48), rel=0.02, abs=1e-3)
    assert [w.text for w in words_0] == ["i", "was", "charged", "twice", "for", "my", "subscription", ",", "please",
                                         "refund", "the", "payment"]  # fmt: skip


def test_words_map_to_their_characters_in_non_ascii_text(tiny_encoder):
    model = MultiLabelModel(load_encoder(tiny_encoder), 2, pooling="mean").eval()
    tok = load_tokenizer(tiny_encoder)
    text = "Zürich café 😀 refund  naïve — Straße payment"
    [words] = explain_text(model, tok, text, [1], 48, steps=4)
    assert [w.text for w in words] == ["Zürich", "café", "😀", "refund", "naïve", "—", "Straße", "payment"]
    for w in words:
        assert text[w.start : w.end] == w.text
    assert [w.start for w in words] == sorted(w.start for w in words)


@pytest.mark.parametrize("how", ["max", "mean", "lse"])
def test_a_long_text_is_explained_over_all_its_windows(tiny_encoder, how):
    torch.manual_seed(1)
    model = MultiLabelModel(load_encoder(tiny_encoder), 2, pooling="mean").eval()
    tok = load_tokenizer(tiny_encoder)
    text = " ".join(["hello thanks"] * 20 + ["refund"])  # 41 words; windows of 16 tokens
    chunking = Chunking(stride=4, max_chunks=8, combine=how)
    assert len(text_windows(tok, text, 16, chunking).input_ids) > 2
    [words] = explain_text(model, tok, text, [0], 16, chunking, steps=64)
    assert len(words) == 41 and words[-1].text == "refund"  # a word of the last window: truncation would miss it
    assert all(text[w.start : w.end] == w.text for w in words)
    if how != "max":  # max switches windows along the path; the others are smooth, so the sum is exact
        assert sum(w.attribution for w in words) == pytest.approx(
            _logit_change(model, tok, text, 0, 16, chunking), rel=0.02, abs=1e-3
        )
    [truncated] = explain_text(model, tok, text, [0], 16, None, steps=4)
    assert len(truncated) == 14  # the first window only: 14 words between [CLS] and [SEP]


def test_top_words_by_size_either_sign():
    from mlbert.explain import WordAttribution

    words = [WordAttribution(0, 1, "a", 0.1), WordAttribution(2, 3, "b", -0.5), WordAttribution(4, 5, "c", 0.3)]
    assert [w.text for w in top_words(words, 2)] == ["b", "c"]
    assert words[1].to_dict() == {"start": 2, "end": 3, "text": "b", "attribution": -0.5}


@pytest.fixture(scope="module")
def clf(trained_dir):
    return MultiLabelClassifier.load(trained_dir)


def test_the_trained_model_is_explained_by_its_topic_words(clf):
    """The demo's labels come from topic phrases among filler: the top word of a predicted label is one of
    its phrases' words, and it argues for the label."""
    texts = ["hello, i was charged twice for my subscription this month", "the app crashes when i open it"]
    explained = clf.explain(texts)
    assert [list(e) for e in explained] == clf.predict(texts)
    hits = 0
    for reasons in explained:
        for label, words in reasons.items():
            assert len(words) <= 5
            vocabulary = {w for phrase in PHRASES[label] for w in re.findall("[a-z]+", phrase.lower())}
            hits += words[0].text.lower() in vocabulary and words[0].attribution > 0
    assert hits == sum(len(e) for e in explained) >= 2


def test_explain_named_labels_and_bad_arguments(clf):
    label = clf.labels_[0]
    [reasons] = clf.explain(["refund please"], labels=[label], n_words=None)
    assert list(reasons) == [label] and [w.text for w in reasons[label]] == ["refund", "please"]
    with pytest.raises(DataError, match="not labels of this model"):
        clf.explain(["refund please"], labels=["no-such-label"])
    with pytest.raises(DataError, match="steps"):
        clf.explain(["refund please"], steps=0)
    assert clf.explain([]) == []


def test_the_int8_backend_explains_with_the_folder_fp32_model(trained_dir, clf):
    int8 = MultiLabelClassifier.load(trained_dir, backend="torch-int8")
    label = clf.labels_[1]
    got = int8.explain(["refund please, charged twice"], labels=[label], steps=8)[0][label]
    want = clf.explain(["refund please, charged twice"], labels=[label], steps=8)[0][label]
    assert [(w.text, round(w.attribution, 5)) for w in got] == [(w.text, round(w.attribution, 5)) for w in want]


def test_predict_explain_writes_words_per_label(trained_dir, tmp_path, clf):
    texts = ["i was charged twice for my subscription", "the app crashes when i log in"]
    source = write_jsonl(tmp_path / "in.jsonl", [{"id": f"t{i}", "text": t} for i, t in enumerate(texts)])
    out = tmp_path / "out.jsonl"
    argv = ["predict", "--model", str(trained_dir), "--input", str(source), "--output", str(out), "--quiet"]
    assert main([*argv, "--explain", "--explain-words", "2"]) == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    for row, text in zip(rows, texts):
        assert list(row["explanations"]) == row["labels"]
        for words in row["explanations"].values():
            assert len(words) == min(2, len(text.split()))
            assert all(text[w["start"] : w["end"]] == w["text"] for w in words)
    plain = tmp_path / "plain.jsonl"
    assert main([*argv[:-3], "--output", str(plain), "--quiet"]) == 0
    assert "explanations" not in plain.read_text(encoding="utf-8")


def test_predict_explain_refuses_table_formats_before_any_work(trained_dir, tmp_path, capsys):
    out = tmp_path / "out.csv"
    code = main(["predict", "--model", str(trained_dir), "--text", "refund", "--output", str(out), "--explain"])
    assert code == 2 and not out.exists()
    assert "--explain writes JSON lines" in capsys.readouterr().err


def test_explained_scores_are_the_plain_scores(clf):
    texts = ["i was charged twice for my subscription"]
    probs = clf.predict_proba(texts)
    clf.explain(texts)  # gradients and eval mode must leave the model as it was
    np.testing.assert_allclose(clf.predict_proba(texts), probs, atol=1e-6)
    assert not clf.model_.training
