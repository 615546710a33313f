"""DANCE (Zhang et al., IJCAI 2024) as a condensekit method plugin: ``condensekit distill dance``.

condensekit finds the method through the ``condensekit.methods`` entry point ``dance``;
``from condensekit_dance import DANCE`` works for library use. The import is lazy so that
listing plugins never pays for torch.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["DANCE", "DANCEConfig", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("DANCE", "DANCEConfig"):
        from condensekit_dance import method

        return getattr(method, name)
    raise AttributeError(f"module 'condensekit_dance' has no attribute {name!r}")
