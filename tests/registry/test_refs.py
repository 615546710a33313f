"""Reference parsing, name validation and error hints."""

from __future__ import annotations

import pytest

from condensekit.errors import RegistryError
from condensekit.registry.refs import Ref, closest, default_name, parse_ref, validate_alias, validate_name


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("dm-cifar10-ipc10", Ref("dm-cifar10-ipc10")),
        ("dm-cifar10-ipc10:v3", Ref("dm-cifar10-ipc10", version=3)),
        ("dm-cifar10-ipc10:latest", Ref("dm-cifar10-ipc10", alias="latest")),
        ("my_set.1:paper", Ref("my_set.1", alias="paper")),
    ],
)
def test_parse_ref_forms(text: str, expected: Ref) -> None:
    assert parse_ref(text) == expected


def test_bare_name_and_latest_both_mean_latest() -> None:
    assert parse_ref("a").is_latest and parse_ref("a:latest").is_latest
    assert not parse_ref("a:v1").is_latest and not parse_ref("a:best").is_latest


@pytest.mark.parametrize("bad", ["", "has space", "a/b", "-leading", "ünïcode", "x" * 129, "a:b:c"])
def test_invalid_names_are_rejected_with_the_rule(bad: str) -> None:
    with pytest.raises(RegistryError, match=r"invalid (name|alias)"):
        parse_ref(bad)


def test_empty_selector_is_rejected() -> None:
    with pytest.raises(RegistryError, match="expected name, name:vN"):
        parse_ref("name:")


@pytest.mark.parametrize("reserved", ["latest", "v1", "v42"])
def test_reserved_aliases_are_rejected(reserved: str) -> None:
    with pytest.raises(RegistryError, match="reserved"):
        validate_alias(reserved)


def test_valid_alias_passes() -> None:
    assert validate_alias("best-ap50") == "best-ap50"
    assert validate_name("v1.final") == "v1.final"


def test_default_name_sanitizes_backbone_names() -> None:
    assert default_name("cifar10", "timm:resnet18", None) == "cifar10-timm-resnet18"
    assert default_name("dm", "cifar10", "ipc10") == "dm-cifar10-ipc10"


def test_closest_names_hint() -> None:
    hint = closest("dm-cifar10-ipc1", ["dm-cifar10-ipc10", "dance-imagenette-ipc10", "zzz"])
    assert hint.startswith("closest: dm-cifar10-ipc10")
    assert closest("x", []) == "no set stored in this registry"
    assert closest("x", [], "experts") == "no experts stored in this registry"
