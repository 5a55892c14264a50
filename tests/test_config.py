import dataclasses
import json
import re

import pytest

from mlbert.config import (
    BACKENDS,
    HEADS,
    POOLINGS,
    PRECISIONS,
    THRESHOLD_MODES,
    PretrainConfig,
    TrainConfig,
    field_choices,
)
from mlbert.errors import ConfigError


def test_defaults_are_valid_and_round_trip_through_json(tmp_path):
    config = TrainConfig(epochs=2, lr=5e-5, pooling="mean")
    path = tmp_path / "run.json"
    path.write_text(json.dumps(config.to_dict()))
    assert TrainConfig.from_json(path) == config


@pytest.mark.parametrize(
    "bad",
    [
        {"epochs": -1},
        {"warmup_ratio": 1.0},
        {"lr": 0},
        {"pooling": "attention"},
        {"metric": "accuracy"},
        {"dropout": -0.1},
        {"label_sep": ""},
        {"pos_weight": "yes"},
        {"max_length": 4},
        {"max_length": "long"},
    ],
)
def test_invalid_settings_raise_config_error_naming_the_field(bad):
    with pytest.raises(ConfigError, match=next(iter(bad))):
        TrainConfig(**bad)


def test_max_length_auto_resolves_to_256_with_or_without_a_budget():
    # a budgeted run may halve it later (pacer.py); what a model is built and saved with is a number
    assert TrainConfig().resolved().max_length == 256
    assert TrainConfig(time_budget="5m").resolved().max_length == 256
    assert TrainConfig(max_length=64, time_budget="5m").resolved().max_length == 64


def test_max_length_auto_stays_within_what_the_encoder_reads():
    assert TrainConfig().resolved(positions=128).max_length == 128  # a 128-position encoder
    assert TrainConfig().resolved(positions=512).max_length == 256
    assert TrainConfig(max_length=64).resolved(positions=128).max_length == 64


def test_unknown_keys_in_a_config_file_are_named(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"epochs": 2, "learning_rate": 1e-4}))
    with pytest.raises(ConfigError, match="learning_rate"):
        TrainConfig.from_json(path)


def test_config_file_that_is_not_json_is_a_config_error(tmp_path):
    path = tmp_path / "run.json"
    path.write_text("epochs: 2")
    with pytest.raises(ConfigError, match="not valid JSON"):
        TrainConfig.from_json(path)


# -- every choice comes from the config's Literal types ------------------------------------------------
CHOICE_FIELDS = [(cls, name) for cls in (TrainConfig, PretrainConfig) for name in field_choices(cls)]


def test_every_literal_setting_is_found():
    # precision and threshold_data were missed by a hand-written table before (accepted anything).
    assert {"pooling", "head", "precision", "loss", "pos_weight", "metric", "threshold_mode", "threshold_data"} <= set(
        field_choices(TrainConfig)
    )


@pytest.mark.parametrize("cls, name", CHOICE_FIELDS, ids=[f"{c.__name__}.{n}" for c, n in CHOICE_FIELDS])
def test_a_value_outside_the_choices_is_refused_naming_them(cls, name):
    choices = field_choices(cls)[name]
    assert getattr(cls(), name) in choices  # the default is one of them
    with pytest.raises(ConfigError, match=re.escape(f"{name} must be one of {', '.join(choices)}")):
        cls(**{name: "no-such-choice"})


def test_precision_and_threshold_data_typos_are_refused():
    with pytest.raises(ConfigError, match="precision"):
        TrainConfig(precision="fp16")
    with pytest.raises(ConfigError, match="threshold_data"):
        TrainConfig(threshold_data="train")


@pytest.mark.parametrize(
    "bad", [{"epochs": "3"}, {"epochs": 2.5}, {"token_cache": 1}, {"lr": "1e-4"}, {"compile": "yes"}, {"seed": True}]
)
def test_values_of_the_wrong_kind_are_refused(bad):
    with pytest.raises(ConfigError, match=next(iter(bad))):
        TrainConfig(**bad)


def test_whole_numbers_are_accepted_where_numbers_are_expected():
    assert TrainConfig(lr=1, dropout=0).lr == 1


@pytest.mark.parametrize(
    "bad", [{"whole_word_mask": "no"}, {"mlm_probability": 1.5}, {"max_length": 0}, {"warmup_ratio": 1.0}]
)
def test_pretrain_settings_are_checked_too(bad):
    with pytest.raises(ConfigError, match=next(iter(bad))):
        PretrainConfig(**bad)


def test_pretrain_config_round_trips_and_names_unknown_keys(tmp_path):
    path = tmp_path / "pre.json"
    path.write_text(json.dumps({**PretrainConfig(epochs=3).to_dict()}))
    assert PretrainConfig.from_json(path) == PretrainConfig(epochs=3)
    with pytest.raises(ConfigError, match="mask_rate"):
        PretrainConfig.from_dict({"mask_rate": 0.2})


def test_every_setting_has_help():
    for cls in (TrainConfig, PretrainConfig):
        for f in dataclasses.fields(cls):
            assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help text"


def test_the_modules_take_their_choices_from_the_config():
    from mlbert.cli.display import MODE_TITLES
    from mlbert.heads import HEAD_BUILDERS, TOKEN_HEADS
    from mlbert.model import POOLINGS as MODEL_POOLINGS
    from mlbert.predict import PRECISIONS as INFERENCE_PRECISIONS
    from mlbert.report.page import MODES as REPORT_MODES

    assert set(MODE_TITLES) == set(THRESHOLD_MODES)
    assert tuple(mode for mode, _ in REPORT_MODES) == THRESHOLD_MODES
    assert set(TOKEN_HEADS) <= set(HEADS)
    # heads.py and model.py travel into model folders without config.py, so they name what they build:
    assert tuple(HEAD_BUILDERS) == HEADS and MODEL_POOLINGS == POOLINGS
    assert set(INFERENCE_PRECISIONS) == set(PRECISIONS) - {"auto"}
    assert BACKENDS[0] == "torch" and "auto" in BACKENDS
