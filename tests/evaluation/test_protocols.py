"""Evaluation protocols: the registry, schedules and overrides, and CutMix."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from condensekit.errors import UsageError
from condensekit.evaluation import PROTOCOLS, get_protocol
from condensekit.evaluation.train import cutmix, make_augment


def test_dc_protocol_is_the_dc_evaluate_synset_recipe() -> None:
    dc = PROTOCOLS["dc"]
    assert (dc.epochs, dc.batch, dc.lr, dc.momentum, dc.weight_decay) == (1000, 256, 0.01, 0.9, 5e-4)
    assert (dc.trained_epochs, dc.milestone_epochs()) == (1001, [502])
    assert dc.gamma == 0.1 and dc.reset_momentum
    assert (dc.dsa_strategy, dc.dsa_mode, dc.cutmix_prob) == ("color_crop_cutout_flip_scale_rotate", "dsa", 0.0)


def official_dc_schedule(epoch_eval_train: int, lr: float = 0.01) -> tuple[list[float], list[int]]:
    """DC's ``evaluate_synset`` loop: (learning rate of each trained epoch, epochs that start
    with a new optimizer after the first)."""
    lr_schedule = [epoch_eval_train // 2 + 1]
    rates, new_optimizer = [], []
    for ep in range(epoch_eval_train + 1):
        rates.append(lr)  # epoch('train', ...) at this lr
        if ep in lr_schedule:
            lr *= 0.1
            new_optimizer.append(ep + 1)
    return rates, [ep for ep in new_optimizer if ep < len(rates)]


@pytest.mark.parametrize("epochs", [300, 10, 1])
def test_dc_learning_rate_of_every_epoch_is_the_official_loops(epochs: int) -> None:
    dc = PROTOCOLS["dc"].with_overrides(epochs=epochs)
    rates, new_optimizer = official_dc_schedule(epochs)
    assert [dc.lr_at(e) for e in range(dc.trained_epochs)] == rates
    assert [m for m in dc.milestone_epochs() if m < dc.trained_epochs] == new_optimizer


def test_dc_at_300_epochs_trains_152_epochs_at_0_01_and_149_at_0_001() -> None:
    dc = PROTOCOLS["dc"].with_overrides(epochs=300)
    rates = [dc.lr_at(e) for e in range(dc.trained_epochs)]
    assert (len(rates), rates.count(0.01), rates.count(0.01 * 0.1)) == (301, 152, 149)


def test_dc_records_its_loop_offsets() -> None:
    recorded = PROTOCOLS["dc"].with_overrides(epochs=300).as_dict()
    assert (recorded["epochs"], recorded["extra_epochs"], recorded["milestone_offset"]) == (300, 1, 2)
    assert recorded["milestone_epochs"] == [152]


def test_idc_trains_exactly_its_epochs_and_records_the_recipe_as_before() -> None:
    idc = PROTOCOLS["idc"].with_overrides(epochs=12)
    assert idc.trained_epochs == 12 and idc.milestone_epochs() == [8, 10]
    assert [idc.lr_at(e) for e in range(12)] == [0.01] * 8 + [0.01 * 0.2] * 2 + [0.01 * 0.2**2] * 2
    # Recipes recorded before the loop offsets existed (stored experts' hashes) read the same.
    assert not {"extra_epochs", "milestone_offset", "trained_epochs"} & set(idc.as_dict())


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


@pytest.mark.parametrize(
    "override", [{"epochs": 0}, {"batch": 0}, {"lr": -1.0}, {"extra_epochs": -1}, {"milestone_offset": -1}]
)
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


# --- kd: RDED's evaluation (LINs-lab/RDED 3f6453d, validation/main.py + argument.py) -----------


def test_kd_protocol_is_rdeds_small_dataset_recipe() -> None:
    kd = get_protocol("kd")
    assert (kd.epochs, kd.lr, kd.optimizer, kd.betas, kd.weight_decay) == (300, 0.001, "adamw", (0.9, 0.999), 0.01)
    assert (kd.targets, kd.temperature, kd.schedule, kd.decay_all) == ("teacher", 20.0, "half_cosine", False)
    assert (kd.cutmix_prob, kd.cutmix_beta, kd.trained_epochs) == (1.0, 1.0, 300)  # cutmix on every batch
    dsa = make_augment(kd)
    assert dsa is not None and (dsa.strategy, dsa.mode) == ("flip", "idc")  # RandomHorizontalFlip


def test_kd_learning_rate_of_every_epoch_is_rdeds_lambda_schedule() -> None:
    kd = get_protocol("kd").with_overrides(epochs=30)
    optimizer = torch.optim.AdamW([torch.zeros(1, requires_grad=True)], lr=kd.lr)
    # argument.py's --cos default: LambdaLR stepped once per epoch.
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1.0 + math.cos(math.pi * step / 30 / 2)) if step <= 30 else 0
    )
    rded = []
    for _ in range(30):
        rded.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert [kd.lr_at(e) for e in range(kd.trained_epochs)] == pytest.approx(rded, rel=1e-12)


@pytest.mark.parametrize(("ipc", "classes", "batch"), [(1, 10, 10), (10, 10, 50), (50, 10, 100), (10, 100, 100)])
def test_kd_batch_follows_rdeds_batch_per_ipc_and_class_count(ipc: int, classes: int, batch: int) -> None:
    assert get_protocol("kd").for_set(ipc, classes).batch == batch


def test_an_explicit_batch_overrides_kds_batch_per_ipc_and_is_the_only_override() -> None:
    kd = get_protocol("kd")
    mine = kd.with_overrides(batch=8)
    assert mine.for_set(50, 100).batch == 8
    assert mine.overrides_against(kd) == {"batch": 8}


def test_kd_records_its_new_fields_and_dc_idc_record_as_before() -> None:
    new = {"optimizer", "betas", "decay_all", "schedule", "targets", "temperature", "ipc_batches"}
    assert new <= set(get_protocol("kd").as_dict())
    assert not new & set(get_protocol("idc").as_dict()) and not new & set(get_protocol("dc").as_dict())


@pytest.mark.parametrize("override", [{"optimizer": "lion"}, {"targets": "oracle"}, {"temperature": 0.0}])
def test_an_unknown_optimizer_or_target_or_a_bad_temperature_is_a_usage_error(override: dict) -> None:
    with pytest.raises(UsageError):
        get_protocol("kd").with_overrides(**override)
