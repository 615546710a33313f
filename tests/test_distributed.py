"""Class-parallel distillation: a 2-process gloo run equals the single-process run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from condensekit import distributed
from condensekit.distill import distill
from condensekit.registry import Registry


def test_partition_is_round_robin_and_complete() -> None:
    parts = [distributed.partition(range(10), r, 3) for r in range(3)]
    assert parts == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    assert sorted(i for part in parts for i in part) == list(range(10))


def _two_process_run(method: str, registry: Path, extra: list[str]) -> subprocess.CompletedProcess:
    args = [
        "distill",
        method,
        "--data",
        "cifar10-mini",
        "--ipc",
        "2",
        "--iterations",
        "3",
        "--registry",
        str(registry),
        "--device",
        "cpu",
        "--name",
        f"{method}-parallel",
        *extra,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = distributed.torchrun_command(2, args)
    return subprocess.run(command, capture_output=True, check=False, text=True, timeout=600, env=env)


@pytest.mark.parametrize(
    "method,config,extra",
    [
        ("dm", {"batch_real": 16}, ["--batch-real", "16"]),
        ("datadam", {"batch_real": 16}, ["--batch-real", "16"]),
    ],
)
def test_two_processes_match_one(method: str, config: dict, extra: list[str], tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry")
    single = distill(method, "cifar10-mini", 2, iterations=3, device="cpu", config=config)
    result = _two_process_run(method, registry.root, extra)
    assert result.returncode == 0, result.stderr[-2000:]
    sets = registry.list_sets()
    assert [(row["name"], row["versions"]) for row in sets] == [(f"{method}-parallel", [1])]
    parallel = registry.load(f"{method}-parallel")
    assert torch.equal(parallel.labels, single.synset.labels)
    # Each class's images match the single-process run up to float summation order.
    torch.testing.assert_close(parallel.images, single.synset.images, atol=1e-4, rtol=1e-4)
    assert parallel.metadata["world_size"] == 2


def test_unpartitionable_method_is_refused(tmp_path: Path) -> None:
    # A method without partitionable=True, run under a 2-process group, gets a usage error.
    script = tmp_path / "refuse.py"
    script.write_text(
        "import sys\n"
        "from condensekit.methods.random import RandomReal\n"
        "RandomReal.partitionable = False\n"
        "from condensekit.cli.app import run\n"
        "sys.exit(run(sys.argv[1:]))\n"
    )
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node=2",
        str(script),
        "distill",
        "random",
        "--data",
        "cifar10-mini",
        "--ipc",
        "1",
        "--registry",
        str(tmp_path / "registry"),
        "--device",
        "cpu",
    ]
    result = subprocess.run(command, capture_output=True, check=False, text=True, timeout=300)
    assert result.returncode != 0
    assert "does not decompose over classes" in result.stderr
    assert Registry(tmp_path / "registry").list_sets() == []


def test_two_processes_train_and_store_one_experts_version(tmp_path: Path) -> None:
    # No experts stored yet: rank 0 trains them once, rank 1 waits and receives the same ones.
    registry = Registry(tmp_path / "registry")
    result = _two_process_run(
        "dance",
        registry.root,
        [
            "--res",
            "16",
            "--ipc",
            "1",
            "--num-experts",
            "1",
            "--expert-epochs",
            "1",
            "--batch-real",
            "16",
        ],
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert [(row["name"], row["versions"]) for row in registry.list_experts()] == [("cifar10-mini-convnet-16", [1])]
    parallel = registry.load("dance-parallel")
    assert parallel.metadata["experts"] == "cifar10-mini-convnet-16:v1"
    assert parallel.metadata["world_size"] == 2
    assert not (registry.root / "runs").exists() or not any((registry.root / "runs").iterdir())
