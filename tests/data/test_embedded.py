"""The embedded cifar10-mini: loads with no data root, class-balanced, rebuilt byte-identically."""

from __future__ import annotations

import importlib.util
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest
import torch

from condensekit.data import cache_path, load_dataset

REPO = Path(__file__).resolve().parents[2]
EMBEDDED = Path(str(files("condensekit.data").joinpath("embedded", "cifar10-mini.npz")))


def _build_script():
    spec = importlib.util.spec_from_file_location("build_cifar10_mini", REPO / "scripts" / "build_cifar10_mini.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("split, per_class", [("train", 200), ("test", 100)])
def test_loads_without_data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, split: str, per_class: int) -> None:
    monkeypatch.delenv("CONDENSEKIT_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # the default data root is then empty too
    data = load_dataset("cifar10-mini", split)
    assert data.images.shape == (10 * per_class, 3, 32, 32)
    assert [data.class_count(c) for c in range(10)] == [per_class] * 10
    assert data.info.class_names[0] == "airplane" and data.info.default_backbone == "convnet"
    assert not cache_path("cifar10-mini", split).exists()  # package data needs no cache
    # Real photographs: per-channel means near CIFAR-10's.
    mean = data.images.float().mean(dim=(0, 2, 3)) / 255
    assert bool(((mean - torch.tensor(data.info.mean)).abs() < 0.03).all())


def test_embedded_file_is_small_package_data() -> None:
    assert EMBEDDED.is_file() and EMBEDDED.stat().st_size <= 10 * 2**20


def test_script_rebuilds_the_same_arrays_and_bytes(data_root: Path, tmp_path: Path) -> None:
    source = data_root / "cifar10-npz"
    if not (source / "train.npz").is_file():
        pytest.skip(f"cifar10-npz is not in the data root {data_root}")
    script = _build_script()
    arrays = script.build(source)
    with np.load(EMBEDDED) as shipped:
        assert sorted(shipped.files) == sorted(arrays)
        for key, array in arrays.items():
            assert np.array_equal(shipped[key], array), key
            assert script.digest(array) == script.EXPECTED[key], key
    # Rows are real CIFAR-10 images of their label: the train pick is a subset of train.npz.
    assert set(arrays["files_train"][arrays["y_train"] == 3]) <= {
        f for f in (source / "train_files.txt").read_text().split() if f.startswith("cat/")
    }
    script.write_npz(tmp_path / "a.npz", arrays)
    assert (tmp_path / "a.npz").read_bytes() == EMBEDDED.read_bytes()
