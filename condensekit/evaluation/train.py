"""Training fresh networks on a synthetic set, and testing them on the real test split.

:func:`train_runs` takes every seed of one architecture at once, so the runs can later be
trained as one batched ensemble without changing callers; today it trains them in turn.
All randomness of a run (init, shuffling, DSA, CutMix) derives from its seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from condensekit import runtime
from condensekit.augment import DSA
from condensekit.data.base import RealData
from condensekit.evaluation.protocols import Protocol

#: ``(index of the run in seeds, epochs completed in that run)``, called after every epoch.
EpochCallback = Callable[[int, int], None]

TEST_BATCH = 1024


def make_augment(protocol: Protocol) -> DSA | None:
    """The protocol's per-sample DSA, or None when it trains without augmentation."""
    if not protocol.dsa:
        return None
    dsa = DSA(protocol.dsa_strategy, mode=protocol.dsa_mode)
    return None if dsa.identity else dsa


def train_runs(
    make_model: Callable[[int], nn.Module],
    seeds: Sequence[int],
    images: torch.Tensor,
    labels: torch.Tensor,
    soft_labels: torch.Tensor | None,
    protocol: Protocol,
    device: torch.device,
    progress: EpochCallback | None = None,
    use_autocast: bool = False,
) -> list[nn.Module]:
    """Train one fresh ``make_model(seed)`` per seed on (images, labels) with ``protocol``.

    ``images`` are normalized (N, C, H, W); ``soft_labels`` (N, K) class probabilities, used as
    targets instead of ``labels`` when given. Returns the trained models, in ``seeds`` order,
    on ``device`` in eval mode. The accuracy that counts is the final epoch's: no model
    selection happens here.
    """
    images = images.to(device)
    targets = (soft_labels.float() if soft_labels is not None else labels.long()).to(device)
    models = []
    for index, seed in enumerate(seeds):
        on_epoch = (lambda epoch, i=index: progress(i, epoch)) if progress else None
        model = make_model(seed).to(device)
        _train_one(model, seed, images, targets, protocol, device, on_epoch, use_autocast)
        models.append(model.eval())
    return models


def _train_one(
    model: nn.Module,
    seed: int,
    images: torch.Tensor,
    targets: torch.Tensor,
    protocol: Protocol,
    device: torch.device,
    on_epoch: Callable[[int], None] | None,
    use_autocast: bool,
) -> None:
    generator = torch.Generator().manual_seed(seed)  # shuffling, DSA and CutMix images
    mix_rng = np.random.default_rng(seed)  # CutMix's coin, Beta draw and box (as IDC, NumPy)
    augment = make_augment(protocol)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=protocol.lr, momentum=protocol.momentum, weight_decay=protocol.weight_decay
    )
    milestones = set(protocol.milestone_epochs())
    n = images.shape[0]
    model.train()
    for epoch in range(protocol.epochs):
        for group in optimizer.param_groups:
            group["lr"] = protocol.lr_at(epoch)
        if protocol.reset_momentum and epoch in milestones:
            optimizer.state.clear()  # DC builds a new optimizer at the decay
        order = torch.randperm(n, generator=generator).to(device)
        for start in range(0, n, protocol.batch):
            idx = order[start : start + protocol.batch]
            x, y = images[idx], targets[idx]
            if augment is not None:
                with torch.no_grad():
                    x = augment(x, generator)
            with runtime.autocast(device, use_autocast):
                loss = protocol_loss(model, x, y, protocol, generator, mix_rng)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if on_epoch is not None:
            on_epoch(epoch + 1)


def protocol_loss(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    protocol: Protocol,
    generator: torch.Generator,
    mix_rng: np.random.Generator,
) -> torch.Tensor:
    """One batch's loss under ``protocol``: cross-entropy on hard (int) or soft (probability)
    targets, with IDC's CutMix when the protocol has it. Shared with expert training."""
    if protocol.cutmix_prob > 0 and mix_rng.random() < protocol.cutmix_prob:
        x, partner, keep = cutmix(x, protocol.cutmix_beta, generator, mix_rng)
        out = model(x).float()
        return F.cross_entropy(out, y) * keep + F.cross_entropy(out, y[partner]) * (1.0 - keep)
    return F.cross_entropy(model(x).float(), y)


def cutmix(
    x: torch.Tensor, beta: float, generator: torch.Generator, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """CutMix as IDC's ``train_epoch``: paste a box of a permuted batch into ``x``.

    Returns (mixed images, partner index of each image, fraction of ``x`` kept) so the loss is
    ``keep * CE(y) + (1 - keep) * CE(y[partner])``.
    """
    lam = rng.beta(beta, beta)
    partner = torch.randperm(x.shape[0], generator=generator).to(x.device)
    h, w = x.shape[2], x.shape[3]
    cut = math.sqrt(1.0 - lam)
    ch, cw = int(h * cut), int(w * cut)
    cy, cx = int(rng.integers(h)), int(rng.integers(w))
    y1, y2 = np.clip([cy - ch // 2, cy + ch // 2], 0, h)
    x1, x2 = np.clip([cx - cw // 2, cx + cw // 2], 0, w)
    mixed = x.clone()
    mixed[:, :, y1:y2, x1:x2] = x[partner, :, y1:y2, x1:x2]
    keep = 1.0 - float((y2 - y1) * (x2 - x1)) / (h * w)
    return mixed, partner, keep


@torch.no_grad()
def top1_accuracy(
    models: Sequence[nn.Module],
    test: RealData,
    device: torch.device,
    use_autocast: bool = False,
    batch: int = TEST_BATCH,
) -> list[float]:
    """Top-1 accuracy (percent) of each model on the whole split, in batches shared by all
    models (each batch is converted to float once)."""
    for model in models:
        model.eval()
    correct = torch.zeros(len(models), dtype=torch.long)
    for start in range(0, len(test), batch):
        x = test.as_float(test.images[start : start + batch].to(device))
        y = test.labels[start : start + batch].to(device)
        with runtime.autocast(device, use_autocast):
            for i, model in enumerate(models):
                correct[i] += int((model(x).argmax(1) == y).sum())
    return [100.0 * int(c) / len(test) for c in correct]
