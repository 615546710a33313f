"""Class-parallel DC: two processes exchange the synthetic set before every network update,
so each rank trains the network the one-process run trains and the classes come out the same."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import torch

from condensekit import distributed
from condensekit.distill import distill
from condensekit.registry import Registry

CONFIG = {"batch_real": 8, "outer_loop": 2, "inner_loop": 2, "batch_train": 8}
FLAGS = ["--batch-real", "8", "--outer-loop", "2", "--inner-loop", "2", "--batch-train", "8"]


@pytest.mark.slow
def test_two_processes_match_one(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry")
    single = distill("dc", "cifar10-mini", 2, iterations=1, device="cpu", preset="dsa", config=CONFIG)
    args = ["distill", "dc", "--data", "cifar10-mini", "--ipc", "2", "--iterations", "1", "--preset", "dsa"]
    args += [*FLAGS, "--registry", str(registry.root), "--device", "cpu", "--name", "dc-parallel"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        distributed.torchrun_command(2, args), capture_output=True, check=False, text=True, timeout=600, env=env
    )
    assert result.returncode == 0, result.stderr[-2000:]
    parallel = registry.load("dc-parallel")
    assert parallel.metadata["world_size"] == 2
    assert torch.equal(parallel.labels, single.synset.labels)
    # 20 synthetic images in batches of 8: the network update shuffles and uses several batches.
    torch.testing.assert_close(parallel.images, single.synset.images, atol=1e-4, rtol=1e-4)
