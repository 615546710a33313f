"""The distillation pipeline: request -> plan -> run -> record."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
from pathlib import Path

import pytest
import torch

from condensekit.cli.app import run as cli_run
from condensekit.distill import DistillRequest, distill, plan, record, run
from condensekit.errors import ExitStatus, RegistryError, UsageError
from condensekit.registry import Registry

SMALL = {"batch_real": 16}


def _request(registry: Path | None = None, **changes: object) -> DistillRequest:
    base = DistillRequest(
        "dm",
        "cifar10-mini",
        1,
        iterations=2,
        device="cpu",
        config=SMALL,
        registry=None if registry is None else str(registry),
    )
    return dataclasses.replace(base, **changes)


def test_request_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        _request().ipc = 3  # type: ignore[misc]


def test_plan_resolves_backbone_iterations_and_output_name(tmp_path: Path) -> None:
    planned = plan(_request(tmp_path / "registry", iterations=None))
    assert (planned.backbone, planned.iterations) == ("convnet", 20000)  # dm's own default
    assert planned.output_name == "dm-cifar10-mini-ipc1"
    assert planned.classes == tuple(range(10)) and planned.world_size == 1
    assert planned.config.batch_real == 16


def test_plan_writes_nothing(tmp_path: Path) -> None:
    plan(_request(tmp_path / "registry"))
    assert not (tmp_path / "registry").exists()


def test_plan_refuses_an_invalid_name_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="invalid name"):
        plan(_request(tmp_path / "registry", name="bad name!"))


def test_plan_refuses_resume_without_a_registry() -> None:
    with pytest.raises(UsageError, match="--resume needs a registry"):
        plan(_request(resume=True))


def test_plan_names_the_worlds_share_of_classes() -> None:
    planned = plan(_request(nproc=3))
    assert planned.world_size == 3 and planned.rank == 0 and planned.classes == (0, 3, 6, 9)


def test_run_key_depends_on_the_config_not_on_the_output_name(tmp_path: Path) -> None:
    one = plan(_request(tmp_path, name="a"))
    assert one.run_key == plan(_request(tmp_path, name="b")).run_key
    assert one.run_key != plan(_request(tmp_path, config={"batch_real": 8})).run_key


def test_plan_as_dict_is_json(tmp_path: Path) -> None:
    described = json.loads(json.dumps(plan(_request(tmp_path)).as_dict()))
    assert described["method"] == "dm" and described["config"]["batch_real"] == 16
    assert described["run_dir"] == str(tmp_path / "runs" / described["run_key"])


def test_run_then_record_saves_one_version_and_drops_the_run_folder(tmp_path: Path) -> None:
    planned = plan(_request(tmp_path / "registry", checkpoint_every=1))
    result = run(planned)
    assert (planned.run_dir / "run.json").is_file()  # described while the run is open
    assert json.loads((planned.run_dir / "run.json").read_text())["key"] == planned.run_key
    version = record(result)
    assert version is not None and version.ref == "dm-cifar10-mini-ipc1:v1"
    assert not planned.run_dir.exists()
    assert torch.equal(Registry(tmp_path / "registry").load(version.ref).images, result.synset.images)


def test_distill_wrapper_equals_the_steps(tmp_path: Path) -> None:
    stepped = run(plan(_request()))
    wrapped = distill("dm", "cifar10-mini", 1, iterations=2, device="cpu", config=SMALL)
    assert torch.equal(stepped.synset.images, wrapped.synset.images)


def test_dry_run_prints_the_plan_as_json_and_writes_nothing(tmp_path: Path) -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli_run(
            [
                "distill",
                "dm",
                "--data",
                "cifar10-mini",
                "--ipc",
                "2",
                "--iterations",
                "5",
                "--batch-real",
                "16",
                "--registry",
                str(tmp_path / "registry"),
                "--dry-run",
                "--json",
            ]
        )
    assert code == ExitStatus.SUCCESS
    described = json.loads(out.getvalue())
    assert (described["method"], described["ipc"], described["iterations"]) == ("dm", 2, 5)
    assert described["output_name"] == "dm-cifar10-mini-ipc2" and described["experts"] is None
    assert not (tmp_path / "registry").exists()
