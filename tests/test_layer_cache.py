"""layer_cache.py: the frozen layers' output read back from the cache gives the same logits and the same
training as computing it every step; the cache is refused where it cannot be right or cannot fit."""

from __future__ import annotations

import typing

import numpy as np
import pytest
import torch

from helpers import tiny_settings
from mlbert import MultiLabelClassifier
from mlbert import layer_cache as layer_cache_mod
from mlbert.batching import Encoded, collate
from mlbert.checkpoint import state_dict_cpu
from mlbert.config import FrozenCache
from mlbert.layer_cache import DTYPES, LayerCache, cache_bytes, why_not_cached

TEXTS = [[2, 7, 9, 11, 3], [2, 8, 3], [2, 12, 13, 14, 15, 16, 17, 3], [2, 9, 9, 3]]


def _model(tiny_encoder, pooling="mean", head="linear", pool_layers=1, layers=2):
    from mlbert.encoders import load_encoder
    from mlbert.model import MultiLabelModel

    torch.manual_seed(0)
    return MultiLabelModel(load_encoder(tiny_encoder), 3, pooling=pooling, head=head, pool_layers=pool_layers).eval()


def test_the_storage_choices_are_the_configs():
    assert set(DTYPES) | {"off"} == set(typing.get_args(FrozenCache))


@pytest.mark.parametrize(
    ("pooling", "head", "pool_layers", "frozen"),
    [("mean", "linear", 1, 1), ("cls", "mlp", 1, 2), ("layers", "mlp", 2, 1), ("max", "label-attention", 1, 1)],
)
def test_logits_from_cached_states_equal_the_full_forward(tiny_encoder, pooling, head, pool_layers, frozen):
    model = _model(tiny_encoder, pooling, head, pool_layers)
    encoded = Encoded(input_ids=[np.array(t) for t in TEXTS], n_truncated=0, pad_id=0)
    batch = collate(encoded, range(len(TEXTS)))
    with torch.no_grad():
        full = model(batch["input_ids"], batch["attention_mask"])
        cache = LayerCache(model, frozen, "fp32", len(TEXTS))
        cache.batch(encoded, [2, 0], torch.device("cpu"))  # some texts cached first, in another batch
        states, mask = cache.batch(encoded, range(len(TEXTS)), torch.device("cpu"))
        cached = model(None, mask, states, frozen)
    assert cache.filled == len(TEXTS)  # each text computed once
    assert torch.equal(mask, batch["attention_mask"])
    torch.testing.assert_close(cached, full, atol=1e-5, rtol=1e-5)


def _fit(tiny_encoder, demo_splits, **extra):
    rows = demo_splits["train"][:64]
    torch.manual_seed(0)
    return MultiLabelClassifier(**tiny_settings(tiny_encoder, epochs=3, freeze_layers=1, **extra)).fit(
        [r["text"] for r in rows], [r["labels"] for r in rows], progress=False
    )


def test_cached_training_gives_the_weights_of_uncached_training(tiny_encoder, demo_splits):
    """Same frozen layer, same seed: with the cache (fp32) and without, every weight after 3 epochs agrees to
    1e-4 (float sums in another order: the cached states are padded with zeros, not with [PAD] states)."""
    uncached = state_dict_cpu(_fit(tiny_encoder, demo_splits, frozen_cache="off").model_)
    cached = state_dict_cpu(_fit(tiny_encoder, demo_splits, frozen_cache="fp32").model_)
    assert uncached.keys() == cached.keys()
    for name in uncached:
        torch.testing.assert_close(cached[name], uncached[name], atol=1e-4, rtol=1e-4, msg=name)
    # and the training really moved the layer above the frozen one
    from mlbert.encoders import load_encoder

    start = load_encoder(tiny_encoder, pretrained=True).state_dict()
    name = "encoder.layer.1.attention.self.query.weight"
    assert not torch.allclose(cached["bert." + name], start[name])


def test_a_cached_run_says_it_cached_and_its_steps_read_the_cache(tmp_path, tiny_encoder, demo_files):
    import json

    from mlbert.cli.jobs import train_job
    from mlbert.config import TrainConfig

    out = tmp_path / "run"
    config = TrainConfig(**tiny_settings(tiny_encoder, epochs=3, freeze_layers=1), time_budget="30s")
    metrics = train_job(config, demo_files["train"], demo_files["dev"], out, progress=False)
    assert metrics["budget"]["seconds_per_cached_step"] > 0  # steps after the first epoch were timed apart
    plans = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert all("seconds_per_cached_step" in e for e in plans if e["event"] == "plan")


def test_the_cache_is_refused_where_it_cannot_be_right_or_cannot_fit(tiny_encoder, monkeypatch):
    lengths = np.array([5, 3, 8])
    layers = _model(tiny_encoder, "layers", "mlp", pool_layers=2)
    assert why_not_cached(layers, 1, "fp16", lengths, 1, False) is None  # layers 1 and 2 read: both above
    assert "inside the frozen part" in why_not_cached(layers, 2, "fp16", lengths, 1, False)
    mean = _model(tiny_encoder)
    assert why_not_cached(mean, 1, "off", lengths, 1, False) == "frozen_cache off"
    assert "several" in why_not_cached(mean, 1, "fp16", lengths, 2, False)
    assert "compiled" in why_not_cached(mean, 1, "fp16", lengths, 1, True)
    assert cache_bytes(lengths, 32, "fp16") == 16 * 32 * 2
    monkeypatch.setattr(layer_cache_mod, "available_memory", lambda: 1000)
    assert "GB are available" in why_not_cached(mean, 1, "fp32", lengths, 1, False)


