"""DC / DSA gradient matching (Zhao et al., ICLR 2021; Zhao & Bilen, ICML 2021) as a
condensekit method plugin.

Kept import-light: ``condensekit list`` locates ``condensekit_dc.method`` without importing
torch, and that lookup imports this package.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "GradientMatching": "condensekit_dc.method",
    "DCConfig": "condensekit_dc.method",
    "get_loops": "condensekit_dc.method",
    "match_distance": "condensekit_dc.matching",
}

__all__ = ["__version__", *_EXPORTS]  # noqa: PLE0604 -- the keys of _EXPORTS, all str (ruff cannot see through *dict)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'condensekit_dc' has no attribute {name!r}")
