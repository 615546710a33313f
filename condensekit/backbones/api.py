"""The backbone contract and factory.

A backbone is an ``nn.Module`` with three views of one network:

- ``forward(x)``: logits, shape (B, num_classes);
- ``embed(x)``: the final embedding (the classifier's input), shape (B, D);
- ``intermediates(x)``: ``(maps, embedding)`` in one pass, where ``maps`` lists each block's
  output feature map (B, C_i, H_i, W_i), earliest first, and ``embedding`` is ``embed(x)``.

DM and DANCE match ``embed``; DataDAM matches attention over ``maps``. Built-in backbones are
entry points of the ``condensekit.backbones`` group (a factory ``(channels, num_classes,
resolution) -> module``); ``timm:NAME`` builds any timm model through the adapter.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from condensekit import plugins
from condensekit.errors import BackboneError, PluginError

TIMM_PREFIX = "timm:"


def create_backbone(
    name: str,
    *,
    channels: int,
    num_classes: int,
    resolution: int,
    seed: int | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a freshly initialized backbone; with ``seed``, the init is deterministic and the
    global RNG is left untouched."""
    if seed is None:
        return _build(name, channels, num_classes, resolution, **kwargs)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _build(name, channels, num_classes, resolution, **kwargs)


def check_backbone_name(name: str) -> None:
    """Fail fast (BackboneError) on a name no entry point or timm model answers to."""
    if name.startswith(TIMM_PREFIX):
        import timm

        model = name[len(TIMM_PREFIX) :]
        if not timm.is_model(model):
            close = timm.list_models(f"*{model}*")[:5]
            hint = f" (similar: {', '.join(close)})" if close else ""
            raise BackboneError(f"unknown timm model {model!r}{hint}; see condensekit list backbones --timm PATTERN")
        return
    known = plugins.names("backbone")
    if name not in known:
        raise BackboneError(
            f"unknown backbone {name!r}: {plugins.suggest(name, known)}; any timm model works as timm:NAME"
        )


def check_backbone(name: str, *, channels: int, num_classes: int, resolution: int) -> None:
    """Fail fast (one-line BackboneError) on a backbone that cannot be built for these inputs
    (a ConvNet too deep for the resolution, a timm model refusing the size), before any data
    is loaded. The throwaway network is built on the ``meta`` device: shapes are checked, no
    weights are allocated or initialized. A factory that cannot build on ``meta`` is built
    once on the CPU instead."""
    check_backbone_name(name)
    try:
        with torch.device("meta"):
            _build(name, channels, num_classes, resolution)
        return
    except BackboneError:
        raise
    except Exception:  # noqa: BLE001 -- some factories need real tensors: retried on the CPU below
        pass
    try:
        _build(name, channels, num_classes, resolution)
    except BackboneError:
        raise
    except Exception as exc:  # noqa: BLE001 -- third-party factories raise anything: one line
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise BackboneError(
            f"backbone {name!r} cannot be built for {channels}x{resolution}x{resolution} inputs "
            f"({exc.__class__.__name__}: {reason}); choose another --backbone or --res"
        ) from None


def _build(name: str, channels: int, num_classes: int, resolution: int, **kwargs: Any) -> nn.Module:
    if name.startswith(TIMM_PREFIX):
        from condensekit.backbones.timm_adapter import TimmBackbone

        return TimmBackbone(name[len(TIMM_PREFIX) :], channels, num_classes, resolution, **kwargs)
    try:
        factory, _ = plugins.load("backbone", name)
    except PluginError as exc:
        raise BackboneError(f"{exc}; any timm model works as timm:NAME") from None
    model: nn.Module = factory(channels=channels, num_classes=num_classes, resolution=resolution, **kwargs)
    return model


def has_intermediates(model: nn.Module) -> bool:
    return callable(getattr(model, "intermediates", None)) and getattr(model, "supports_intermediates", True)
