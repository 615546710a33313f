"""``condensekit.load``: a stored set as tensors, a torch Dataset and a datasets.Dataset."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import condensekit
from condensekit.errors import RegistryError, UsageError
from condensekit.registry import Registry
from condensekit.synthetic import SyntheticSet

MEAN, STD = [0.4914, 0.4822, 0.4465], [0.2023, 0.1994, 0.2010]


def _unit_set(soft: bool) -> SyntheticSet:
    gen = torch.Generator().manual_seed(0)
    return SyntheticSet(
        images=torch.rand(10, 3, 32, 32, generator=gen),
        labels=torch.arange(10),
        soft_labels=torch.softmax(torch.randn(10, 10, generator=gen), 1) if soft else None,
        pixel_space="unit",
        factor=2,
        metadata={"dataset": "cifar10-mini", "num_classes": 10, "mean": MEAN, "std": STD, "method": "dance"},
    )


@pytest.fixture
def stored(registry_root: Path) -> str:
    """A unit-space, factor-2 set with soft labels in the registry $CONDENSEKIT_REGISTRY names."""
    return Registry().save(_unit_set(soft=True), "dance-set").ref


def test_load_gives_the_training_tensors(stored: str) -> None:
    loaded = condensekit.load(stored)
    images, labels, soft = Registry().load(stored).training_tensors()
    assert torch.equal(loaded.images, images) and loaded.images.shape == (40, 3, 32, 32)
    assert torch.equal(loaded.labels, labels) and torch.equal(loaded.soft_labels, soft)
    assert loaded.metadata["ref"] == "dance-set:v1" and len(loaded) == 40 and loaded.num_classes == 10


def test_load_takes_a_registry_root(tmp_path: Path) -> None:
    ref = Registry(tmp_path / "elsewhere").save(_unit_set(soft=False), "x").ref
    assert condensekit.load(ref, registry=tmp_path / "elsewhere").soft_labels is None


def test_an_unknown_reference_is_a_registry_error(stored: str) -> None:
    with pytest.raises(RegistryError, match="unknown set 'nosuch'"):
        condensekit.load("nosuch")


def test_to_torch_dataset_applies_the_transform(stored: str) -> None:
    loaded = condensekit.load(stored)
    dataset = loaded.to_torch_dataset(transform=lambda x: x.flip(-1))
    image, label = dataset[3]
    assert len(dataset) == 40 and torch.equal(image, loaded.images[3].flip(-1)) and label == loaded.labels[3]
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=8)))
    assert batch[0].shape == (8, 3, 32, 32)


def test_to_torch_dataset_with_soft_targets(stored: str) -> None:
    loaded = condensekit.load(stored)
    _, target = loaded.to_torch_dataset(soft=True)[5]
    assert torch.equal(target, loaded.soft_labels[5])


def test_soft_targets_need_soft_labels(tmp_path: Path) -> None:
    ref = Registry(tmp_path / "r").save(_unit_set(soft=False), "hard").ref
    with pytest.raises(UsageError, match="has no soft labels"):
        condensekit.load(ref, registry=tmp_path / "r").to_torch_dataset(soft=True)


def test_to_hf_has_the_export_columns(stored: str) -> None:
    loaded = condensekit.load(stored)
    ds = loaded.to_hf()
    assert set(ds.features) == {"pixel_values", "label", "soft_label", "image"} and ds.num_rows == 40
    rows = ds.with_format("torch")[:]
    assert torch.equal(rows["pixel_values"], loaded.images) and torch.equal(rows["soft_label"], loaded.soft_labels)
