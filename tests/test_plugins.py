"""Plugin discovery through real entry points, including broken and incompatible plugins."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from condensekit import __version__, plugins
from condensekit.api import Method
from condensekit.cli.app import run
from condensekit.errors import ExitStatus, PluginError


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


NOT_A_DATACLASS = '''
from condensekit.api import Method
from condensekit.cli.app import run

class Cfg:
    lr: float = 0.1

class NoDataclass(Method):
    """Imports fine, but its Config is not a dataclass."""
    name = "no-dataclass"
    version = "0.3.0"
    plugin_api = "1.0"
    Config = Cfg
'''


@pytest.fixture(scope="module")
def broken_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One site of broken plugins for the module: validated (in a child process) by the first
    listing and read from the validation cache afterwards, as a user's next listing would."""
    return make_distribution(
        tmp_path_factory.mktemp("broken") / "site",
        "condensekit-broken",
        {
            "condensekit.methods": {
                "broken-import": "ck_broken_import:Thing",
                "broken-attr": "ck_broken_attr:Missing",
                "future": "ck_future:FutureMethod",
                "no-dataclass": "ck_no_dataclass:NoDataclass",
            },
            "condensekit.backbones": {"not-callable": "ck_not_callable:WIDTH"},
            "condensekit.datasets": {"not-a-spec": "ck_not_a_spec:SPEC"},
        },
        {
            "ck_broken_import": 'import module_that_does_not_exist\n\nclass Thing:\n    """Never loads."""\n',
            "ck_broken_attr": 'class Present:\n    """Not the entry point."""\n',
            "ck_future": GOOD_FUTURE,
            "ck_no_dataclass": NOT_A_DATACLASS,
            "ck_not_callable": "WIDTH = 128\n",
            "ck_not_a_spec": 'SPEC = {"name": "not-a-spec"}\n',
        },
    )


