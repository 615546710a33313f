"""Exit codes every command keeps: usage errors exit 2 with click's usage text, Ctrl-C exits 130.

The commands are enumerated from the click tree ``build_cli()`` builds (Typer commands on
Typer's vendored click, the ``distill`` group on click itself), so a new command or method is
covered without touching this file. The interrupt test runs a real distillation in a
subprocess, interrupts it with SIGINT and resumes it with the command it printed.
"""

from __future__ import annotations

import enum
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from condensekit.cli.app import build_cli, run
from condensekit.errors import ExitStatus, PluginError
from condensekit.registry import Registry

UNKNOWN_OPTION = "--no-such-option-xyz"
BAD_VALUE = "not-a-value"


class Cmd(NamedTuple):
    path: tuple[str, ...]  # the words after ``condensekit``
    command: Any  # a click (or Typer-click) Command or Group
    broken: str | None  # why its plugin cannot load here, if it cannot

    @property
    def id(self) -> str:
        return " ".join(self.path) or "condensekit"

    @property
    def is_group(self) -> bool:
        return hasattr(self.command, "list_commands")


def _walk(command: Any, path: tuple[str, ...]) -> Iterator[Cmd]:
    yield Cmd(path, command, None)
    if not hasattr(command, "list_commands"):
        return
    # A context of the command's own click (Typer's or click's), not resilient: a method
    # whose plugin fails to import raises here instead of passing for a stub command.
    ctx = command.context_class(command, info_name=(path or ("condensekit",))[-1])
    for name in command.list_commands(ctx):
        try:
            sub = command.get_command(ctx, name)
        except PluginError as exc:  # a method plugin that does not import in this environment
            yield Cmd((*path, name), None, str(exc))
            continue
        if sub is not None:
            yield from _walk(sub, (*path, name))


COMMANDS = list(_walk(build_cli(), ()))


def _params(cmd: Cmd) -> list[Any]:
    return [p for p in cmd.command.params if p.name not in ("help",)]


def _value_kind(param: Any) -> str | None:
    """``"int"``, ``"float"`` or ``"choice"`` when click refuses a word for ``param``, else None.

    click parameters carry ``type``; Typer's (>= 0.29) a ``type_descriptor`` with the
    annotation they were declared with."""
    if getattr(param, "is_flag", False) or getattr(param, "count", False):
        return None
    ptype = getattr(param, "type", None)
    if ptype is not None:
        name = type(ptype).__name__
        return {"IntParamType": "int", "IntRange": "int", "FloatParamType": "float", "FloatRange": "float"}.get(
            name, "choice" if name == "Choice" else None
        )
    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    if annotation in (int, float):
        return annotation.__name__
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return "choice"
    return None


def _filler(cmd: Cmd, skip: Any = None) -> list[str]:
    """Values for the command's required parameters (all strings here) except ``skip``."""
    args: list[str] = []
    for param in _params(cmd):
        if param is skip or not param.required:
            continue
        if param.param_type_name == "argument":
            args.append("x")
        else:
            args += [param.opts[0], "x"]
    return args


def _bad_values() -> list[Any]:
    cases = []
    for cmd in COMMANDS:
        if cmd.command is None:
            continue
        for param in _params(cmd):
            kind = _value_kind(param)
            if kind is not None:
                cases.append(pytest.param(cmd, param, id=f"{cmd.id} {param.opts[0]}"))
    return cases


def _missing() -> list[Any]:
    cases = []
    for cmd in COMMANDS:
        if cmd.command is None:
            continue
        if cmd.is_group and getattr(cmd.command, "no_args_is_help", False):
            cases.append(pytest.param(cmd, None, id=f"{cmd.id} (no command)"))
        cases += [pytest.param(cmd, param, id=f"{cmd.id} {param.opts[0]}") for param in _params(cmd) if param.required]
    return cases


def _runnable(cmd: Cmd) -> None:
    if cmd.command is None:
        pytest.skip(f"{cmd.id}: its plugin does not load in this environment ({cmd.broken})")


def _invoke(capsys: pytest.CaptureFixture[str], args: list[str]) -> tuple[int, str, str]:
    code = run(args)
    out, err = capsys.readouterr()
    return code, out, err


def _assert_usage_error(code: int, err: str, path: tuple[str, ...], also: str = "") -> None:
    """Exit 2 with click's standalone text: usage line, --help hint, error line; no traceback."""
    assert code == ExitStatus.USAGE == 2, err
    text = err + also
    assert "Traceback" not in text and "unexpected" not in text, text
    usage = " ".join(("condensekit", *path))
    assert re.search(rf"Usage: {re.escape(usage)}\b", text), text


def test_the_tree_holds_typer_and_click_commands() -> None:
    """The enumeration sees every kind of command, or the tests below would cover little."""
    ids = {cmd.id for cmd in COMMANDS}
    assert {"condensekit", "list", "show", "registry check", "runs rm", "distill", "distill dm"} <= ids


