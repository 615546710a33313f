"""Every dataset in the shared data root loads with the real loader: shapes, classes, labels, pixels."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from condensekit.data import RealData, cache_path, load_dataset

# Class frequencies of the real MNIST (LeCun et al.), which any correct loader reproduces.
MNIST_COUNTS = {
    "train": [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949],
    "test": [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009],
}


def _need(root: Path, relative: str) -> None:
    if not (root / relative).exists():
        pytest.skip(f"{relative} is not in the data root {root}")


def _counts(data: RealData) -> list[int]:
    return [data.class_count(c) for c in range(data.info.num_classes)]


def _class_contiguous(data: RealData) -> bool:
    return all(bool((data.labels[data.class_slice(c)] == c).all()) for c in range(data.info.num_classes))


@pytest.fixture(scope="session")
def imagenette() -> dict[str, RealData]:
    """The Imagenette subset decoded once per session (1,500 JPEGs), then read from the cache."""
    import os

    root = Path(os.environ.get("CONDENSEKIT_DATA", ""))
    if not (root / "imagenette2-160").is_dir():
        pytest.skip(f"imagenette2-160 is not in the data root {root}")
    return {split: load_dataset("imagenette", split) for split in ("train", "test")}


@pytest.mark.parametrize("split", ["train", "test"])
def test_mnist_loads_from_idx_files(data_root: Path, split: str) -> None:
    _need(data_root, "MNIST/raw")
    data = load_dataset("mnist", split)
    assert data.images.shape == (sum(MNIST_COUNTS[split]), 1, 28, 28) and data.images.dtype == torch.uint8
    assert _counts(data) == MNIST_COUNTS[split]
    assert _class_contiguous(data)
    # Digits are white strokes on black: mostly zeros, with saturated pixels.
    assert data.images.max() == 255 and (data.images == 0).float().mean() > 0.7


@pytest.mark.parametrize("split, per_class", [("train", 6000), ("test", 1000)])
def test_fashion_mnist_loads_from_idx_files(data_root: Path, split: str, per_class: int) -> None:
    _need(data_root, "FashionMNIST/raw")
    data = load_dataset("fashion-mnist", split)
    assert data.images.shape == (10 * per_class, 1, 28, 28)
    assert _counts(data) == [per_class] * 10
    assert int(data.labels.min()) == 0 and int(data.labels.max()) == 9
    # The standard normalization centres the training set.
    if split == "train":
        assert abs(data.images.float().mean().item() / 255 - data.info.mean[0]) < 1e-3


@pytest.mark.parametrize("split, per_class", [("train", 5000), ("test", 1000)])
def test_cifar10_loads_from_the_npz_folder(data_root: Path, split: str, per_class: int) -> None:
    _need(data_root, "cifar10-npz")
    data = load_dataset("cifar10", split)
    assert data.images.shape == (10 * per_class, 3, 32, 32) and data.images.dtype == torch.uint8
    assert _counts(data) == [per_class] * 10
    if split == "test":  # per-channel mean of the real test set (cifar10-npz/README.md)
        mean = data.images.float().mean(dim=(0, 2, 3)) / 255
        assert torch.allclose(mean, torch.tensor([0.4942, 0.4851, 0.4504]), atol=1e-3)
    assert not cache_path("cifar10", split).exists()  # the data root's arrays are used as is


def test_imagenette_subset_is_resized_to_128(imagenette: dict[str, RealData]) -> None:
    train, test = imagenette["train"], imagenette["test"]
    assert train.images.shape == (1000, 3, 128, 128) and test.images.shape == (500, 3, 128, 128)
    assert _counts(train) == [100] * 10 and _counts(test) == [50] * 10
    assert train.info.default_backbone == "convnetd5" and train.info.class_names[0] == "tench"
    assert _class_contiguous(test)
    # Real photographs: every image has texture, none is a constant fill.
    flat = test.images.flatten(1).float()
    assert bool((flat.std(dim=1) > 5).all())


def test_imagenette_test_split_is_the_val_folder(imagenette: dict[str, RealData]) -> None:
    train = {img.numpy().tobytes() for img in imagenette["train"].images}
    test = {img.numpy().tobytes() for img in imagenette["test"].images}
    # Distinct images, and no val image among the train ones: the splits are different folders.
    assert len(train) == 1000 and len(test) == 500 and not train & test


def test_imagenette_resolution_override(imagenette: dict[str, RealData]) -> None:
    small = load_dataset("imagenette", "test", resolution=64)
    assert small.images.shape == (500, 3, 64, 64) and small.info.default_backbone == "convnetd4"
    assert cache_path("imagenette", "test", 64).parent.name == "imagenette-64-npz"
    assert cache_path("imagenette", "test", 64).is_file()
    # The same pictures at half the size: 2x2-averaged 128 px images are close to the 64 px ones.
    big = torch.nn.functional.avg_pool2d(imagenette["test"].images.float(), 2)
    assert (big - small.images.float()).abs().mean() < 6


def test_sampling_draws_each_class_from_its_own_images(imagenette: dict[str, RealData]) -> None:
    test = imagenette["test"]
    gens = [torch.Generator().manual_seed(c) for c in range(3)]
    batch = test.sample([0, 1, 2], 8, gens, space="unit")
    assert batch.shape == (24, 3, 128, 128) and 0 <= batch.min() and batch.max() <= 1
    own = test.images[test.class_slice(1)].float() / 255
    assert all(bool((own == img).all(dim=(1, 2, 3)).any()) for img in batch[8:16])
