"""The local registry of synthetic sets and experts (see :mod:`condensekit.registry.store`
and ``docs/format.md``)."""

from condensekit.registry.store import Registry, SetVersion

__all__ = ["Registry", "SetVersion"]
