"""Names, aliases and references (``name``, ``name:vN``, ``name:latest``, ``name:<alias>``).

A name is what a set (or an experts artifact) is called; its versions ``v1, v2, ...`` are
assigned when written and never reused. ``latest`` always means the highest existing version
and is computed, never stored, so it cannot go stale. User aliases are mutable pointers.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from condensekit.errors import RegistryError

LATEST = "latest"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_VERSION_RE = re.compile(r"^v([1-9][0-9]*)$")
_INVALID_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Ref:
    """A parsed reference: ``version`` is set for ``name:vN``, ``alias`` for any other selector
    (``latest`` included); a bare name has neither and means the latest version."""

    name: str
    version: int | None = None
    alias: str | None = None

    @property
    def is_latest(self) -> bool:
        return self.version is None and self.alias in (None, LATEST)


def validate_name(name: str, what: str = "name") -> str:
    """Return ``name`` if it is a valid set/alias name, else raise a one-line RegistryError."""
    if not _NAME_RE.match(name):
        raise RegistryError(
            f"invalid {what} {name!r}: use 1-128 letters, digits, '-', '_' or '.', starting with a letter or digit"
        )
    return name


def validate_alias(alias: str) -> str:
    """Aliases follow the name rules, and may not shadow ``latest`` or a version (``v3``)."""
    validate_name(alias, "alias")
    if alias == LATEST or _VERSION_RE.match(alias):
        raise RegistryError(f"invalid alias {alias!r}: 'latest' and 'vN' are reserved, pick another")
    return alias


def parse_ref(ref: str) -> Ref:
    """Parse ``name[:selector]``; raise RegistryError on a malformed reference."""
    name, sep, selector = ref.strip().partition(":")
    validate_name(name)
    if not sep:
        return Ref(name)
    if not selector:
        raise RegistryError(f"invalid reference {ref!r}: expected name, name:vN or name:<alias>")
    if match := _VERSION_RE.match(selector):
        return Ref(name, version=int(match.group(1)))
    validate_name(selector, "alias")
    return Ref(name, alias=selector)


def default_name(*parts: object) -> str:
    """Join parts with '-' into a valid name (``timm:resnet18`` becomes ``timm-resnet18``)."""
    joined = "-".join(str(p) for p in parts if p is not None and str(p) != "")
    cleaned = _INVALID_CHARS.sub("-", joined).strip("-._")[:128]
    return validate_name(cleaned or "unnamed")


def closest(name: str, candidates: Iterable[str], what: str = "set") -> str:
    """A short hint listing the existing names closest to ``name`` (for error messages);
    ``what`` names the kind of artifact when there are none."""
    pool = sorted(set(candidates))
    if not pool:
        return f"no {what} stored in this registry"
    near = difflib.get_close_matches(name, pool, n=3, cutoff=0.4) or pool[:3]
    return "closest: " + ", ".join(near)
