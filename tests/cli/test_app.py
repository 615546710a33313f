"""The command line: version, listing, usage errors and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from condensekit import __version__
from condensekit.cli.app import run
from condensekit.errors import ExitStatus


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The real console entry point in a subprocess (real stdout/stderr, real exit code), for
    what only a real process shows; the other tests call ``run``, what the entry point calls."""
    return subprocess.run(
        [sys.executable, "-m", "condensekit", *args],
        capture_output=True,
        check=False,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def test_version_prints_package_version() -> None:
    result = cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"condensekit {__version__}"


def test_list_methods_json_names_distributions(capsys: pytest.CaptureFixture) -> None:
    code = run(["list", "methods", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    rows = {row["name"]: row for row in json.loads(out)}
    assert rows["dm"]["distribution"] == "condensekit"
    assert rows["random"]["distribution"] == "condensekit"
    assert rows["herding"]["distribution"] == "condensekit-herding"
    assert all(row["status"] == "ok" for row in rows.values())


def test_unknown_method_is_one_line_plugin_error(capsys: pytest.CaptureFixture) -> None:
    code = run(["distill", "nosuchmethod", "--data", "cifar10-mini", "--ipc", "1"])
    err = capsys.readouterr().err.strip()
    assert code == ExitStatus.PLUGIN
    assert len(err.splitlines()) == 1 and "unknown method 'nosuchmethod'" in err


def test_zero_ipc_is_usage_error(capsys: pytest.CaptureFixture) -> None:
    code = run(["distill", "random", "--data", "cifar10-mini", "--ipc", "0"])
    err = capsys.readouterr().err.strip()
    assert code == ExitStatus.USAGE
    assert len(err.splitlines()) == 1 and "--ipc must be a positive" in err


def test_unknown_option_is_usage_error(capsys: pytest.CaptureFixture) -> None:
    """As click prints it (tests/cli/test_exit_codes.py checks every command)."""
    code = run(["distill", "random", "--data", "cifar10-mini", "--ipc", "1", "--bogus", "3"])
    err = capsys.readouterr().err.strip()
    assert code == ExitStatus.USAGE
    assert err.splitlines()[0] == "Usage: condensekit distill random [OPTIONS]"
    assert "Try 'condensekit distill random --help' for help." in err
    assert err.splitlines()[-1].startswith("Error: No such option") and "--bogus" in err


def test_unknown_dataset_is_dataset_error(capsys: pytest.CaptureFixture) -> None:
    code = run(["distill", "random", "--data", "cifar11", "--ipc", "1"])
    err = capsys.readouterr().err.strip()
    assert code == ExitStatus.DATASET
    assert len(err.splitlines()) == 1 and "cifar11" in err


def test_unknown_backbone_is_backbone_error(capsys: pytest.CaptureFixture, registry_root: Path) -> None:
    code = run(["distill", "random", "--data", "cifar10-mini", "--ipc", "1", "--backbone", "convnetx"])
    err = capsys.readouterr().err.strip()
    assert code == ExitStatus.BACKBONE
    assert len(err.splitlines()) == 1 and "convnetx" in err
    assert not (registry_root / "sets").exists() or not any((registry_root / "sets").iterdir())


def test_errors_have_no_traceback_in_a_real_process() -> None:
    result = cli("distill", "random", "--data", "cifar10-mini", "--ipc", "-3")
    assert result.returncode == ExitStatus.USAGE
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("error:")
    assert result.stdout == ""


def test_method_config_fields_become_options(capsys: pytest.CaptureFixture) -> None:
    code = run(["distill", "dm", "--help"])
    out = capsys.readouterr().out
    assert code == 0
    assert "--lr-img" in out and "--batch-real" in out
    assert "SGD learning rate of the synthetic images" in " ".join(out.split())  # however help wraps


def test_doctor_json_reports_device_and_plugins(capsys: pytest.CaptureFixture) -> None:
    code = run(["doctor", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    report = json.loads(out)
    assert report["device"]["auto"] in ("cpu", "cuda")
    assert {row["name"] for row in report["plugins"]["method"]} >= {"dm", "random", "herding"}


def test_distill_help_lists_every_installed_method(capsys: pytest.CaptureFixture) -> None:
    code = run(["distill", "--help"])
    out, err = capsys.readouterr()
    assert code == 0, err
    commands = out.split("Commands:")[1]
    assert {line.split()[0] for line in commands.splitlines() if line[2:3].strip()} >= {"dm", "random", "herding"}
    assert "broken" not in commands


def test_every_core_distill_option_is_a_reserved_config_name() -> None:
    from condensekit.cli.distill import COMMON_OPTIONS
    from condensekit.plugins import RESERVED_CONFIG_NAMES

    # The plugin validator refuses config fields with these names; a core option missing from
    # the set would let a method's field silently shadow it.
    assert {opt.name for opt in COMMON_OPTIONS} | {"preset"} <= RESERVED_CONFIG_NAMES
