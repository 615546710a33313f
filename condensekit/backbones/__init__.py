"""Backbones by name: the ConvNet family of the dataset-condensation literature and timm."""

from condensekit.backbones.api import check_backbone, check_backbone_name, create_backbone, has_intermediates
from condensekit.backbones.inference import inference_model

__all__ = ["check_backbone", "check_backbone_name", "create_backbone", "has_intermediates", "inference_model"]
