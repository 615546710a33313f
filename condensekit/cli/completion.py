"""Shell completion of set references (``show``, ``eval``, ``export``, ``tag``, ``rm``).

``condensekit --install-completion`` (Typer) installs the hook; method names complete as
``distill`` sub-commands. These functions read the registry index only and never fail: a
completion that cannot be computed offers nothing. (The options of ``distill METHOD`` do not
complete: that group is built on click, whose parameters Typer's completion does not walk.)
"""

from __future__ import annotations

import os

from condensekit.paths import REGISTRY_ENV


def _matching(candidates: list[str], incomplete: str) -> list[str]:
    return sorted(c for c in candidates if c.startswith(incomplete))


def complete_sets(incomplete: str) -> list[str]:
    """``NAME``, ``NAME:vN`` and ``NAME:ALIAS`` of every set in the registry of
    ``$CONDENSEKIT_REGISTRY`` (or ./registry)."""
    from condensekit.registry import Registry  # only when completing a reference

    try:
        rows = Registry(os.environ.get(REGISTRY_ENV) or None).list_sets()
    except Exception:  # noqa: BLE001 - a completion must never break the shell
        return []
    refs: list[str] = []
    for row in rows:
        refs.append(row["name"])
        refs += [f"{row['name']}:v{v}" for v in row.get("versions", [])]
        refs += [f"{row['name']}:{alias}" for alias in row.get("aliases", [])]
    return _matching(refs, incomplete)
