"""``condensekit runs`` and the run folders in ``registry check``, through the real command
(``condensekit.cli.app.run``: real wiring, exit codes and one-line errors)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import torch

from condensekit.checkpoints import FileCheckpointer
from condensekit.cli.app import run
from condensekit.errors import ExitStatus

KEY = "3f9c0a1b2d4e5f60"
OTHER = "0123456789abcdef"


def _run(root: Path, key: str, iteration: int = 120, describe: bool = True, age: float = 0.0) -> Path:
    """A run folder as distill leaves it: run.json and a checkpoint saved by FileCheckpointer."""
    folder = root / "runs" / key
    folder.mkdir(parents=True)
    if describe:
        (folder / "run.json").write_text(
            json.dumps(
                {
                    "key": key,
                    "method": "dm",
                    "dataset": "cifar10",
                    "ipc": 10,
                    "name": None,
                    "iterations": 1000,
                    "created": "2026-01-02T03:04:05+00:00",
                    "command": ["distill", "dm"],
                }
            )
        )
    checkpointer = FileCheckpointer(folder / "checkpoint.pt", every=1, resume=False)
    checkpointer.save(iteration, {"images": torch.zeros(10, 3, 8, 8)})
    stamp = time.time() - age
    for path in [*folder.iterdir(), folder]:
        os.utime(path, (stamp, stamp))
    return folder


def _cli(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    code = run(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err.strip()


def test_runs_alone_lists_like_runs_list(capsys: pytest.CaptureFixture, registry_root: Path) -> None:
    _run(registry_root, KEY)
    code, alone, _ = _cli(capsys, "runs")
    assert code == 0 and KEY in alone and "dm" in alone and "120/1000" in alone
    assert _cli(capsys, "runs", "list")[1] == alone


def test_runs_show_a_dash_for_what_a_folder_does_not_say(capsys: pytest.CaptureFixture, registry_root: Path) -> None:
    _run(registry_root, OTHER, iteration=40, describe=False)
    code, out, _ = _cli(capsys, "runs")
    row = next(line for line in out.splitlines() if OTHER in line)
    assert code == 0 and " - " in row and "40" in row


def test_runs_json(capsys: pytest.CaptureFixture, registry_root: Path) -> None:
    _run(registry_root, KEY, age=3 * 86400)
    code, out, _ = _cli(capsys, "runs", "--json")
    [row] = json.loads(out)
    assert code == 0 and (row["key"], row["method"], row["iteration"]) == (KEY, "dm", 120)
    assert row["age_s"] >= 3 * 86400 - 60 and row["size"] > 0


def test_runs_on_an_empty_registry(capsys: pytest.CaptureFixture, registry_root: Path) -> None:
    code, out, _ = _cli(capsys, "runs")
    assert code == 0 and "No run folders" in out


def test_runs_rm_prints_what_it_removed_and_the_space_freed(capsys: pytest.CaptureFixture, registry_root: Path) -> None:
    folder = _run(registry_root, KEY)
    code, out, _ = _cli(capsys, "runs", "rm", KEY)
    assert code == 0 and f"Removed run {KEY} (dm cifar10 ipc10" in out and "Freed" in out
    assert not folder.exists()


def test_runs_rm_unknown_key_exits_5_and_removes_nothing(capsys: pytest.CaptureFixture, registry_root: Path) -> None:
    folder = _run(registry_root, KEY)
    code, _, err = _cli(capsys, "runs", "rm", KEY, "nosuch")
    assert code == ExitStatus.REGISTRY and len(err.splitlines()) == 1 and "unknown run 'nosuch'" in err
    assert folder.exists()


def test_runs_rm_bad_age_exits_2_with_one_line(capsys: pytest.CaptureFixture, registry_root: Path) -> None:
    _run(registry_root, KEY, age=30 * 86400)
    code, _, err = _cli(capsys, "runs", "rm", "--older-than", "7 days")
    assert code == ExitStatus.USAGE and len(err.splitlines()) == 1 and "e.g. 7d" in err
    assert (registry_root / "runs" / KEY).exists()


def test_runs_rm_older_than(capsys: pytest.CaptureFixture, registry_root: Path) -> None:
    _run(registry_root, KEY, age=8 * 86400)
    _run(registry_root, OTHER)
    code, out, _ = _cli(capsys, "runs", "rm", "--older-than", "7d")
    assert code == 0 and KEY in out and OTHER not in out
    assert [p.name for p in (registry_root / "runs").iterdir()] == [OTHER]


def test_runs_rm_all(capsys: pytest.CaptureFixture, registry_root: Path) -> None:
    _run(registry_root, KEY)
    _run(registry_root, OTHER, describe=False)
    code, out, _ = _cli(capsys, "runs", "rm", "--all")
    assert code == 0 and "(2 run folder(s))" in out and not any((registry_root / "runs").iterdir())


def test_runs_rm_needs_a_selection(capsys: pytest.CaptureFixture, registry_root: Path) -> None:
    code, _, err = _cli(capsys, "runs", "rm")
    assert code == ExitStatus.USAGE and len(err.splitlines()) == 1 and "--all" in err


def test_a_registry_given_before_rm_is_the_one_used(
    capsys: pytest.CaptureFixture, registry_root: Path, tmp_path: Path
) -> None:
    """$CONDENSEKIT_REGISTRY points elsewhere: `runs --registry X rm --all` must empty X only."""
    elsewhere = tmp_path / "elsewhere"
    kept = _run(registry_root, KEY)
    gone = _run(elsewhere, OTHER)
    code, _, _ = _cli(capsys, "runs", "--registry", str(elsewhere), "rm", "--all")
    assert code == 0 and not gone.exists() and kept.exists()


def test_registry_check_reports_an_unreadable_checkpoint_and_fix_removes_it(
    capsys: pytest.CaptureFixture, registry_root: Path
) -> None:
    folder = _run(registry_root, KEY)
    (folder / "checkpoint.pt").write_bytes(b"garbage")
    code, out, err = _cli(capsys, "registry", "check")
    assert code == ExitStatus.REGISTRY and f"runs/{KEY}/checkpoint.pt is unreadable" in out and "--fix" in err
    code, out, _ = _cli(capsys, "registry", "check", "--fix")
    assert code == 0 and "(removed)" in out and "consistent" in out
    assert not (folder / "checkpoint.pt").exists()
