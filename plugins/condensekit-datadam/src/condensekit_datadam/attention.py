"""Spatial attention maps and the attention-matching loss of DataDAM.

A block's attention map pools the absolute activation raised to ``power`` over channels,
flattens the H x W map and scales each sample's map to unit L2 norm (the official
``get_attention(..., param=1, norm='l2')``). The loss compares per-class mean maps of real
and synthetic images with the same sum-of-squares reduction as DM's embedding term
(``condensekit.api.mean_discrepancy``), one term per layer.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from condensekit.api import mean_discrepancy


def attention_map(feature: torch.Tensor, power: float) -> torch.Tensor:
    """(B, C, H, W) feature map -> (B, H*W) attention rows of unit L2 norm.

    Computed in float32 whatever the input precision: a fourth power of bf16/fp16
    activations summed over 128+ channels loses too much to be matched reliably.
    """
    if feature.dim() != 4:
        raise ValueError(f"attention_map needs a (B, C, H, W) feature map, got shape {tuple(feature.shape)}")
    magnitude = feature.float()
    channel_dim = 1
    if magnitude.is_contiguous(memory_format=torch.channels_last) and not magnitude.is_contiguous():
        # Reduce over the innermost axis of the physical (B, H, W, C) layout: the NCHW view of
        # a channels_last tensor makes min() and sum() copy the whole map first.
        magnitude, channel_dim = magnitude.permute(0, 2, 3, 1), -1
    # Block outputs after a ReLU are >= 0, where |x| = x: skipping abs saves a pass over the
    # largest tensor of the iteration, and the gradient is unchanged (ReLU's is 0 at x = 0).
    if not bool(magnitude.min() >= 0):
        magnitude = magnitude.abs()
    if power != 1:
        magnitude = magnitude.pow(power)
    return F.normalize(magnitude.sum(dim=channel_dim).flatten(1), p=2, dim=1)


def attention_distance(
    real_attention: Sequence[torch.Tensor],
    syn_attention: Sequence[torch.Tensor],
    num_classes: int,
) -> torch.Tensor:
    """Sum over layers of the squared distance between per-class mean attention rows.

    Rows are class-major. The real side may hold any number of rows per class, including
    exactly one (its already-reduced class means), which is how the method passes it.
    """
    if len(real_attention) != len(syn_attention):
        raise ValueError(f"{len(real_attention)} real attention layers but {len(syn_attention)} synthetic")
    if not syn_attention:
        return torch.zeros(())
    terms = [mean_discrepancy(r, s, num_classes) for r, s in zip(real_attention, syn_attention, strict=True)]
    return torch.stack(terms).sum()


def attention_loss(
    real_maps: Sequence[torch.Tensor],
    syn_maps: Sequence[torch.Tensor],
    num_classes: int,
    power: float,
) -> torch.Tensor:
    """The (unscaled) SAM loss of two lists of class-major feature maps, layer by layer."""
    return attention_distance(
        [attention_map(m, power) for m in real_maps],
        [attention_map(m, power) for m in syn_maps],
        num_classes,
    )
