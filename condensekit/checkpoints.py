"""Resumable distillation state on disk, one file per run (and per rank in class-parallel runs)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch


def run_key(**identity: Any) -> str:
    """A short stable key for everything that determines a run's result except its length."""
    blob = json.dumps(identity, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


class FileCheckpointer:
    """Implements the ``Checkpointer`` protocol of ``condensekit.methods.base``.

    ``save`` writes atomically (temporary file, fsync, rename), so an interrupted save never
    leaves a truncated checkpoint behind. ``load`` returns None unless resuming.
    """

    def __init__(self, path: Path, every: int, resume: bool) -> None:
        self.path = Path(path)
        self.every = max(0, int(every))
        self.resume = resume

    def exists(self) -> bool:
        return self.path.is_file()

    def load(self) -> tuple[int, dict[str, Any]] | None:
        if not (self.resume and self.path.is_file()):
            return None
        payload = torch.load(self.path, map_location="cpu", weights_only=True)
        return int(payload["iteration"]), payload["state"]

    def save(self, iteration: int, state: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".tmp{os.getpid()}")
        with open(tmp, "wb") as fh:
            torch.save({"iteration": iteration, "state": state}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.path.parent.rmdir()


class NoCheckpoints:
    """A run that neither resumes nor saves."""

    every = 0

    def load(self) -> None:
        return None

    def save(self, iteration: int, state: dict[str, Any]) -> None:
        return None
