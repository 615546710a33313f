"""RDED (Sun et al., CVPR 2024) as a condensekit method plugin: ``condensekit distill rded``.

condensekit finds the method through the ``condensekit.methods`` entry point ``rded``;
``from condensekit_rded import RDED`` works for library use. The import is lazy so that
listing plugins never pays for torch.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["RDED", "RDEDConfig", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("RDED", "RDEDConfig"):
        from condensekit_rded import method

        return getattr(method, name)
    raise AttributeError(f"module 'condensekit_rded' has no attribute {name!r}")
