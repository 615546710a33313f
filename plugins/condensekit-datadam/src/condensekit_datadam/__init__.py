"""DataDAM (Sajedi et al., ICCV 2023) as a condensekit method plugin.

Kept import-light: ``condensekit list`` locates ``condensekit_datadam.method`` without
importing torch, and that lookup imports this package.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "DataDAM": "condensekit_datadam.method",
    "DataDAMConfig": "condensekit_datadam.method",
    "attention_map": "condensekit_datadam.attention",
    "attention_loss": "condensekit_datadam.attention",
    "attention_distance": "condensekit_datadam.attention",
}

__all__ = ["__version__", *_EXPORTS]  # noqa: PLE0604 -- the keys of _EXPORTS, all str (ruff cannot see through *dict)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'condensekit_datadam' has no attribute {name!r}")
