"""Test setup of the DataDAM plugin: an isolated cache, the real data root, CPU-sized threads."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[4] / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def _isolated_environment(tmp_path_factory: pytest.TempPathFactory) -> None:
    # A plugin's tests run outside condensekit's tests/ folder, so they set this up themselves.
    os.environ["CONDENSEKIT_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    if not os.environ.get("CONDENSEKIT_DATA") and SHARED_DATA.is_dir():
        os.environ["CONDENSEKIT_DATA"] = str(SHARED_DATA)
    os.environ.pop("CONDENSEKIT_REGISTRY", None)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
