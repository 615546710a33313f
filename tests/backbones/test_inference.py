"""inference_model: the same outputs as the network it copies, faster, and the original untouched."""

from __future__ import annotations

import torch
from torch import nn

from condensekit.backbones import create_backbone, inference_model


def _with_statistics(model: nn.Module) -> nn.Module:
    """A network whose BatchNorm layers hold non-trivial running statistics, in eval mode."""
    gen = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.copy_(torch.rand(module.num_features, generator=gen) - 0.5)
            module.running_var.copy_(torch.rand(module.num_features, generator=gen) + 0.5)
    return model.eval()


def test_a_batchnorm_convnet_gives_the_same_logits_without_batchnorm_layers() -> None:
    model = _with_statistics(create_backbone("convnet-bn", channels=3, num_classes=10, resolution=32, seed=0))
    fast = inference_model(model)
    x = torch.randn(8, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(fast(x), model(x), atol=1e-5)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())


def test_a_timm_resnet_gives_the_same_logits() -> None:
    model = _with_statistics(create_backbone("timm:resnet18", channels=3, num_classes=10, resolution=32, seed=0))
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(inference_model(model)(x), model(x), atol=1e-4)


def test_the_original_keeps_its_layers_and_gradients() -> None:
    model = create_backbone("convnet-bn", channels=3, num_classes=10, resolution=32, seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = inference_model(model)
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not fast.training and not any(p.requires_grad for p in fast.parameters())
