"""Shared test setup: isolated cache and registry, the real data root, CPU-sized threads."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def _isolated_environment(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Caches go to a per-session folder; the data root is the real shared data when present."""
    os.environ["CONDENSEKIT_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    if not os.environ.get("CONDENSEKIT_DATA") and SHARED_DATA.is_dir():
        os.environ["CONDENSEKIT_DATA"] = str(SHARED_DATA)
    os.environ.pop("CONDENSEKIT_REGISTRY", None)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture
def data_root() -> Path:
    root = Path(os.environ.get("CONDENSEKIT_DATA", SHARED_DATA))
    if not root.is_dir():
        pytest.skip(f"real data root {root} is missing; set CONDENSEKIT_DATA")
    return root


@pytest.fixture
def registry_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh registry root for one test, also exported for CLI invocations."""
    root = tmp_path / "registry"
    monkeypatch.setenv("CONDENSEKIT_REGISTRY", str(root))
    return root
