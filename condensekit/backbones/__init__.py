"""Backbones by name: the ConvNet family of the dataset-condensation literature and timm."""

from condensekit.backbones.api import create_backbone, has_intermediates

__all__ = ["create_backbone", "has_intermediates"]
