"""The layer-wise gradient distances of DC's ``match_loss`` (utils.py:218-271), batched over
classes: every tensor carries a leading class dimension, and the result is the sum over classes
of the per-class distance the official code adds up class by class (main.py:179-199).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch

Metric = Literal["ours", "mse", "cos"]
#: Added to the product of norms in both cosine distances (utils.py:233 and :266).
EPS = 1e-6


def _cosine_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Sum over rows of 1 - cos(a_row, b_row), with DC's epsilon on the norms' product."""
    dot = (a * b).sum(dim=-1)
    distance: torch.Tensor = (1 - dot / (a.norm(dim=-1) * b.norm(dim=-1) + EPS)).sum()
    return distance


def needs_parameter(shape: torch.Size | Sequence[int], metric: str) -> bool:
    """Whether a parameter of this shape contributes to the distance: under ``ours`` a 1-D
    parameter (bias, norm scale/shift) adds exactly 0 (utils.py:228-231), so its gradient is
    never needed; ``mse`` and ``cos`` use every parameter."""
    return metric != "ours" or len(shape) >= 2


def _ours(syn: Sequence[torch.Tensor], real: Sequence[torch.Tensor], k: int) -> torch.Tensor:
    """For each parameter of 2 or more dimensions, rows = output units (conv ``out x in*h*w``,
    linear ``out x in``), sum of ``1 - cos`` over rows; 1-D parameters add 0."""
    total = syn[0].new_zeros(())
    for gs, gr in zip(syn, real, strict=True):
        if gs.dim() - 1 < 2:
            continue
        rows = gs.shape[1]
        total = total + _cosine_distance(gs.reshape(k, rows, -1), gr.reshape(k, rows, -1))
    return total


def _flat(grads: Sequence[torch.Tensor], k: int) -> torch.Tensor:
    """Every class's gradients concatenated into one vector (K, total)."""
    return torch.cat([g.reshape(k, -1) for g in grads], dim=1)


def _mse(syn: Sequence[torch.Tensor], real: Sequence[torch.Tensor], k: int) -> torch.Tensor:
    """Squared Euclidean distance of the concatenated gradient vectors."""
    return (_flat(syn, k) - _flat(real, k)).square().sum()


def _cos(syn: Sequence[torch.Tensor], real: Sequence[torch.Tensor], k: int) -> torch.Tensor:
    """``1 - cos`` of the concatenated gradient vectors."""
    return _cosine_distance(_flat(syn, k), _flat(real, k))


#: ``--dis-metric`` name -> distance of (synthetic, real) gradients with K leading classes.
DISTANCES: dict[str, Callable[[Sequence[torch.Tensor], Sequence[torch.Tensor], int], torch.Tensor]] = {
    "ours": _ours,
    "mse": _mse,
    "cos": _cos,
}
METRICS: tuple[str, ...] = tuple(DISTANCES)


def match_distance(syn: Sequence[torch.Tensor], real: Sequence[torch.Tensor], metric: str) -> torch.Tensor:
    """Sum over classes of DC's gradient distance (:data:`DISTANCES`) between synthetic and
    real gradients. ``syn[i]`` and ``real[i]`` are the gradients of parameter ``i``, shape
    ``(K, *shape)`` for ``K`` classes."""
    if len(syn) != len(real) or not syn:
        raise ValueError(f"need the same non-zero number of gradients, got {len(syn)} and {len(real)}")
    if metric not in DISTANCES:
        raise ValueError(f"unknown distance {metric!r}; use one of {', '.join(METRICS)}")
    return DISTANCES[metric](syn, real, syn[0].shape[0])
