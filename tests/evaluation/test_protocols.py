"""Evaluation protocols: the registry, schedules and overrides, and CutMix."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from condensekit.errors import UsageError
from condensekit.evaluation import PROTOCOLS, get_protocol
from condensekit.evaluation.train import cutmix, make_augment


def test_dc_protocol_is_the_dc_evaluate_synset_recipe() -> None:
    dc = PROTOCOLS["dc"]
    assert (dc.epochs, dc.batch, dc.lr, dc.momentum, dc.weight_decay) == (1000, 256, 0.01, 0.9, 5e-4)
    assert dc.milestone_epochs() == [500] and dc.gamma == 0.1 and dc.reset_momentum
    assert (dc.dsa_strategy, dc.dsa_mode, dc.cutmix_prob) == ("color_crop_cutout_flip_scale_rotate", "dsa", 0.0)


def test_dc_learning_rate_drops_tenfold_at_half() -> None:
    dc = PROTOCOLS["dc"]
    assert dc.lr_at(0) == dc.lr_at(499) == 0.01
    assert dc.lr_at(500) == dc.lr_at(999) == pytest.approx(0.001)


def test_idc_protocol_has_cutmix_and_two_milestones() -> None:
    idc = get_protocol("idc")
    assert (idc.epochs, idc.batch, idc.gamma) == (1500, 64, 0.2)
    assert idc.milestone_epochs() == [1000, 1250]  # IDC: 2 * E // 3, 5 * E // 6
    assert idc.lr_at(999) == 0.01
    assert idc.lr_at(1000) == pytest.approx(0.002) and idc.lr_at(1250) == pytest.approx(0.0004)
    assert (idc.cutmix_prob, idc.cutmix_beta) == (0.5, 1.0) and not idc.reset_momentum
    dsa = make_augment(idc)
    assert dsa is not None and (dsa.strategy, dsa.mode) == ("color_crop_flip_scale_rotate", "idc")


def test_idc_drops_flip_for_digit_datasets_only() -> None:
    idc = PROTOCOLS["idc"]
    assert idc.for_dataset("svhn").dsa_strategy == "color_crop_scale_rotate"
    assert idc.for_dataset("mnist").dsa_strategy == "color_crop_scale_rotate"
    assert idc.for_dataset("cifar10") is idc
    assert PROTOCOLS["dc"].for_dataset("mnist") is PROTOCOLS["dc"]


def test_overrides_replace_values_and_keep_the_rest() -> None:
    p = PROTOCOLS["idc"].with_overrides(epochs=300, lr=None, batch=32, dsa=False)
    assert (p.epochs, p.batch, p.lr, p.dsa) == (300, 32, 0.01, False)
    assert p.milestone_epochs() == [200, 250]
    assert make_augment(p) is None


@pytest.mark.parametrize("override", [{"epochs": 0}, {"batch": 0}, {"lr": -1.0}])
def test_invalid_override_is_a_usage_error(override: dict) -> None:
    with pytest.raises(UsageError):
        PROTOCOLS["dc"].with_overrides(**override)


def test_unknown_protocol_names_the_choices() -> None:
    with pytest.raises(UsageError, match="dc, idc"):
        get_protocol("mtt")


def test_cutmix_pastes_a_partner_box_and_reports_the_kept_fraction() -> None:
    # Image i is constant i, so every pixel tells which image it came from.
    x = torch.arange(8, dtype=torch.float32).view(8, 1, 1, 1).expand(8, 3, 32, 32).clone()
    mixed, partner, keep = cutmix(x, 1.0, torch.Generator().manual_seed(0), np.random.default_rng(3))
    from_partner = (mixed[:, 0] == partner.view(8, 1, 1).float()) & (mixed[:, 0] != x[:, 0])
    own = mixed[:, 0] == x[:, 0]
    assert (from_partner | own).all()
    pasted = (~own).float().mean(dim=(1, 2))
    moved = partner != torch.arange(8)
    assert torch.allclose(pasted[moved], torch.full_like(pasted[moved], 1 - keep))
    assert 0.0 <= keep < 1.0 and moved.any()
    assert torch.equal(x[:, 0, 0, 0], torch.arange(8, dtype=torch.float32))  # input untouched
