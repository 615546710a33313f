"""Class-parallel distillation on PyTorch's own distributed engine (torchrun + torch.distributed).

DM-family objectives decompose over classes, so each rank distills a share of the classes
and no gradients are exchanged. Every rank derives the per-iteration network, expert and
augmentation seeds from the same run seed (``DistillContext.seed_for``), so a class gets the
same draws wherever it runs; rank 0 gathers the images and writes the registry once.
Launch: ``condensekit distill ... --nproc N`` (spawns ``torchrun --standalone``) or
``torchrun ... -m condensekit distill ...`` on several machines (docs/distributed.md).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch
import torch.distributed as dist

from condensekit.synthetic import SyntheticSet


def partition(classes: Sequence[int], rank: int, world_size: int) -> list[int]:
    """Round-robin share of ``classes`` for ``rank`` (balanced when classes cost the same)."""
    return list(classes)[rank::world_size]


class Group:
    """The running process group, as the distillation flow needs it."""

    def __init__(self) -> None:
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))

    def device(self, requested: torch.device) -> torch.device:
        """One GPU per local rank; CPU ranks share the CPU."""
        if requested.type == "cuda":
            device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(device)
            return device
        return requested

    def gather_set(self, part: SyntheticSet, num_classes: int) -> SyntheticSet | None:
        """Every rank's classes, merged class-major on rank 0 (None on other ranks)."""
        payload = (part.images, part.labels, part.soft_labels)
        parts: list[Any] | None = [None] * self.world_size if self.rank == 0 else None
        dist.gather_object(payload, parts, dst=0)
        if parts is None:  # not rank 0
            return None
        images = torch.cat([p[0] for p in parts])
        labels = torch.cat([p[1] for p in parts])
        soft = None if parts[0][2] is None else torch.cat([p[2] for p in parts])
        order = torch.argsort(labels, stable=True)
        return replace(
            part,
            images=images[order],
            labels=labels[order],
            soft_labels=None if soft is None else soft[order],
        )

    def finish_together(self) -> None:
        """Wait until every rank is done (rank 0 last writes the registry).

        A rank that tore its gloo group down and exited while rank 0 was still saving aborted
        now and then ("terminate called without an active exception", SIGABRT), failing the run.
        """
        dist.barrier()

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank (the other ranks wait here until rank 0 sends)."""
        box = [value if self.rank == 0 else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def max_value(self, value: float) -> float:
        tensor = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return float(tensor.item())


#: True once this module initialized the process group (from torchrun's environment), so
#: that it tears down only a group it made, never one a library caller made.
_owned = False


def current() -> Group | None:
    """The process group of a multi-process run, initializing it from torchrun's
    environment on first use; None in an ordinary single-process run."""
    global _owned  # noqa: PLW0603 -- process-wide: whether this module created the process group
    if not dist.is_available():
        return None
    if not dist.is_initialized():
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return None
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
        _owned = True
    if dist.get_world_size() <= 1:
        return None
    return Group()


def shutdown_owned() -> None:
    """Tear down the process group if :func:`current` made it (end of a run, or its failure)."""
    global _owned  # noqa: PLW0603 -- see current()
    if _owned and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _owned = False


def torchrun_command(nproc: int, args: Sequence[str]) -> list[str]:
    """The command that re-runs ``condensekit <args>`` on ``nproc`` local processes."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "condensekit",
        *args,
    ]
