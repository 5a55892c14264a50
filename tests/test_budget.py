"""budget.py: durations and the planner's arithmetic on made-up rates; the budget as a setting and a flag."""

from __future__ import annotations

import pytest

from mlbert.budget import MAX_EVAL_SHARE, MIN_EVALS, format_duration, parse_duration, plan_steps
from mlbert.cli import main
from mlbert.config import TrainConfig
from mlbert.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("20m", 1200), ("1h", 3600), ("1h30m", 5400), ("2.5m", 150), ("45", 45), (600, 600)],
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["20 minutes", "m", "-5m", "1d", "", "h1"])
def test_bad_durations_are_refused(text):
    with pytest.raises(ConfigError, match="time_budget"):
        parse_duration(text)


def test_the_config_takes_a_duration_or_seconds():
    assert TrainConfig(time_budget="20m").time_budget == "20m"
    assert TrainConfig(time_budget=90).time_budget == "90s"  # Python users may pass seconds
    assert TrainConfig(time_budget=0).time_budget == ""
    with pytest.raises(ConfigError, match="not a duration"):
        TrainConfig(time_budget="soon")


def test_a_bad_budget_on_the_command_line_exits_2_with_one_line(tmp_path, demo_files, capsys):
    argv = ["train", "--train", str(demo_files["train"]), "--dev", str(demo_files["dev"]), "--out", str(tmp_path / "r")]
    assert main([*argv, "--time-budget", "20 minutes"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not a duration" in err and "20m" in err
    assert not (tmp_path / "r").exists()


def test_format_duration():
    assert format_duration(19_200) == "5 h 20 min" and format_duration(720) == "12 min"
    assert format_duration(45) == "45 s"


def test_the_plan_fills_the_time_left_and_no_more():
    # 600 s left, 1 s a step, 10 s an evaluation, 30 s after training; 100 steps an epoch.
    plan = plan_steps(600, 1.0, 10.0, 30.0, steps_done=10, steps_per_epoch=100, max_steps=10_000)
    evals = -(-(plan.total_steps - 10) // plan.eval_every)
    used = (plan.total_steps - 10) * 1.0 + evals * 10.0 + 30.0
    assert 0.85 * 600 < used <= 600  # fills the budget, inside it
    assert plan.eval_every <= 100 + 1  # about one evaluation an epoch (5 epochs fit)


def test_the_plan_never_exceeds_the_unbudgeted_run_nor_undoes_steps():
    assert plan_steps(10_000, 0.1, 1.0, 5.0, steps_done=8, steps_per_epoch=50, max_steps=500).total_steps == 500
    assert plan_steps(5, 1.0, 1.0, 30.0, steps_done=8, steps_per_epoch=50, max_steps=500).total_steps == 8


def test_evaluations_stay_a_small_share_but_at_least_a_few():
    short = plan_steps(300, 1.0, 0.5, 10.0, steps_done=8, steps_per_epoch=10_000, max_steps=100_000)
    assert short.total_steps // short.eval_every >= MIN_EVALS - 1  # a run shorter than an epoch still scores dev
    costly = plan_steps(3600, 1.0, 300.0, 10.0, steps_done=8, steps_per_epoch=100, max_steps=100_000)
    n_evals = -(-costly.total_steps // costly.eval_every)
    assert n_evals * 300.0 <= MAX_EVAL_SHARE * 3600 + 300.0


def test_auto_pooling_head_and_label_init_follow_the_budget_and_explicit_settings_win():
    plain = TrainConfig().resolved()
    assert (plain.pooling, plain.head, plain.label_init) == ("cls", "linear", "label-text")
    budgeted = TrainConfig(time_budget="10m").resolved()
    assert (budgeted.pooling, budgeted.head, budgeted.label_init) == ("layers", "mlp", "label-text")
    mine = TrainConfig(time_budget="10m", pooling="cls", head="linear", label_init="random").resolved()
    assert (mine.pooling, mine.head, mine.label_init) == ("cls", "linear", "random")


def test_auto_freezing_is_none_without_a_budget_and_explicit_settings_win():
    assert TrainConfig().resolved().freeze_layers == 0  # no budget: nothing frozen
    assert TrainConfig(time_budget="10m").resolved().freeze_layers == "auto"  # the run decides (test_pacer.py)
    assert TrainConfig(time_budget="10m", freeze_layers=0).resolved().freeze_layers == 0
    assert TrainConfig(freeze_layers=2).resolved().freeze_layers == 2


@pytest.mark.parametrize("bad", [{"freeze_layers": -1}, {"freeze_layers": "3"}, {"freeze_layers": "half"}])
def test_freeze_layers_takes_a_whole_number_or_auto(bad):
    with pytest.raises(ConfigError, match="freeze_layers"):
        TrainConfig(**bad)


def test_the_freeze_layers_flag_takes_a_number_or_auto(capsys):
    from mlbert.cli.commands import build_parser

    parser = build_parser()
    base = ["train", "--train", "t.jsonl", "--out", "o"]
    assert parser.parse_args([*base, "--freeze-layers", "auto"]).freeze_layers == "auto"
    assert parser.parse_args([*base, "--freeze-layers", "2"]).freeze_layers == 2
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args([*base, "--freeze-layers", "half"])
    assert exit_.value.code == 2 and "int or auto" in capsys.readouterr().err


def test_steps_that_read_the_layer_cache_are_priced_at_their_own_rate():
    from mlbert.budget import mean_step_s

    assert mean_step_s(1.0, 0.5, fresh_left=100, steps_left=300) == pytest.approx((100 * 1.0 + 200 * 0.5) / 300)
    assert mean_step_s(1.0, 0.5, fresh_left=0, steps_left=300) == 0.5  # every text cached already
    assert mean_step_s(1.0, 0.5, fresh_left=500, steps_left=300) == 1.0  # the plan ends in the first epoch
    assert mean_step_s(1.0, 0.5, fresh_left=-20, steps_left=0) == 1.0


def test_sample_sizes_take_their_share_and_the_floor_gives_way_for_costly_texts():
    from mlbert.budget import sample_size

    assert sample_size(43_410, 900, 0.08, 0.003, 2000) == 24_000  # short texts: the share buys more than the floor
    assert sample_size(7_000, 600, 0.08, 0.03, 2000) == 2000  # the floor (3,200 would be twice the share)
    assert sample_size(1_000, 600, 0.08, 0.03, 2000) == 1_000  # never more than there are
    assert sample_size(2_000, 600, 0.08, 0.14, 2000) == 685  # long documents: twice the share, not the floor
