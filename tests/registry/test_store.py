"""Registry API: versions, aliases, evaluations, experts, removal and integrity checks."""

from __future__ import annotations

import os
import shutil
import socket
import stat
from collections.abc import Callable
from pathlib import Path

import h5py
import pytest
import torch

from condensekit.errors import RegistryError
from condensekit.evaluation.report import ArchResult, EvalReport
from condensekit.experts import Experts
from condensekit.registry import Registry
from condensekit.synthetic import SyntheticSet

Factory = Callable[..., SyntheticSet]


@pytest.fixture
def reg(tmp_path: Path) -> Registry:
    with Registry(tmp_path / "registry") as registry:
        yield registry


def _report(mean: float, std: float = 0.5, arch: str = "convnet") -> dict:
    """An evaluation report as ``condensekit eval`` records it (two runs: mean ± std)."""
    runs = ArchResult(arch, accuracies=[mean - std, mean + std], seeds=[0, 1], wall_time_s=3.0)
    return EvalReport(protocol="dc", params={"epochs": 300, "lr": 0.01}, results=[runs], device="cpu").as_dict()


def _experts(n: int = 2, resolution: int = 32, dataset: str = "cifar10") -> Experts:
    gen = torch.Generator().manual_seed(n)
    states = [{"w": torch.randn(4, 3, generator=gen), "b": torch.randn(4, generator=gen)} for _ in range(2 * n)]
    return Experts(
        dataset=dataset,
        backbone="convnet",
        resolution=resolution,
        initial=states[:n],
        trained=states[n:],
        metadata={"epochs": 2, "lr": 0.01},
    )


def test_save_load_round_trip_is_bit_exact(reg: Registry, synset_factory: Factory) -> None:
    synset = synset_factory(ipc=3, soft=True)
    saved = reg.save(synset)
    loaded = reg.load(saved.ref)
    assert torch.equal(loaded.images, synset.images)
    assert torch.equal(loaded.labels, synset.labels)
    assert torch.equal(loaded.soft_labels, synset.soft_labels)
    assert loaded.metadata["config"] == synset.metadata["config"]
    assert (loaded.metadata["name"], loaded.metadata["version"]) == ("dm-cifar10-ipc3", 1)
    assert loaded.metadata["ref"] == "dm-cifar10-ipc3:v1" and loaded.metadata["sha256"] == saved.sha256


def test_default_name_and_incrementing_versions(reg: Registry, synset_factory: Factory) -> None:
    refs = [reg.save(synset_factory(ipc=2, seed=s)).ref for s in range(3)]
    assert refs == ["dm-cifar10-ipc2:v1", "dm-cifar10-ipc2:v2", "dm-cifar10-ipc2:v3"]
    assert reg.resolve("dm-cifar10-ipc2").version == 3
    assert reg.resolve("dm-cifar10-ipc2:latest").version == 3
    assert reg.resolve("dm-cifar10-ipc2:v1").path == reg.root / "sets/dm-cifar10-ipc2/v1.h5"


def test_files_are_read_only_and_temp_folder_is_empty(reg: Registry, synset_factory: Factory) -> None:
    saved = reg.save(synset_factory(), name="mine")
    assert not saved.path.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    assert list((reg.root / "tmp").iterdir()) == []


def test_explicit_name_is_validated(reg: Registry, synset_factory: Factory) -> None:
    with pytest.raises(RegistryError, match="invalid name 'my set'"):
        reg.save(synset_factory(), name="my set")
    assert not (reg.root / "sets").exists()


def test_resolve_none_is_the_newest_set_overall(reg: Registry, synset_factory: Factory) -> None:
    reg.save(synset_factory(), name="b")
    reg.save(synset_factory(), name="b")
    reg.save(synset_factory(), name="a")
    assert reg.resolve(None).ref == "a:v1"
    assert reg.load().metadata["ref"] == "a:v1"


def test_aliases_resolve_and_move(reg: Registry, synset_factory: Factory) -> None:
    for seed in range(3):
        reg.save(synset_factory(seed=seed), name="s")
    reg.tag("s:v1", "paper")
    assert reg.resolve("s:paper").version == 1
    reg.tag("s:v2", "paper")
    assert reg.resolve("s:paper").version == 2
    reg.tag("s", "best")  # bare name: the latest version
    assert reg.resolve("s:best").version == 3
    assert reg.show("s:v2")["aliases"] == ["paper"]
    assert reg.show("s")["aliases"] == ["latest", "best"]


