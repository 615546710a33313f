"""The registry commands through Typer's test runner, on an app built with ``register``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import pytest
import torch
import typer
from PIL import Image
from typer.testing import CliRunner

from condensekit.cli.registry import register
from condensekit.errors import RegistryError, UsageError
from condensekit.evaluation.report import ArchResult, EvalReport
from condensekit.registry import Registry
from condensekit.synthetic import SyntheticSet

runner = CliRunner()
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _report(accuracies: list[float]) -> dict:
    runs = ArchResult("convnet", accuracies=accuracies, seeds=list(range(len(accuracies))), wall_time_s=1.0)
    return EvalReport(protocol="dc", params={"epochs": 300}, results=[runs], device="cpu").as_dict()


def _synset(ipc: int = 2) -> SyntheticSet:
    meta = {
        "method": "dm",
        "dataset": "cifar10",
        "num_classes": 10,
        "ipc": ipc,
        "backbone": "convnet",
        "mean": [0.4914, 0.4822, 0.4465],
        "std": [0.2023, 0.1994, 0.2010],
        "class_names": CLASSES,
        "config": {"lr_img": 1.0},
        "seed": 0,
    }
    return SyntheticSet(
        images=torch.randn(10 * ipc, 3, 32, 32), labels=torch.arange(10).repeat_interleave(ipc), metadata=meta
    )


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


@pytest.fixture
def saved(registry_root: Path) -> Registry:
    """A registry (found through $CONDENSEKIT_REGISTRY) holding dm-cifar10-ipc2:v1 and v2."""
    reg = Registry()
    reg.save(_synset())
    reg.save(_synset())
    return reg


def test_show_json(app: typer.Typer, saved: Registry) -> None:
    saved.record_eval("dm-cifar10-ipc2:v1", _report([40.0, 42.0]))
    result = runner.invoke(app, ["show", "dm-cifar10-ipc2:v1", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["ref"] == "dm-cifar10-ipc2:v1" and info["metadata"]["dataset"] == "cifar10"
    assert info["evals"][0]["scores"]["convnet"] == {"mean": 41.0, "std": 1.0}


def test_show_table(app: typer.Typer, saved: Registry) -> None:
    saved.record_eval("dm-cifar10-ipc2", _report([40.0, 42.0]))
    result = runner.invoke(app, ["show", "dm-cifar10-ipc2"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "dm-cifar10-ipc2:v2" in result.stdout and "cifar10" in result.stdout
    assert "evaluations" in result.stdout and "41.00 ± 1.00" in result.stdout


def test_explicit_registry_option_wins(app: typer.Typer, saved: Registry, tmp_path: Path) -> None:
    other = Registry(tmp_path / "other")
    other.save(_synset(ipc=1), name="elsewhere")
    result = runner.invoke(app, ["show", "elsewhere", "--json", "--registry", str(other.root)])
    assert result.exit_code == 0 and json.loads(result.stdout)["ref"] == "elsewhere:v1"


def test_unknown_reference_raises_a_registry_error(app: typer.Typer, saved: Registry) -> None:
    result = runner.invoke(app, ["show", "dm-cifar10-ipc20"])
    assert isinstance(result.exception, RegistryError)
    assert "closest: dm-cifar10-ipc2" in str(result.exception)


def test_tag_moves_an_alias(app: typer.Typer, saved: Registry) -> None:
    assert runner.invoke(app, ["tag", "dm-cifar10-ipc2:v1", "paper"]).exit_code == 0
    assert saved.resolve("dm-cifar10-ipc2:paper").version == 1
    result = runner.invoke(app, ["tag", "dm-cifar10-ipc2:v2", "paper"])
    assert result.exit_code == 0 and "dm-cifar10-ipc2:paper -> dm-cifar10-ipc2:v2" in result.stdout
    assert saved.resolve("dm-cifar10-ipc2:paper").version == 2


def test_export_png(app: typer.Typer, saved: Registry, tmp_path: Path) -> None:
    result = runner.invoke(app, ["export", "dm-cifar10-ipc2", "--png", str(tmp_path / "grid.png")])
    assert result.exit_code == 0, result.output
    width, height = Image.open(tmp_path / "grid.png").size
    assert width > 2 * 64 and height > 10 * 64  # 2 upscaled 32 px images per row, 10 rows


def test_export_needs_exactly_one_target(app: typer.Typer, saved: Registry, tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["export", "dm-cifar10-ipc2", "--pt", str(tmp_path / "a"), "--folder", str(tmp_path / "b")]
    )
    assert isinstance(result.exception, UsageError)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_export_pt_then_import(app: typer.Typer, saved: Registry, tmp_path: Path) -> None:
    assert runner.invoke(app, ["export", "dm-cifar10-ipc2:v1", "--pt", str(tmp_path / "pt")]).exit_code == 0
    result = runner.invoke(app, ["import", str(tmp_path / "pt"), "--name", "back", "--data", "cifar10"])
    assert result.exit_code == 0, result.output
    assert "back:v1" in result.stdout
    assert torch.equal(saved.load("back").images, saved.load("dm-cifar10-ipc2:v1").images)


def test_import_rejects_a_foreign_file(app: typer.Typer, saved: Registry, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    result = runner.invoke(app, ["import", str(tmp_path / "notes.txt"), "--name", "x"])
    assert isinstance(result.exception, RegistryError)
    assert [r["name"] for r in saved.list_sets()] == ["dm-cifar10-ipc2"]


def test_rm_asks_for_confirmation(app: typer.Typer, saved: Registry) -> None:
    declined = runner.invoke(app, ["rm", "dm-cifar10-ipc2:v1"], input="n\n")
    assert "was not removed" in str(declined.exception) and saved.list_sets()[0]["versions"] == [1, 2]
    no_answer = runner.invoke(app, ["rm", "dm-cifar10-ipc2:v1"], input="")
    assert "was not removed" in str(no_answer.exception) and saved.list_sets()[0]["versions"] == [1, 2]
    accepted = runner.invoke(app, ["rm", "dm-cifar10-ipc2:v1"], input="y\n")
    assert accepted.exit_code == 0 and saved.list_sets()[0]["versions"] == [2]


def test_rm_yes_skips_the_question(app: typer.Typer, saved: Registry) -> None:
    result = runner.invoke(app, ["rm", "dm-cifar10-ipc2", "--yes"])
    assert result.exit_code == 0 and "Removed dm-cifar10-ipc2:v2" in result.stdout
    assert saved.list_sets()[0]["versions"] == [1]


def test_registry_check(app: typer.Typer, saved: Registry) -> None:
    ok = runner.invoke(app, ["registry", "check"])
    assert ok.exit_code == 0 and "consistent" in ok.stdout
    orphan = saved.root / "sets/dm-cifar10-ipc2/v7.h5"
    shutil.copy(saved.resolve("dm-cifar10-ipc2").path, orphan)
    found = runner.invoke(app, ["registry", "check"])
    assert isinstance(found.exception, RegistryError) and "orphan file" in found.stdout
    fixed = runner.invoke(app, ["registry", "check", "--fix"])
    assert fixed.exit_code == 0 and "(removed)" in fixed.stdout and not orphan.exists()


def test_registry_check_fails_on_corruption_even_with_fix(app: typer.Typer, saved: Registry) -> None:
    path = saved.resolve("dm-cifar10-ipc2:v1").path
    path.chmod(0o644)
    with h5py.File(path, "a") as f:
        f["labels"][0] = 5
    result = runner.invoke(app, ["registry", "check", "--fix"])
    assert isinstance(result.exception, RegistryError) and "corrupted" in result.stdout
