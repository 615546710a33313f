"""The built-in ConvNet: its instance norm and its channels_last layout."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from condensekit.backbones import create_backbone
from condensekit.backbones.convnet import InstanceNorm


def _pair(channels: int = 8) -> tuple[InstanceNorm, nn.GroupNorm]:
    torch.manual_seed(0)
    fast = InstanceNorm(channels)
    nn.init.normal_(fast.weight)
    nn.init.normal_(fast.bias)
    reference = nn.GroupNorm(channels, channels, affine=True)
    reference.load_state_dict(fast.state_dict())
    return fast, reference


@pytest.mark.parametrize("size", [4, 16, 32])
def test_instance_norm_equals_group_norm_per_channel_without_autograd(size: int) -> None:
    fast, reference = _pair()
    x = (3.0 * torch.randn(5, 8, size, size) + 1.0).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), reference(x.contiguous()), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("size", [4, 16, 32])
def test_instance_norm_equals_group_norm_per_channel_in_value_and_gradient(size: int) -> None:
    fast, reference = _pair()
    x = (3.0 * torch.randn(5, 8, size, size) + 1.0).contiguous(memory_format=torch.channels_last)
    x_fast, x_ref = x.clone().requires_grad_(), x.clone().contiguous().requires_grad_()
    out_fast, out_ref = fast(x_fast), reference(x_ref)
    torch.testing.assert_close(out_fast, out_ref, rtol=1e-5, atol=1e-5)
    weights = torch.randn_like(out_ref)
    (out_fast * weights).sum().backward()
    (out_ref * weights).sum().backward()
    torch.testing.assert_close(x_fast.grad, x_ref.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(fast.weight.grad, reference.weight.grad, rtol=1e-4, atol=1e-4)


def test_instance_norm_has_the_reference_state_dict_keys() -> None:
    assert InstanceNorm(8).state_dict().keys() == nn.GroupNorm(8, 8).state_dict().keys()


def test_a_channels_last_convnet_gives_channels_last_maps_and_the_same_values() -> None:
    plain = create_backbone("convnet", channels=3, num_classes=10, resolution=32, seed=0)
    fast = create_backbone("convnet", channels=3, num_classes=10, resolution=32, seed=0)
    fast.to(memory_format=torch.channels_last)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        maps, embedding = fast.intermediates(x)  # an NCHW input: the first conv switches layout
        plain_maps, plain_embedding = plain.intermediates(x)
    assert all(m.is_contiguous(memory_format=torch.channels_last) for m in maps)
    for m, p in zip(maps, plain_maps, strict=True):
        torch.testing.assert_close(m, p, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(embedding, plain_embedding, rtol=1e-4, atol=1e-5)