@pytest.mark.parametrize("cmd", [pytest.param(c, id=c.id) for c in COMMANDS])
def test_an_unknown_option_exits_2_with_usage(cmd: Cmd, capsys: pytest.CaptureFixture[str]) -> None:
    _runnable(cmd)
    code, _, err = _invoke(capsys, [*cmd.path, *_filler(cmd), UNKNOWN_OPTION])
    _assert_usage_error(code, err, cmd.path)
    assert f"Try 'condensekit {' '.join(cmd.path)} --help' for help.".replace("  ", " ") in err
    # click 8.5 says "No such option '--x'.", Typer's copy "No such option: --x".
    assert re.search(rf"Error: No such option:? '?{UNKNOWN_OPTION}", err), err


@pytest.mark.parametrize(("cmd", "param"), _bad_values())
def test_a_bad_value_exits_2_with_usage(cmd: Cmd, param: Any, capsys: pytest.CaptureFixture[str]) -> None:
    _runnable(cmd)
    value = [BAD_VALUE] if param.param_type_name == "argument" else [param.opts[0], BAD_VALUE]
    code, _, err = _invoke(capsys, [*cmd.path, *_filler(cmd, skip=param), *value])
    _assert_usage_error(code, err, cmd.path)
    named = param.name if param.param_type_name == "argument" else param.opts[0]
    assert f"Error: Invalid value for '{named}'" in err, err


@pytest.mark.parametrize(("cmd", "param"), _missing())
def test_a_missing_argument_exits_2_with_usage(cmd: Cmd, param: Any, capsys: pytest.CaptureFixture[str]) -> None:
    _runnable(cmd)
    code, out, err = _invoke(capsys, [*cmd.path, *_filler(cmd, skip=param)])
    if param is None:  # a group without its command prints its help (Typer's on stdout)
        _assert_usage_error(code, err, cmd.path, also=out)
        return
    _assert_usage_error(code, err, cmd.path)
    assert re.search(r"Error: Missing (argument|option|parameter)", err), err


def test_usage_errors_in_a_real_process() -> None:
    """The console entry point: exit status, stderr only, no traceback."""
    for args in (["list", UNKNOWN_OPTION], ["show"], ["distill", "dm", UNKNOWN_OPTION]):
        result = subprocess.run(
            [sys.executable, "-m", "condensekit", *args], capture_output=True, text=True, timeout=300, check=False
        )
        assert result.returncode == ExitStatus.USAGE, (args, result.stderr)
        assert result.stdout == "" and "Traceback" not in result.stderr
        assert result.stderr.startswith(f"Usage: condensekit {args[0]}"), result.stderr


# --- Ctrl-C ---------------------------------------------------------------------------------

DISTILL = ["distill", "dm", "--data", "cifar10-mini", "--ipc", "1", "--checkpoint-every", "1", "--batch-real", "8"]


@pytest.mark.slow
def test_ctrl_c_keeps_the_checkpoint_and_prints_the_resume_command(tmp_path: Path, data_root: Path) -> None:
    registry = tmp_path / "registry"
    args = [*DISTILL, "--iterations", "400", "--device", "cpu", "--registry", str(registry)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "condensekit", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "CONDENSEKIT_DATA": str(data_root)},
    )
    watchdog = threading.Timer(300, proc.kill)  # never hang the suite
    watchdog.start()
    try:
        deadline = time.monotonic() + 240
        while not list(registry.glob("runs/*/checkpoint.pt")):
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "no checkpoint was written"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        watchdog.cancel()
        proc.kill()

    assert proc.returncode == ExitStatus.INTERRUPTED == 130, err
    assert "Traceback" not in err and out == ""
    [line] = [line for line in err.splitlines() if "--resume" in line]
    assert [line] == [line for line in err.splitlines() if line.startswith("error:")]
    match = re.fullmatch(
        r"error: interrupted at iteration (\d+) of 400; checkpoint of run (\w+) kept at iteration (\d+) "
        r"\(condensekit runs\); continue with: (.+)",
        line,
    )
    assert match, line
    key, kept, command = match.group(2), int(match.group(3)), shlex.split(match.group(4))
    assert 1 <= kept <= int(match.group(1))
    with Registry(registry) as reg:
        assert reg.list_sets() == []  # no set version
        assert [run.key for run in reg.runs()] == [key]  # the run folder is kept
        assert reg.runs()[0].iteration == kept
    assert command[0] == "condensekit" and command[-1] == "--resume"
    assert command[1:-1] == [*args], "the printed command is the one that was run, plus --resume"

    # Continue it for two more iterations, with the command as printed.
    iterations = command.index("--iterations")
    command[iterations + 1] = str(kept + 2)
    resumed = subprocess.run(
        [sys.executable, "-m", "condensekit", *command[1:]],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "CONDENSEKIT_DATA": str(data_root)},
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "no checkpoint of this run to resume from" not in resumed.stderr
    with Registry(registry) as reg:
        [row] = reg.list_sets()
        assert row["versions"] == [1]
        assert reg.load(f"{row['name']}:v1").metadata["iterations"] == kept + 2
        assert reg.runs() == [] and reg.check() == []