def test_16_bit_storage_keeps_states_close(tiny_encoder):
    model = _model(tiny_encoder)
    encoded = Encoded(input_ids=[np.array(t) for t in TEXTS], n_truncated=0, pad_id=0)
    full = LayerCache(model, 1, "fp32", len(TEXTS)).batch(encoded, range(4), torch.device("cpu"))[0]
    half = LayerCache(model, 1, "fp16", len(TEXTS))
    assert half.batch(encoded, range(4), torch.device("cpu"))[0].dtype == torch.float32  # computed in fp32
    assert half.states[0].dtype == torch.float16 and half.bytes == cache_bytes(np.array([5, 3, 8, 4]), 32, "fp16")
    torch.testing.assert_close(half.batch(encoded, range(4), torch.device("cpu"))[0], full, atol=1e-2, rtol=1e-3)


def test_a_budgeted_run_that_buys_few_epochs_freezes_after_its_probe_and_saves_the_number(
    tmp_path, tiny_encoder, demo_files, monkeypatch
):
    import json

    from mlbert import pacer as pacer_mod
    from mlbert.cli.jobs import train_job
    from mlbert.config import TrainConfig

    monkeypatch.setattr(pacer_mod, "AUTO_FREEZE_EPOCHS", 1e9)  # whatever the tiny run's speed: "few epochs"
    out = tmp_path / "run"
    config = TrainConfig(**tiny_settings(tiny_encoder, epochs=50), time_budget="8s")
    assert config.freeze_layers == "auto"
    metrics = train_job(config, demo_files["train"], demo_files["dev"], out, progress=False)
    froze = metrics["budget"]["froze"]
    assert froze["layers"] == 1 and froze["step"] == 9  # half of the tiny encoder's 2 layers, after the probe
    events = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [e["layers"] for e in events if e["event"] == "freeze"] == [1]
    assert next(e["step"] for e in events if e["event"] == "plan") > froze["step"]  # planned after a second probe
    assert MultiLabelClassifier.load(out).config.freeze_layers == 1


def test_a_teachers_pass_scores_and_fills_the_cache_of_a_model_sharing_its_frozen_layers(tiny_encoder):
    """LayerCache.fill_scoring (add_labels "distill"): the teacher's probabilities are its own forward's, and the
    states it leaves are those the student's cache would compute itself."""
    import copy

    from mlbert.predict import predict_proba

    teacher = _model(tiny_encoder)
    student = copy.deepcopy(teacher)
    encoded = Encoded(input_ids=[np.array(t) for t in TEXTS], n_truncated=0, pad_id=0)
    cache = LayerCache(student, 1, "fp32", len(TEXTS))
    probs = cache.fill_scoring(teacher, encoded, batch_size=3)
    np.testing.assert_allclose(probs, predict_proba(teacher, encoded, batch_size=3), atol=1e-5)
    assert cache.full and cache.filled == len(TEXTS)
    own = LayerCache(student, 1, "fp32", len(TEXTS))
    for got, want in zip(cache.batch(encoded, range(4), torch.device("cpu")),
                         own.batch(encoded, range(4), torch.device("cpu"))):  # fmt: skip
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_training_from_a_cache_filled_ahead_gives_the_weights_of_filling_it_on_the_way(tiny_encoder, demo_splits):
    """train_model(layer_cache=...): the same weights (1e-4) as the run that computes the frozen layer itself,
    and no step runs the frozen layer (every state came from the cache)."""
    from mlbert.batching import encode
    from mlbert.config import TrainConfig
    from mlbert.data import binarize, label_vocabulary
    from mlbert.encoders import load_tokenizer
    from mlbert.train import train_model

    rows = demo_splits["train"][:48]
    labels = [r["labels"] for r in rows]
    config = TrainConfig(**tiny_settings(tiny_encoder, epochs=2, freeze_layers=1, frozen_cache="fp32"))
    encoded = encode(load_tokenizer(tiny_encoder), [r["text"] for r in rows], config.max_length)
    y, _ = binarize(labels, label_vocabulary(labels))

    def make():
        from mlbert.encoders import load_encoder
        from mlbert.model import MultiLabelModel

        torch.manual_seed(0)
        return MultiLabelModel(load_encoder(tiny_encoder), y.shape[1], pooling="mean", head="linear")

    def run(filled_ahead: bool):
        model, cache = make(), None
        if filled_ahead:
            cache = LayerCache(model, 1, "fp32", len(encoded))
            cache.fill_scoring(make(), encoded)  # a copy of the same frozen layers
            model.lower_states = None  # no step may compute them again
        torch.manual_seed(1)
        result = train_model(model.train(), config, (encoded, y), None, progress=False, layer_cache=cache)
        if filled_ahead:  # its steps were timed and priced (all of one kind: every one read the cache)
            assert result.budget["estimate_s"] > 0
        return result.best_state

    own, ahead = run(False), run(True)
    for name in own:
        torch.testing.assert_close(ahead[name], own[name], atol=1e-4, rtol=1e-4, msg=name)
