"""A run is refused when it is planned if its data is absent and cannot be had: one line that
says which files are missing where and how to get them, and nothing created. The class sizes
that bound ``--ipc`` and real batches come from the labels alone."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from condensekit.data import check_available, get_spec, load_arrays
from condensekit.data.catalog import unreachable
from condensekit.distill import DistillRequest, plan
from condensekit.errors import DatasetError, ExitStatus, UsageError


def _offline(name: str) -> None:
    """Skip where a download host answers: an absent dataset is then downloaded, not refused."""
    urls = get_spec(name).reader.download_urls("train")  # type: ignore[attr-defined]
    if not unreachable(urls, timeout=2.0):
        pytest.skip(f"a download host of {name} answers, so an absent {name} would be downloaded")


@pytest.mark.parametrize(("name", "folder"), [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_absent_data_is_refused_at_plan_time_with_the_offline_message_and_nothing_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, folder: str
) -> None:
    _offline(name)
    empty, cache, registry = tmp_path / "empty", tmp_path / "cache", tmp_path / "registry"
    monkeypatch.setenv("CONDENSEKIT_CACHE", str(cache))  # no array cache of an earlier test
    request = DistillRequest("dm", name, 1, device="cpu", data_root=str(empty), registry=str(registry))
    with pytest.raises(DatasetError) as info:
        plan(request)
    message = str(info.value)
    assert info.value.exit_status == ExitStatus.DATASET and "\n" not in message
    assert f"not found in {empty}" in message  # the folder
    assert f"{folder}/raw/train-images-idx3-ubyte + {folder}/raw/train-labels-idx1-ubyte" in message  # the files
    assert "cannot be downloaded from here" in message and "point --data-root" in message  # how to get them
    assert not empty.exists() and not cache.exists() and not registry.exists()


def test_a_failed_download_removes_the_folders_it_created(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _offline("mnist")
    monkeypatch.setenv("CONDENSEKIT_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DatasetError, match="downloading it failed"):
        load_arrays("mnist", "train", data_root=tmp_path / "empty")  # the run-time path, past plan()
    assert not (tmp_path / "empty").exists()


def test_a_data_root_that_cannot_be_created_is_refused_whatever_the_network(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONDENSEKIT_CACHE", str(tmp_path / "cache"))  # no array cache of an earlier test
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(DatasetError, match="cannot be created or written") as info:
        check_available("mnist", data_root=blocker / "data")
    assert "MNIST/raw/train-labels-idx1-ubyte" in str(info.value) and "\n" not in str(info.value)
    assert blocker.read_text() == "not a folder"


def test_class_sizes_come_from_the_labels_alone(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONDENSEKIT_CACHE", str(tmp_path / "cache"))  # read the raw files, not a cache
    assert check_available("cifar10-mini") == (200,) * 10  # the embedded arrays' y_train
    if not (data_root / "MNIST/raw/train-labels-idx1-ubyte").is_file():
        pytest.skip(f"MNIST is not in {data_root}")
    started = time.perf_counter()
    sizes = check_available("mnist", data_root=data_root)  # MNIST's label file: 60,008 bytes
    assert time.perf_counter() - started < 1.0  # no image decoded
    assert sizes is not None and sum(sizes) == 60000 and min(sizes) == 5421  # class 5 is MNIST's smallest
    assert not (tmp_path / "cache").exists()  # nothing decoded, nothing cached
    _, y, _ = load_arrays("mnist", "train", data_root=data_root)
    assert tuple(np.bincount(y, minlength=10)) == sizes  # what a run loads agrees


def test_class_sizes_of_an_image_folder_count_its_files(data_root: Path) -> None:
    if not (data_root / "imagenette2-160" / "train").is_dir():
        pytest.skip(f"the Imagenette subset is not in {data_root}")
    assert check_available("imagenette", data_root=data_root) == (100,) * 10  # the shared subset


def test_ipc_above_the_smallest_mnist_class_is_refused(data_root: Path) -> None:
    if not (data_root / "MNIST/raw/train-labels-idx1-ubyte").is_file():
        pytest.skip(f"MNIST is not in {data_root}")
    with pytest.raises(UsageError, match="--ipc 5422 is more than the 5421 train images") as info:
        plan(DistillRequest("random", "mnist", 5422, device="cpu", data_root=str(data_root)))
    assert info.value.exit_status == ExitStatus.USAGE
