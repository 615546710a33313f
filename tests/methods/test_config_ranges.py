"""The Config range convention: metadata declares each field's values, core checks them for
every method (``check_config``) and refuses metadata it cannot read (``PluginError``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import pytest

from condensekit.api import CLASS_SIZE, Method, check_config
from condensekit.data import dataset_info
from condensekit.errors import PluginError, UsageError


@dataclass
class RangedConfig:
    rate: float = field(default=0.1, metadata={"help": "a rate", "min": 0, "min_exclusive": True, "max": 1})
    batch: int = field(default=64, metadata={"help": "a real batch", "min": 1, "max": CLASS_SIZE})
    mode: Literal["a", "b"] = field(default="a", metadata={"help": "a mode"})
    weight: float | None = field(default=None, metadata={"help": "a weight (default: from the data)", "min": 0})


class Ranged(Method):
    name = "ranged"
    version = "0.0.1"
    plugin_api = "1.0"
    Config: ClassVar[type] = RangedConfig


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"rate": 0.0}, r"^--rate must be > 0, got 0\.0$"),
        ({"rate": 1.5}, r"^--rate must be <= 1, got 1\.5$"),
        ({"rate": float("inf")}, r"^--rate must be a finite number, got inf$"),
        ({"rate": "fast"}, r"^--rate must be a finite number, got 'fast'$"),
        ({"batch": 0}, r"^--batch must be >= 1, got 0$"),
        ({"mode": "c"}, r"^--mode must be one of a, b, got 'c'$"),
        ({"weight": -1.0}, r"^--weight must be >= 0, got -1\.0$"),
    ],
)
def test_a_value_outside_the_declared_range_is_one_line(values: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        Ranged.make_config(**values)


def test_unset_values_and_unknown_class_sizes_are_not_checked() -> None:
    config = Ranged.make_config(batch=10**6)  # no dataset: the class size is not known here
    assert config.weight is None
    check_config(config)


def test_class_size_caps_a_default_and_refuses_a_given_value() -> None:
    small = dataclasses.replace(dataset_info("cifar10-mini"), class_sizes=(40, 30, *(200,) * 8))
    assert small.smallest_class == 30
    assert Ranged.configured(small, 1).config.batch == 30  # the default 64, capped
    assert Ranged.configured(small, 1, batch=20).config.batch == 20
    with pytest.raises(UsageError, match=r"^--batch must be <= 30, the train images in the smallest class"):
        Ranged.configured(small, 1, batch=31)


@pytest.mark.parametrize(
    "metadata",
    [{"max": "clas_size"}, {"min": "0"}, {"min_exclusive": "yes"}, {"choices": "ab"}, {"choices": ()}],
)
def test_metadata_core_cannot_read_is_a_plugin_error(metadata: dict[str, Any]) -> None:
    @dataclass
    class BadConfig:
        value: int = field(default=1, metadata={"help": "a value", **metadata})

    class Bad(Ranged):
        Config: ClassVar[type] = BadConfig

    with pytest.raises(PluginError, match=r"BadConfig\.value metadata"):
        Bad.make_config()
