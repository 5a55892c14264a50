import json
import shutil

import numpy as np
import pytest
import torch

from helpers import tiny_settings
from mlbert.batching import encode
from mlbert.config import TrainConfig
from mlbert.data import binarize, label_vocabulary
from mlbert.encoders import load_encoder, load_tokenizer
from mlbert.errors import ConfigError
from mlbert.model import MultiLabelModel
from mlbert.train import (
    AUTO_EPOCH_STEPS,
    MAX_AUTO_EPOCHS,
    TrainState,
    judge_epoch,
    planned_epochs,
    stop_reason,
    train_model,
)


class Interrupt(Exception):
    pass


def _setup(tiny_encoder, demo_splits, **extra):
    config = TrainConfig(**tiny_settings(tiny_encoder, **extra))
    tok = load_tokenizer(tiny_encoder)
    train, dev = demo_splits["train"], demo_splits["dev"]
    vocab = label_vocabulary(r["labels"] for r in train)
    data = (
        encode(tok, [r["text"] for r in train], config.max_length),
        binarize([r["labels"] for r in train], vocab)[0],
    )
    dev_data = (
        encode(tok, [r["text"] for r in dev], config.max_length),
        binarize([r["labels"] for r in dev], vocab)[0],
    )
    torch.manual_seed(config.seed)
    model = MultiLabelModel(load_encoder(tiny_encoder), len(vocab))
    return config, model, data, dev_data


def test_training_lowers_the_loss_and_keeps_the_best_epoch(tiny_encoder, demo_splits, tmp_path):
    config, model, data, dev = _setup(tiny_encoder, demo_splits, epochs=3)
    result = train_model(model, config, data, dev, out_dir=tmp_path, progress=False)
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < losses[0] * 0.8
    scores = [h["score"] for h in result.history]
    assert result.best_epoch == int(np.argmax(scores)) + 1
    assert scores[result.best_epoch - 1] > 0.3  # learned something, not the label prior
    events = [json.loads(line)["event"] for line in (tmp_path / "train_log.jsonl").open()]
    assert events[0] == "start" and events.count("epoch") == 3 and events[-1] == "end"


def test_the_best_evaluations_dev_probabilities_come_back_with_its_weights(tiny_encoder, demo_splits):
    # The classifier tunes its thresholds on them instead of scoring dev a second time.
    from mlbert.predict import predict_proba_all

    config, model, data, dev = _setup(tiny_encoder, demo_splits, epochs=3)
    result = train_model(model, config, data, dev, progress=False)
    assert result.dev_probs is not None and result.dev_probs.shape == dev[1].shape
    model.load_state_dict(result.best_state)
    model.eval()
    np.testing.assert_allclose(result.dev_probs, predict_proba_all(model, dev[0], config.eval_batch_size), atol=1e-6)
    assert train_model(model, config, data, None, progress=False).dev_probs is None


def test_early_stopping_stops_when_dev_stops_improving(tiny_encoder, demo_splits):
    # A learning rate of ~0 leaves dev frozen, so every epoch after the first fails to improve.
    config, model, data, dev = _setup(tiny_encoder, demo_splits, epochs=5, patience=1, lr=1e-12, head_lr=1e-12)
    result = train_model(model, config, data, dev, progress=False)
    assert result.stopped_early and len(result.history) == 2


def test_auto_epochs_aim_at_a_step_budget():
    assert planned_epochs(3, 10) == 3  # asked for: kept
    assert planned_epochs(0, 2714) == 4  # GoEmotions, batch 16
    assert planned_epochs(0, 439) == MAX_AUTO_EPOCHS  # Reuters, batch 16 (23 wanted)
    assert planned_epochs(0, AUTO_EPOCH_STEPS * 5) == 1  # large data: one pass at least
    assert planned_epochs(0, 0) == MAX_AUTO_EPOCHS


