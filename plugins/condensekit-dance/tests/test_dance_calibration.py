"""The two views' optimizer steps, on real data and real experts."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from condensekit.synthetic import decode_multiformation
from condensekit.testing import make_context
from condensekit_dance.method import DANCE, ExpertBank, _PerClassStep, initial_images


def _setup(mini_experts, **config):
    ctx = make_context(resolution=16, ipc=1, iterations=1, experts=mini_experts)
    method = DANCE(DANCE.make_config(**config))
    cfg = method.resolve_config(ctx.dataset, ctx.ipc)
    bank = ExpertBank(ctx, cfg.num_experts)
    syn = initial_images(ctx, cfg.init, cfg.factor).requires_grad_(True)
    optimizer = torch.optim.SGD([syn], lr=cfg.lr_img, momentum=cfg.momentum)
    return ctx, cfg, bank, syn, _PerClassStep(ctx, cfg, bank, syn, optimizer, ctx.classes)


def test_calibration_lowers_the_trained_experts_loss_on_the_synthetic_set(mini_experts) -> None:
    ctx, cfg, bank, syn, step = _setup(mini_experts, num_experts=2, aug="none")
    bank.use(0, 0.5)
    labels = torch.tensor(list(ctx.classes)).repeat_interleave(ctx.ipc * cfg.factor**2)

    def expert_loss() -> float:
        with torch.no_grad():
            images = ctx.dataset.normalize(decode_multiformation(syn, cfg.factor))
            return float(F.cross_entropy(bank.trained(images), labels))

    before = expert_loss()
    for rnd in range(2):
        step.calibrate(0, rnd)
    assert expert_loss() < before


def test_matching_lowers_the_discrepancy_under_the_middle_encoder(mini_experts) -> None:
    ctx, cfg, bank, syn, step = _setup(mini_experts, num_experts=2, aug="none", batch_real=32)
    bank.use(1, 0.3)
    real = torch.cat([ctx.data.first(c, 32, space="unit") for c in ctx.classes])

    def discrepancy() -> float:
        with torch.no_grad():
            f_real = bank.middle.embed(ctx.dataset.normalize(real)).view(10, 32, -1).mean(1)
            f_syn = bank.middle.embed(ctx.dataset.normalize(decode_multiformation(syn, cfg.factor)))
            return float((f_real - f_syn.view(10, ctx.ipc * cfg.factor**2, -1).mean(1)).pow(2).sum())

    before = discrepancy()
    step.match(0)
    assert discrepancy() < before
