"""Shell completion of the names users type: set references (``show``, ``eval``, ``export``,
``tag``, ``rm``), datasets and backbones (``experts train --data/--backbone``, ``eval --arch``);
method names complete as ``distill`` sub-commands.

``condensekit --install-completion`` (Typer) installs the hook. These functions read entry-point
metadata and the registry index only (no plugin import, no torch) and never fail: a completion
that cannot be computed offers nothing. (The options of ``distill METHOD`` do not complete: that
group is built on click, whose parameters Typer's own copy of click does not walk.)
"""

from __future__ import annotations

import os

from condensekit import plugins
from condensekit.paths import REGISTRY_ENV


def _matching(candidates: list[str], incomplete: str) -> list[str]:
    return sorted(c for c in candidates if c.startswith(incomplete))


def complete_datasets(incomplete: str) -> list[str]:
    return _matching(plugins.names("dataset"), incomplete)


def complete_backbones(incomplete: str) -> list[str]:
    # timm's models are too many to offer; its prefix is.
    return _matching([*plugins.names("backbone"), "timm:"], incomplete)


def complete_archs(incomplete: str) -> list[str]:
    """The last name of a comma-separated ``--arch`` list."""
    done, _, last = incomplete.rpartition(",")
    prefix = f"{done}," if done else ""
    return [prefix + name for name in complete_backbones(last)]


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