def test_auto_epochs_run_in_the_loop(tiny_encoder, demo_splits, tmp_path):
    # 0 (the default) resolves from the steps per epoch; the log says what it became.
    config, model, data, dev = _setup(tiny_encoder, demo_splits, epochs=0, max_steps=3)
    result = train_model(model, config, data, dev, out_dir=tmp_path, progress=False)
    start = json.loads((tmp_path / "train_log.jsonl").open().readline())
    n_steps = start["steps_per_epoch"]
    assert start["epochs"] == planned_epochs(0, n_steps) == min(MAX_AUTO_EPOCHS, -(-AUTO_EPOCH_STEPS // n_steps))
    assert len(result.history) == 1 and result.stopped_early  # max_steps still ends it


def test_gradient_accumulation_takes_one_optimizer_step_per_group(tiny_encoder, demo_splits, tmp_path):
    a_cfg, a, data, _ = _setup(tiny_encoder, demo_splits, epochs=1, batch_size=16)
    a_res = train_model(a, a_cfg, data, None, progress=False)
    b_cfg, b, data, _ = _setup(tiny_encoder, demo_splits, epochs=1, batch_size=8, grad_accum=2)
    b_res = train_model(b, b_cfg, data, None, out_dir=tmp_path, progress=False)
    n = len(data[0])
    assert a_res.history[0]["step"] == -(-n // 16)
    assert b_res.history[0]["step"] == -(-(-(-n // 8)) // 2)  # noqa: B002 - ceiling divisions
    logged = [json.loads(line) for line in (tmp_path / "train_log.jsonl").open()]
    assert logged[0]["steps_per_epoch"] == b_res.history[0]["step"]


def test_interrupted_run_resumes_to_the_same_weights(tiny_encoder, demo_splits, tmp_path):
    config, model, data, dev = _setup(tiny_encoder, demo_splits, epochs=3, save_steps=5)
    straight = train_model(model, config, data, dev, out_dir=tmp_path / "a", progress=False)

    def stop_after_first_epoch(record):
        if record["epoch"] == 2:
            raise Interrupt

    config, model, data, dev = _setup(tiny_encoder, demo_splits, epochs=3, save_steps=5)
    with pytest.raises(Interrupt):
        train_model(model, config, data, dev, out_dir=tmp_path / "b", progress=False, on_epoch=stop_after_first_epoch)
    state = json.loads((tmp_path / "b" / "checkpoints" / "last" / "state.json").read_text())
    assert state["epoch"] == 1 and state["batches_done"] > 0  # the resume starts inside epoch 2
    config, model, data, dev = _setup(tiny_encoder, demo_splits, epochs=3, save_steps=5)
    resumed = train_model(model, config, data, dev, out_dir=tmp_path / "b", resume=True, progress=False)
    # A resumed epoch reports the loss of all its batches, not only those after the resume (issue 22).
    assert [h["train_loss"] for h in resumed.history] == pytest.approx(
        [h["train_loss"] for h in straight.history], abs=1e-5
    )
    assert resumed.best_epoch == straight.best_epoch
    assert [h["score"] for h in resumed.history] == pytest.approx([h["score"] for h in straight.history], abs=1e-6)
    for k, v in straight.best_state.items():
        torch.testing.assert_close(resumed.best_state[k], v, atol=1e-6, rtol=0)


def test_a_resumed_run_cuts_its_texts_as_the_interrupted_one_did(tiny_encoder, demo_splits, tmp_path, monkeypatch):
    """max_length auto under a budget: the interrupted run cut its texts after its probe; the resumed one reads
    the same files uncut, and must cut them before its first step (and say so in its result)."""
    from mlbert import pacer

    monkeypatch.setattr(pacer, "AUTO_SHORTEN_EPOCHS", 1e9)  # every plan is "short": the run cuts
    settings = {"epochs": 500, "save_steps": 5, "time_budget": "10s", "freeze_layers": 0}

    def stop_after_first_epoch(record):
        if record["epoch"] == 1:
            raise Interrupt

    config, model, data, dev = _setup(tiny_encoder, demo_splits, **settings)
    assert (data[0].lengths > 24).mean() > 0.1
    with pytest.raises(Interrupt):
        train_model(model, config, data, dev, out_dir=tmp_path, progress=False, on_epoch=stop_after_first_epoch,
                    cut_to=24)  # fmt: skip
    assert json.loads((tmp_path / "checkpoints" / "last" / "state.json").read_text())["cut_to"] == 24
    config, model, data, dev = _setup(tiny_encoder, demo_splits, **settings)
    resumed = train_model(model, config, data, dev, out_dir=tmp_path, resume=True, progress=False, cut_to=24)
    assert resumed.max_length == 24
    assert data[0].lengths.max() <= 24 and dev[0].lengths.max() <= 24


def test_checkpoints_carry_the_gpu_random_streams(monkeypatch, tmp_path):
    """On a GPU dropout draws from CUDA's generator: a resumed run must continue that stream too."""
    from mlbert.checkpoint import read_checkpoint, restore_rng, rng_state, write_checkpoint

    gpu_state = [torch.arange(16, dtype=torch.uint8)]
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: gpu_state)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", restored.append)
    write_checkpoint(tmp_path / "last", {"w": torch.zeros(1)}, {"step": 1}, {"optimizer": {}, **rng_state()})
    _, _, opt_state = read_checkpoint(tmp_path / "last")  # through torch.load(weights_only=True)
    restore_rng(opt_state)
    assert len(restored) == 1 and torch.equal(restored[0][0], gpu_state[0])
    restore_rng({"rng": torch.get_rng_state()})  # a checkpoint from before: the CPU stream only
    assert len(restored) == 1


def test_resume_refuses_changed_settings(tiny_encoder, demo_splits, tmp_path):
    config, model, data, dev = _setup(tiny_encoder, demo_splits, epochs=1)
    train_model(model, config, data, dev, out_dir=tmp_path, progress=False)
    config, model, data, dev = _setup(tiny_encoder, demo_splits, epochs=1, lr=1e-3)
    with pytest.raises(ConfigError, match="settings differ.*lr"):
        train_model(model, config, data, dev, out_dir=tmp_path, resume=True, progress=False)


def test_judge_epoch_keeps_the_best_and_counts_the_epochs_since():
    state = TrainState()
    assert [judge_epoch(state, score, epoch) for epoch, score in enumerate([0.5, 0.6, 0.6, 0.55, 0.7], 1)] == [
        True,
        True,
        False,
        False,
        True,
    ]
    assert (state.best_epoch, state.best_score, state.bad_epochs) == (5, 0.7, 0)
    judge_epoch(state, 0.1, 6)
    assert state.bad_epochs == 1 and state.best_epoch == 5


def test_stop_reason_names_patience_and_max_steps_but_not_the_planned_end():
    config = TrainConfig(patience=2, max_steps=100)
    assert stop_reason(TrainState(epoch=3, bad_epochs=2), config, epochs=10, has_dev=True).startswith("stopping early")
    assert (
        stop_reason(TrainState(epoch=3, bad_epochs=2), config, epochs=10, has_dev=False) is None
    )  # no dev, no patience
    assert "max_steps" in stop_reason(TrainState(epoch=3, global_step=100), config, epochs=10, has_dev=True)
    assert stop_reason(TrainState(epoch=10, bad_epochs=5, global_step=100), config, epochs=10, has_dev=True) is None
    assert stop_reason(TrainState(epoch=3, bad_epochs=9), TrainConfig(patience=0), epochs=10, has_dev=True) is None


def test_train_state_reads_the_checkpoint_shape_it_writes(tiny_encoder, demo_splits, tmp_path):
    config, model, data, dev = _setup(tiny_encoder, demo_splits, epochs=1, save_steps=0)
    train_model(model, config, data, dev, out_dir=tmp_path, progress=False)
    saved = json.loads((tmp_path / "checkpoints" / "last" / "state.json").read_text())
    state = TrainState.from_dict(saved)  # config and fingerprint ride along in the file; the state ignores them
    assert state.epoch == 1 and state.global_step == saved["global_step"] > 0 and len(state.history) == 1


@pytest.mark.skipif(shutil.which("g++") is None, reason="torch.compile on CPU needs a C++ compiler")
def test_compiled_training_follows_the_eager_run(tiny_encoder, demo_splits):
    # The same seed, data and steps: compiling changes the speed, not what is learned (up to rounding).
    # Dropout off: compiled code draws its random masks from another generator than eager code.
    runs = []
    for compiled in (False, True):
        config, model, data, dev = _setup(
            tiny_encoder, demo_splits, epochs=1, max_steps=4, compile=compiled, dropout=0.0
        )
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
        runs.append(train_model(model, config, data, dev, progress=False))
    eager, compiled = runs
    assert compiled.history[0]["train_loss"] == pytest.approx(eager.history[0]["train_loss"], rel=1e-3)
    for name, value in eager.best_state.items():
        assert torch.allclose(compiled.best_state[name], value, atol=1e-4), name


def test_one_progress_bar_covers_the_whole_run(tiny_encoder, demo_splits, monkeypatch):
    # Issue 21: a bar per epoch gave the ETA of the epoch, not of the run.
    import mlbert.train as train_module

    bars = []

    class Bar:
        def __init__(self, total, initial=0, **_):
            self.total, self.disable = total, False
            bars.append(self)

        def set_description(self, _):
            pass

        def update(self, _):
            pass

        def set_postfix(self, **_):
            pass

        def close(self):
            pass

    monkeypatch.setattr(train_module, "tqdm", Bar)
    monkeypatch.setattr(train_module, "show_progress", lambda wanted: wanted)
    config, model, data, dev = _setup(tiny_encoder, demo_splits, epochs=2)
    train_model(model, config, data, dev, progress=True)
    assert len(bars) == 1 and bars[0].total == 2 * -(-len(data[0]) // config.batch_size)
