"""What a method sees of a dataset: its description and fast per-class access to real images."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from condensekit.synthetic import PixelSpace

log = logging.getLogger("condensekit.data")


@dataclass(frozen=True)
class DatasetInfo:
    """Facts about a dataset at one resolution (no images loaded)."""

    name: str
    num_classes: int
    channels: int
    resolution: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...]
    default_backbone: str = "convnet"
    #: Train images per class found under the data root, when core counted them before the
    #: run (``plan`` does, from the labels alone); None where unknown. Bounds ``--ipc`` and
    #: the config fields declared ``"max": "class_size"``.
    class_sizes: tuple[int, ...] | None = None

    @property
    def smallest_class(self) -> int | None:
        """Train images in the smallest class (None: not counted)."""
        return min(self.class_sizes) if self.class_sizes else None

    def normalize(self, unit: torch.Tensor) -> torch.Tensor:
        """[0, 1] pixels -> the dataset's normalized space."""
        mean = torch.tensor(self.mean, dtype=unit.dtype, device=unit.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=unit.dtype, device=unit.device).view(1, -1, 1, 1)
        return (unit - mean) / std

    def denormalize(self, normalized: torch.Tensor) -> torch.Tensor:
        """The dataset's normalized space -> [0, 1] pixels."""
        mean = torch.tensor(self.mean, dtype=normalized.dtype, device=normalized.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=normalized.dtype, device=normalized.device).view(1, -1, 1, 1)
        return normalized * std + mean

    def as_metadata(self) -> dict[str, Any]:
        return {
            "dataset": self.name,
            "num_classes": self.num_classes,
            "channels": self.channels,
            "resolution": self.resolution,
            "mean": list(self.mean),
            "std": list(self.std),
            "class_names": list(self.class_names),
        }


class RealData:
    """One split held as a single uint8 (N, C, H, W) tensor, grouped by class.

    Images are stored class-contiguously so a class's images are a slice; batches are drawn
    with tensor indexing on the data's device (no per-image Python loop) and converted to
    float only when sampled.
    """

    def __init__(self, info: DatasetInfo, images: torch.Tensor, labels: torch.Tensor) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError("images must be a uint8 (N, C, H, W) tensor")
        if labels.numel() > 1 and bool((labels[1:] < labels[:-1]).any()):
            order = torch.argsort(labels, stable=True)
            images, labels = images[order], labels[order]
        # Input already grouped by class (what load_dataset passes) is kept without a copy.
        self.info = info
        self.images = images.contiguous()
        self.labels = labels.long()
        counts = torch.bincount(self.labels.cpu(), minlength=info.num_classes)
        self._counts: list[int] = counts.tolist()
        self._offsets: list[int] = [0, *torch.cumsum(counts, 0).tolist()]
        self._warned_small: set[int] = set()

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def device(self) -> torch.device:
        return self.images.device

    def to(self, device: torch.device | str) -> RealData:
        moved = RealData.__new__(RealData)
        moved.__dict__.update(self.__dict__)
        moved.images = self.images.to(device)
        moved.labels = self.labels.to(device)
        moved._warned_small = set()
        return moved

    def class_count(self, c: int) -> int:
        return self._counts[c]

    def class_slice(self, c: int) -> slice:
        return slice(self._offsets[c], self._offsets[c + 1])

    def as_float(self, images: torch.Tensor, space: PixelSpace = "normalized") -> torch.Tensor:
        unit = images.float().div_(255.0)
        return self.info.normalize(unit) if space == "normalized" else unit

    def _indices(self, c: int, n: int, generator: torch.Generator) -> torch.Tensor:
        count = self._counts[c]
        if count == 0:
            raise ValueError(f"class {c} of {self.info.name} has no images")
        if n <= count:
            local = torch.randperm(count, generator=generator)[:n]
        else:
            if c not in self._warned_small:
                log.warning(
                    "%s class %d has %d images, fewer than the requested batch of %d: sampling with replacement",
                    self.info.name,
                    c,
                    count,
                    n,
                )
                self._warned_small.update(range(self.info.num_classes))
            local = torch.randint(count, (n,), generator=generator)
        return local + self._offsets[c]

    def sample(
        self,
        classes: Sequence[int],
        n: int,
        generators: Sequence[torch.Generator],
        space: PixelSpace = "normalized",
    ) -> torch.Tensor:
        """``n`` random images of each class in ``classes``, class-major, as float.

        One CPU generator per class, so the draw for a class does not depend on which other
        classes are sampled with it (class-parallel runs stay bit-identical).
        """
        idx = torch.cat([self._indices(c, n, g) for c, g in zip(classes, generators, strict=True)])
        return self.as_float(self.images[idx.to(self.images.device)], space)

    def first(self, c: int, n: int, space: PixelSpace = "normalized") -> torch.Tensor:
        """The first ``n`` images of class ``c`` in dataset order (DANCE's deterministic init)."""
        sl = self.class_slice(c)
        return self.as_float(self.images[sl][:n], space)

    def random(self, c: int, n: int, generator: torch.Generator, space: PixelSpace = "normalized") -> torch.Tensor:
        """``n`` distinct random images of class ``c`` (with replacement only if too few)."""
        return self.as_float(self.images[self._indices(c, n, generator).to(self.images.device)], space)

    def nbytes(self) -> int:
        return self.images.numel() * self.images.element_size()
