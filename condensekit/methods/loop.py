"""The iteration loop shared by image-optimizing methods: resume, progress, checkpoints."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from condensekit.methods.base import DistillContext


def run_iterations(
    ctx: DistillContext,
    tensors: Mapping[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    step: Callable[[int], Mapping[str, float]],
) -> None:
    """Call ``step(iteration)`` for iterations ``0 .. ctx.iterations - 1``.

    ``tensors`` (the synthetic images, and anything else learned) and ``optimizer`` are the
    resumable state: restored from ``ctx.checkpoint`` when resuming, saved every
    ``ctx.checkpoint.every`` iterations. Randomness must come from ``ctx.generator(iteration,
    ...)`` so a resumed run draws what the uninterrupted run would have drawn.
    """
    start = 0
    resumed = ctx.checkpoint.load()
    if resumed is not None:
        start, state = resumed
        with torch.no_grad():
            for key, tensor in tensors.items():
                tensor.copy_(state["tensors"][key].to(tensor.device))
        optimizer.load_state_dict(state["optimizer"])
    every = ctx.checkpoint.every
    for iteration in range(start, ctx.iterations):
        metrics = step(iteration)
        done = iteration + 1
        ctx.progress(done, **metrics)
        if every and done % every == 0 and done < ctx.iterations:
            ctx.checkpoint.save(
                done,
                {
                    "tensors": {k: t.detach().cpu().clone() for k, t in tensors.items()},
                    "optimizer": optimizer.state_dict(),
                },
            )