def test_reserved_alias_cannot_be_set(reg: Registry, synset_factory: Factory) -> None:
    reg.save(synset_factory(), name="s")
    with pytest.raises(RegistryError, match="reserved"):
        reg.tag("s:v1", "latest")


def test_unknown_references_list_the_closest_names(reg: Registry, synset_factory: Factory) -> None:
    reg.save(synset_factory(ipc=10))
    reg.save(synset_factory(ipc=1))
    with pytest.raises(RegistryError, match="unknown set 'dm-cifar10-ipc100'; closest: dm-cifar10-ipc10"):
        reg.resolve("dm-cifar10-ipc100")
    with pytest.raises(RegistryError, match=r"has no version v5 \(versions: v1\)"):
        reg.resolve("dm-cifar10-ipc10:v5")
    with pytest.raises(RegistryError, match=r"has no alias 'best' \(aliases: latest\)"):
        reg.resolve("dm-cifar10-ipc10:best")


def test_reading_an_absent_registry_creates_nothing(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "nowhere")
    assert reg.list_sets() == [] and reg.list_experts() == [] and reg.check() == []
    assert reg.experts_versions("cifar10", "convnet", 32) == []
    with pytest.raises(RegistryError, match="empty"):
        reg.resolve("anything")
    assert not (tmp_path / "nowhere").exists()


def test_root_comes_from_the_environment(registry_root: Path, synset_factory: Factory) -> None:
    saved = Registry().save(synset_factory(), name="env")
    assert saved.path == registry_root / "sets/env/v1.h5"


def test_remove_deletes_file_aliases_and_evals_and_never_reuses_numbers(reg: Registry, synset_factory: Factory) -> None:
    reg.save(synset_factory(), name="s")
    v2 = reg.save(synset_factory(), name="s")
    reg.tag("s:v2", "best")
    reg.record_eval("s:v2", _report(50.0))
    reg.remove("s:best")
    assert not v2.path.exists()
    assert reg.resolve("s").version == 1
    with pytest.raises(RegistryError, match="no alias 'best'"):
        reg.resolve("s:best")
    assert reg.list_sets()[0]["best_accuracy"] is None
    assert reg.save(synset_factory(), name="s").version == 3
    assert reg.check() == []


def test_record_eval_and_list_sets(reg: Registry, synset_factory: Factory) -> None:
    reg.save(synset_factory(ipc=1), name="s")
    reg.save(synset_factory(ipc=1), name="s")
    first = reg.record_eval("s:v1", _report(42.0))
    second = reg.record_eval("s:v2", _report(31.0, arch="resnet18"))
    assert second > first
    evals = reg.evals("s:v1")
    assert len(evals) == 1 and evals[0]["protocol"] == "dc"
    assert evals[0]["scores"] == {"convnet": {"mean": 42.0, "std": 0.5}}
    assert evals[0]["result"]["params"] == {"epochs": 300, "lr": 0.01}
    assert evals[0]["result"]["results"][0]["accuracies"] == [41.5, 42.5]
    assert reg.evals("s:v2")[0]["scores"]["resnet18"]["mean"] == 31.0
    [row] = reg.list_sets()
    assert (row["name"], row["versions"], row["latest"], row["method"], row["dataset"], row["ipc"]) == (
        "s",
        [1, 2],
        2,
        "dm",
        "cifar10",
        1,
    )
    assert row["best_accuracy"] == 42.0 and row["best"]["ref"] == "s:v1"


def test_record_eval_rejects_a_report_without_scores(reg: Registry, synset_factory: Factory) -> None:
    reg.save(synset_factory(ipc=1), name="s")
    with pytest.raises(RegistryError, match=r"expected .results., a list of"):
        reg.record_eval("s", {"protocol": "dc", "results": []})
    assert reg.evals("s") == []


def test_show_has_metadata_and_evals(reg: Registry, synset_factory: Factory) -> None:
    reg.save(synset_factory(ipc=2), name="s", dtype="float16")
    reg.record_eval("s", _report(50.0))
    info = reg.show("s")
    assert info["ref"] == "s:v1" and info["size"] == 20
    assert info["metadata"]["stored_dtype"] == "float16" and info["metadata"]["backbone"] == "convnet"
    assert info["metadata"]["class_names"][9] == "truck"
    assert info["evals"][0]["scores"]["convnet"]["mean"] == 50.0


