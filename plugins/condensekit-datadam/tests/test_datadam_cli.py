"""DataDAM through the ``condensekit`` command: presets and config fields as options."""

from __future__ import annotations

from pathlib import Path

import pytest

from condensekit.cli.app import run
from condensekit.errors import ExitStatus
from condensekit.registry import Registry


def test_official_preset_distills_with_the_batch_norm_convnet(tmp_path: Path) -> None:
    status = run(
        [
            "distill",
            "datadam",
            "--data",
            "cifar10-mini",
            "--ipc",
            "1",
            "--iterations",
            "1",
            "--preset",
            "official",
            "--batch-real",
            "4",
            "--power",
            "2",
            "--registry",
            str(tmp_path),
            "--device",
            "cpu",
            "--name",
            "dam",
        ]
    )
    assert status == ExitStatus.SUCCESS
    meta = Registry(tmp_path).load("dam:v1").metadata
    assert (meta["preset"], meta["backbone"], meta["iterations"]) == ("official", "convnet-bn", 1)
    assert (meta["config"]["net_norm"], meta["config"]["power"], meta["config"]["batch_real"]) == ("batch", 2.0, 4)
    assert (meta["config"]["mmd_weight"], meta["config"]["lr_img"]) == (0.01, 1.0)  # auto values recorded
    assert meta["datadam"]["batch_norm"] is True


def test_out_of_range_option_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    status = run(["distill", "datadam", "--data", "cifar10-mini", "--ipc", "1", "--power", "0"])
    assert status == ExitStatus.USAGE
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert lines == ["error: --power must be > 0, got 0.0"]


def test_help_says_what_an_unset_value_means(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["distill", "datadam", "--help"]) == ExitStatus.SUCCESS
    text = " ".join(capsys.readouterr().out.split()).split("--net-norm", 1)[1]  # the method's own options
    assert "default: auto" not in text and "auto:" not in text  # no value the option would refuse
    assert "(default: 1.0 for IPC <= 50, 10.0 above) [> 0]" in text
    assert "(default: 0.01 up to 32 px, 0.02 above) [>= 0]" in text