@pytest.fixture
def broken_distribution(broken_site: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The broken plugins installed (on ``sys.path``) for one test."""
    monkeypatch.syspath_prepend(str(broken_site))
    return broken_site


def cli(*args: str, site: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The real console entry point in a subprocess, with ``site`` on its path."""
    extra = dict(env or {})
    if site is not None:
        extra["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, "-m", "condensekit", *args],
        capture_output=True,
        check=False,
        text=True,
        timeout=300,
        env={**os.environ, **extra},
    )


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
    with pytest.raises(PluginError, match=r"failed to import .*ModuleNotFoundError"):
        plugins.load_method("broken-import")


def test_failing_import_is_reported_by_check(broken_distribution: Path) -> None:
    assert plugins.check_import("method", "broken-import").startswith("broken:")


def test_api_major_mismatch_is_refused(broken_distribution: Path) -> None:
    with pytest.raises(PluginError, match=r"needs plugin API 2\.0 but this condensekit implements 1\.2"):
        plugins.load_method("future")


def test_unknown_method_suggests_close_names() -> None:
    with pytest.raises(PluginError, match="did you mean dm"):
        plugins.load_method("dmm")


# Validation of the method contract ---------------------------------------------------------


@dataclasses.dataclass
class SampleConfig:
    lr: float = 0.1
    steps: int = 10


@dataclasses.dataclass
class NeedsValue:
    lr: float


_OMIT = object()


def sample_method(**attrs: Any) -> type:
    """A Method subclass named "sample" that follows the contract, but for ``attrs``."""
    body: dict[str, Any] = {
        "__doc__": "A sample method.",
        "name": "sample",
        "version": "1.0",
        "plugin_api": "1.0",
        "Config": SampleConfig,
        "presets": {"fast": {"steps": 2}},
        "default_preset": None,
        "smoke_config": {"steps": 1},
    }
    body.update(attrs)
    return type("Sample", (Method,), {k: v for k, v in body.items() if v is not _OMIT})


def test_valid_method_passes_validation() -> None:
    plugins.validate_method(sample_method(default_preset="fast"), "sample")


@pytest.mark.parametrize(
    "attrs,reason",
    [
        ({"plugin_api": _OMIT}, "method 'sample' declares no plugin_api string; it must set plugin_api"),
        ({"name": _OMIT}, "method 'sample' .* sets no name; set name = 'sample'"),
        ({"name": "other"}, "sets name = 'other'; set name = 'sample', the entry-point name"),
        ({"version": ""}, "method 'sample' sets no version"),
        ({"Config": _OMIT}, "method 'sample' has no Config; set Config to a dataclass"),
        ({"Config": dict}, "Config .* is not a dataclass; decorate it with @dataclass"),
        (
            {"Config": dataclasses.make_dataclass("C", [("seed", int, 0)])},
            "config field 'seed' collides with a core option; rename it",
        ),
        (
            {"presets": {"fast": {"lr_typo": 1.0}}},
            r"preset 'fast' sets unknown config field\(s\) lr_typo; use fields of",
        ),
        ({"default_preset": "slow"}, r"default_preset 'slow' is not one of its presets \(fast\)"),
        ({"smoke_config": {"iters": 1}}, r"smoke_config sets unknown config field\(s\) iters"),
        (
            {"Config": NeedsValue, "presets": {}, "smoke_config": {}},
            r"cannot build its default config \(TypeError: .*\); give every Config field a valid default",
        ),
    ],
    ids=[
        "no-plugin-api",
        "no-name",
        "other-name",
        "no-version",
        "no-config",
        "config-not-dataclass",
        "core-option-field",
        "preset-unknown-field",
        "unknown-default-preset",
        "smoke-unknown-field",
        "no-default-config",
    ],
)
def test_method_breaking_the_contract_is_refused(attrs: dict[str, Any], reason: str) -> None:
    with pytest.raises(PluginError, match=reason) as raised:
        plugins.validate_method(sample_method(**attrs), "sample")
    assert len(str(raised.value).splitlines()) == 1


def test_non_method_class_is_refused() -> None:
    with pytest.raises(
        PluginError, match=r"is not a subclass of condensekit\.api\.Method; point its entry point at one"
    ):
        plugins.validate_method(SampleConfig, "sample")


def test_method_failing_validation_is_refused_at_load(broken_distribution: Path) -> None:
    with pytest.raises(PluginError, match=r"method 'no-dataclass' Config .* is not a dataclass"):
        plugins.load_method("no-dataclass")


# Listing reports the truth ------------------------------------------------------------------


def test_failing_import_is_listed_as_broken_without_check(broken_distribution: Path) -> None:
    infos = {info.name: info for info in plugins.discover("method")}
    assert infos["broken-import"].status.startswith("broken: method plugin 'broken-import' from condensekit-broken")
    assert "ModuleNotFoundError" in infos["broken-import"].status


def test_failing_validation_is_listed_as_broken_with_the_reason(broken_distribution: Path) -> None:
    infos = {info.name: info for info in plugins.discover("method")}
    assert infos["no-dataclass"].status == (
        "broken: method 'no-dataclass' Config (ck_no_dataclass:Cfg) is not a dataclass; decorate it with @dataclass"
    )


def test_non_callable_backbone_is_listed_as_broken(broken_distribution: Path) -> None:
    infos = {info.name: info for info in plugins.discover("backbone")}
    assert infos["not-callable"].status.startswith("broken: backbone plugin 'not-callable' (")
    assert "is not callable" in infos["not-callable"].status


def test_dataset_that_is_not_a_spec_is_listed_as_broken(broken_distribution: Path) -> None:
    infos = {info.name: info for info in plugins.discover("dataset")}
    assert "is not a condensekit.data.DatasetSpec" in infos["not-a-spec"].status


# The validation cache ------------------------------------------------------------------------


@pytest.fixture
def flip_backbone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A backbone plugin that validates; returns its module file (tests then break it)."""
    root = make_distribution(
        tmp_path / "site",
        "condensekit-flip",
        {"condensekit.backbones": {"flip": "ck_flip_backbone:net"}},
        {"ck_flip_backbone": 'def net(**kwargs):\n    """A network."""\n    return None\n'},
    )
    monkeypatch.syspath_prepend(str(root))
    infos = {info.name: info for info in plugins.discover("backbone")}
    assert infos["flip"].status == "ok"
    return root / "ck_flip_backbone.py"


def break_module(module: Path, keep_key: bool) -> None:
    """Make the module fail to import; with ``keep_key``, keep its size and mtime (the cache key)."""
    before = module.stat()
    broken = "import module_that_does_not_exist\ndef net(**k): pass\n"  # still defines net: only import tells
    if keep_key:
        broken = broken.ljust(before.st_size - 1, "#") + "\n"
    module.write_text(broken)
    if keep_key:
        os.utime(module, ns=(before.st_atime_ns, before.st_mtime_ns))
    # Python's own bytecode cache trusts the same mtime and size: drop it so an import reads the source.
    shutil.rmtree(module.parent / "__pycache__", ignore_errors=True)


def test_validation_result_is_cached_under_its_key(flip_backbone: Path) -> None:
    entry = json.loads(plugins.status_cache_path().read_text())["entries"]["condensekit.backbones:flip"]
    stat = flip_backbone.stat()
    assert entry["status"] == "ok"
    assert entry["key"]["distribution"] == "condensekit-flip"
    assert entry["key"]["distribution_version"] == "0.3.0"
    assert entry["key"]["module_file"] == str(flip_backbone)
    assert (entry["key"]["mtime_ns"], entry["key"]["size"]) == (stat.st_mtime_ns, stat.st_size)
    assert entry["key"]["condensekit"] == __version__


def test_fresh_cache_entry_is_used_without_validating_again(flip_backbone: Path) -> None:
    break_module(flip_backbone, keep_key=True)
    infos = {info.name: info for info in plugins.discover("backbone")}
    assert infos["flip"].status == "ok"  # same key: the cached result, no import


def test_check_validates_again_despite_a_fresh_entry(flip_backbone: Path) -> None:
    break_module(flip_backbone, keep_key=True)
    infos = {info.name: info for info in plugins.discover("backbone", force=True)}
    assert infos["flip"].status.startswith(
        "broken: backbone plugin 'flip' from condensekit-flip 0.3.0 failed to import"
    )


def test_edited_module_is_validated_again(flip_backbone: Path) -> None:
    break_module(flip_backbone, keep_key=False)
    infos = {info.name: info for info in plugins.discover("backbone")}
    assert infos["flip"].status.startswith("broken: backbone plugin 'flip'")


def test_plugin_that_kills_the_interpreter_is_listed_as_broken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_distribution(
        tmp_path / "site",
        "condensekit-exits",
        {"condensekit.backbones": {"exits": "ck_exits_backbone:net"}},
        {"ck_exits_backbone": "import os\nos._exit(7)\n\ndef net(**kwargs):\n    return None\n"},
    )
    monkeypatch.syspath_prepend(str(root))
    infos = {info.name: info for info in plugins.discover("backbone")}
    assert infos["exits"].status == (
        "broken: backbone plugin 'exits' ended the Python process while importing (exit status 7); "
        "reinstall or uninstall condensekit-exits"
    )
    assert infos["convnet"].status == "ok"


LIST_AND_REPORT = (
    "import sys\n"
    "popen = []\n"
    "sys.addaudithook(lambda event, args: popen.append(args) if event == 'subprocess.Popen' else None)\n"
    "from condensekit.cli.app import run\n"
    "code = run(['list', 'methods', '--json'])\n"
    "loaded = [m for m in sys.modules if m == 'torch' or m.startswith(('condensekit_', 'condensekit.methods.'))]\n"
    "print('LOADED', loaded, 'SUBPROCESSES', len(popen), 'CODE', code, file=sys.stderr)\n"
)


@pytest.fixture(scope="module")
def listings(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """The report of LIST_AND_REPORT in a fresh process with a cold validation cache, then in
    another fresh process with the cache the first one left."""
    env = {**os.environ, "CONDENSEKIT_CACHE": str(tmp_path_factory.mktemp("cache"))}

    def report() -> str:
        command = [sys.executable, "-c", LIST_AND_REPORT]
        return subprocess.run(command, capture_output=True, check=False, text=True, timeout=300, env=env).stderr

    cold = report()
    return cold, report()


def test_listing_with_a_cold_cache_imports_no_plugin_and_no_torch(listings: tuple[str, str]) -> None:
    cold, _ = listings
    assert "LOADED [] SUBPROCESSES 1 CODE 0" in cold, cold  # validated in a child


def test_listing_with_a_warm_cache_imports_nothing_and_starts_no_process(listings: tuple[str, str]) -> None:
    _, warm = listings
    assert "LOADED [] SUBPROCESSES 0 CODE 0" in warm, warm


# A broken plugin breaks only its own command ---------------------------------------------------


def squash(text: str) -> str:
    """Text without whitespace: help output is wrapped (at spaces and at hyphens)."""
    return "".join(text.split())


def test_distill_help_lists_broken_methods_and_exits_0(broken_distribution: Path, capsys) -> None:
    code = run(["distill", "--help"])
    out, err = capsys.readouterr()
    assert code == 0, err
    shown = squash(out)
    assert squash("broken-import (broken: method plugin 'broken-import' from condensekit-broken 0.3.0") in shown
    assert (
        squash("no-dataclass (broken: method 'no-dataclass' Config (ck_no_dataclass:Cfg) is not a dataclass") in shown
    )
    assert squash("herding Herding: real images") in shown


def test_running_a_broken_method_exits_3_with_the_reason(broken_distribution: Path) -> None:
    """In a real process: the console script's exit status and its only line on stderr."""
    result = cli("distill", "no-dataclass", "--data", "cifar10-mini", "--ipc", "1", site=broken_distribution)
    assert result.returncode == ExitStatus.PLUGIN
    assert result.stderr.strip() == (
        "error: method 'no-dataclass' Config (ck_no_dataclass:Cfg) is not a dataclass; decorate it with @dataclass"
    )


def test_other_methods_still_run_beside_a_broken_one(broken_distribution: Path, capsys) -> None:
    code = run(["distill", "herding", "--help"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "--candidates" in out
