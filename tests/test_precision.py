"""Precision choice and layer freezing: decided from this machine, applied in training."""

import numpy as np
import pytest
import torch

from helpers import tiny_settings
from mlbert import ConfigError, MultiLabelClassifier
from mlbert import precision as precision_mod
from mlbert.checkpoint import state_dict_cpu
from mlbert.precision import resolve_precision


def test_explicit_precisions_are_taken_as_asked():
    assert resolve_precision("fp32") == ("fp32", "as requested")
    assert resolve_precision("bf16") == ("bf16", "as requested")


def test_auto_never_picks_bf16_without_native_support(monkeypatch):
    monkeypatch.setattr(precision_mod, "native_bf16", lambda: False)
    chosen, why = resolve_precision("auto")
    assert chosen == "fp32" and "no native bf16" in why


def test_auto_with_native_support_follows_the_measurement(monkeypatch):
    monkeypatch.setattr(precision_mod, "native_bf16", lambda: True)
    monkeypatch.setattr(precision_mod, "matmul_seconds", lambda dtype, **k: 1.0 if dtype == torch.float32 else 0.4)
    assert resolve_precision("auto")[0] == "bf16"
    monkeypatch.setattr(precision_mod, "matmul_seconds", lambda dtype, **k: 1.0 if dtype == torch.float32 else 5.0)
    assert resolve_precision("auto")[0] == "fp32"


def _fit(tiny_encoder, demo_splits, **extra):
    rows = demo_splits["train"][:96]
    return MultiLabelClassifier(**tiny_settings(tiny_encoder, epochs=1, **extra)).fit(
        [r["text"] for r in rows], [r["labels"] for r in rows], progress=False
    )


def test_bf16_training_runs_and_keeps_fp32_weights(tiny_encoder, demo_splits):
    clf = _fit(tiny_encoder, demo_splits, precision="bf16")
    assert all(p.dtype == torch.float32 for p in clf.model_.parameters())
    assert np.isfinite(clf.history_[-1]["train_loss"])


def test_frozen_layers_do_not_change(tiny_encoder, demo_splits):
    from mlbert.encoders import load_encoder

    before = load_encoder(tiny_encoder, pretrained=True).state_dict()
    after = state_dict_cpu(_fit(tiny_encoder, demo_splits, freeze_layers=1).model_.encoder)  # GPU-trained too
    assert torch.equal(before["embeddings.word_embeddings.weight"], after["embeddings.word_embeddings.weight"])
    assert torch.equal(
        before["encoder.layer.0.attention.self.query.weight"], after["encoder.layer.0.attention.self.query.weight"]
    )
    assert not torch.equal(
        before["encoder.layer.1.attention.self.query.weight"], after["encoder.layer.1.attention.self.query.weight"]
    )


def test_freezing_more_layers_than_exist_is_a_config_error(tiny_encoder, demo_splits):
    with pytest.raises(ConfigError, match="only 2 layers"):
        _fit(tiny_encoder, demo_splits, freeze_layers=5)
