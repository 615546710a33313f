"""Shared fixtures of the DANCE plugin tests: an isolated cache and real experts trained once."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from condensekit.testing import isolate_environment

SHARED_DATA = Path(__file__).resolve().parents[4] / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def _isolated_environment(tmp_path_factory: pytest.TempPathFactory) -> None:
    isolate_environment(tmp_path_factory.mktemp("cache"), SHARED_DATA)


#: The tests run at 16 px: a quarter of the compute of 32 px, same code paths.
RES = 16


@pytest.fixture(scope="session")
def mini_experts():
    """Two ConvNet experts trained for one epoch on 20 real CIFAR-10 images per class (16 px)."""
    from condensekit.data import load_dataset
    from condensekit.data.base import RealData
    from condensekit.experts import train_experts

    full = load_dataset("cifar10-mini", "train", RES)
    keep = torch.cat([torch.arange(full.class_slice(c).start, full.class_slice(c).start + 20) for c in range(10)])
    subset = RealData(full.info, full.images[keep], full.labels[keep])
    return train_experts(subset, backbone="convnet", num=2, epochs=1, seed=0, device="cpu", batch=16)
