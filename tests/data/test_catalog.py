"""Dataset names resolve to specs with the standard facts; unknown or absent ones fail in one line."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from condensekit import plugins
from condensekit.data import DatasetSpec, dataset_info, default_backbone, describe_datasets, get_spec, load_dataset
from condensekit.errors import DatasetError, ExitStatus, UsageError

BUILTINS = {
    # name: (classes, channels, default resolution, default backbone)
    "cifar10": (10, 3, 32, "convnet"),
    "cifar100": (100, 3, 32, "convnet"),
    "mnist": (10, 1, 28, "convnet"),
    "fashion-mnist": (10, 1, 28, "convnet"),
    "svhn": (10, 3, 32, "convnet"),
    "imagenette": (10, 3, 128, "convnetd5"),
    "imagewoof": (10, 3, 128, "convnetd5"),
    "tinyimagenet": (200, 3, 64, "convnetd4"),
    "cifar10-mini": (10, 3, 32, "convnet"),
}


def _offline() -> None:
    """Skip when a download could succeed: the missing-dataset path is the offline one."""
    try:
        socket.getaddrinfo("www.cs.toronto.edu", 443)
    except OSError:
        return
    pytest.skip("the network is reachable, so an absent dataset would be downloaded, not reported")


def test_every_builtin_is_registered_as_a_spec() -> None:
    assert set(BUILTINS) <= set(plugins.names("dataset"))
    for name in BUILTINS:
        spec = get_spec(name)
        assert isinstance(spec, DatasetSpec) and spec.name == name


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_dataset_info_has_the_standard_facts(name: str) -> None:
    classes, channels, resolution, backbone = BUILTINS[name]
    info = dataset_info(name)
    assert (info.num_classes, info.channels, info.resolution, info.default_backbone) == (
        classes,
        channels,
        resolution,
        backbone,
    )
    assert len(info.class_names) == len(set(info.class_names)) == classes
    assert len(info.mean) == len(info.std) == channels
    assert all(0 < m < 1 and 0 < s < 1 for m, s in zip(info.mean, info.std, strict=True))


def test_standard_normalizations_and_class_names() -> None:
    cifar = dataset_info("cifar10")
    assert cifar.mean == (0.4914, 0.4822, 0.4465) and cifar.std == (0.2023, 0.1994, 0.2010)
    assert cifar.class_names[0] == "airplane" and cifar.class_names[9] == "truck"
    assert dataset_info("cifar10-mini").mean == cifar.mean
    assert dataset_info("mnist").mean == (0.1307,) and dataset_info("fashion-mnist").std == (0.3530,)
    nette = dataset_info("imagenette")
    assert nette.mean == (0.485, 0.456, 0.406) and nette.std == (0.229, 0.224, 0.225)
    assert nette.class_names == (
        "tench",
        "English springer",
        "cassette player",
        "chain saw",
        "church",
        "French horn",
        "garbage truck",
        "gas pump",
        "golf ball",
        "parachute",
    )
    assert dataset_info("cifar100").class_names[:3] == ("apple", "aquarium_fish", "baby")
    assert list(dataset_info("tinyimagenet").class_names) == sorted(dataset_info("tinyimagenet").class_names)


def test_resolution_override_picks_the_backbone_depth() -> None:
    assert dataset_info("imagenette", resolution=64).resolution == 64
    assert dataset_info("imagenette", resolution=64).default_backbone == "convnetd4"
    assert dataset_info("cifar10", resolution=128).default_backbone == "convnetd5"
    assert [default_backbone(r) for r in (28, 32, 64, 128, 256)] == [
        "convnet",
        "convnet",
        "convnetd4",
        "convnetd5",
        "convnetd6",
    ]


def test_unknown_name_is_a_one_line_dataset_error_with_close_names() -> None:
    with pytest.raises(DatasetError) as err:
        dataset_info("cifar")
    message = str(err.value)
    assert "'cifar'" in message and "cifar10" in message and "\n" not in message
    assert err.value.exit_status == ExitStatus.DATASET


def test_bad_resolution_and_split_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="resolution"):
        dataset_info("imagenette", resolution=4)
    with pytest.raises(UsageError, match="split 'val'"):
        load_dataset("cifar10-mini", split="val")


@pytest.mark.parametrize(
    "name, split, files",
    [("svhn", "train", ["train_32x32.mat"]), ("cifar100", "test", ["cifar-100-python/test"])],
)
def test_absent_dataset_names_dataset_folder_and_files(
    data_root: Path, name: str, split: str, files: list[str]
) -> None:
    if (data_root / files[0]).exists():
        pytest.skip(f"{name} is present in {data_root}")
    _offline()
    with pytest.raises(DatasetError) as err:
        load_dataset(name, split, data_root=data_root)
    message = str(err.value)
    assert f"'{name}'" in message and str(data_root) in message and "\n" not in message
    assert all(f in message for f in files)
    assert f"{name}-npz/{split}.npz" in message


def test_absent_image_folder_dataset_lists_its_layout(tmp_path: Path) -> None:
    _offline()
    with pytest.raises(DatasetError) as err:
        load_dataset("tinyimagenet", "test", data_root=tmp_path / "empty")
    message = str(err.value)
    assert "tiny-imagenet-200/val/val_annotations.txt" in message and str(tmp_path / "empty") in message
    assert "downloading it failed" in message and "\n" not in message


def test_describe_datasets_reports_presence_and_location(data_root: Path) -> None:
    rows = {row["name"]: row for row in describe_datasets(data_root)}
    assert set(BUILTINS) <= set(rows)
    for row in rows.values():
        assert {"name", "resolution", "classes", "channels", "present", "where", "distribution", "version"} <= set(row)
    assert rows["cifar10-mini"]["present"] and rows["cifar10-mini"]["where"] == "embedded"
    assert rows["imagenette"]["resolution"] == 128 and rows["tinyimagenet"]["classes"] == 200
    assert rows["mnist"]["distribution"] == "condensekit"
    if (data_root / "cifar10-npz" / "train.npz").is_file():
        assert rows["cifar10"]["present"] and rows["cifar10"]["where"] == str(data_root / "cifar10-npz")
    if not (data_root / "train_32x32.mat").exists():
        assert not rows["svhn"]["present"] and rows["svhn"]["where"] == ""
