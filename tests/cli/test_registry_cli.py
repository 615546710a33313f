"""The registry commands through Typer's test runner, on an app built with ``register``."""

from __future__ import annotations

import json
import shutil
import sys
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
    assert info["evals"][0]["scores"]["convnet"] == {"mean": 41.0, "std": 1.0, "runs": 2}


def test_show_table(app: typer.Typer, saved: Registry) -> None:
    saved.record_eval("dm-cifar10-ipc2", _report([40.0, 42.0]))
    result = runner.invoke(app, ["show", "dm-cifar10-ipc2"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "dm-cifar10-ipc2:v2" in result.stdout and "cifar10" in result.stdout
    assert "evaluations" in result.stdout and "41.00 ± 1.00" in result.stdout


def _eval_rows(stdout: str) -> list[list[str]]:
    """The cells of the evaluations table's rows (id, protocol, arch, accuracy, runs, created)."""
    cells = [[c.strip() for c in line.split("│")[1:-1]] for line in stdout.splitlines()]
    return [c for c in cells if len(c) == 6]


def test_show_has_the_run_count_of_every_evaluation(app: typer.Typer, saved: Registry) -> None:
    saved.record_eval("dm-cifar10-ipc2", _report([40.0, 42.0, 41.0, 43.0, 44.0]))
    saved.record_eval("dm-cifar10-ipc2", _report([39.5]))
    table = runner.invoke(app, ["show", "dm-cifar10-ipc2"], env={"COLUMNS": "200"})
    assert table.exit_code == 0, table.output
    header = next(line for line in table.stdout.splitlines() if "accuracy (%)" in line)
    assert [c.strip() for c in header.split("┃")[1:6]] == ["id", "protocol", "arch", "accuracy (%)", "runs"]
    assert [(r[3], r[4]) for r in _eval_rows(table.stdout)] == [("42.00 ± 1.41", "5"), ("39.50 ± 0.00", "1")]
    info = json.loads(runner.invoke(app, ["show", "dm-cifar10-ipc2", "--json"]).stdout)
    assert [ev["scores"]["convnet"]["runs"] for ev in info["evals"]] == [5, 1]


def test_show_a_report_without_per_run_accuracies(app: typer.Typer, saved: Registry) -> None:
    """A report recorded through the API with only mean and std: the count is unknown, not 0."""
    saved.record_eval("dm-cifar10-ipc2", {"protocol": "dc", "results": [{"arch": "convnet", "mean": 40.0}]})
    table = runner.invoke(app, ["show", "dm-cifar10-ipc2"], env={"COLUMNS": "200"})
    [row] = _eval_rows(table.stdout)
    assert (row[3], row[4]) == ("40.00", "?")
    info = json.loads(runner.invoke(app, ["show", "dm-cifar10-ipc2", "--json"]).stdout)
    assert info["evals"][0]["scores"]["convnet"]["runs"] is None


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
    assert f"to {tmp_path / 'grid.png'} (PNG)" in result.stdout
    with Image.open(tmp_path / "grid.png") as image:
        assert image.format == "PNG"
        width, height = image.size
    assert width > 2 * 64 and height > 10 * 64  # 2 upscaled 32 px images per row, 10 rows
    assert "showing" not in result.output  # every image is shown: nothing to say


@pytest.mark.parametrize(("option", "filename", "fmt"), [("--png", "grid.jpg", "JPEG"), ("--grid", "g.webp", "WEBP")])
def test_export_grid_format_follows_the_extension(
    app: typer.Typer, saved: Registry, tmp_path: Path, option: str, filename: str, fmt: str
) -> None:
    result = runner.invoke(app, ["export", "dm-cifar10-ipc2", option, str(tmp_path / filename)])
    assert result.exit_code == 0, result.output
    assert f"({fmt})" in result.stdout
    with Image.open(tmp_path / filename) as image:
        assert image.format == fmt


def test_export_grid_refuses_an_unknown_extension(app: typer.Typer, saved: Registry, tmp_path: Path) -> None:
    result = runner.invoke(app, ["export", "dm-cifar10-ipc2", "--png", str(tmp_path / "grid.bmp")])
    assert isinstance(result.exception, UsageError)
    message = str(result.exception)
    assert "extension '.bmp'" in message and ".png, .jpg, .jpeg, .webp" in message and "\n" not in message
    assert list(tmp_path.iterdir()) == [saved.root]


def test_export_grid_says_when_it_shows_a_sample(app: typer.Typer, registry_root: Path, tmp_path: Path) -> None:
    reg = Registry()
    reg.save(_synset(ipc=40), name="big")
    capped = runner.invoke(app, ["export", "big", "--grid", str(tmp_path / "ten.png")])
    assert capped.exit_code == 0, capped.output
    assert "showing 10 of 40 images per class (--per-class all for every one)" in capped.stderr
    every = runner.invoke(app, ["export", "big", "--grid", str(tmp_path / "all.png"), "--per-class", "all"])
    assert every.exit_code == 0 and "showing" not in every.output
    five = runner.invoke(app, ["export", "big", "--grid", str(tmp_path / "five.png"), "--per-class", "5"])
    assert "showing 5 of 40 images per class" in five.stderr
    widths = {name: Image.open(tmp_path / f"{name}.png").size[0] for name in ("five", "ten", "all")}
    assert widths["five"] < widths["ten"] < widths["all"]
    assert widths["all"] - widths["ten"] == 30 * (64 + 2)  # 30 more upscaled 32 px cells and pads


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--grid", "g.png", "--per-class", "0"], "--per-class takes a positive number or 'all', got '0'"),
        (["--pt", "pt", "--per-class", "3"], "--per-class applies to the image grid only"),
    ],
)
def test_export_per_class_misuse(
    app: typer.Typer, saved: Registry, tmp_path: Path, args: list[str], message: str
) -> None:
    args = [str(tmp_path / a) if a in ("g.png", "pt") else a for a in args]
    result = runner.invoke(app, ["export", "dm-cifar10-ipc2", *args])
    assert isinstance(result.exception, UsageError) and message in str(result.exception)
    assert list(tmp_path.iterdir()) == [saved.root]


