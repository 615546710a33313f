"""Shared test setup: isolated cache and registry, the real data root, CPU-sized threads."""

from __future__ import annotations

import importlib
import os
import textwrap
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

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


@pytest.fixture
def install_method(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str, str, str], ModuleType]:
    """``install_method(name, class_name, source)``: a real installed method distribution
    (``condensekit-<name>`` dist-info with its ``condensekit.methods`` entry point, module
    ``ck_<name>`` holding ``source``) on ``sys.path`` for this test; returns the module."""

    def install(name: str, class_name: str, source: str) -> ModuleType:
        site = tmp_path / "site"
        dist_info = site / f"condensekit_{name}-0.1.0.dist-info"
        dist_info.mkdir(parents=True)
        (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: condensekit-{name}\nVersion: 0.1.0\n")
        (dist_info / "entry_points.txt").write_text(f"[condensekit.methods]\n{name} = ck_{name}:{class_name}\n")
        (site / f"ck_{name}.py").write_text(textwrap.dedent(source))
        monkeypatch.syspath_prepend(str(site))
        return importlib.import_module(f"ck_{name}")

    return install
