"""Exit codes: every error class of the package against the table users read in docs/cli.md.

The table is parsed, not copied, so the documentation and the code cannot drift apart: a new
error class, a new ExitStatus member or a changed code fails here until docs/cli.md says so.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import condensekit
from condensekit.cli.app import run
from condensekit.errors import CondensekitError, ExitStatus

CLI_DOC = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def _exit_code_table() -> list[dict[str, str]]:
    """The rows of the table under "## Exit codes" in docs/cli.md, keyed by its header."""
    section = CLI_DOC.read_text(encoding="utf-8").split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    lines = [line.strip() for line in section.splitlines() if line.strip().startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    return [
        dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")), strict=False)) for line in lines[2:]
    ]


def _documented_classes() -> dict[str, int]:
    """Error class name -> the code of the row whose "raised by" names it."""
    classes: dict[str, int] = {}
    for row in _exit_code_table():
        for name in re.findall(r"`(\w+Error)`", row["raised by"]):
            assert name not in classes, f"{name} is in two rows of the exit-code table"
            classes[name] = int(row["code"])
    return classes


def _package_error_classes() -> list[type[CondensekitError]]:
    """Every CondensekitError subclass defined in condensekit, after importing all its modules."""
    for module in pkgutil.walk_packages(condensekit.__path__, "condensekit."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)
    found, todo = [CondensekitError], [CondensekitError]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub not in found:
                found.append(sub)
                todo.append(sub)
    return [cls for cls in found if cls.__module__.split(".")[0] == "condensekit"]


def test_the_exit_code_table_lists_every_exit_status() -> None:
    rows = {int(row["code"]): row["name"].strip("`") for row in _exit_code_table()}
    assert rows == {status.value: status.name for status in ExitStatus}


@pytest.mark.parametrize("cls", _package_error_classes(), ids=lambda cls: cls.__name__)
def test_each_error_class_exits_with_its_documented_code(cls: type[CondensekitError]) -> None:
    documented = _documented_classes()
    assert cls.__name__ in documented, f"{cls.__name__} is missing from the exit-code table in docs/cli.md"
    assert cls.exit_status == documented[cls.__name__]


def test_the_table_names_no_class_the_package_lacks() -> None:
    assert set(_documented_classes()) == {cls.__name__ for cls in _package_error_classes()}


def test_each_kind_of_error_has_a_code_of_its_own() -> None:
    """Direct subclasses are the kinds (a subclass of one may share its kind's code)."""
    kinds = [cls for cls in _package_error_classes() if CondensekitError in cls.__bases__]
    codes = [cls.exit_status for cls in kinds]
    assert len(set(codes)) == len(codes) and ExitStatus.ERROR not in codes


def test_an_unknown_backbone_exits_6_with_one_line(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    code = run(
        [
            "distill",
            "dm",
            "--data",
            "cifar10-mini",
            "--ipc",
            "1",
            "--backbone",
            "nosuch",
            "--iterations",
            "1",
            "--registry",
            str(tmp_path / "registry"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == ExitStatus.BACKBONE == 6
    assert len(err.splitlines()) == 1 and "unknown backbone 'nosuch'" in err
