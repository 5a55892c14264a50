import json

import pytest

from mlbert.config import TrainConfig
from mlbert.errors import ConfigError


def test_defaults_are_valid_and_round_trip_through_json(tmp_path):
    config = TrainConfig(epochs=2, lr=5e-5, pooling="mean")
    path = tmp_path / "run.json"
    path.write_text(json.dumps(config.to_dict()))
    assert TrainConfig.from_json(path) == config


@pytest.mark.parametrize("bad", [{"epochs": -1}, {"warmup_ratio": 1.0}, {"lr": 0}, {"pooling": "attention"},
                                 {"metric": "accuracy"}, {"dropout": -0.1}, {"label_sep": ""},
                                 {"pos_weight": "yes"}, {"max_length": 4}])
def test_invalid_settings_raise_config_error_naming_the_field(bad):
    with pytest.raises(ConfigError, match=next(iter(bad))):
        TrainConfig(**bad)


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
