"""``condensekit.load("name:v3")``: a stored set, ready for a training script.

The tensors are the ones evaluation trains on (:meth:`SyntheticSet.training_tensors`):
multi-formation decoded, in the dataset's normalized space, float32.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from condensekit.synthetic import SyntheticSet

if TYPE_CHECKING:
    import datasets


@dataclass(frozen=True)
class LoadedSet:
    """A stored set: ``images`` (N, C, H, W) float32, normalized and decoded; ``labels``
    (N,) int64; ``soft_labels`` (N, K) class probabilities or None; ``synset`` the set as
    stored (pixel space, factor) with its ``metadata`` (provenance, ``ref``, ``sha256``)."""

    synset: SyntheticSet
    images: torch.Tensor
    labels: torch.Tensor
    soft_labels: torch.Tensor | None

    @property
    def metadata(self) -> dict[str, Any]:
        return self.synset.metadata

    @property
    def class_names(self) -> list[str]:
        return self.synset.class_names

    @property
    def num_classes(self) -> int:
        return int(self.synset.metadata.get("num_classes") or len(self.class_names))

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def to_torch_dataset(
        self, transform: Callable[[torch.Tensor], torch.Tensor] | None = None, soft: bool = False
    ) -> SyntheticDataset:
        """A ``torch.utils.data.Dataset`` of ``(transform(image), target)``: the class index,
        or with ``soft=True`` the soft label (a set without soft labels refuses that)."""
        if soft and self.soft_labels is None:
            from condensekit.errors import UsageError

            raise UsageError(f"{self.metadata.get('ref', 'the set')} has no soft labels; use soft=False")
        targets = self.soft_labels if soft and self.soft_labels is not None else self.labels
        return SyntheticDataset(self.images, targets, transform)

    def to_hf(self) -> datasets.Dataset:
        """The set as an in-memory ``datasets.Dataset``, with the columns of an ``export
        --hf`` (``pixel_values``, ``label``, ``soft_label``, ``image``; needs
        ``pip install 'condensekit[hf]'``)."""
        from condensekit.sharing.hf import to_hf_dataset

        return to_hf_dataset(self.synset)


class SyntheticDataset(torch.utils.data.Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Images and targets as a map-style dataset, each image through ``transform``."""

    def __init__(
        self,
        images: torch.Tensor,
        targets: torch.Tensor,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self.images = images
        self.targets = targets
        self.transform = transform

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images[index]
        return (image if self.transform is None else self.transform(image)), self.targets[index]


def load(ref: str | None = None, registry: str | os.PathLike[str] | None = None) -> LoadedSet:
    """The set ``ref`` (``name``, ``name:v3``, ``name:alias``; None: the newest set) from the
    registry at ``registry`` (default: ``$CONDENSEKIT_REGISTRY``, else ``./registry``),
    verified against its sha256."""
    from condensekit.registry import Registry

    with Registry(registry) as reg:
        synset = reg.load(ref)
    images, labels, soft = synset.training_tensors()
    return LoadedSet(synset, images, labels, soft)
