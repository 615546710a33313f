"""Synthetic sets with the metadata core fills in, for the registry tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from condensekit.synthetic import SyntheticSet

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CIFAR10_MEAN = [0.4914, 0.4822, 0.4465]
CIFAR10_STD = [0.2023, 0.1994, 0.2010]


def make_synset(
    ipc: int = 2,
    seed: int = 0,
    factor: int = 1,
    soft: bool = False,
    pixel_space: str = "normalized",
    side: int = 32,
    **meta: Any,
) -> SyntheticSet:
    """A CIFAR-10-shaped set with realistic provenance metadata."""
    gen = torch.Generator().manual_seed(seed)
    n = 10 * ipc
    images = torch.randn(n, 3, side, side, generator=gen)
    if pixel_space == "unit":
        images = torch.rand(n, 3, side, side, generator=gen)
    metadata = {
        "method": "dm",
        "method_version": "1.0",
        "distribution": "condensekit",
        "distribution_version": "0.1.0",
        "plugin_api": "1.0",
        "condensekit_version": "0.1.0",
        "git_commit": None,
        "dataset": "cifar10",
        "num_classes": 10,
        "channels": 3,
        "resolution": side,
        "mean": CIFAR10_MEAN,
        "std": CIFAR10_STD,
        "class_names": CIFAR10_CLASSES,
        "ipc": ipc,
        "seed": seed,
        "config": {"lr_img": 1.0, "batch_real": 256, "init": "real", "nested": {"dsa": True}},
        "backbone": "convnet",
        "device": "cpu",
        "wall_time_s": 12.5,
        "iterations": 20,
        "created": "2026-01-02T03:04:05+00:00",
        **meta,
    }
    return SyntheticSet(
        images=images,
        labels=torch.arange(10).repeat_interleave(ipc),
        soft_labels=torch.softmax(torch.randn(n, 10, generator=gen), 1) if soft else None,
        pixel_space=pixel_space,  # type: ignore[arg-type]
        factor=factor,
        metadata=metadata,
    )


@pytest.fixture
def synset_factory() -> Callable[..., SyntheticSet]:
    return make_synset
