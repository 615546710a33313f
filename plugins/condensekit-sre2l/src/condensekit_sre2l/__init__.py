"""SRe2L (Yin, Xing, Shen, NeurIPS 2023) as a condensekit method plugin: ``condensekit distill sre2l``.

condensekit finds the method through the ``condensekit.methods`` entry point ``sre2l``;
``from condensekit_sre2l import SRe2L`` works for library use. The import is lazy so that
listing plugins never pays for torch.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["SRe2L", "SRe2LConfig", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("SRe2L", "SRe2LConfig"):
        from condensekit_sre2l import method

        return getattr(method, name)
    raise AttributeError(f"module 'condensekit_sre2l' has no attribute {name!r}")
