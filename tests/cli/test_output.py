"""Output for scripts and people: ``--json`` wherever a command reports something, set
references that complete in the shell, and nothing but the result under ``--json``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from condensekit.cli.app import build_cli, run
from condensekit.data import dataset_info
from condensekit.registry import Registry
from condensekit.synthetic import SyntheticSet

#: Commands that print nothing a script would parse: help screens and long-lived shells.
NO_REPORT = {"registry", "experts", "runs", "distill"}


def _leaves(command: object, path: tuple[str, ...] = ()) -> list[tuple[str, object]]:
    subs = getattr(command, "commands", None)
    if not subs:
        return [(" ".join(path), command)]
    return [leaf for name, sub in subs.items() for leaf in _leaves(sub, (*path, name))]


@pytest.mark.parametrize(("name", "command"), _leaves(build_cli()), ids=lambda v: v if isinstance(v, str) else "")
def test_every_reporting_command_has_json(name: str, command: object) -> None:
    if name in NO_REPORT:
        pytest.skip(f"{name} is a group")
    flags = {opt for p in command.params for opt in getattr(p, "opts", [])}  # type: ignore[attr-defined]
    assert "--json" in flags, f"condensekit {name} reports something but has no --json"


@pytest.fixture
def stored(tmp_path: Path) -> tuple[Path, str]:
    info = dataset_info("cifar10-mini")
    synset = SyntheticSet(
        torch.zeros(10, 3, 32, 32), torch.arange(10), metadata={**info.as_metadata(), "method": "random", "ipc": 1}
    )
    root = tmp_path / "registry"
    with Registry(root) as reg:
        return root, reg.save(synset, "out").ref


def _json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    assert run([*args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_tag_rm_export_import_and_check_report_json(stored, tmp_path: Path, capsys) -> None:
    root, ref = stored
    reg = ["--registry", str(root)]
    assert _json(capsys, "tag", ref, "best", *reg) == {"alias": "out:best", "ref": ref}
    exported = _json(capsys, "export", ref, "--pt", str(tmp_path / "pt"), *reg)
    assert exported["ref"] == ref and Path(exported["path"]).is_dir()
    imported = _json(capsys, "import", exported["path"], "--name", "back", "--data", "cifar10-mini", *reg)
    assert imported["ref"] == "back:v1"
    checked = _json(capsys, "registry", "check", *reg)
    assert checked["problems"] == [] and checked["remaining"] == []
    assert _json(capsys, "rm", "back:v1", "--yes", *reg)["removed"] == "back:v1"


def test_set_references_complete_in_the_shell(stored) -> None:
    root, _ = stored
    assert _complete("condensekit show o", CONDENSEKIT_REGISTRY=str(root)) == ["out", "out:v1"]


def _error_bytes(**env: str) -> str:
    """stderr of a command that fails with a (red) error line before importing torch."""
    result = subprocess.run(
        [sys.executable, "-m", "condensekit", "distill", "nosuch", "--data", "cifar10-mini", "--ipc", "1"],
        env={**{k: v for k, v in os.environ.items() if k != "NO_COLOR"}, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return result.stderr


def test_no_color_drops_the_colours_even_where_colour_is_forced() -> None:
    assert "\x1b[1;31m" in _error_bytes(FORCE_COLOR="1")  # the red error line
    plain = _error_bytes(FORCE_COLOR="1", NO_COLOR="1")
    assert "error: unknown method 'nosuch'" in plain and "31m" not in plain


def _complete(words: str, **extra: str) -> list[str]:
    """What bash completion offers for the last of ``words``."""
    env = {**os.environ, "_CONDENSEKIT_COMPLETE": "complete_bash", "COMP_WORDS": words,
           "COMP_CWORD": str(len(words.split()) - 1), **extra}  # fmt: skip
    result = subprocess.run([sys.executable, "-m", "condensekit"], env=env, capture_output=True, text=True,
                            timeout=120, check=False)  # fmt: skip
    return result.stdout.split()


def test_dataset_and_backbone_names_complete() -> None:
    assert _complete("condensekit experts train --data cifar10-m") == ["cifar10-mini"]
    assert "convnetd4" in _complete("condensekit experts train --backbone convnetd")
    assert _complete("condensekit eval --arch convnet,convnet-b") == ["convnet,convnet-bn"]


COMPLETE_AND_REPORT = (
    "import sys\n"
    "from condensekit.cli.app import main\n"
    "try:\n"
    "    main([])\n"
    "finally:\n"
    "    loaded = [m for m in sys.modules if m == 'torch' or m.startswith(('condensekit_', 'condensekit.methods.'))]\n"
    "    print('LOADED', loaded, file=sys.stderr)\n"
)


def test_method_names_complete_from_metadata_without_importing_a_plugin() -> None:
    words = "condensekit distill d"
    env = {**os.environ, "_CONDENSEKIT_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": "2"}
    result = subprocess.run(
        [sys.executable, "-c", COMPLETE_AND_REPORT], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert {"dm", "dance", "datadam"} <= set(result.stdout.split()), result.stderr
    assert "LOADED []" in result.stderr, result.stderr
