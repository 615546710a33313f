"""The random-real baseline: the floor every method must beat."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from condensekit.data.base import DatasetInfo
from condensekit.methods.base import DistillContext, Method
from condensekit.synthetic import SyntheticSet


@dataclass
class RandomConfig:
    pass


class RandomReal(Method):
    """IPC real training images per class, drawn at random (seeded)."""

    name = "random"
    version = "1.0.0"
    plugin_api = "1.0"
    Config = RandomConfig
    partitionable = True

    def default_iterations(self, dataset: DatasetInfo, ipc: int) -> int:
        return 0

    def distill(self, ctx: DistillContext) -> SyntheticSet:
        images = torch.cat([ctx.data.random(c, ctx.ipc, ctx.generator(0, c, "init")) for c in ctx.classes])
        labels = torch.tensor(list(ctx.classes)).repeat_interleave(ctx.ipc)
        return SyntheticSet(images=images, labels=labels, pixel_space="normalized")
