"""What ``condensekit distill`` says while it works: phases with their own bars, the cost
of the run once measured, and nothing at all under ``--quiet``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from condensekit import distill as pipeline
from condensekit.distill import DistillRequest, plan


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "condensekit", "distill", *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def test_quiet_prints_nothing_but_the_result(tmp_path: Path) -> None:
    result = _cli(
        "dm",
        "--data",
        "cifar10-mini",
        "--ipc",
        "1",
        "--iterations",
        "2",
        "--batch-real",
        "8",
        "--device",
        "cpu",
        "--registry",
        str(tmp_path),
        "--quiet",
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == "" and "saved" in result.stdout


def test_expert_training_has_its_own_progress_before_the_distillation(tmp_path: Path) -> None:
    result = _cli(
        "dance",
        "--data",
        "cifar10-mini",
        "--res",
        "16",
        "--ipc",
        "1",
        "--iterations",
        "1",
        "--num-experts",
        "1",
        "--expert-epochs",
        "1",
        "--batch-real",
        "8",
        "--device",
        "cpu",
        "--registry",
        str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    experts = next(i for i, line in enumerate(lines) if line.startswith("training experts (experts x epochs): 1/1"))
    distill = next(i for i, line in enumerate(lines) if line.startswith("dance: 1/1"))
    assert experts < distill
    assert any("measured on a few steps" in line for line in lines[:experts])


def test_the_cost_of_a_long_run_is_said_once_a_few_iterations_are_timed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pipeline._Watch, "WORTH_SAYING_S", 0.0)  # every run counts as long here
    planned = plan(DistillRequest("dm", "cifar10-mini", 1, iterations=1000, device="cpu"))
    notes: list[str] = []
    watch = pipeline._Watch(None, planned, notes.append)
    for iteration in range(1, 8):
        watch(iteration)
    assert len(notes) == 1 and "s per iteration on cpu, 996 iterations to go" in notes[0]
    assert "a GPU" in notes[0] and watch.last == 7
