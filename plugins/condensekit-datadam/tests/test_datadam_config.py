"""Presets, auto values and config validation of the DataDAM plugin."""

from __future__ import annotations

import dataclasses

import pytest

from condensekit.data import dataset_info
from condensekit.distill import DistillRequest, plan
from condensekit.errors import UsageError
from condensekit_datadam.method import DataDAM


def _resolved(preset: str | None, dataset: str = "cifar10", ipc: int = 10, **overrides):
    method = DataDAM(DataDAM.make_config(preset, **overrides))
    return method, method.resolve_config(dataset_info(dataset), ipc)


def test_official_preset_is_what_the_released_code_runs() -> None:
    method, cfg = _resolved("official")
    cifar = dataset_info("cifar10")
    assert (cfg.net_norm, cfg.power, cfg.batch_real) == ("batch", 1.0, 64)
    assert (cfg.mmd_weight, cfg.lr_img, cfg.momentum, cfg.loss_scale) == (0.01, 1.0, 0.5, 100.0)
    assert method.default_iterations(cifar, 10) == 20000
    assert method.preferred_backbone(cifar) == "convnet-bn"


def test_paper_preset_is_the_papers_hyper_parameter_table() -> None:
    method, cfg = _resolved("paper")
    cifar = dataset_info("cifar10")
    assert (cfg.net_norm, cfg.power, cfg.batch_real) == ("instance", 4.0, 64)
    assert (cfg.mmd_weight, cfg.lr_img) == (0.01, 1.0)
    assert method.default_iterations(cifar, 10) == 8000
    assert method.preferred_backbone(cifar) is None  # the dataset's instance-norm ConvNet


def test_default_preset_is_instance_norm_with_power_one() -> None:
    assert DataDAM.default_preset == "tuned"
    method, cfg = _resolved(None)
    assert (cfg.net_norm, cfg.power, cfg.batch_real) == ("instance", 1.0, 64)
    assert method.preferred_backbone(dataset_info("cifar10")) is None
    assert DataDAM.make_config() == DataDAM.Config()  # field defaults are the default preset


@pytest.mark.parametrize(
    ("dataset", "ipc", "mmd_weight", "lr_img"),
    [("mnist", 1, 0.01, 1.0), ("cifar10", 50, 0.01, 1.0), ("cifar10", 51, 0.01, 10.0), ("imagenette", 10, 0.02, 1.0)],
)
def test_auto_values_follow_resolution_and_ipc(dataset: str, ipc: int, mmd_weight: float, lr_img: float) -> None:
    _, cfg = _resolved("official", dataset, ipc)
    assert (cfg.mmd_weight, cfg.lr_img) == (mmd_weight, lr_img)


def test_batch_norm_preset_keeps_the_datasets_convnet_depth() -> None:
    method = DataDAM(DataDAM.make_config("official"))
    assert method.preferred_backbone(dataset_info("tinyimagenet")) == "convnetd4-bn"
    assert method.preferred_backbone(dataset_info("imagenette")) == "convnetd5-bn"


def test_explicit_values_override_the_preset() -> None:
    _, cfg = _resolved("official", power=4.0, mmd_weight=0.5, lr_img=0.1)
    assert (cfg.net_norm, cfg.power, cfg.mmd_weight, cfg.lr_img) == ("batch", 4.0, 0.5, 0.1)


def test_plan_takes_backbone_and_iterations_from_the_preset() -> None:
    official = plan(DistillRequest("datadam", "cifar10-mini", 10, preset="official"))
    assert (official.backbone, official.iterations) == ("convnet-bn", 20000)
    paper = plan(DistillRequest("datadam", "cifar10-mini", 10, preset="paper"))
    assert (paper.backbone, paper.iterations) == ("convnet", 8000)


def test_explicit_backbone_and_iterations_win_over_the_preset() -> None:
    p = plan(DistillRequest("datadam", "cifar10-mini", 10, preset="official", backbone="convnet", iterations=7))
    assert (p.backbone, p.iterations) == ("convnet", 7)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"power": 0.0}, "^--power must be > 0, got 0.0$"),
        ({"lr_img": -1.0}, "^--lr-img must be > 0, got -1.0$"),
        ({"mmd_weight": -0.5}, "^--mmd-weight must be >= 0, got -0.5$"),
        ({"momentum": 1.0}, "^--momentum must be < 1, got 1.0$"),
        ({"loss_scale": 0.0}, "^--loss-scale must be > 0, got 0.0$"),
        ({"auto_iterations": -1}, "^--auto-iterations must be >= 0, got -1$"),
        ({"init": "zeros"}, "^--init must be one of real, noise, got 'zeros'$"),
        ({"net_norm": "layer"}, "^--net-norm must be one of instance, batch, got 'layer'$"),
        ({"batch_real": 0}, "^--batch-real must be >= 1, got 0$"),
        ({"dsa_strategy": "color_blur"}, "blur"),
    ],
)
def test_invalid_values_are_one_line_usage_errors(overrides: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message) as info:
        DataDAM.make_config(**overrides)
    assert "\n" not in str(info.value)


def test_every_numeric_field_declares_its_range_in_metadata() -> None:
    """Core checks what the metadata declares; a numeric field without a range is unchecked."""
    for f in dataclasses.fields(DataDAM.Config):
        if f.name in ("dsa_strategy", "autocast"):  # a parsed string and a flag: no range to declare
            continue
        assert {"min", "max", "choices"} & set(f.metadata), f"{f.name} declares no range"


def test_the_real_batch_is_bounded_by_the_smallest_class() -> None:
    with pytest.raises(UsageError, match="--batch-real must be <= 200, the train images in the smallest class"):
        plan(DistillRequest("datadam", "cifar10-mini", 1, config={"batch_real": 201}))
    # A preset or default above the class is capped there (and recorded), not refused.
    mini = dataclasses.replace(dataset_info("cifar10-mini"), class_sizes=(50,) * 10)
    assert DataDAM.configured(mini, 1).config.batch_real == 50
    with pytest.raises(UsageError, match="--batch-real must be <= 50"):
        DataDAM.configured(mini, 1, batch_real=64)
