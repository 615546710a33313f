"""Run folders: the resumable state of distillations, under ``<registry root>/runs/``.

``condensekit.distill`` keeps one folder per run, ``runs/<run key>/``, holding ``run.json``
(what the run is, written when it starts) and its checkpoints (``checkpoint.pt``, or
``checkpoint-rank<N>.pt`` per rank of a class-parallel run; see
:class:`condensekit.checkpoints.FileCheckpointer`). The folder is removed when the run's set
is saved, so every folder left is a run that is still going, or was interrupted and may be
resumed with ``--resume``, or was abandoned. Checkpoints hold the whole optimization state
and can be large: this module lists the folders, removes those no longer wanted and checks
them, so that the space of abandoned runs can be found and reclaimed (docs/format.md,
section 8).

This module never creates or writes a run folder: it lists, removes and checks them.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import re
import shutil
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from condensekit.errors import RegistryError, UsageError

RUNS_DIR = "runs"
RUN_FILE = "run.json"
UNREADABLE = "unreadable"
# A temp file younger than this may belong to a save still in progress on another host
# (its writer's pid can only be checked on this one), so check never calls it stray.
TEMP_GRACE_S = 15 * 60

_CHECKPOINT = re.compile(r"^checkpoint(?:-rank\d+)?\.pt$")
_TEMP = re.compile(r"\.tmp(\d+)$")  # FileCheckpointer.save: <checkpoint>.with_suffix(".tmp<pid>")
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class Checkpoint:
    """One checkpoint file of a run; ``iteration`` is None when the file cannot be read."""

    file: str
    iteration: int | None
    size: int
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "iteration": UNREADABLE if self.iteration is None else self.iteration,
            "size": self.size,
            **({"error": self.error} if self.error else {}),
        }


@dataclass(frozen=True)
class RunInfo:
    """What is known of one run folder. Fields from ``run.json`` are None when the file is
    missing or does not say (folders of runs started before run.json existed still list)."""

    key: str
    path: Path
    modified: float  # epoch seconds of the folder's last write (its last checkpoint save)
    size: int  # bytes of all files in the folder
    checkpoints: tuple[Checkpoint, ...] = ()
    method: str | None = None
    dataset: str | None = None
    ipc: int | None = None
    name: str | None = None
    iterations: int | None = None
    created: str | None = None
    command: list[str] | None = None
    described: bool = False  # whether run.json was found and readable

    @property
    def iteration(self) -> int | str | None:
        """Iteration ``--resume`` continues from: the lowest over the run's ranks, "unreadable"
        when a checkpoint cannot be read, None before the first checkpoint."""
        if not self.checkpoints:
            return None
        if any(c.iteration is None for c in self.checkpoints):
            return UNREADABLE
        return min(c.iteration for c in self.checkpoints if c.iteration is not None)

    def age(self, now: float | None = None) -> float:
        """Seconds since the run last wrote to its folder (a running run keeps this small)."""
        return max(0.0, (time.time() if now is None else now) - self.modified)

    def as_dict(self, now: float | None = None) -> dict[str, Any]:
        """The JSON form of ``condensekit runs --json`` (unknown fields are null)."""
        return {
            "key": self.key,
            "path": str(self.path),
            "method": self.method,
            "dataset": self.dataset,
            "ipc": self.ipc,
            "name": self.name,
            "iterations": self.iterations,
            "iteration": self.iteration,
            "created": self.created,
            "command": self.command,
            "modified": _dt.datetime.fromtimestamp(self.modified, _dt.timezone.utc).isoformat(timespec="seconds"),
            "age_s": round(self.age(now), 1),
            "size": self.size,
            "checkpoints": [c.as_dict() for c in self.checkpoints],
        }


@dataclass(frozen=True)
class RemoveRuns:
    """Which run folders ``condensekit runs rm`` removes: exactly one of ``keys``,
    ``older_than`` (an age such as ``7d``, see :func:`parse_age`) or ``all``."""

    keys: tuple[str, ...] = ()
    older_than: str | None = None
    all: bool = False


@dataclass(frozen=True)
class Removed:
    """The run folders removed and the bytes they held."""

    runs: list[RunInfo] = field(default_factory=list)

    @property
    def freed(self) -> int:
        return sum(run.size for run in self.runs)


def runs_dir(root: Path) -> Path:
    return Path(root) / RUNS_DIR


def list_runs(root: Path) -> list[RunInfo]:
    """Every run folder under ``root``/runs, most recently written first."""
    folder = runs_dir(root)
    if not folder.is_dir():
        return []
    runs = []
    for path in folder.iterdir():
        if path.is_dir():
            try:
                runs.append(read_run(path))
            except FileNotFoundError:  # the run finished and removed its folder meanwhile
                continue
    return sorted(runs, key=lambda run: (-run.modified, run.key))


def read_run(path: Path) -> RunInfo:
    """A run folder's description, its checkpoints' iterations, last write and size.

    Reading a checkpoint memory-maps it, so its tensors are not read; a file torch cannot
    load, or that is not a checkpoint, is listed with iteration None (unreadable)."""
    path = Path(path)
    folder_mtime = path.stat().st_mtime
    stats: dict[Path, os.stat_result] = {}
    for file in sorted(path.rglob("*")):
        try:
            if file.is_file():
                stats[file] = file.stat()
        except FileNotFoundError:  # a temp file renamed by a save in progress
            continue
    modified = max([folder_mtime, *(s.st_mtime for s in stats.values())])
    checkpoints = []
    for file, stat in stats.items():
        if file.parent == path and _CHECKPOINT.match(file.name):
            checkpoint = _read_checkpoint(file, stat.st_size)
            if checkpoint is not None:
                checkpoints.append(checkpoint)
    described = _read_description(path / RUN_FILE)
    return RunInfo(
        key=path.name,
        path=path,
        modified=modified,
        size=sum(s.st_size for s in stats.values()),
        checkpoints=tuple(checkpoints),
        described=described is not None,
        **(described or {}),
    )


def parse_age(text: str) -> float:
    """Seconds in an age such as ``90s``, ``30m``, ``12h`` or ``7d`` (``--older-than``)."""
    match = _AGE.match(text or "")
    if match is None:
        raise UsageError(f"--older-than {text!r} is not an age: use a number with s, m, h or d, e.g. 7d")
    return float(match.group(1)) * _SECONDS[match.group(2)]


def select_runs(root: Path, request: RemoveRuns, now: float | None = None) -> list[RunInfo]:
    """The run folders ``request`` names, checked before anything is removed: a bad age is a
    UsageError, any unknown key a RegistryError, so a typo never removes part of a list."""
    modes = sum([bool(request.keys), request.older_than is not None, request.all])
    if modes == 0:
        raise UsageError(
            "runs rm needs run KEYs, --older-than AGE (e.g. 7d) or --all; `condensekit runs` lists the keys"
        )
    if modes > 1:
        raise UsageError("runs rm takes run KEYs, --older-than AGE or --all, not several at once")
    runs = list_runs(root)
    if request.all:
        return runs
    if request.older_than is not None:
        limit = parse_age(request.older_than)
        return [run for run in runs if run.age(now) > limit]
    by_key = {run.key: run for run in runs}
    wanted = list(dict.fromkeys(request.keys))
    unknown = [key for key in wanted if key not in by_key]
    if unknown:
        names = ", ".join(repr(key) for key in unknown)
        have = f"{len(by_key)} run folder(s)" if by_key else "none"
        raise RegistryError(
            f"unknown run {names} in {runs_dir(root)} ({have}; `condensekit runs` lists them); nothing was removed"
        )
    return [by_key[key] for key in wanted]


def remove_runs(root: Path, request: RemoveRuns, now: float | None = None) -> Removed:
    """Remove the run folders ``request`` selects (their checkpoints can no longer be
    resumed). A folder that vanished meanwhile (its run finished) is skipped."""
    removed: list[RunInfo] = []
    for run in select_runs(root, request, now):
        try:
            shutil.rmtree(run.path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            done = f"; removed before it: {', '.join(r.key for r in removed)}" if removed else ""
            raise RegistryError(f"cannot remove run folder {run.path}: {exc.strerror or exc}{done}") from None
        removed.append(run)
    return Removed(removed)


def check_runs(root: Path, fix: bool = False, now: float | None = None) -> list[str]:
    """Problems in the run folders: temp files of an interrupted checkpoint save, and
    checkpoints that cannot be read (``--resume`` would fail on them). ``fix=True`` removes
    both; a run whose only checkpoint is removed restarts from iteration 0 on ``--resume``."""
    problems: list[str] = []
    done = " (removed)" if fix else ""
    now = time.time() if now is None else now
    for run in sorted(list_runs(root), key=lambda r: r.key):
        rel = f"{RUNS_DIR}/{run.key}"
        for tmp in sorted(p for p in run.path.iterdir() if p.is_file() and _TEMP.search(p.name)):
            if _save_in_progress(tmp, now):
                continue
            problems.append(
                f"run {run.key}: leftover temp file {rel}/{tmp.name} from an interrupted checkpoint save{done}"
            )
            if fix:
                tmp.unlink(missing_ok=True)
        for checkpoint in run.checkpoints:
            if checkpoint.iteration is not None:
                continue
            problems.append(
                f"run {run.key}: checkpoint {rel}/{checkpoint.file} is unreadable "
                f"({checkpoint.error}); --resume cannot use it{done}"
            )
            if fix:
                (run.path / checkpoint.file).unlink(missing_ok=True)
        if fix and run.path.is_dir() and not any(run.path.iterdir()):
            run.path.rmdir()
    return problems


def format_size(size: int) -> str:
    """``512 B``, ``3.4 KiB``, ``12.0 MiB``, ``1.2 GiB``."""
    if size < 1024:
        return f"{size} B"
    value = size / 1024
    for unit in ("KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def format_age(seconds: float) -> str:
    """``40 s``, ``3 min``, ``2 h``, ``4 d`` (rounded down: a run is at least this old)."""
    for unit, length in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= length:
            return f"{math.floor(seconds / length)} {unit}"
    return f"{math.floor(max(seconds, 0))} s"


def _read_checkpoint(path: Path, size: int) -> Checkpoint | None:
    """The checkpoint's iteration, or why it cannot be read; None when it vanished meanwhile.

    torch.save writes a zip archive, which loads memory-mapped (its tensors are not read);
    anything else is tried as torch's legacy format before it is called unreadable."""
    archive = zipfile.is_zipfile(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=archive)
    except Exception as exc:  # noqa: BLE001 -- torch.load raises many types for a bad file
        if not path.exists():
            return None
        reason = (
            (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
            if archive
            else "not a torch.save file (truncated or overwritten)"
        )
        return Checkpoint(path.name, None, size, error=reason)
    iteration = payload.get("iteration") if isinstance(payload, dict) else None
    if isinstance(iteration, int) and not isinstance(iteration, bool) and "state" in payload:
        return Checkpoint(path.name, iteration, size)
    return Checkpoint(path.name, None, size, error="not a condensekit checkpoint: no 'iteration' and 'state'")


def _read_description(path: Path) -> dict[str, Any] | None:
    """The known fields of run.json, with wrong types dropped; None when absent or not JSON."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None

    def typed(key: str, kind: type) -> Any:
        value = data.get(key)
        return value if isinstance(value, kind) and not isinstance(value, bool) else None

    command = data.get("command")
    return {
        "method": typed("method", str),
        "dataset": typed("dataset", str),
        "ipc": typed("ipc", int),
        "name": typed("name", str),
        "iterations": typed("iterations", int),
        "created": typed("created", str),
        "command": [str(a) for a in command] if isinstance(command, list) else None,
    }


def _save_in_progress(tmp: Path, now: float) -> bool:
    """Whether a checkpoint temp file may still be written: its writer runs on this host,
    or it changed within :data:`TEMP_GRACE_S` (a writer on another host cannot be asked)."""
    try:
        if now - tmp.stat().st_mtime < TEMP_GRACE_S:
            return True
    except FileNotFoundError:
        return True  # renamed into place meanwhile: nothing to report
    match = _TEMP.search(tmp.name)
    assert match is not None  # check_runs passes only names _TEMP matches
    pid = int(match.group(1))
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:  # alive, run by another user
        return True
    return True
