"""The distillation pipeline: request -> plan -> run -> record."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from condensekit.cli.app import run as cli_run
from condensekit.distill import DistillRequest, distill, plan, record, run
from condensekit.errors import BackboneError, ExitStatus, RegistryError, UsageError
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


# --- plan() refuses every bad input before any work: one line, its exit code, nothing created ---


def _refused(request: DistillRequest, error: type[Exception], match: str, *absent: Path) -> str:
    """Plan ``request``; it must raise ``error`` in one line matching ``match`` and leave
    every path in ``absent`` uncreated. Returns the message."""
    with pytest.raises(error, match=match) as info:
        plan(request)
    message = str(info.value)
    assert "\n" not in message
    for path in absent:
        assert not path.exists(), f"{path} was created"
    return message


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = cli_run(args)
    return code, capsys.readouterr().err.strip().splitlines()


def test_a_config_value_outside_its_declared_range_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = tmp_path / "registry"
    _refused(_request(registry, config={"lr_img": -1.0}), UsageError, r"^--lr-img must be > 0, got -1\.0$", registry)
    _refused(_request(registry, config={"momentum": 1.0}), UsageError, r"^--momentum must be < 1, got 1\.0$")
    _refused(_request(registry, config={"lr_img": float("nan")}), UsageError, "--lr-img must be a finite number")
    argv = ["distill", "dm", "--data", "cifar10-mini", "--ipc", "1", "--lr-img", "-1", "--registry", str(registry)]
    code, err = _cli(argv, capsys)
    assert code == ExitStatus.USAGE == UsageError.exit_status
    assert err == ["error: --lr-img must be > 0, got -1.0"]
    assert not registry.exists()


def test_plan_refuses_ipc_above_the_smallest_class(tmp_path: Path) -> None:
    registry = tmp_path / "registry"
    message = _refused(_request(registry, method="random", ipc=201, config={}), UsageError, "--ipc 201", registry)
    assert "200 train images in the smallest class of cifar10-mini" in message and "--ipc 200 or less" in message
    assert plan(_request(registry, method="random", ipc=200, config={})).ipc == 200  # the whole class is fine


def test_the_default_real_batch_is_capped_at_the_smallest_class_and_an_explicit_one_refused(tmp_path: Path) -> None:
    registry = tmp_path / "registry"
    planned = plan(_request(registry, config={}))
    assert planned.config.batch_real == 200  # dm's 256, capped at cifar10-mini's 200 per class
    assert planned.as_dict()["config"]["batch_real"] == 200  # what --dry-run shows and the registry records
    message = _refused(
        _request(registry, config={"batch_real": 201}), UsageError, "--batch-real must be <= 200", registry
    )
    assert "smallest class of cifar10-mini" in message and "pass --batch-real 200 or less" in message


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"backbone": "convnetd6"}, "depth 6 is too deep for 32px"),
        ({"backbone": "convnetd4", "resolution": 8}, "depth 4 is too deep for 8px"),
    ],
)
def test_plan_builds_the_backbone_for_the_resolution(tmp_path: Path, changes: dict[str, object], match: str) -> None:
    registry = tmp_path / "registry"
    _refused(_request(registry, **changes), BackboneError, match, registry)
    assert BackboneError.exit_status == ExitStatus.BACKBONE


def test_plan_refuses_a_registry_that_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    registry = blocker / "registry"
    _refused(_request(registry), RegistryError, "cannot create the registry", registry)
    assert RegistryError.exit_status == ExitStatus.REGISTRY


def test_one_name_holds_the_versions_of_one_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    registry = tmp_path / "registry"
    distill("random", "cifar10-mini", 1, registry=registry, name="x", device="cpu")
    before = sorted(p.name for p in (registry / "sets").rglob("*"))
    other = DistillRequest("random", "mnist", 1, device="cpu", name="x", registry=str(registry))
    message = _refused(other, RegistryError, "set name 'x' holds versions of cifar10-mini")
    assert "(latest x:v1), not mnist" in message and "pass another --name" in message
    assert sorted(p.name for p in (registry / "sets").rglob("*")) == before
    assert plan(dataclasses.replace(other, name="x-mnist")).output_name == "x-mnist"
    argv = ["distill", "random", "--data", "mnist", "--ipc", "1", "--name", "x", "--registry", str(registry)]
    code, err = _cli(argv, capsys)
    assert code == ExitStatus.REGISTRY and len(err) == 1 and err[0].startswith("error: set name 'x' holds")
    assert [row["versions"] for row in Registry(registry).list_sets()] == [[1]]


def test_an_invalid_name_is_refused_before_anything_is_created(tmp_path: Path) -> None:
    registry = tmp_path / "registry"
    _refused(_request(registry, name="bad name!"), RegistryError, "invalid name", registry)


def test_help_shows_defaults_and_declared_ranges() -> None:
    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert cli_run(["distill", "dm", "--help"]) == ExitStatus.SUCCESS
    text = " ".join(out.getvalue().split()).split("--lr-img", 1)[1]  # the method's own options
    assert "auto]" not in text
    assert "[default: 1.0; > 0]" in text and "[default: 256; >= 1 and <= the smallest class's image count]" in text


def test_the_command_saves_in_the_default_registry_folder(tmp_path: Path) -> None:
    # No --registry and no CONDENSEKIT_REGISTRY: ./registry, as the README says.
    env = {k: v for k, v in os.environ.items() if k != "CONDENSEKIT_REGISTRY"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "condensekit",
            "distill",
            "dm",
            "--data",
            "cifar10-mini",
            "--ipc",
            "1",
            "--iterations",
            "1",
            "--batch-real",
            "8",
            "--device",
            "cpu",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert [row["name"] for row in Registry(tmp_path / "registry").list_sets()] == ["dm-cifar10-mini-ipc1"]
