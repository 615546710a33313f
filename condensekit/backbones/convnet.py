"""The ConvNet family used throughout the dataset-condensation literature (DC, DSA, DM, MTT,
DataDAM, DANCE): ``depth`` blocks of conv3x3 (width 128) -> norm -> ReLU -> 2x2 avg-pool,
then one linear classifier on the flattened features.

Norm ``instance`` is GroupNorm with one group per channel and affine parameters, as the
reference code implements instance norm (no running statistics). Single-channel 28x28 inputs
get padding 3 in the first convolution so they behave as 32x32 (as in the DC code).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from condensekit.errors import BackboneError

#: Without autograd, below this many pixels per map the native channels_last GroupNorm kernel
#: is 4-8x slower than normalizing through the (N, H*W, C) view (640 x 128 x 16 x 16: 0.27 s vs
#: 0.05 s on one core); at 32 x 32 and above it is the faster one (0.10 s vs 0.25 s).
_NATIVE_NORM_MIN_PIXELS = 1024


class InstanceNorm(nn.GroupNorm):
    """Instance norm as the reference code writes it, ``GroupNorm(C, C)`` with affine
    parameters (same state_dict keys), routed to the fastest kernel for channels_last maps.

    With autograd the (N, H*W, C) view is the fastest route or within 10% of it on one core
    (forward plus backward, then ReLU; native channels_last kernel / NCHW kernel with two
    layout copies / row view): 100 x 128 x 32 x 32 336 / 213 / 200 ms, 40 x 128 x 16 x 16
    48 / 18 / 17 ms, 100 x 128 x 16 x 16 108 / 41 / 45 ms.
    Without autograd, see ``_NATIVE_NORM_MIN_PIXELS``. ``tests/backbones`` check that every
    route gives GroupNorm's values and gradients.
    """

    def __init__(self, channels: int) -> None:
        super().__init__(channels, channels, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        if x.is_contiguous() or not x.is_contiguous(memory_format=torch.channels_last):
            return super().forward(x)
        needs_grad = torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad)
        if h * w >= _NATIVE_NORM_MIN_PIXELS and not needs_grad:
            return super().forward(x)
        rows = x.permute(0, 2, 3, 1).reshape(n, h * w, c)  # a view: channels are innermost
        mean = rows.mean(dim=1, keepdim=True)
        var = (rows - mean).square().mean(dim=1)
        scale = self.weight * torch.rsqrt(var + self.eps)
        shift = self.bias - mean.squeeze(1) * scale
        return torch.addcmul(shift[:, :, None, None], x, scale[:, :, None, None])


NORMS: dict[str, Callable[[int, int], nn.Module]] = {
    "instance": lambda width, size: InstanceNorm(width),
    "batch": lambda width, size: nn.BatchNorm2d(width),
    "layer": lambda width, size: nn.LayerNorm([width, size, size]),
    "group": lambda width, size: nn.GroupNorm(4, width),
    "none": lambda width, size: nn.Identity(),
}


class ConvNet(nn.Module):
    """ConvNet-``depth`` of width ``width``; see the module docstring."""

    supports_intermediates = True

    def __init__(
        self,
        channels: int,
        num_classes: int,
        resolution: int,
        depth: int = 3,
        width: int = 128,
        norm: str = "instance",
    ) -> None:
        super().__init__()
        if norm not in NORMS:
            raise BackboneError(f"unknown ConvNet norm {norm!r}; choose one of {', '.join(NORMS)}")
        first_padding = 3 if channels == 1 and resolution == 28 else 1
        size = resolution + 2 * (first_padding - 1)
        blocks = []
        in_ch = channels
        for d in range(depth):
            if size < 2:
                raise BackboneError(
                    f"ConvNet depth {depth} is too deep for {resolution}px inputs; "
                    f"use a shallower variant (convnet for 32px, convnetd4 for 64px, convnetd5 for 128px)"
                )
            blocks.append(
                nn.Sequential(
                    nn.Conv2d(in_ch, width, 3, padding=first_padding if d == 0 else 1),
                    NORMS[norm](width, size),
                    nn.ReLU(),
                )
            )
            in_ch = width
            size //= 2
        self.blocks = nn.ModuleList(blocks)
        self.pool = nn.AvgPool2d(2, 2)
        self.embed_dim = width * size * size
        self.classifier = nn.Linear(self.embed_dim, num_classes)
        self.num_classes = num_classes

    def intermediates(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        maps = []
        for block in self.blocks:
            x = block(x)
            maps.append(x)
            x = self.pool(x)
        return maps, x.flatten(1)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = self.pool(block(x))
        return x.flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.classifier(self.embed(x))
        return logits


# Names are IDs (as in timm): each variant is one entry point of condensekit.backbones.
def convnet(channels: int, num_classes: int, resolution: int, **kwargs: Any) -> ConvNet:
    """ConvNet-3, width 128, instance norm: the standard backbone for 28-32 px data."""
    return ConvNet(channels, num_classes, resolution, depth=3, norm="instance", **kwargs)


def convnetd4(channels: int, num_classes: int, resolution: int, **kwargs: Any) -> ConvNet:
    """ConvNet-4, instance norm: the standard backbone for 64 px data (TinyImageNet)."""
    return ConvNet(channels, num_classes, resolution, depth=4, norm="instance", **kwargs)


def convnetd5(channels: int, num_classes: int, resolution: int, **kwargs: Any) -> ConvNet:
    """ConvNet-5, instance norm: the standard backbone for 128 px ImageNet subsets."""
    return ConvNet(channels, num_classes, resolution, depth=5, norm="instance", **kwargs)


def convnetd6(channels: int, num_classes: int, resolution: int, **kwargs: Any) -> ConvNet:
    """ConvNet-6, instance norm: for 256 px data (DataDAM's high-resolution variant depth)."""
    return ConvNet(channels, num_classes, resolution, depth=6, norm="instance", **kwargs)


def convnet_bn(channels: int, num_classes: int, resolution: int, **kwargs: Any) -> ConvNet:
    """ConvNet-3 with batch norm (the released DataDAM code's backbone; ablations)."""
    return ConvNet(channels, num_classes, resolution, depth=3, norm="batch", **kwargs)


def convnetd4_bn(channels: int, num_classes: int, resolution: int, **kwargs: Any) -> ConvNet:
    """ConvNet-4 with batch norm (the released DataDAM code's backbone at 64 px; ablations)."""
    return ConvNet(channels, num_classes, resolution, depth=4, norm="batch", **kwargs)


def convnetd5_bn(channels: int, num_classes: int, resolution: int, **kwargs: Any) -> ConvNet:
    """ConvNet-5 with batch norm (ablations at 128 px)."""
    return ConvNet(channels, num_classes, resolution, depth=5, norm="batch", **kwargs)


def convnet_nonorm(channels: int, num_classes: int, resolution: int, **kwargs: Any) -> ConvNet:
    """ConvNet-3 without normalization (ablations)."""
    return ConvNet(channels, num_classes, resolution, depth=3, norm="none", **kwargs)
