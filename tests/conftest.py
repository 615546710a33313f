"""Shared test setup: isolated cache and registry, the real data root, CPU-sized threads."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from condensekit.testing import isolate_environment

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def _isolated_environment(tmp_path_factory: pytest.TempPathFactory) -> None:
    isolate_environment(tmp_path_factory.mktemp("cache"), SHARED_DATA)


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
