"""Checkpoints of a distillation: a save the disk refuses is one line and keeps the last one."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

from condensekit.checkpoints import FileCheckpointer
from condensekit.data import load_dataset
from condensekit.errors import ExitStatus


def _limit_file_size(limit: int) -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


SAVE_TWICE = """
import sys, torch
from condensekit.checkpoints import FileCheckpointer
from condensekit.errors import RegistryError
checkpointer = FileCheckpointer(sys.argv[1], every=1, resume=True)
checkpointer.save(1, {"images": torch.zeros(10)})  # small: under the limit
try:
    checkpointer.save(2, {"images": torch.zeros(1_000_000)})  # 4 MB: over it
except RegistryError as exc:
    print(exc)
"""


def test_a_refused_save_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "run" / "checkpoint.pt"
    result = subprocess.run(
        [sys.executable, "-c", SAVE_TWICE, str(path)], capture_output=True, text=True, timeout=120, check=False,
        preexec_fn=lambda: _limit_file_size(1_000_000),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "checkpoint of iteration 2 not saved, the previous checkpoint is kept" in result.stdout
    loaded = FileCheckpointer(path, every=1, resume=True).load()
    assert loaded is not None and loaded[0] == 1
    assert [p.name for p in path.parent.iterdir()] == ["checkpoint.pt"]  # no temp file left


def test_a_distillation_whose_checkpoint_exceeds_the_file_size_limit_ends_in_one_line(tmp_path: Path) -> None:
    load_dataset("cifar10-mini")  # the array cache exists before the limit applies
    command = [
        sys.executable, "-m", "condensekit", "distill", "dm", "--data", "cifar10-mini", "--ipc", "10",
        "--iterations", "3", "--checkpoint-every", "1", "--batch-real", "8", "--device", "cpu",
        "--registry", str(tmp_path / "registry"),
    ]  # fmt: skip
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=300, check=False,
        preexec_fn=lambda: _limit_file_size(300_000),  # a checkpoint of 100 images and momentum is ~2.5 MB
    )  # fmt: skip
    assert result.returncode == ExitStatus.REGISTRY, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "file size limit" in errors[0] and "checkpoint of iteration 1 not saved" in errors[0]
    assert "Traceback" not in result.stderr
    assert not list((tmp_path / "registry").glob("runs/*/*.tmp*"))
