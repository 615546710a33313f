"""Real teachers for the ``kd`` protocol's tests: one expert trained as ``condensekit experts
train`` trains it (``train_experts``), for one epoch on 20 real images per class, of
cifar10-mini (tested on its real test split) or of CIFAR-10 (a data root holding a real
20-per-class training split and 10-per-class test split, so that evaluations stay cheap);
and sets of real cifar10-mini images."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from condensekit.data import dataset_info, load_dataset
from condensekit.data.base import RealData
from condensekit.experts import Experts, train_experts
from condensekit.synthetic import SyntheticSet

MINI = "cifar10-mini"


@pytest.fixture(scope="session")
def mini_experts() -> Experts:
    """One ConvNet-3 expert of cifar10-mini, 1 epoch on 200 real training images."""
    train = load_dataset(MINI, "train")
    idx = torch.cat([torch.arange(train.class_slice(c).start, train.class_slice(c).start + 20) for c in range(10)])
    subset = RealData(train.info, train.images[idx], train.labels[idx])
    return train_experts(
        subset, backbone="convnet", num=1, epochs=1, seed=0, device="cpu", test=load_dataset(MINI, "test")
    )


@pytest.fixture(scope="session")
def mini_set() -> Callable[..., SyntheticSet]:
    """``mini_set(ipc=1, offset=50, method="dm")``: ``ipc`` real cifar10-mini training images
    per class (from the ``offset``-th of each class), as a set made by ``method``."""
    train = load_dataset(MINI, "train")
    info = dataset_info(MINI)

    def make(ipc: int = 1, offset: int = 50, method: str = "dm") -> SyntheticSet:
        starts = [train.class_slice(c).start + offset for c in range(10)]
        idx = torch.cat([torch.arange(start, start + ipc) for start in starts])
        return SyntheticSet(
            train.as_float(train.images[idx]),
            train.labels[idx],
            metadata={**info.as_metadata(), "method": method, "ipc": ipc, "config": {}},
        )

    return make


@pytest.fixture(scope="session")
def tiny_cifar_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root whose CIFAR-10 splits are real, class-balanced subsets: 20 training and 10
    test images per class (read before the shared data root's full splits)."""
    shared = Path(os.environ.get("CONDENSEKIT_DATA", "/nonexistent")) / "cifar10-npz"
    if not (shared / "train.npz").is_file():
        pytest.skip(f"{shared} is missing; set CONDENSEKIT_DATA to the shared data root")
    root = tmp_path_factory.mktemp("tiny-cifar")
    (root / "cifar10-npz").mkdir()
    for split, per_class in (("train", 20), ("test", 10)):
        with np.load(shared / f"{split}.npz") as f:
            x, y = f["x"], f["y"]
        idx = np.concatenate([np.flatnonzero(y == c)[:per_class] for c in range(10)])
        np.savez(root / "cifar10-npz" / f"{split}.npz", x=x[idx], y=y[idx])
    return root


@pytest.fixture(scope="session")
def cifar_experts(tiny_cifar_root: Path) -> Experts:
    """One ConvNet-3 expert of CIFAR-10, 1 epoch on the tiny root's 200 training images."""
    train = load_dataset("cifar10", "train", data_root=tiny_cifar_root)
    test = load_dataset("cifar10", "test", data_root=tiny_cifar_root)
    return train_experts(train, backbone="convnet", num=1, epochs=1, seed=0, device="cpu", test=test)
