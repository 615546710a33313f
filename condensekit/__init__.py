"""condensekit: dataset condensation from the command line, with methods as plugins.

The public API is re-exported here and imported lazily, so ``condensekit --version`` and
``condensekit list`` do not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "SyntheticSet": "condensekit.synthetic",
    "Method": "condensekit.methods.base",
    "DistillContext": "condensekit.methods.base",
    "ExpertsRequest": "condensekit.methods.base",
    "run_iterations": "condensekit.methods.loop",
    "mean_discrepancy": "condensekit.methods.matching",
    "class_means": "condensekit.methods.matching",
    "DatasetInfo": "condensekit.data.base",
    "RealData": "condensekit.data.base",
    "load_dataset": "condensekit.data",
    "dataset_info": "condensekit.data",
    "create_backbone": "condensekit.backbones",
    "DSA": "condensekit.augment",
    "Registry": "condensekit.registry",
    "evaluate": "condensekit.evaluation",
    "distill": "condensekit.distill",
    "select_device": "condensekit.runtime",
    "load": "condensekit.sharing.loader",
}

__all__ = ["__version__", *_EXPORTS]  # noqa: PLE0604 -- the keys of _EXPORTS, all str (ruff cannot see through *dict)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'condensekit' has no attribute {name!r}")
