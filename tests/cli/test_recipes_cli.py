"""Recipes on the command line: ``distill --config FILE``, ``distill --from REF``, ``--set``
sweeps and ``show REF --recipe``, on tiny real distillations in a real registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from condensekit.cli.app import run
from condensekit.errors import ExitStatus
from condensekit.registry import Registry

#: The smallest distillation worth running: 10 images, one iteration, 8 real images a class.
TINY = ["--data", "cifar10-mini", "--ipc", "1", "--iterations", "1", "--batch-real", "8", "--device", "cpu"]
RECIPE = """\
method = "dm"
data = "cifar10-mini"
ipc = 1
iterations = 1
device = "cpu"

[config]
batch-real = 8
"""


def _recipe(tmp_path: Path, text: str = RECIPE) -> str:
    path = tmp_path / "recipe.toml"
    path.write_text(text)
    return str(path)


def _json(capsys: pytest.CaptureFixture, *args: str) -> object:
    code = run(list(args))
    captured = capsys.readouterr()
    assert code == ExitStatus.SUCCESS, captured.err
    return json.loads(captured.out)


def _images(registry_root: Path, ref: str) -> torch.Tensor:
    return Registry(registry_root).load(ref).images


def test_config_without_method_takes_the_method_from_the_recipe(
    tmp_path: Path, registry_root: Path, capsys: pytest.CaptureFixture
) -> None:
    plan = _json(capsys, "distill", "--config", _recipe(tmp_path), "--dry-run", "--json")
    assert isinstance(plan, dict)
    assert (plan["method"], plan["dataset"], plan["ipc"], plan["iterations"]) == ("dm", "cifar10-mini", 1, 1)
    assert plan["config"]["batch_real"] == 8


def test_flags_override_the_recipe(tmp_path: Path, registry_root: Path, capsys: pytest.CaptureFixture) -> None:
    args = ["distill", "dm", "--config", _recipe(tmp_path), "--ipc", "2", "--batch-real", "4", "--dry-run", "--json"]
    plan = _json(capsys, *args)
    assert isinstance(plan, dict)
    assert plan["ipc"] == 2 and plan["config"]["batch_real"] == 4 and plan["iterations"] == 1


def test_recipe_of_another_method_is_one_line_usage_error(
    tmp_path: Path, registry_root: Path, capsys: pytest.CaptureFixture
) -> None:
    code = run(["distill", "random", "--config", _recipe(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == ExitStatus.USAGE
    assert len(err.splitlines()) == 1 and "is a 'dm' recipe, not 'random'" in err


def test_unknown_recipe_key_exits_2_before_any_work(
    tmp_path: Path, registry_root: Path, capsys: pytest.CaptureFixture
) -> None:
    code = run(["distill", "--config", _recipe(tmp_path, RECIPE.replace("ipc = 1", "ipc = 1\nlearning-rate = 3"))])
    err = capsys.readouterr().err.strip()
    assert code == ExitStatus.USAGE
    assert len(err.splitlines()) == 1 and "unknown key 'learning-rate'" in err and "valid keys: method" in err
    assert not registry_root.exists()


def test_recipe_naming_no_method_needs_the_method_on_the_command_line(
    tmp_path: Path, registry_root: Path, capsys: pytest.CaptureFixture
) -> None:
    code = run(["distill", "--config", _recipe(tmp_path, RECIPE.replace('method = "dm"\n', ""))])
    err = capsys.readouterr().err.strip()
    assert code == ExitStatus.USAGE
    assert len(err.splitlines()) == 1 and "names no method" in err and "condensekit distill METHOD --config" in err


def test_from_reruns_a_stored_set_bit_for_bit(registry_root: Path, capsys: pytest.CaptureFixture) -> None:
    first = _json(capsys, "distill", "dm", *TINY, "--seed", "3", "--json")
    again = _json(capsys, "distill", "--from", "dm-cifar10-mini-ipc1:v1", "--json")
    assert isinstance(first, dict) and isinstance(again, dict)
    assert (first["ref"], again["ref"]) == ("dm-cifar10-mini-ipc1:v1", "dm-cifar10-mini-ipc1:v2")
    assert torch.equal(_images(registry_root, first["ref"]), _images(registry_root, again["ref"]))


def test_show_recipe_round_trips_through_config_bit_for_bit(
    tmp_path: Path, registry_root: Path, capsys: pytest.CaptureFixture
) -> None:
    first = _json(capsys, "distill", "dm", *TINY, "--seed", "5", "--lr-img", "2", "--name", "mine", "--json")
    assert run(["show", "mine", "--recipe"]) == ExitStatus.SUCCESS
    recipe = tmp_path / "mine.toml"
    recipe.write_text(capsys.readouterr().out)
    again = _json(capsys, "distill", "--config", str(recipe), "--json")
    assert isinstance(first, dict) and isinstance(again, dict)
    assert again["ref"] == "mine:v2"
    assert torch.equal(_images(registry_root, first["ref"]), _images(registry_root, again["ref"]))


def test_from_with_flags_overrides_what_is_stored(registry_root: Path, capsys: pytest.CaptureFixture) -> None:
    _json(capsys, "distill", "dm", *TINY, "--name", "base", "--json")
    plan = _json(capsys, "distill", "--from", "base", "--seed", "9", "--dry-run", "--json")
    assert isinstance(plan, dict)
    assert plan["seed"] == 9 and plan["output_name"] == "base"
    assert (plan["iterations"], plan["config"]["batch_real"], plan["device"]) == (1, 8, "cpu")


def test_show_recipe_of_a_set_without_provenance_is_registry_error(
    registry_root: Path, capsys: pytest.CaptureFixture
) -> None:
    from condensekit.synthetic import SyntheticSet

    meta = {"method": "dm", "dataset": "cifar10-mini", "ipc": 1, "mean": [0.5] * 3, "std": [0.25] * 3}
    Registry(registry_root).save(SyntheticSet(torch.zeros(10, 3, 32, 32), torch.arange(10), metadata=meta), "bare")
    code = run(["show", "bare", "--recipe"])
    err = capsys.readouterr().err.strip()
    assert code == ExitStatus.REGISTRY
    assert len(err.splitlines()) == 1 and "keeps no recipe" in err


def test_sweep_dry_run_prints_every_planned_run(
    tmp_path: Path, registry_root: Path, capsys: pytest.CaptureFixture
) -> None:
    recipe = _recipe(tmp_path, RECIPE + "\n[sweep]\nseed = [0, 1]\n")
    plans = _json(capsys, "distill", "--config", recipe, "--set", "lr-img=0.5,1", "--dry-run", "--json")
    assert isinstance(plans, list)
    assert [(p["seed"], p["config"]["lr_img"], p["output_name"]) for p in plans] == [
        (0, 0.5, "dm-cifar10-mini-ipc1-seed0-lr-img0.5"),
        (0, 1.0, "dm-cifar10-mini-ipc1-seed0-lr-img1.0"),
        (1, 0.5, "dm-cifar10-mini-ipc1-seed1-lr-img0.5"),
        (1, 1.0, "dm-cifar10-mini-ipc1-seed1-lr-img1.0"),
    ]
    assert run(["distill", "--config", recipe, "--dry-run"]) == ExitStatus.SUCCESS
    out = capsys.readouterr().out
    assert "run 1/2: seed=0" in out and "run 2/2: seed=1" in out
    assert not registry_root.exists()


def test_sweep_saves_one_set_per_run_and_lists_them(registry_root: Path, capsys: pytest.CaptureFixture) -> None:
    rows = _json(capsys, "distill", "dm", *TINY, "--name", "sw", "--set", "seed=0,1", "--json")
    assert isinstance(rows, list)
    assert [(row["run"], row["values"], row["ref"]) for row in rows] == [
        (1, {"seed": 0}, "sw-seed0:v1"),
        (2, {"seed": 1}, "sw-seed1:v1"),
    ]
    assert all(row["wall_time_s"] > 0 for row in rows)
    assert Registry(registry_root).load("sw-seed1").metadata["seed"] == 1


def test_sweep_summary_table_has_values_refs_and_wall_times(registry_root: Path, capsys: pytest.CaptureFixture) -> None:
    assert run(["distill", "dm", *TINY, "--name", "tb", "--set", "init=real"]) == ExitStatus.SUCCESS
    out = capsys.readouterr().out
    assert "sweep: 1 of 1 run(s)" in out and "init" in out and "tb-initreal:v1" in out and "wall time (s)" in out


def test_failing_sweep_run_stops_reports_and_exits_with_its_code(
    registry_root: Path, capsys: pytest.CaptureFixture
) -> None:
    # The second run cannot be saved: a file stands where its set's folder would go.
    (registry_root / "sets").mkdir(parents=True)
    (registry_root / "sets" / "sw-seed1").write_text("in the way")
    code = run(["distill", "dm", *TINY, "--name", "sw", "--set", "seed=0,1,2", "--json"])
    captured = capsys.readouterr()
    assert code == ExitStatus.REGISTRY
    rows = json.loads(captured.out)
    assert [(row["run"], row["ref"]) for row in rows] == [(1, "sw-seed0:v1"), (2, None)]
    assert rows[1]["error"]
    assert "run 2/3 (seed=1) failed; completed: sw-seed0:v1; not started: 1 run(s)" in captured.err
    assert [row["name"] for row in Registry(registry_root).list_sets()] == ["sw-seed0"]


def test_sweep_with_nproc_is_usage_error(registry_root: Path, capsys: pytest.CaptureFixture) -> None:
    code = run(["distill", "dm", *TINY, "--nproc", "2", "--set", "seed=0,1"])
    err = capsys.readouterr().err.strip()
    assert code == ExitStatus.USAGE
    assert len(err.splitlines()) == 1 and "not a sweep of 2" in err
