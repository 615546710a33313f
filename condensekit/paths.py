"""Where condensekit reads data and keeps caches and registries (flags > env vars > defaults)."""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "CONDENSEKIT_DATA"
CACHE_ENV = "CONDENSEKIT_CACHE"
REGISTRY_ENV = "CONDENSEKIT_REGISTRY"


def data_root(explicit: str | os.PathLike[str] | None = None) -> Path:
    """``--data-root`` > ``$CONDENSEKIT_DATA`` > ``~/.cache/condensekit/data``."""
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser()
    return Path("~/.cache/condensekit/data").expanduser()


def cache_dir() -> Path:
    """``$CONDENSEKIT_CACHE`` > ``~/.cache/condensekit`` (array caches, never the data root)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path("~/.cache/condensekit").expanduser()


def registry_root(explicit: str | os.PathLike[str] | None = None) -> Path:
    """``--registry`` > ``$CONDENSEKIT_REGISTRY`` > ``./registry`` (like MLflow's ``./mlruns``)."""
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get(REGISTRY_ENV):
        return Path(os.environ[REGISTRY_ENV]).expanduser()
    return Path.cwd() / "registry"
