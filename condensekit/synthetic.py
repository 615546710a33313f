"""The synthetic set: what a method returns, the registry stores and evaluation trains on.

Like torchvision's weights, a set carries what is needed to use it: its pixel space, the
dataset's normalization and class names, and how to decode it (multi-formation ``factor``).
De-normalization and decoding happen here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

import torch
import torch.nn.functional as F

PixelSpace = Literal["normalized", "unit"]
PIXEL_SPACES: tuple[str, ...] = ("normalized", "unit")


def decode_multiformation(images: torch.Tensor, factor: int) -> torch.Tensor:
    """Split each image into ``factor x factor`` tiles, each upsampled back to full size.

    The IDC/DANCE multi-formation decode: image ``i`` yields tiles ``i*f*f .. (i+1)*f*f-1``
    (row-major), bilinearly upsampled to the stored resolution. Sides not divisible by
    ``factor`` give their remainder rows/columns to the first tiles.
    """
    if factor == 1:
        return images
    n, c, h, w = images.shape
    rows = _split_sizes(h, factor)
    cols = _split_sizes(w, factor)
    tiles: list[torch.Tensor] = []
    for strip in torch.split(images, rows, dim=2):
        tiles.extend(
            F.interpolate(tile, size=(h, w), mode="bilinear", align_corners=False)
            for tile in torch.split(strip, cols, dim=3)
        )
    # tiles[k] has shape (n, c, h, w) for tile position k; order as image-major, tile-minor.
    return torch.stack(tiles, dim=1).reshape(n * factor * factor, c, h, w)


def encode_multiformation(tiles: torch.Tensor, factor: int) -> torch.Tensor:
    """Tile ``factor*factor`` consecutive images (downsampled) into one stored image.

    The inverse layout of :func:`decode_multiformation`, used to initialize a factor-``f``
    set from real images (IDC's 'mix' init). ``tiles`` has ``n*f*f`` images.
    """
    if factor == 1:
        return tiles
    m, c, h, w = tiles.shape
    if m % (factor * factor):
        raise ValueError(f"need a multiple of {factor * factor} images to encode, got {m}")
    rows = _split_sizes(h, factor)
    cols = _split_sizes(w, factor)
    grouped = tiles.reshape(m // (factor * factor), factor * factor, c, h, w)
    out_rows = []
    k = 0
    for rh in rows:
        row = []
        for cw in cols:
            row.append(F.interpolate(grouped[:, k], size=(rh, cw), mode="nearest"))
            k += 1
        out_rows.append(torch.cat(row, dim=3))
    return torch.cat(out_rows, dim=2)


def _split_sizes(length: int, parts: int) -> list[int]:
    base, extra = divmod(length, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


@dataclass
class SyntheticSet:
    """A distilled set: stored images plus everything needed to train on them.

    ``images`` are (N, C, H, W) float tensors in ``pixel_space``: ``"normalized"`` (the
    dataset's mean/std applied, as DC/DM/DataDAM optimize) or ``"unit"`` ([0, 1] pixels, as
    DANCE optimizes). ``labels`` are int64 class indices; ``soft_labels`` optional (N, K)
    class probabilities (non-negative rows summing to 1), used by evaluation as targets.
    ``factor`` > 1 means each stored image holds ``factor**2`` images (multi-formation).
    ``metadata`` holds provenance (method, dataset, mean/std, class names, config, ...).
    """

    images: torch.Tensor
    labels: torch.Tensor
    soft_labels: torch.Tensor | None = None
    pixel_space: PixelSpace = "normalized"
    factor: int = 1
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.images.dim() != 4:
            raise ValueError(f"images must be (N, C, H, W), got shape {tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"labels must be ({self.images.shape[0]},), got {tuple(self.labels.shape)}")
        if self.pixel_space not in PIXEL_SPACES:
            raise ValueError(f"pixel_space must be one of {PIXEL_SPACES}, got {self.pixel_space!r}")
        if self.factor < 1:
            raise ValueError(f"factor must be >= 1, got {self.factor}")
        if self.soft_labels is not None and self.soft_labels.shape[0] != self.images.shape[0]:
            raise ValueError("soft_labels must have one row per image")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def mean(self) -> torch.Tensor:
        return torch.tensor(self.metadata["mean"], dtype=torch.float32).view(1, -1, 1, 1)

    @property
    def std(self) -> torch.Tensor:
        return torch.tensor(self.metadata["std"], dtype=torch.float32).view(1, -1, 1, 1)

    @property
    def class_names(self) -> list[str]:
        return list(self.metadata.get("class_names", []))

    def decoded(self) -> SyntheticSet:
        """The set with multi-formation undone: ``factor**2`` images per stored image."""
        if self.factor == 1:
            return self
        f2 = self.factor * self.factor
        soft = None if self.soft_labels is None else self.soft_labels.repeat_interleave(f2, dim=0)
        return replace(
            self,
            images=decode_multiformation(self.images, self.factor),
            labels=self.labels.repeat_interleave(f2),
            soft_labels=soft,
            factor=1,
        )

    def to_space(self, space: PixelSpace) -> torch.Tensor:
        """The stored images converted to ``space`` (no decoding)."""
        if space == self.pixel_space:
            return self.images
        mean, std = self.mean.to(self.images), self.std.to(self.images)
        if space == "unit":
            return self.images * std + mean
        return (self.images - mean) / std

    def training_tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Decoded images in the normalized space, with labels and soft labels: what
        evaluation and the Dataset view train on. Unit-space images are clamped to [0, 1]
        first, as the methods that optimize in that space do."""
        dec = self.decoded()
        images = dec.images.clamp(0, 1) if dec.pixel_space == "unit" else dec.images
        images = replace(dec, images=images).to_space("normalized")
        return images.float(), dec.labels.long(), dec.soft_labels

    def for_display(self) -> torch.Tensor:
        """Decoded images as [0, 1] pixels, for viewing and export."""
        dec = self.decoded()
        return dec.to_space("unit").clamp(0, 1)

    def as_dataset(self) -> torch.utils.data.TensorDataset:
        """A ``torch.utils.data.Dataset`` of (normalized image, label) pairs, decoded."""
        images, labels, _ = self.training_tensors()
        return torch.utils.data.TensorDataset(images, labels)