def test_export_folder_refuses_a_non_empty_folder(app: typer.Typer, saved: Registry, tmp_path: Path) -> None:
    out = tmp_path / "folder"
    first = runner.invoke(app, ["export", "dm-cifar10-ipc2:v1", "--folder", str(out)])
    assert first.exit_code == 0, first.output
    again = runner.invoke(app, ["export", "dm-cifar10-ipc2:v2", "--folder", str(out)])
    assert isinstance(again.exception, UsageError)
    assert f"{out} is not empty; pick a new or empty folder, or pass --overwrite" in str(again.exception)
    assert json.loads((out / "metadata.json").read_text())["ref"] == "dm-cifar10-ipc2:v1"
    replaced = runner.invoke(app, ["export", "dm-cifar10-ipc2:v2", "--folder", str(out), "--overwrite"])
    assert replaced.exit_code == 0, replaced.output
    assert json.loads((out / "metadata.json").read_text())["ref"] == "dm-cifar10-ipc2:v2"
    assert len(list(out.rglob("*.png"))) == 20 and len(json.loads((out / "labels.json").read_text())) == 20


def test_export_needs_exactly_one_target(app: typer.Typer, saved: Registry, tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["export", "dm-cifar10-ipc2", "--pt", str(tmp_path / "a"), "--folder", str(tmp_path / "b")]
    )
    assert isinstance(result.exception, UsageError)
    assert "exactly one of --grid FILE, --pt DIR, --folder DIR or --hf DIR" in str(result.exception)
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
    assert isinstance(result.exception, UsageError) and "no import format recognizes it" in str(result.exception)
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