def test_experts_round_trip_and_lookup(reg: Registry) -> None:
    experts = _experts(n=2)
    saved = reg.save_experts(experts, name="cifar10-convnet")
    assert saved.kind == "experts" and saved.path.suffix == ".pt"
    loaded = reg.load_experts("cifar10-convnet")
    assert len(loaded) == 2 and loaded.metadata["epochs"] == 2
    for got, want in zip(loaded.trained + loaded.initial, experts.trained + experts.initial, strict=True):
        assert all(torch.equal(got[k], want[k]) for k in want)
    newer = reg.save_experts(_experts(n=3), name="cifar10-convnet")
    found = reg.experts_versions("cifar10", "convnet", 32)
    assert [version for version, _ in found] == [newer, saved]  # newest first
    assert [meta["num_experts"] for _, meta in found] == [3, 2]
    assert reg.experts_versions("cifar10", "convnet", 64) == []
    [row] = reg.list_experts()
    assert (row["name"], row["versions"], row["experts"], row["resolution"]) == ("cifar10-convnet", [1, 2], 3, 32)
    assert reg.list_sets() == []  # experts and sets are separate kinds


def test_experts_default_name_marks_non_native_resolution(reg: Registry) -> None:
    assert reg.save_experts(_experts(resolution=32)).name == "cifar10-convnet"
    assert reg.save_experts(_experts(resolution=64)).name == "cifar10-convnet-64"


def test_check_reports_and_fixes_orphans_and_missing_files(reg: Registry, synset_factory: Factory) -> None:
    v1 = reg.save(synset_factory(), name="s")
    v2 = reg.save(synset_factory(), name="t")
    orphan = reg.root / "sets/s/v2.h5"  # as if a writer died between rename and commit
    shutil.copy(v1.path, orphan)
    v2.path.unlink()
    problems = reg.check()
    assert any("orphan file sets/s/v2.h5" in p for p in problems)
    assert any("t:v1" in p and "is missing" in p for p in problems)
    assert reg.save(synset_factory(), name="s").version == 3  # the orphan's number is skipped
    assert len(reg.check(fix=True)) == 2
    assert reg.check() == [] and not orphan.exists()
    assert [r["name"] for r in reg.list_sets()] == ["s"]


def test_check_detects_a_corrupted_file(reg: Registry, synset_factory: Factory) -> None:
    saved = reg.save(synset_factory(ipc=5), name="s")
    with h5py.File(saved.path, "r") as f:
        chunk = f["images"].id.get_chunk_info(0)
    saved.path.chmod(0o644)
    with open(saved.path, "r+b") as fh:  # flip bytes in the middle of the images data
        fh.seek(chunk.byte_offset + chunk.size // 2)
        data = fh.read(16)
        fh.seek(chunk.byte_offset + chunk.size // 2)
        fh.write(bytes(b ^ 0xFF for b in data))
    [problem] = reg.check(fix=True)
    assert "s:v1 (set)" in problem and "corrupted" in problem
    assert saved.path.exists()  # corrupted files are reported, never deleted
    with pytest.raises(RegistryError, match="corrupted"):
        reg.load("s")


def test_check_finds_leftovers_before_any_index_exists(tmp_path: Path) -> None:
    leftover = tmp_path / "registry/tmp/otherhost.123.abc.partial"  # a first write that died
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"partial")
    reg = Registry(tmp_path / "registry")
    assert reg.check() == ["leftover temp file tmp/otherhost.123.abc.partial from an interrupted write"]
    reg.check(fix=True)
    assert not leftover.exists() and not (tmp_path / "registry/index.sqlite").exists()


def test_check_leaves_the_temp_file_of_a_running_writer(reg: Registry) -> None:
    live = reg.root / "tmp" / f"{socket.gethostname()}.{os.getpid()}.abc.partial"  # this process is alive
    live.parent.mkdir(parents=True)
    live.write_bytes(b"being written")
    assert reg.check(fix=True) == [] and live.exists()


def test_an_experts_name_given_as_a_set_says_which_it_is(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "reg")
    state = {"w": torch.zeros(1)}
    reg.save_experts(
        Experts(
            dataset="cifar10-mini", backbone="convnet", resolution=32, initial=[state], trained=[state], metadata={}
        ),
        name="teacher",
    )
    with pytest.raises(RegistryError, match="'teacher' names experts, not a set; see condensekit list experts"):
        reg.resolve("teacher")
    with pytest.raises(RegistryError, match="unknown experts 'nope'; closest: teacher"):
        reg.resolve("nope", kind="experts")
