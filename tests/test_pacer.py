"""pacer.py: the plan from a fake clock, and budgeted runs on the tiny model that stop at their planned step
with a loadable folder. No test here measures real time."""

from __future__ import annotations

import json
import types

import torch

from helpers import tiny_settings
from mlbert.batching import Encoded
from mlbert.budget import plan_steps
from mlbert.classifier import MultiLabelClassifier
from mlbert.config import TrainConfig


class FakeClock:
    """Advances `tick` seconds at each reading."""

    def __init__(self, tick: float):
        self.now, self.tick = 0.0, tick

    def __call__(self) -> float:
        self.now += self.tick
        return self.now


def test_the_pacer_plans_from_its_clock_after_the_probe(tiny_encoder):
    pacer, _, state = _probe(1000, tiny_encoder, freeze=False)
    assert pacer.plan is not None and state.planned_steps == pacer.total_steps
    # The clock was read at each step's start and (from the second step: the first is not timed) at its end,
    # 17 readings; twice around the inference probe (0.5 s for 4 texts); once to plan: 20 readings, 10 s gone.
    eval_s = 4 * 0.125 * 1.1  # all 4 dev texts (under the sample size), 10 % margin
    after_s = pacer.save_s  # all of dev scored in every evaluation: not again after training, only saving
    assert pacer.plan == plan_steps(600 - 10.0, 0.5, eval_s, after_s, 9, 1000, 100_000)
    assert 1000 < pacer.total_steps < 1140  # 0.95 * (590 - 2) at 0.5 s, less 4 evaluations
    assert pacer.lr_factor(pacer.total_steps) == 0.0 and pacer.lr_factor(pacer.total_steps // 2) > 0


def test_dev_is_priced_after_training_only_where_the_evaluations_scored_a_sample_of_it(tiny_encoder):
    # Evaluations of all of dev hand the best one's probabilities to threshold tuning (train.TrainResult).
    pacer, _, _ = _probe(1000, tiny_encoder, freeze=False)
    whole = pacer._rates()[3]
    pacer.eval_texts = pacer.dev_texts - 1
    assert abs(pacer._rates()[3] - whole - pacer.dev_texts * pacer.predict_text_s * 1.1) < 1e-9


def test_a_budgeted_run_stops_at_its_planned_step_with_a_loadable_folder(tmp_path, tiny_encoder, demo_files):
    from mlbert.cli.jobs import train_job

    out = tmp_path / "run"
    config = TrainConfig(**tiny_settings(tiny_encoder, epochs=50, patience=0), time_budget="6s")
    metrics = train_job(config, demo_files["train"], demo_files["dev"], out, test=demo_files["test"], progress=False)
    budget = metrics["budget"]
    assert budget["budget_s"] == 6 and budget["steps_done"] == budget["planned_steps"] == metrics["steps_run"]
    assert budget["planned_steps"] < 50 * 38  # the plan cut the 50 epochs short
    assert set(metrics["phases"]) >= {"tokenize_train_s", "train_s", "thresholds_s", "score_s", "save_s"}
    events = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert any(e["event"] == "plan" for e in events)
    clf = MultiLabelClassifier.load(out)
    assert clf.predict_proba(["I was charged twice"]).shape == (1, len(clf.labels_))
    # head auto became mlp under the budget; the pooling the settings named (mean) was kept; freeze_layers auto
    # became what the run decided after its probe (the layers frozen, or 0), saved as that number
    assert (clf.config.pooling, clf.config.head) == ("mean", "mlp")
    assert clf.config.freeze_layers == budget["froze"]["layers"]


def test_an_unbudgeted_run_says_how_long_it_will_take(tmp_path, tiny_encoder, demo_files):
    from mlbert.cli.jobs import train_job

    metrics = train_job(
        TrainConfig(**tiny_settings(tiny_encoder)),
        demo_files["train"],
        demo_files["dev"],
        tmp_path / "r",
        progress=False,
    )
    assert metrics["budget"]["estimate_s"] > 0 and "budget_s" not in metrics["budget"]
    assert MultiLabelClassifier.load(tmp_path / "r").config.head == "linear"  # auto without a budget


def test_a_budget_that_buys_too_few_steps_is_said_with_the_budget_for_an_epoch(tiny_encoder):
    # Reuters at 5 min on 2 AMD cores shared with another process: 25 steps, a collapsed model, and a log that
    # blamed the learning rate.
    pacer, _, _ = _probe(900, tiny_encoder, freeze=False, budget="40s")
    assert pacer.total_steps < 100
    assert f"leaves {pacer.total_steps} optimizer steps (0.0" in pacer.too_short
    # One epoch: the 10 s gone, 900 steps at 0.5 s, 4 evaluations of 0.55 s, saving (~1 s) = ~463 s, over
    # budget.FILL (0.95): ~488 s, 8.1 minutes, rounded up.
    assert "About --time-budget 9m buys one epoch" in pacer.too_short
    assert _probe(1000, tiny_encoder, freeze=False)[0].too_short is None  # 10 min: ~1,100 steps
    assert _probe(50, tiny_encoder, freeze=False, budget="40s")[0].too_short is None  # 60 steps are an epoch


def _probe(steps_per_epoch: int, tiny_encoder, freeze: bool = True, cut: list | None = None, budget: str = "10m"):
    """A 10-minute budget (unless `budget`) at a fake 0.5 s a step (the clock is read twice a step), the pacer
    after its probe of PROBE_STEPS + 1 steps -> (pacer, the steps its freeze callback was called at, state).
    With `freeze`, the pacer may freeze layers (freeze_layers auto); with a `cut` list, it may cut the texts
    (max_length auto), and the list gathers the steps it did at."""
    from mlbert.pacer import PROBE_STEPS, Pacer
    from mlbert.train import TrainState

    config = TrainConfig(**tiny_settings(tiny_encoder), time_budget=budget)
    accelerator = types.SimpleNamespace(num_processes=1, device=torch.device("cpu"))
    pacer = Pacer(config, total_steps=100_000, steps_per_epoch=steps_per_epoch, accelerator=accelerator)
    pacer.clock = FakeClock(0.5)
    calls = []

    def frozen(state):
        calls.append(state.global_step)
        state.frozen_layers = 1
        return 1

    def shortened(state):
        cut.append(state.global_step)
        return 128

    pacer.freeze = frozen if freeze else None
    pacer.shorten = shortened if cut is not None else None
    state = TrainState()
    pacer.start(0.0, (ENCODED, None), after_texts=0, threshold_texts=0, state=state)
    _steps(pacer, state, PROBE_STEPS + 1, tiny_encoder)
    return pacer, calls, state


ENCODED = Encoded(input_ids=[[2, 7, 3]] * 4, n_truncated=0, pad_id=0)


def _steps(pacer, state, n: int, tiny_encoder) -> None:
    from mlbert.encoders import load_encoder
    from mlbert.model import MultiLabelModel

    model = MultiLabelModel.from_config(load_encoder(tiny_encoder), 3, pacer.config)
    for _ in range(n):
        pacer.step_begins()
        state.global_step += 1
        pacer.stepped(state, model, (ENCODED, None))


def test_auto_freezing_when_the_budget_buys_few_epochs_then_a_second_probe(tiny_encoder):
    from mlbert.pacer import PROBE_STEPS

    pacer, calls, state = _probe(1000, tiny_encoder)  # ~1,100 steps: 1.1 epochs
    assert calls == [PROBE_STEPS + 1] and pacer.froze["layers"] == 1
    assert 1.0 < pacer.froze["epochs_planned_unfrozen"] < 2.0
    assert pacer.plan is None and pacer.timed_steps == 0  # the frozen steps are timed afresh before planning
    _steps(pacer, state, PROBE_STEPS, tiny_encoder)
    assert pacer.plan is not None and calls == [PROBE_STEPS + 1]  # planned, and frozen once only


def test_no_freezing_when_the_budget_buys_epochs_enough(tiny_encoder):
    pacer, calls, _ = _probe(100, tiny_encoder)  # the same ~1,100 steps are 11 epochs
    assert calls == [] and pacer.froze["layers"] == 0 and pacer.plan is not None
    assert pacer.froze["epochs_planned_unfrozen"] > 10


def test_inference_is_timed_again_half_way_when_no_evaluation_has_timed_it(tiny_encoder):
    """A plan priced from a probe that under-rated inference (here: 0.01 s a text against the 0.125 the clock
    gives) is corrected half-way, once, before the scoring after training is due."""
    from mlbert.encoders import load_encoder
    from mlbert.model import MultiLabelModel

    pacer, _, state = _probe(100_000, tiny_encoder, freeze=False)  # one evaluation, at the plan's end
    pacer.predict_text_s = 0.01
    pacer._replan(state)
    planned = pacer.total_steps
    model = MultiLabelModel.from_config(load_encoder(tiny_encoder), 3, pacer.config)
    while pacer.retimed is None and state.global_step < planned:
        total_before = pacer.total_steps  # later plans move the last step, and with it half-way
        pacer.step_begins()
        state.global_step += 1
        pacer.stepped(state, model, (ENCODED, None))
    assert pacer.retimed == {"step": state.global_step, "seconds_per_text": 0.125, "probe_seconds_per_text": 0.01}
    assert total_before // 2 <= state.global_step <= total_before // 2 + 1
    assert pacer.predict_text_s == 0.125 and pacer.total_steps < total_before  # after-training work priced higher
    _steps(pacer, state, 20, tiny_encoder)
    assert pacer.retimed["step"] == state.global_step - 20  # once only
    assert pacer.summary(state)["inference_retimed"] == pacer.retimed


def test_no_second_timing_when_an_evaluation_timed_inference(tiny_encoder):
    pacer, _, state = _probe(100_000, tiny_encoder, freeze=False)
    pacer.evaluated(state, 0.5)  # a dev evaluation measured inference on the texts it scored
    _steps(pacer, state, pacer.total_steps // 2 + 5 - state.global_step, tiny_encoder)
    assert pacer.retimed is None


def test_texts_read_in_windows_are_timed_by_their_windows(tiny_encoder, monkeypatch):
    """256 long documents of 5 windows would be 1,280 windows to time: the probe takes 256 windows' worth."""
    import numpy as np

    from mlbert import pacer as pacer_mod
    from mlbert.pacer import Pacer

    timed = []
    monkeypatch.setattr(pacer_mod, "predict_proba", lambda model, enc, *a, **k: timed.append(len(enc.input_ids)))
    config = TrainConfig(**tiny_settings(tiny_encoder), time_budget="10m")
    pacer = Pacer(config, 1000, 100, types.SimpleNamespace(num_processes=1, device=torch.device("cpu")))
    chunked = Encoded(input_ids=[[2, 7, 3]] * 500, n_truncated=0, pad_id=0, starts=np.arange(0, 501, 5))
    model = torch.nn.Linear(1, 1)
    pacer._time_inference(model, chunked)
    pacer._time_inference(model, chunked, 64)
    pacer._time_inference(model, ENCODED)  # not chunked: texts, all 4 of them
    assert timed == [51 * 5, 16 * 5, 4]  # 256 windows' worth of texts; at least 16 texts


def test_inference_is_priced_per_padded_token_at_the_mean_texts_length(tiny_encoder, monkeypatch):
    """64 texts are one batch padded to its longest; thousands sorted by length are not: a small sample is
    timed per padded token and priced at the mean text (on Reuters, per text, it priced inference 60 % high)."""
    from mlbert import pacer as pacer_mod
    from mlbert.pacer import Pacer

    monkeypatch.setattr(pacer_mod, "predict_proba", lambda *a, **k: None)
    config = TrainConfig(**tiny_settings(tiny_encoder, eval_batch_size=64), time_budget="10m")
    pacer = Pacer(config, 1000, 100, types.SimpleNamespace(num_processes=1, device=torch.device("cpu")))
    pacer.clock = FakeClock(1.0)  # the timed prediction takes 1 s
    texts = Encoded(input_ids=[[2] * (10 if i % 2 else 100) for i in range(400)], n_truncated=0, pad_id=0)
    per_text = pacer._time_inference(torch.nn.Linear(1, 1), texts, 64)
    assert abs(per_text - 1.0 / (64 * 100) * 55) < 1e-12  # 1 s for 6,400 padded tokens; 55 tokens a text
    assert per_text < 1.0 / 64  # what timing per text would say


def test_texts_are_cut_when_the_plan_covers_less_than_an_epoch_then_a_new_probe(tiny_encoder):
    from mlbert.pacer import PROBE_STEPS

    cut: list[int] = []
    pacer, _, state = _probe(2000, tiny_encoder, freeze=False, cut=cut)  # ~1,100 steps: 0.55 epochs
    assert cut == [PROBE_STEPS + 1] and pacer.cut["max_length"] == 128
    assert 0.5 < pacer.cut["epochs_planned_uncut"] < 0.6
    assert pacer.plan is None and pacer.timed_steps == 0  # the shorter steps are timed afresh
    _steps(pacer, state, PROBE_STEPS, tiny_encoder)
    assert pacer.plan is not None and cut == [PROBE_STEPS + 1]
    assert pacer.summary(state)["cut"]["max_length"] == 128


def test_freezing_first_then_cutting_each_after_its_own_probe(tiny_encoder):
    from mlbert.pacer import PROBE_STEPS

    cut: list[int] = []
    pacer, frozen, state = _probe(2000, tiny_encoder, cut=cut)
    assert frozen == [PROBE_STEPS + 1] and cut == []  # the freezing decision comes first
    _steps(pacer, state, PROBE_STEPS, tiny_encoder)
    assert cut == [2 * PROBE_STEPS + 1] and pacer.plan is None
    _steps(pacer, state, PROBE_STEPS, tiny_encoder)
    assert pacer.plan is not None and frozen == [PROBE_STEPS + 1] and cut == [2 * PROBE_STEPS + 1]


def test_no_cut_when_the_budget_buys_an_epoch(tiny_encoder):
    cut: list[int] = []
    pacer, _, _ = _probe(1000, tiny_encoder, freeze=False, cut=cut)  # 1.1 epochs
    assert cut == [] and pacer.cut["max_length"] == 0 and pacer.plan is not None


def test_a_budgeted_run_cuts_long_texts_and_saves_the_length_it_trained_at(tmp_path, tiny_encoder, monkeypatch):
    """max_length auto end to end on the tiny model: the pacer is told every plan is short (the tiny model is
    fast), the texts (most longer than the cut) are cut to half of auto's length after the probe, dev too, and
    the folder saves that length, so that predicting reads what training read. (Auto's length is 96 here, not
    256: the tiny encoder has 128 positions.)"""
    from helpers import write_jsonl
    from mlbert import classifier, config, pacer
    from mlbert.cli.jobs import train_job

    monkeypatch.setattr(pacer, "AUTO_SHORTEN_EPOCHS", 1e9)
    monkeypatch.setattr(config, "AUTO_MAX_LENGTH", 96)
    monkeypatch.setattr(classifier, "AUTO_MAX_LENGTH", 96)
    words = ["refund", "charged", "twice", "shipping", "late", "parcel", "crash", "login", "error"]
    rows = [{"text": " ".join(words[(i + k) % 9] for k in range(40 + (i % 40))),
             "labels": [words[i % 9], words[(i + 4) % 9]]} for i in range(120)]  # fmt: skip
    write_jsonl(tmp_path / "train.jsonl", rows[:90])
    write_jsonl(tmp_path / "dev.jsonl", rows[90:])
    settings = {**tiny_settings(tiny_encoder, epochs=500), "max_length": "auto"}  # more than 20 s buy
    config = TrainConfig(**settings, time_budget="20s")
    out = tmp_path / "run"
    metrics = train_job(config, tmp_path / "train.jsonl", tmp_path / "dev.jsonl", out, progress=False)
    assert metrics["budget"]["cut"]["max_length"] == 48
    events = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [e["max_length"] for e in events if e["event"] == "cut"] == [48]
    clf = MultiLabelClassifier.load(out)
    assert clf.config.max_length == 48
    assert metrics["truncated"]["train"] > 0.5 and metrics["truncated"]["dev"] > 0.5
    assert clf.predict_proba([rows[0]["text"]]).shape == (1, len(clf.labels_))