# --- sharing: export --hf, import --format, push (condensekit.sharing) -------------------


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run the real command (error handling and exit codes included): code, stdout, stderr."""
    from condensekit.cli.app import run

    code = run(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _mini_set(ipc: int = 1) -> SyntheticSet:
    from condensekit.data import dataset_info

    info = dataset_info("cifar10-mini")
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(10 * ipc, 3, 32, 32, generator=gen) * 1.2
    meta = {**info.as_metadata(), "method": "dm", "ipc": ipc, "backbone": "convnet", "config": {"lr_img": 1.0}}
    return SyntheticSet(images=images, labels=torch.arange(10).repeat_interleave(ipc), metadata=meta)


def test_export_hf_then_import_is_bit_identical(registry_root: Path, tmp_path: Path, capsys) -> None:
    ref = Registry().save(_mini_set(), "mini").ref
    code, out, _ = _cli(capsys, "export", ref, "--hf", str(tmp_path / "hf"))
    assert code == 0 and out.strip() == f"Exported {ref} to {tmp_path / 'hf'} (hf)"
    code, out, err = _cli(capsys, "import", str(tmp_path / "hf"), "--name", "back")
    assert code == 0 and out.strip() == f"Imported {tmp_path / 'hf'} (hf) as back:v1"
    assert err.strip() == f"detected hf: a condensekit Hugging Face export of {ref}"
    assert Registry().resolve("back").sha256 == Registry().resolve(ref).sha256


def test_import_format_and_exp_with_json(registry_root: Path, tmp_path: Path, capsys) -> None:
    images = [_mini_set().images, _mini_set().images + 1]
    labels = torch.arange(10)
    path = tmp_path / "res_DM_CIFAR10_ConvNet_1ipc.pt"
    torch.save({"data": [[images[0], labels], [images[1], labels]], "accs_all_exps": {}}, path)
    code, out, err = _cli(
        capsys, "import", str(path), "--format", "dc", "--exp", "1", "--data", "cifar10-mini", "--json"
    )
    assert code == 0 and err == ""
    report = json.loads(out)
    assert report["ref"] == "dc-cifar10-mini-ipc1:v1" and report["format"] == "dc" and not report["detected"]
    assert report["facts"]["experiment"] == 1
    assert torch.equal(Registry().load(report["ref"]).images, images[1])


@pytest.mark.parametrize(
    ("images", "labels", "message"),
    [
        (torch.randn(10, 3, 32, 32), torch.arange(9), "expected 10 labels (one per image)"),
        (torch.randn(10, 3, 28, 28), torch.arange(10), "(wrong resolution: 28x28 px)"),
        (torch.randn(10, 3, 32, 32), torch.arange(10) % 5, "the set has images of 5 classes, cifar10-mini has 10"),
    ],
    ids=["counts", "resolution", "classes"],
)
def test_a_bad_peer_file_exits_2_in_one_line_and_writes_nothing(
    registry_root: Path, tmp_path: Path, capsys, images: torch.Tensor, labels: torch.Tensor, message: str
) -> None:
    torch.save(images, tmp_path / "images_best.pt")
    torch.save(labels, tmp_path / "labels_best.pt")
    code, out, err = _cli(capsys, "import", str(tmp_path), "--data", "cifar10-mini")
    assert code == 2 and out == ""
    [line] = err.strip().splitlines()
    assert line.startswith("error: ") and message in line
    assert not registry_root.exists() or Registry().list_sets() == []


def test_a_hostile_pickle_exits_2(registry_root: Path, tmp_path: Path, capsys) -> None:
    path = tmp_path / "data_best.pt"
    torch.save([torch.zeros(10, 3, 32, 32), {"x": sys.modules["os"].getcwd}], path)
    code, _, err = _cli(capsys, "import", str(path), "--data", "cifar10-mini", "--factor", "2")
    assert code == 2 and "refused: it holds pickled objects" in err and len(err.strip().splitlines()) == 1
    assert not registry_root.exists() or Registry().list_sets() == []


def test_import_without_the_hf_extra_names_it(registry_root: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    ref = Registry().save(_mini_set(), "mini").ref
    monkeypatch.setitem(sys.modules, "datasets", None)  # an install without condensekit[hf]
    code, _, err = _cli(capsys, "export", ref, "--hf", str(tmp_path / "hf"))
    assert code == 2 and "pip install 'condensekit[hf]'" in err and not (tmp_path / "hf").exists()


def test_push_dry_run_reports_the_upload_as_json(registry_root: Path, tmp_path: Path, capsys) -> None:
    ref = Registry().save(_mini_set(), "mini").ref
    code, out, _ = _cli(capsys, "push", ref, "someone/mini", "--dry-run", "--folder", str(tmp_path / "kept"), "--json")
    assert code == 0
    report = json.loads(out)
    assert report["uploaded"] is False and report["url"] == "https://huggingface.co/datasets/someone/mini"
    assert report["files"] == ["README.md", "data/train-00000-of-00001.parquet", "preview.png"]
    assert report["folder"] == str(tmp_path / "kept") and (tmp_path / "kept" / "README.md").is_file()


def test_push_refuses_a_bad_repository_id_before_reading(registry_root: Path, capsys) -> None:
    code, _, err = _cli(capsys, "push", "nosuch", "bad//id", "--dry-run")
    assert code == 2 and "'bad//id' is not a Hub repository id" in err
