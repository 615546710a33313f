"""The array cache: written once to CONDENSEKIT_CACHE (never the data root), atomically, then reused."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from condensekit import paths
from condensekit.data import cache_path, load_arrays, load_dataset
from condensekit.data.cache import available_memory, ensure_fits, read_arrays, write_arrays
from condensekit.errors import DatasetError


@pytest.fixture
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("CONDENSEKIT_CACHE", str(cache))
    return cache


@pytest.fixture
def mnist_root(data_root: Path) -> Path:
    if not (data_root / "MNIST" / "raw").is_dir():
        pytest.skip(f"MNIST is not in the data root {data_root}")
    return data_root


def test_cache_paths_follow_the_documented_layout(fresh_cache: Path) -> None:
    assert cache_path("mnist", "train") == fresh_cache / "mnist-npz" / "train.npz"
    assert cache_path("mnist", "test", resolution=32) == fresh_cache / "mnist-32-npz" / "test.npz"
    assert cache_path("imagenette", "train") == fresh_cache / "imagenette-128-npz" / "train.npz"
    assert cache_path("tinyimagenet", "test") == fresh_cache / "tinyimagenet-npz" / "test.npz"


def test_first_load_writes_the_cache_outside_the_data_root(mnist_root: Path, fresh_cache: Path) -> None:
    x, y, origin = load_arrays("mnist", "test")
    path = cache_path("mnist", "test")
    assert path.is_file() and path.is_relative_to(paths.cache_dir())
    assert origin == str(mnist_root / "MNIST")
    assert not (mnist_root / "mnist-npz").exists()
    assert [p.name for p in path.parent.iterdir()] == ["test.npz"]  # no temporary file left behind
    with np.load(path) as saved:
        assert saved["x"].dtype == np.uint8 and saved["x"].shape == (10000, 28, 28, 1)
        assert saved["y"].dtype == np.int64 and np.array_equal(saved["y"], y)
        assert np.array_equal(saved["x"], x)
    with zipfile.ZipFile(path) as zf:  # uncompressed, so it can be memory-mapped
        assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_STORED}


def test_second_load_reads_the_cache(mnist_root: Path, fresh_cache: Path, tmp_path: Path) -> None:
    first = load_dataset("mnist", "test")
    path = cache_path("mnist", "test")
    stamp = path.stat().st_mtime_ns
    # An empty data root: only the cache can provide the images now.
    x, _, origin = load_arrays("mnist", "test", data_root=tmp_path / "empty")
    again = load_dataset("mnist", "test", data_root=tmp_path / "empty")
    assert origin == str(path) and isinstance(x, np.memmap)
    assert path.stat().st_mtime_ns == stamp
    assert bool((again.images == first.images).all()) and bool((again.labels == first.labels).all())


def test_write_is_atomic_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "demo-npz" / "train.npz"
    write_arrays(target, np.zeros((4, 8, 8, 3), np.uint8), np.arange(4))
    write_arrays(target, np.full((2, 8, 8, 3), 7, np.uint8), np.array([1, 0]))
    x, y = read_arrays(target)
    assert x.shape == (2, 8, 8, 3) and int(x.max()) == 7 and y.tolist() == [1, 0]
    assert sorted(p.name for p in target.parent.iterdir()) == ["train.npz"]


def test_compressed_npz_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "c.npz"
    x = np.random.default_rng(0).integers(0, 256, (5, 4, 4, 3), dtype=np.uint8)
    np.savez_compressed(path, x=x, y=np.arange(5))
    got, y = read_arrays(path)
    assert not isinstance(got, np.memmap) and np.array_equal(got, x) and y.tolist() == list(range(5))


def test_corrupted_cache_is_a_one_line_error(fresh_cache: Path) -> None:
    path = cache_path("mnist", "test")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a zip file")
    with pytest.raises(DatasetError) as err:
        load_dataset("mnist", "test")
    assert str(path) in str(err.value) and "delete it" in str(err.value) and "\n" not in str(err.value)


def test_cache_with_wrong_shape_is_refused(fresh_cache: Path) -> None:
    write_arrays(cache_path("mnist", "test"), np.zeros((10, 32, 32, 3), np.uint8), np.zeros(10, np.int64))
    with pytest.raises(DatasetError, match=r"needs uint8 \(N, 28, 28, 1\)"):
        load_dataset("mnist", "test")


def test_sets_larger_than_free_memory_are_refused() -> None:
    free = available_memory()
    if free is None:
        pytest.skip("available memory is only read on Linux")
    ensure_fits("a small set", (10, 32, 32, 3))
    n = free // (224 * 224 * 3) + 1
    with pytest.raises(DatasetError) as err:
        ensure_fits("imagenet train", (n, 224, 224, 3))
    message = str(err.value)
    assert f"{n} images of 224x224x3" in message and "available" in message and "--res" in message


def test_other_resolution_is_made_from_the_native_arrays(data_root: Path, fresh_cache: Path) -> None:
    if not (data_root / "cifar10-npz" / "test.npz").is_file():
        pytest.skip(f"cifar10-npz is not in the data root {data_root}")
    x, y, origin = load_arrays("cifar10", "test", resolution=16)
    native, native_y, _ = load_arrays("cifar10", "test")
    assert origin == str(data_root / "cifar10-npz" / "test.npz")
    assert x.shape == (10000, 16, 16, 3) and np.array_equal(y, native_y)
    assert cache_path("cifar10", "test", 16).is_file()
    # A 2x downscale: each 16 px image is close to its 2x2-averaged 32 px original.
    pooled = native.reshape(10000, 16, 2, 16, 2, 3).mean(axis=(2, 4))
    assert np.abs(pooled - x).mean() < 8  # antialiased bilinear, not a box filter; unrelated images differ by ~70
