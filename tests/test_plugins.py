"""Plugin discovery through real entry points, including broken and incompatible plugins."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from condensekit import plugins
from condensekit.errors import PluginError


def make_distribution(root: Path, name: str, entry_points: dict[str, dict[str, str]], modules: dict[str, str]) -> Path:
    """A real installed-looking distribution (dist-info + modules) in ``root``."""
    dist_info = root / f"{name.replace('-', '_')}-0.3.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.3.0\n")
    lines = []
    for group, eps in entry_points.items():
        lines.append(f"[{group}]")
        lines.extend(f"{k} = {v}" for k, v in eps.items())
    (dist_info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    for module, source in modules.items():
        (root / f"{module}.py").write_text(source)
    return root


GOOD_FUTURE = '''
from dataclasses import dataclass
from condensekit.methods.base import Method

@dataclass
class Cfg:
    pass

class FutureMethod(Method):
    """Declares a plugin API this core does not implement."""
    name = "future"
    version = "9.0"
    plugin_api = "2.0"
    Config = Cfg
'''


@pytest.fixture
def broken_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = make_distribution(
        tmp_path / "site",
        "condensekit-broken",
        {
            "condensekit.methods": {
                "broken-import": "ck_broken_import:Thing",
                "broken-attr": "ck_broken_attr:Missing",
                "future": "ck_future:FutureMethod",
            }
        },
        {
            "ck_broken_import": 'import module_that_does_not_exist\n\nclass Thing:\n    """Never loads."""\n',
            "ck_broken_attr": 'class Present:\n    """Not the entry point."""\n',
            "ck_future": GOOD_FUTURE,
        },
    )
    monkeypatch.syspath_prepend(str(root))
    return root


@pytest.mark.parametrize("kind,builtin", [("method", "dm"), ("dataset", "cifar10"), ("backbone", "convnet")])
def test_discovers_builtins_of_each_group(kind: str, builtin: str) -> None:
    infos = {info.name: info for info in plugins.discover(kind)}
    assert builtin in infos
    assert infos[builtin].distribution == "condensekit"
    assert infos[builtin].status == "ok"


def test_discovery_reads_description_without_importing() -> None:
    sys.modules.pop("condensekit.methods.dm", None)
    infos = {info.name: info for info in plugins.discover("method")}
    assert "condensekit.methods.dm" not in sys.modules
    assert infos["dm"].description.startswith("Distribution Matching")


def test_third_party_fixture_plugin_is_discovered() -> None:
    infos = {info.name: info for info in plugins.discover("method")}
    assert infos["herding"].distribution == "condensekit-herding"
    assert infos["herding"].status == "ok"


def test_missing_attribute_is_listed_as_broken(broken_distribution: Path) -> None:
    infos = {info.name: info for info in plugins.discover("method")}
    assert infos["broken-attr"].status.startswith("broken: module 'ck_broken_attr' has no attribute 'Missing'")
    assert infos["broken-attr"].distribution == "condensekit-broken"


def test_failing_import_is_a_plugin_error(broken_distribution: Path) -> None:
    with pytest.raises(PluginError, match="failed to import .*ModuleNotFoundError"):
        plugins.load_method("broken-import")


def test_failing_import_is_reported_by_check(broken_distribution: Path) -> None:
    assert plugins.check_import("method", "broken-import").startswith("broken:")


def test_api_major_mismatch_is_refused(broken_distribution: Path) -> None:
    with pytest.raises(PluginError, match="needs plugin API 2.0 but this condensekit implements 1.0"):
        plugins.load_method("future")


def test_unknown_method_suggests_close_names() -> None:
    with pytest.raises(PluginError, match="did you mean dm"):
        plugins.load_method("dmm")


def test_listing_methods_imports_no_plugin_and_no_torch() -> None:
    import subprocess

    code = (
        "import sys\n"
        "from condensekit.cli.app import run\n"
        "run(['list', 'methods', '--json'])\n"
        "loaded = [m for m in sys.modules if m == 'torch' or m.startswith(('condensekit_', 'condensekit.methods.'))]\n"
        "print('LOADED', loaded, file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "LOADED []" in result.stderr
