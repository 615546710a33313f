"""``condensekit.api`` is the whole plugin API: shipped plugins use nothing else, every name in
``__all__`` exists, and its version is the one core checks plugins against.

The shipped plugins and the herding fixture stand for third-party code: if they reach into an
internal module, a refactor of that module breaks them and no API version bump warns anyone.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import condensekit.api as api
from condensekit import plugins

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_SOURCES = sorted([*ROOT.glob("plugins/*/src/**/*.py"), *ROOT.glob("tests/fixtures/*/src/**/*.py")])
PUBLIC = "condensekit.api"


def _internal(module: str) -> bool:
    """True for ``condensekit`` itself or any of its modules other than the public API."""
    return (module == "condensekit" or module.startswith("condensekit.")) and not (
        module == PUBLIC or module.startswith(PUBLIC + ".")
    )


def internal_imports(source: str, filename: str) -> Iterator[tuple[int, str]]:
    """(line, what) for every import of condensekit other than ``condensekit.api``.

    Covers ``import condensekit.x``, ``from condensekit.x import ...``,
    ``from condensekit import x`` (x not ``api``) and ``importlib.import_module("condensekit.x")``
    with a literal name; relative imports stay inside the plugin's own package.
    """
    for node in ast.walk(ast.parse(source, filename=filename)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _internal(alias.name):
                    yield node.lineno, f"import {alias.name}"
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "condensekit":
                for alias in node.names:
                    if alias.name != "api":
                        yield node.lineno, f"from condensekit import {alias.name}"
            elif _internal(node.module):
                yield node.lineno, f"from {node.module} import ..."
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            first = node.args[0]
            if (
                called in ("import_module", "__import__")
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
                and _internal(first.value)
            ):
                yield node.lineno, f"{called}({first.value!r})"


def test_the_scan_sees_every_shipped_plugin() -> None:
    # Guard against a glob that silently matches nothing, which would make the next test pass.
    distributions = {path.relative_to(ROOT).as_posix().split("/src/")[0] for path in PLUGIN_SOURCES}
    assert {
        "plugins/condensekit-datadam",
        "plugins/condensekit-dance",
        "tests/fixtures/condensekit-herding",
    } <= distributions


def test_plugins_import_only_the_public_api() -> None:
    offences = [
        f"{path.relative_to(ROOT)}:{line}: {what}"
        for path in PLUGIN_SOURCES
        for line, what in internal_imports(path.read_text(encoding="utf-8"), str(path))
    ]
    assert not offences, "plugins must import condensekit only through condensekit.api:\n" + "\n".join(offences)


@pytest.mark.parametrize(
    ("source", "flagged"),
    [
        ("import condensekit.methods.base", True),
        ("import condensekit", True),
        ("from condensekit.synthetic import SyntheticSet", True),
        ("from condensekit import methods", True),
        ("from condensekit import api, errors", True),
        ("import importlib\nimportlib.import_module('condensekit.runtime')", True),
        ("import condensekit.api", False),
        ("from condensekit.api import Method", False),
        ("from condensekit import api", False),
        ("from . import method\nfrom .attention import attention_map", False),
        ("from condensekit_datadam.attention import attention_map", False),
    ],
)
def test_scanner_flags_internal_imports(source: str, flagged: bool) -> None:
    assert bool(list(internal_imports(source, "<case>"))) is flagged


def test_every_public_name_resolves() -> None:
    assert len(set(api.__all__)) == len(api.__all__), "duplicate names in condensekit.api.__all__"
    missing = [name for name in api.__all__ if getattr(api, name, None) is None]
    assert not missing
    from condensekit.testing.conformance import MethodConformance

    assert api.MethodConformance is MethodConformance
    assert set(api.__all__) <= set(dir(api))


def test_api_version_is_the_checked_plugin_api() -> None:
    assert api.API_VERSION == f"{plugins.PLUGIN_API[0]}.{plugins.PLUGIN_API[1]}"


def test_importing_the_api_loads_no_cli_and_no_plugin() -> None:
    # A fresh interpreter: this one already imported plugins and pytest.
    probe = (
        "import sys, condensekit.api\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('click', 'typer', 'pytest')"
        " or m.startswith(('condensekit_', 'condensekit.cli')))\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "", f"condensekit.api imported: {result.stdout.strip()}"
