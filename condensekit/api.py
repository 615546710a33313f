"""The public plugin API: the one module a condensekit plugin imports from.

Stability promise
-----------------
The names in ``__all__`` follow semantic versioning of :data:`API_VERSION`. A minor bump
(``1.0`` -> ``1.1``) only adds names, fields or optional arguments; a major bump (``2.0``)
may remove or change them. A method declares the version it was written against in its
``plugin_api`` class attribute, and core refuses a plugin declaring another major version
or a newer minor one. Everything else in the ``condensekit`` package (``condensekit.methods``,
``condensekit.augment``, ``condensekit.distill``, ...) is internal and may change in any
release, so a plugin that imports only from here keeps working across condensekit releases
of the same API major version.

Import names explicitly (``from condensekit.api import Method, DistillContext``): the
conformance kit :class:`MethodConformance` is loaded on first access because it imports
pytest, which a plugin does not need at run time.

This module imports torch (every method needs it anyway) but never the CLI (click/typer)
nor any plugin, so importing it stays a library-only cost.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from condensekit.augment import DEFAULT_STRATEGY, DSA, AugParams, random_resized_crop_box
from condensekit.backbones import create_backbone, has_intermediates, inference_model
from condensekit.data.base import DatasetInfo, RealData
from condensekit.errors import (
    BackboneError,
    CondensekitError,
    DatasetError,
    PluginError,
    RegistryError,
    UsageError,
)
from condensekit.evaluation.teacher import Teacher
from condensekit.experts import Experts
from condensekit.methods.base import (
    CLASS_SIZE,
    Checkpointer,
    DistillContext,
    ExpertsRequest,
    Method,
    ProgressCallback,
    check_config,
)
from condensekit.methods.common import frozen, initial_images, siamese_params
from condensekit.methods.loop import run_iterations
from condensekit.methods.matching import class_means, mean_discrepancy
from condensekit.plugins import PLUGIN_API
from condensekit.runtime import autocast
from condensekit.synthetic import SyntheticSet, decode_multiformation, encode_multiformation
from condensekit.testing import make_context, make_teacher

if TYPE_CHECKING:
    from condensekit.testing.conformance import MethodConformance

#: The plugin API version this condensekit implements, "major.minor". Derived from
#: ``condensekit.plugins.PLUGIN_API`` (the tuple core checks plugins against) so the two can
#: never disagree.
API_VERSION: str = f"{PLUGIN_API[0]}.{PLUGIN_API[1]}"

__all__ = [
    "API_VERSION",
    # the method contract
    "Method",
    "DistillContext",
    "ExpertsRequest",
    "ProgressCallback",
    "Checkpointer",
    "Experts",
    "Teacher",
    "DatasetInfo",
    "RealData",
    # config ranges: field metadata ("min", "max", "choices", "max": CLASS_SIZE) checked by core
    "check_config",
    "CLASS_SIZE",
    # loop and matching helpers
    "run_iterations",
    "class_means",
    "mean_discrepancy",
    "initial_images",
    "siamese_params",
    "frozen",
    # augmentation
    "DSA",
    "AugParams",
    "DEFAULT_STRATEGY",
    "random_resized_crop_box",
    # backbones and precision
    "create_backbone",
    "has_intermediates",
    "inference_model",
    "autocast",
    # the synthetic set
    "SyntheticSet",
    "encode_multiformation",
    "decode_multiformation",
    # errors
    "CondensekitError",
    "UsageError",
    "PluginError",
    "DatasetError",
    "BackboneError",
    "RegistryError",
    # testing
    "make_context",
    "make_teacher",
    "MethodConformance",
]


def __getattr__(name: str) -> Any:
    # MethodConformance is a pytest test class: importing it eagerly would make pytest a
    # run-time dependency of every plugin.
    if name == "MethodConformance":
        try:
            from condensekit.testing.conformance import MethodConformance
        except ModuleNotFoundError as exc:
            if exc.name != "pytest":
                raise
            raise ImportError(
                "condensekit.api.MethodConformance needs pytest; install it (pip install pytest)"
            ) from exc
        return MethodConformance
    raise AttributeError(f"module 'condensekit.api' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
