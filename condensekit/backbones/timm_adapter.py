"""Any timm model as a condensekit backbone (randomly initialized, never downloaded)."""

from __future__ import annotations

from typing import Any, Protocol, cast

import torch
from torch import nn

from condensekit.errors import BackboneError


class _TimmModel(Protocol):
    """The methods every timm model has by convention (``timm.create_model`` is typed ``nn.Module``)."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...
    def forward_features(self, x: torch.Tensor) -> torch.Tensor: ...
    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor: ...
    def forward_intermediates(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]: ...


class TimmBackbone(nn.Module):
    """Wraps ``timm.create_model(name, pretrained=False)`` with the backbone contract.

    ``intermediates`` uses timm's ``forward_intermediates`` where the model implements it;
    other models still work for methods that only need ``embed``.
    """

    def __init__(self, model_name: str, channels: int, num_classes: int, resolution: int) -> None:
        super().__init__()
        import timm

        from condensekit.backbones.api import TIMM_PREFIX, check_backbone_name

        check_backbone_name(TIMM_PREFIX + model_name)
        kwargs: dict[str, Any] = {"pretrained": False, "num_classes": num_classes, "in_chans": channels}
        try:
            # Transformers need the input size; convolutional models reject the argument.
            model = timm.create_model(model_name, img_size=resolution, **kwargs)
        except TypeError:
            model = timm.create_model(model_name, **kwargs)
        self.model = cast(_TimmModel, model)
        self.model_name = model_name
        self.num_classes = num_classes
        self.supports_intermediates = hasattr(self.model, "forward_intermediates")
        with torch.no_grad():
            probe = torch.zeros(2, channels, resolution, resolution)
            try:
                self.embed_dim = int(self.embed(probe).shape[1])
            except Exception as exc:  # noqa: BLE001 -- timm raises many kinds for unsupported input sizes
                raise BackboneError(
                    f"timm model {model_name!r} cannot take {channels}x{resolution}x{resolution} inputs: {exc}"
                ) from None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True).flatten(1)

    def intermediates(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        if not self.supports_intermediates:
            raise BackboneError(
                f"timm model {self.model_name!r} does not expose intermediate features "
                f"(no forward_intermediates); choose a ConvNet or a timm model that does, e.g. timm:resnet18"
            )
        final, maps = self.model.forward_intermediates(x)
        maps = [m for m in maps if m.dim() == 4]
        embedding = self.model.forward_head(final, pre_logits=True).flatten(1)
        return maps, embedding
