"""Resumable distillation state on disk, one file per run (and per rank in class-parallel runs)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import torch

from condensekit.registry.store import write_error


def run_key(**identity: Any) -> str:
    """A short stable key for everything that determines a run's result except its length."""
    blob = json.dumps(identity, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


class FileCheckpointer:
    """Implements the ``Checkpointer`` protocol of ``condensekit.methods.base``.

    ``save`` writes atomically (temporary file, fsync, rename), so an interrupted save never
    leaves a truncated checkpoint behind, and a save the disk refuses (full, file-size limit,
    permissions) is a one-line ``RegistryError`` that keeps the previous checkpoint. ``load``
    returns None unless resuming. ``registry_root`` names the registry in that error.
    """

    def __init__(self, path: Path, every: int, resume: bool, registry_root: Path | None = None) -> None:
        self.path = Path(path)
        self.every = max(0, int(every))
        self.resume = resume
        self.registry_root = registry_root if registry_root is not None else self.path.parent

    def exists(self) -> bool:
        return self.path.is_file()

    def load(self) -> tuple[int, dict[str, Any]] | None:
        if not (self.resume and self.path.is_file()):
            return None
        payload = torch.load(self.path, map_location="cpu", weights_only=True)
        return int(payload["iteration"]), payload["state"]

    def save(self, iteration: int, state: dict[str, Any]) -> None:
        # Serialized in memory first: torch.save on a file turns ENOSPC/EFBIG into a bare
        # RuntimeError, while plain writes raise the OSError that says what happened.
        buffer = io.BytesIO()
        torch.save({"iteration": iteration, "state": state}, buffer)
        tmp = self.path.with_suffix(f".tmp{os.getpid()}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as fh:
                fh.write(buffer.getbuffer())
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            kept = "the previous checkpoint is kept" if self.path.exists() else "no checkpoint was kept"
            raise write_error(
                exc, self.registry_root, f"checkpoint of iteration {iteration} not saved, {kept}"
            ) from None

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
