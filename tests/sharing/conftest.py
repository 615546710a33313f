"""Shared by the sharing tests: real cifar10-mini images, a one-epoch evaluation, a registry,
and the check that a refused import wrote nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from condensekit.data import load_dataset
from condensekit.evaluation import evaluate
from condensekit.registry import Registry
from condensekit.synthetic import SyntheticSet

Images = Callable[..., tuple[torch.Tensor, torch.Tensor]]


@pytest.fixture
def real_images() -> Images:
    """``real_images(ipc, space="normalized")``: the first ``ipc`` train images of each
    cifar10-mini class, class-major, and their labels."""

    def take(ipc: int, space: str = "normalized") -> tuple[torch.Tensor, torch.Tensor]:
        data = load_dataset("cifar10-mini", "train")
        images = torch.cat([data.first(c, ipc, space=space) for c in range(data.info.num_classes)])  # type: ignore[arg-type]
        return images, torch.arange(data.info.num_classes).repeat_interleave(ipc)

    return take


@pytest.fixture
def one_epoch_accuracy() -> Callable[[SyntheticSet], float]:
    """Evaluate a set on its dataset's test split: one network, one epoch (dc protocol)."""

    def run(synset: SyntheticSet) -> float:
        report = evaluate(synset, runs=1, epochs=1, device="cpu", dsa=False)
        [result] = report.results
        return result.accuracies[0]

    return run


@pytest.fixture
def reg(tmp_path: Path) -> Iterator[Registry]:
    with Registry(tmp_path / "registry") as registry:
        yield registry


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


@pytest.fixture
def nothing_written() -> Callable[[Registry], None]:
    """Assert no set, no set file and no temp file: a refused import left the registry as it was."""

    def check(registry: Registry) -> None:
        assert registry.list_sets() == []
        assert _files(registry.root / "sets") == [] and _files(registry.root / "tmp") == []

    return check
