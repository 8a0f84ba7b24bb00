import pytest

from core.config import DataConfig
from core.errors import ConfigError


def test_defaults_are_valid_and_offline():
    config = DataConfig()
    assert config.source == "demo" and config.kind == "demo"


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"max_train_images": 0}, ["Training images", "between 1", "got 0"]),
        ({"test_fraction": 1.5}, ["Test fraction", "0.05", "0.9", "1.5"]),
        ({"source": "imagenet"}, ["imagenet", "not understood", "folder:"]),
        ({"source": "folder:"}, ["not understood"]),
        ({"seed": "seven"}, ["Data seed", "number"]),
        ({"test_fraction": float("nan")}, ["Test fraction", "finite"]),
    ],
)
def test_bad_values_are_refused_with_a_message_naming_field_value_and_range(changes, words):
    with pytest.raises(ConfigError) as error:
        DataConfig(**changes)
    for word in words:
        assert word in str(error.value)


def test_json_round_trip_keeps_every_field():
    config = DataConfig(source="folder:/tmp/dogs", max_train_images=100, test_fraction=0.3, seed=4)
    assert DataConfig.from_json(config.to_json()) == config


def test_unknown_keys_in_json_are_refused():
    with pytest.raises(ConfigError, match="colour"):
        DataConfig.from_dict({"source": "demo", "colour": "red"})


def test_source_parts():
    config = DataConfig(source="tfds:stanford_dogs")
    assert (config.kind, config.location) == ("tfds", "stanford_dogs")
