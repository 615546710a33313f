"""Test setup of the DC plugin: an isolated cache, the real data root, CPU-sized threads."""

from __future__ import annotations

from pathlib import Path

import pytest

from condensekit.testing import isolate_environment

SHARED_DATA = Path(__file__).resolve().parents[4] / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def _isolated_environment(tmp_path_factory: pytest.TempPathFactory) -> None:
    isolate_environment(tmp_path_factory.mktemp("cache"), SHARED_DATA)
