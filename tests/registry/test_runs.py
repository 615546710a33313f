"""Run folders (``<root>/runs/<key>/``): listing, removal and checks, on real folders with
real ``torch.save`` checkpoints, as ``condensekit.checkpoints.FileCheckpointer`` writes them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from condensekit.checkpoints import FileCheckpointer
from condensekit.errors import RegistryError, UsageError
from condensekit.registry import Registry
from condensekit.registry.runs import RemoveRuns, format_age, format_size, parse_age

DAY = 86400.0


@pytest.fixture
def reg(tmp_path: Path) -> Registry:
    with Registry(tmp_path / "registry") as registry:
        yield registry


def _run(
    reg: Registry,
    key: str,
    iteration: int | None = 10,
    ranks: list[int] | None = None,
    describe: bool = True,
    age: float = 0.0,
    **description: Any,
) -> Path:
    """A run folder: run.json as distill writes it, checkpoints saved by FileCheckpointer."""
    folder = reg.root / "runs" / key
    folder.mkdir(parents=True)
    if describe:
        info = {
            "key": key,
            "method": "dm",
            "dataset": "cifar10",
            "ipc": 10,
            "name": None,
            "iterations": 1000,
            "created": "2026-01-02T03:04:05+00:00",
            "command": ["distill", "dm", "--resume"],
            **description,
        }
        (folder / "run.json").write_text(json.dumps(info))
    for rank in [None] if ranks is None else ranks:
        if iteration is not None:
            name = "checkpoint.pt" if rank is None else f"checkpoint-rank{rank}.pt"
            FileCheckpointer(folder / name, every=1, resume=False).save(
                iteration + (rank or 0), {"images": torch.randn(20, 3, 8, 8), "lr": 0.1}
            )
    if age:
        _age(folder, age)
    return folder


def _age(folder: Path, seconds: float) -> None:
    stamp = time.time() - seconds
    for path in [*folder.iterdir(), folder]:
        os.utime(path, (stamp, stamp))


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _stray_temp(folder: Path, pid: int, age: float = 3600.0) -> Path:
    """What FileCheckpointer.save leaves when killed between writing and renaming."""
    tmp = folder / f"checkpoint.tmp{pid}"
    torch.save({"iteration": 99, "state": {}}, tmp)
    stamp = time.time() - age
    os.utime(tmp, (stamp, stamp))
    return tmp


# --- listing -------------------------------------------------------------------------------


def test_an_absent_runs_folder_lists_nothing_and_creates_nothing(reg: Registry) -> None:
    assert reg.runs() == []
    assert not reg.root.exists()


def test_a_run_lists_its_description_and_last_iteration(reg: Registry) -> None:
    _run(reg, "a1", iteration=300, name="mine")
    [run] = reg.runs()
    assert (run.key, run.method, run.dataset, run.ipc) == ("a1", "dm", "cifar10", 10)
    assert (run.name, run.iterations) == ("mine", 1000)
    assert run.iteration == 300 and run.command == ["distill", "dm", "--resume"]


def test_a_folder_without_run_json_still_lists(reg: Registry) -> None:
    _run(reg, "old", iteration=40, describe=False)
    [run] = reg.runs()
    assert (run.key, run.iteration, run.described) == ("old", 40, False)
    assert run.method is None and run.dataset is None and run.ipc is None


def test_a_run_json_that_is_not_json_lists_as_unknown(reg: Registry) -> None:
    folder = _run(reg, "torn", iteration=5)
    (folder / "run.json").write_text('{"method": "dm", "data')
    [run] = reg.runs()
    assert run.described is False and run.method is None and run.iteration == 5


def test_run_json_values_of_the_wrong_type_are_unknown(reg: Registry) -> None:
    _run(reg, "odd", ipc="ten", method=3)
    [run] = reg.runs()
    assert run.ipc is None and run.method is None and run.dataset == "cifar10"


def test_a_class_parallel_run_resumes_from_its_slowest_rank(reg: Registry) -> None:
    _run(reg, "par", iteration=200, ranks=[0, 1, 2])  # ranks saved 200, 201, 202
    [run] = reg.runs()
    assert [c.file for c in run.checkpoints] == [f"checkpoint-rank{r}.pt" for r in range(3)]
    assert run.iteration == 200


def test_a_run_before_its_first_checkpoint_has_no_iteration(reg: Registry) -> None:
    _run(reg, "fresh", iteration=None)
    [run] = reg.runs()
    assert run.checkpoints == () and run.iteration is None


def test_a_corrupt_checkpoint_is_unreadable(reg: Registry) -> None:
    folder = _run(reg, "bad", iteration=100)
    (folder / "checkpoint.pt").write_bytes(b"\x00not a checkpoint")
    [run] = reg.runs()
    assert run.iteration == "unreadable" and "not a torch.save file" in run.checkpoints[0].error


def test_a_torch_file_that_is_not_a_checkpoint_is_unreadable(reg: Registry) -> None:
    folder = _run(reg, "other", iteration=None)
    torch.save({"weights": torch.zeros(2)}, folder / "checkpoint.pt")
    [run] = reg.runs()
    assert run.iteration == "unreadable" and "no 'iteration'" in run.checkpoints[0].error


def test_size_counts_every_file_and_age_the_last_write(reg: Registry) -> None:
    folder = _run(reg, "s1", age=2 * DAY)
    [run] = reg.runs()
    assert run.size == sum(p.stat().st_size for p in folder.iterdir())
    assert 2 * DAY - 60 < run.age() < 2 * DAY + 60


def test_runs_list_most_recently_written_first(reg: Registry) -> None:
    _run(reg, "oldest", age=3 * DAY)
    _run(reg, "newest")
    _run(reg, "middle", age=DAY)
    assert [run.key for run in reg.runs()] == ["newest", "middle", "oldest"]


def test_as_dict_is_json_with_nulls_for_unknown_fields(reg: Registry) -> None:
    _run(reg, "j", iteration=7, describe=False)
    [run] = reg.runs()
    data = json.loads(json.dumps(run.as_dict()))
    assert data["key"] == "j" and data["method"] is None and data["iteration"] == 7
    assert data["checkpoints"][0]["file"] == "checkpoint.pt" and data["size"] == run.size


# --- ages and sizes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("30m", 1800), ("12h", 43200), ("7d", 7 * DAY), ("1.5h", 5400), ("0d", 0)]
)
def test_parse_age_accepts_s_m_h_d(text: str, seconds: float) -> None:
    assert parse_age(text) == seconds


@pytest.mark.parametrize("text", ["7", "7w", "d", "-1d", "7 days", ""])
def test_parse_age_refuses_other_text_with_the_fix(text: str) -> None:
    with pytest.raises(UsageError, match=r"use a number with s, m, h or d, e\.g\. 7d"):
        parse_age(text)


@pytest.mark.parametrize(("seconds", "shown"), [(5, "5 s"), (200, "3 min"), (7300, "2 h"), (4.5 * DAY, "4 d")])
def test_format_age(seconds: float, shown: str) -> None:
    assert format_age(seconds) == shown


@pytest.mark.parametrize(
    ("size", "shown"),
    [(512, "512 B"), (3 * 1024 + 400, "3.4 KiB"), (12 * 1024**2, "12.0 MiB"), (int(1.25 * 1024**3), "1.2 GiB")],
)
def test_format_size(size: int, shown: str) -> None:
    assert format_size(size) == shown


# --- removal -------------------------------------------------------------------------------


def test_remove_by_key_removes_only_those_and_counts_the_space(reg: Registry) -> None:
    gone = [_run(reg, "k1"), _run(reg, "k2")]
    _run(reg, "kept")
    sizes = sum(p.stat().st_size for folder in gone for p in folder.iterdir())
    removed = reg.remove_runs(RemoveRuns(keys=("k1", "k2", "k1")))
    assert [run.key for run in removed.runs] == ["k1", "k2"] and removed.freed == sizes
    assert [run.key for run in reg.runs()] == ["kept"]


def test_an_unknown_key_removes_nothing(reg: Registry) -> None:
    _run(reg, "k1")
    with pytest.raises(RegistryError, match=r"unknown run 'nosuch'.*nothing was removed"):
        reg.remove_runs(RemoveRuns(keys=("k1", "nosuch")))
    assert [run.key for run in reg.runs()] == ["k1"]


def test_older_than_removes_runs_not_written_for_that_long(reg: Registry) -> None:
    _run(reg, "stale", age=8 * DAY)
    _run(reg, "recent", age=2 * DAY)
    removed = reg.remove_runs(RemoveRuns(older_than="7d"))
    assert [run.key for run in removed.runs] == ["stale"]
    assert [run.key for run in reg.runs()] == ["recent"]


def test_a_bad_age_removes_nothing(reg: Registry) -> None:
    _run(reg, "stale", age=8 * DAY)
    with pytest.raises(UsageError, match="--older-than '7x'"):
        reg.remove_runs(RemoveRuns(older_than="7x"))
    assert len(reg.runs()) == 1


def test_all_removes_every_run_folder(reg: Registry) -> None:
    _run(reg, "a", describe=False)
    _run(reg, "b", iteration=None)
    removed = reg.remove_runs(RemoveRuns(all=True))
    assert sorted(run.key for run in removed.runs) == ["a", "b"]
    assert reg.runs() == [] and list((reg.root / "runs").iterdir()) == []


@pytest.mark.parametrize(
    "request_", [RemoveRuns(), RemoveRuns(keys=("a",), all=True), RemoveRuns(older_than="1d", all=True)]
)
def test_removal_needs_exactly_one_selection(reg: Registry, request_: RemoveRuns) -> None:
    _run(reg, "a")
    with pytest.raises(UsageError, match="KEYs, --older-than AGE"):
        reg.remove_runs(request_)
    assert len(reg.runs()) == 1


# --- registry check ------------------------------------------------------------------------


def test_check_passes_on_healthy_run_folders(reg: Registry) -> None:
    _run(reg, "ok", ranks=[0, 1])
    _run(reg, "plain", describe=False)
    assert reg.check() == []


def test_check_reports_the_temp_file_of_an_interrupted_save(reg: Registry) -> None:
    tmp = _stray_temp(_run(reg, "r1"), _dead_pid())
    [problem] = reg.check()
    assert f"runs/r1/{tmp.name}" in problem and "interrupted checkpoint save" in problem
    assert tmp.exists()


def test_check_fix_removes_the_temp_file_and_keeps_the_checkpoint(reg: Registry) -> None:
    folder = _run(reg, "r1", iteration=50)
    tmp = _stray_temp(folder, _dead_pid())
    assert reg.check(fix=True)[0].endswith("(removed)")
    assert not tmp.exists() and reg.runs()[0].iteration == 50 and reg.check() == []


def test_check_leaves_the_temp_file_of_a_live_writer(reg: Registry) -> None:
    _stray_temp(_run(reg, "r1"), os.getpid())
    assert reg.check(fix=True) == []
    assert (reg.root / "runs" / "r1" / f"checkpoint.tmp{os.getpid()}").exists()


def test_check_leaves_a_temp_file_written_minutes_ago(reg: Registry) -> None:
    """Its writer may run on another host sharing the registry, where its pid means nothing here."""
    tmp = _stray_temp(_run(reg, "r1"), _dead_pid(), age=60)
    assert reg.check(fix=True) == [] and tmp.exists()


def test_check_reports_an_unreadable_checkpoint(reg: Registry) -> None:
    folder = _run(reg, "r2", ranks=[0, 1])
    (folder / "checkpoint-rank1.pt").write_bytes(b"garbage")
    [problem] = reg.check()
    assert "runs/r2/checkpoint-rank1.pt is unreadable" in problem and "--resume cannot use it" in problem


def test_check_fix_removes_an_unreadable_checkpoint_only(reg: Registry) -> None:
    folder = _run(reg, "r2", ranks=[0, 1])
    (folder / "checkpoint-rank1.pt").write_bytes(b"garbage")
    reg.check(fix=True)
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint-rank0.pt", "run.json"]
    assert reg.check() == []


def test_check_fix_removes_a_run_folder_it_empties(reg: Registry) -> None:
    folder = _run(reg, "r3", describe=False)
    (folder / "checkpoint.pt").write_bytes(b"")
    reg.check(fix=True)
    assert not folder.exists()


def test_check_sees_run_folders_of_a_registry_without_an_index(reg: Registry) -> None:
    (_run(reg, "r4") / "checkpoint.pt").write_bytes(b"garbage")
    assert not (reg.root / "index.sqlite").exists()
    assert len(reg.check()) == 1
