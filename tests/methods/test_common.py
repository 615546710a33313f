"""Shared building blocks of the image-optimizing methods."""

from __future__ import annotations

import torch

from condensekit.backbones import create_backbone
from condensekit.methods.common import frozen


def test_frozen_network_is_in_train_mode_without_weight_gradients() -> None:
    net = frozen(create_backbone("convnet", channels=3, num_classes=10, resolution=32, seed=0).eval())
    assert net.training
    assert not any(p.requires_grad for p in net.parameters())


def test_frozen_network_runs_channels_last_and_still_passes_gradients_to_its_input() -> None:
    net = frozen(create_backbone("convnet", channels=3, num_classes=10, resolution=32, seed=0))
    assert net.blocks[1][0].weight.is_contiguous(memory_format=torch.channels_last)
    images = torch.randn(2, 3, 32, 32, requires_grad=True)
    net.embed(images).square().sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
