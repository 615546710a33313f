"""Per-class mean matching, the loss shared by DM, DataDAM and DANCE.

All classes are matched in one call: features arrive class-major (``n_real`` rows per class
for the real batch, ``n_syn`` per class for the synthetic batch), so one batched forward
pass serves every class instead of a Python loop of per-class passes.
"""

from __future__ import annotations

import torch


def class_means(features: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(num_classes * n, ...) class-major rows -> (num_classes, D) per-class means."""
    return features.reshape(num_classes, -1, *features.shape[1:]).flatten(2).mean(dim=1)


def mean_discrepancy(real: torch.Tensor, syn: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Sum over classes and dimensions of the squared difference of per-class means.

    The linear-kernel MMD of DM: the sum (not the mean) is the scale the published image
    learning rates are tuned for.
    """
    diff = class_means(real, num_classes) - class_means(syn, num_classes)
    return diff.pow(2).sum()
