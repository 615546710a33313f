"""Evaluation of a synthetic set: train fresh networks on it, test them on the real test split.

Names are imported lazily so the CLI can list protocols without importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "evaluate": "condensekit.evaluation.runner",
    "run_seed": "condensekit.evaluation.runner",
    "EvalProgress": "condensekit.evaluation.runner",
    "EvalReport": "condensekit.evaluation.report",
    "ArchResult": "condensekit.evaluation.report",
    "PROTOCOLS": "condensekit.evaluation.protocols",
    "Protocol": "condensekit.evaluation.protocols",
    "get_protocol": "condensekit.evaluation.protocols",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'condensekit.evaluation' has no attribute {name!r}")
