"""Heads and poolings: shapes, padding never matters, each learns the demo task, save/reload, lr options."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from helpers import tiny_settings
from mlbert.checkpoint import state_dict_cpu
from mlbert.classifier import MultiLabelClassifier
from mlbert.config import TrainConfig
from mlbert.encoders import load_encoder
from mlbert.errors import ConfigError
from mlbert.model import MultiLabelModel

COMBOS = [
    ("cls", "linear"),
    ("mean", "linear"),
    ("max", "linear"),
    ("layers", "mlp"),
    ("mean", "label-attention"),
    ("mean", "gru"),
    ("cls", "gru"),
    ("layers", "label-attention"),
    ("max", "mlp"),
]


def _model(encoder, pooling, head, n_labels=5):
    torch.manual_seed(0)
    return MultiLabelModel(load_encoder(encoder), n_labels, pooling=pooling, head=head, pool_layers=2).eval()


@pytest.mark.parametrize("pooling, head", COMBOS)
def test_shapes_and_padding_has_no_effect(tiny_encoder, pooling, head):
    model = _model(tiny_encoder, pooling, head)
    short = torch.tensor([[2, 10, 11, 12, 3]])
    padded = torch.tensor([[2, 10, 11, 12, 3, 0, 0, 0], [2, 20, 21, 22, 23, 24, 25, 3]])
    mask = (padded != 0).long()
    mask[1] = 1
    with torch.no_grad():
        alone = model(short, torch.ones_like(short))
        batch = model(padded, mask)
    assert alone.shape == (1, 5) and batch.shape == (2, 5)
    assert torch.allclose(alone[0], batch[0], atol=1e-5), "padding changed the output"
    # Garbage in the padded positions must not matter either.
    noisy = padded.clone()
    noisy[0, 5:] = torch.tensor([30, 31, 32])
    with torch.no_grad():
        assert torch.allclose(model(noisy, mask)[0], batch[0], atol=1e-5)


def separable_task(encoder, n: int = 64, seed: int = 0) -> tuple[list[str], list[list[str]]]:
    """Texts of random filler words; label x is on exactly when its keyword is in the text."""
    import random

    words = [w for w in (encoder / "vocab.txt").read_text().split() if w.isalpha() and len(w) > 3]
    rng = random.Random(seed)
    keys = {"a": words[10], "b": words[20], "c": words[30]}
    texts, labels = [], []
    for _ in range(n):
        on = [label for label in keys if rng.random() < 0.4]
        tokens = rng.sample(words[40:140], 6) + [keys[label] for label in on]
        rng.shuffle(tokens)
        texts.append(" ".join(tokens))
        labels.append(on)
    return texts, labels


@pytest.mark.parametrize(
    "pooling, head",
    [
        ("layers", "mlp"),
        ("mean", "label-attention"),
        ("mean", "gru"),
        ("cls", "gru"),
        ("max", "linear"),
        ("mean", "cosine"),
    ],
)
def test_each_head_learns_a_separable_task_and_round_trips(tmp_path, tiny_encoder, pooling, head):
    texts, labels = separable_task(tiny_encoder)
    clf = MultiLabelClassifier(
        **tiny_settings(tiny_encoder, epochs=15, pooling=pooling, head=head, pool_layers=2, threshold_data="dev")
    )
    clf.fit(texts, labels, dev=(texts, labels), progress=False)
    f1 = clf.evaluate(texts, labels)["metrics"]["fixed"]["micro_f1"]
    assert f1 > 0.85, f1
    clf.save(tmp_path / "m")
    again = MultiLabelClassifier.load(tmp_path / "m")
    assert (again.config.head, again.config.pooling) == (head, pooling)
    clf.model_.cpu()  # the loaded copy is on the CPU; on a GPU cuDNN's GRU runs in TF32 (1e-4 apart)
    assert np.abs(again.predict_proba(texts) - clf.predict_proba(texts)).max() < 1e-5
    if head in ("gru", "label-attention", "cosine") and importlib.util.find_spec("onnxruntime"):
        from mlbert.export import export_onnx

        export_onnx(again, tmp_path / "m")  # the token heads export too (no packed sequences); cosine's centre
        onnx = MultiLabelClassifier.load(tmp_path / "m", backend="onnx")
        assert np.abs(onnx.predict_proba(texts) - clf.predict_proba(texts)).max() < 1e-4


def test_layer_pooling_reads_more_than_the_last_layer(tiny_encoder):
    model = _model(tiny_encoder, "layers", "linear")
    assert model.classifier.in_features == 2 * model.encoder.config.hidden_size
    with pytest.raises(ValueError, match="pool_layers"):
        MultiLabelModel(load_encoder(tiny_encoder), 3, pooling="layers", pool_layers=9)


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError, match="head"):
        TrainConfig(head="transformer")
    with pytest.raises(ConfigError, match="lr_decay"):
        TrainConfig(lr_decay=0)
    with pytest.raises(ConfigError, match="pool_layers"):
        TrainConfig(pool_layers=0)


def test_layerwise_lr_decay_scales_each_layer(tiny_encoder):
    from mlbert.train import _param_groups

    model = _model(tiny_encoder, "cls", "linear")
    config = TrainConfig(lr=1e-3, head_lr=1e-2, lr_decay=0.5)
    lrs = {}
    for group in _param_groups(model, config):
        for p in group["params"]:
            lrs[id(p)] = group["lr"]
    named = dict(model.named_parameters())
    layer = "bert.encoder.layer.{}.attention.self.query.weight"
    assert lrs[id(named[layer.format(1)])] == pytest.approx(1e-3)  # top of the 2 layers
    assert lrs[id(named[layer.format(0)])] == pytest.approx(5e-4)
    assert lrs[id(named["bert.embeddings.word_embeddings.weight"])] == pytest.approx(2.5e-4)
    assert lrs[id(named["classifier.weight"])] == pytest.approx(1e-2)


def test_frozen_encoder_steps_leave_the_encoder_still(tiny_encoder, demo_splits):
    train = demo_splits["train"][:64]
    settings = tiny_settings(tiny_encoder, epochs=1, max_steps=4, freeze_encoder_steps=4, patience=0)
    clf = MultiLabelClassifier(**settings).fit([r["text"] for r in train], [r["labels"] for r in train], progress=False)
    before = load_encoder(tiny_encoder).state_dict()
    after = state_dict_cpu(clf.model_.encoder)  # trained on a GPU where there is one
    assert all(torch.equal(before[k], after[k]) for k in before)
    moved = MultiLabelClassifier(**{**settings, "freeze_encoder_steps": 1}).fit(
        [r["text"] for r in train], [r["labels"] for r in train], progress=False
    )
    assert not all(torch.equal(before[k], state_dict_cpu(moved.model_.encoder)[k]) for k in before)
