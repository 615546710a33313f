"""The Hugging Face layout with the real ``datasets`` and ``huggingface_hub`` libraries: export,
``load_dataset``, training on it, lossless re-import, external datasets, the Hub cache, push."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from huggingface_hub import DatasetCard

from condensekit.backbones import create_backbone
from condensekit.distill import distill
from condensekit.errors import UsageError
from condensekit.evaluation.report import ArchResult, EvalReport
from condensekit.registry import Registry
from condensekit.sharing import hf
from condensekit.sharing.formats import ImportOptions, import_source, read_source
from condensekit.synthetic import SyntheticSet


def _report(accuracies: list[float]) -> dict:
    runs = ArchResult("convnet", accuracies=accuracies, seeds=list(range(len(accuracies))), wall_time_s=1.0)
    return EvalReport(protocol="dc", params={"epochs": 1}, results=[runs], device="cpu").as_dict()


@pytest.fixture(scope="module")
def dm_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[Registry, str, Path]:
    """A dm set distilled on cifar10-mini (IPC 2, 2 iterations) with one stored evaluation,
    exported with ``export_hf``: the registry, the set's ref and the export folder."""
    root = tmp_path_factory.mktemp("hf")
    reg = Registry(root / "registry")
    ref = distill("dm", "cifar10-mini", 2, registry=reg, iterations=2, device="cpu", config={"batch_real": 16})
    ref_text = ref.version.ref
    reg.record_eval(ref_text, _report([31.0, 33.0]))
    out = hf.export_hf(reg.load(ref_text), root / "export", reg.evals(ref_text)).path
    return reg, ref_text, out


def _load(folder: Path, tmp_path: Path, name: str | None = None) -> datasets.Dataset:
    return datasets.load_dataset(str(folder), name=name, split="train", cache_dir=str(tmp_path / "hf-cache"))


def test_load_dataset_reads_the_export_as_trainable_float_tensors(dm_export, tmp_path) -> None:
    reg, ref, out = dm_export
    ds = _load(out, tmp_path)
    assert set(ds.features) == {"pixel_values", "label", "image"} and ds.features["label"].names[0] == "airplane"
    images, labels, _ = reg.load(ref).training_tensors()
    rows = ds.with_format("torch")[:]
    assert torch.equal(rows["pixel_values"], images) and torch.equal(rows["label"], labels)
    assert ds[0]["image"].size == (32, 32)


def test_a_convnet_trains_one_epoch_on_load_dataset(dm_export, tmp_path) -> None:
    _, _, out = dm_export
    rows = _load(out, tmp_path).with_format("torch")[:]
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(rows["pixel_values"], rows["label"]), batch_size=8, shuffle=True
    )
    net = create_backbone("convnet", channels=3, num_classes=10, resolution=32, seed=0)
    before = [p.detach().clone() for p in net.parameters()]
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    losses = []
    for x, y in loader:  # one epoch
        loss = torch.nn.functional.cross_entropy(net(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert len(losses) == 3 and all(np.isfinite(losses))
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))


def test_reimport_is_bit_identical(dm_export) -> None:
    reg, ref, out = dm_export
    saved, imported = import_source(out, reg, name="back")
    assert saved.sha256 == reg.resolve(ref).sha256
    assert torch.equal(reg.load("back").images, reg.load(ref).images)
    assert imported.facts["sha256_verified"] and imported.facts["config"] == "default"
    assert reg.show("back")["metadata"]["method"] == "dm"


def test_the_card_holds_task_size_provenance_and_evaluations(dm_export) -> None:
    reg, ref, out = dm_export
    card = DatasetCard.load(out / "README.md")
    data = card.data.to_dict()
    text = (out / "README.md").read_text()
    assert "license" not in data and text.splitlines()[1].startswith("# license: choose the license")
    assert data["task_categories"] == ["image-classification"] and data["size_categories"] == ["n<1K"]
    section = data["condensekit"]
    prov = section["provenance"]
    assert (prov["method"], prov["dataset"], prov["ipc"], prov["backbone"], prov["iterations"]) == (
        "dm",
        "cifar10-mini",
        2,
        "convnet",
        2,
    )
    assert prov["config"]["batch_real"] == 16 and prov["condensekit_version"] and "wall_time_s" in prov
    assert section["sha256"] == reg.resolve(ref).sha256 and section["exported_from"] == ref
    assert section["normalization"] == {"mean": [0.4914, 0.4822, 0.4465], "std": [0.2023, 0.1994, 0.2010]}
    [evaluation] = section["evaluations"]
    assert evaluation["protocol"] == "dc" and evaluation["results"][0]["accuracies"] == [31.0, 33.0]
    assert "| dc | convnet | 32.00 ± 1.00 | 2 |" in card.text
    assert (out / "preview.png").is_file()


def _unit_set(soft: bool = False) -> SyntheticSet:
    gen = torch.Generator().manual_seed(0)
    meta = {
        "dataset": "cifar10-mini",
        "method": "dance",
        "ipc": 1,
        "num_classes": 10,
        "mean": [0.4914, 0.4822, 0.4465],
        "std": [0.2023, 0.1994, 0.2010],
        "class_names": [str(i) for i in range(10)],
    }
    return SyntheticSet(
        images=torch.rand(10, 3, 32, 32, generator=gen) * 1.2 - 0.1,
        labels=torch.arange(10),
        soft_labels=torch.softmax(torch.randn(10, 10, generator=gen), 1) if soft else None,
        pixel_space="unit",
        factor=2,
        metadata=meta,
    )


def test_a_multiformation_set_keeps_its_stored_arrays(tmp_path, reg) -> None:
    original = reg.save(_unit_set(soft=True), "dance-set", dtype="float16")
    synset = reg.load(original.ref)
    out = hf.export_hf(synset, tmp_path / "export").path
    default = _load(out, tmp_path).with_format("torch")[:]
    images, _, soft = synset.training_tensors()
    assert torch.equal(default["pixel_values"], images) and torch.equal(default["soft_label"], soft)
    assert default["pixel_values"].shape[0] == 40
    stored = _load(out, tmp_path, name="stored").with_format("torch")[:]
    assert torch.equal(stored["pixel_values"], synset.images)
    saved, imported = import_source(out, reg)
    back = reg.load(saved.ref)
    assert saved.sha256 == original.sha256 and imported.facts["config"] == "stored"
    assert (back.pixel_space, back.factor, back.metadata["stored_dtype"]) == ("unit", 2, "float16")
    assert torch.equal(back.soft_labels, synset.soft_labels)


def test_changed_data_does_not_match_the_card(tmp_path, dm_export, nothing_written) -> None:
    reg, ref, _ = dm_export
    out = hf.export_hf(reg.load(ref), tmp_path / "export").path
    ds = _load(out, tmp_path)
    changed = ds.map(lambda row: {"pixel_values": (np.asarray(row["pixel_values"]) + 1).tolist()})
    [parquet] = (out / "data").glob("*.parquet")
    changed.to_parquet(str(parquet))
    fresh = Registry(tmp_path / "fresh")
    with pytest.raises(UsageError, match="does not match the sha256 in its card"):
        import_source(out, fresh)
    nothing_written(fresh)


def _external(folder: Path, real_images, names: list[str], card: str | None) -> Path:
    """A third-party dataset made with ``datasets``: PNG images, a ClassLabel in ``names``' order."""
    unit, labels = real_images(1, space="unit")
    pixels = [(img.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy() for img in unit]
    ours = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=names)})
    ds = datasets.Dataset.from_dict(
        {"image": pixels, "label": [names.index(ours[y]) if ours[y] in names else y for y in labels.tolist()]},
        features=features,
    )
    (folder / "data").mkdir(parents=True)
    ds.to_parquet(str(folder / "data" / "train-00000-of-00001.parquet"))
    if card is not None:
        (folder / "README.md").write_text(card)
    return folder


def test_a_dataset_without_provenance_imports_as_external(tmp_path, reg, real_images) -> None:
    names = ["truck", "ship", "horse", "frog", "dog", "deer", "cat", "bird", "automobile", "airplane"]
    card = "---\nlicense: mit\npretty_name: Someone's distilled CIFAR-10\n---\n# A set\n"
    folder = _external(tmp_path / "theirs", real_images, names, card)
    saved, imported = import_source(folder, reg, options=ImportOptions(dataset="cifar10-mini"))
    assert imported.format == "hf" and imported.found == "a Hugging Face dataset folder (no condensekit card)"
    stored = reg.load(saved.ref)
    unit, labels = real_images(1, space="unit")
    assert stored.metadata["method"] == "external" and stored.pixel_space == "unit"
    assert torch.equal(stored.labels, labels) and torch.allclose(stored.images, (unit * 255).round() / 255)
    origin = stored.metadata["imported_from"]
    assert origin["classes"] == "mapped by name to cifar10-mini's class order" and origin["license"] == "mit"


def test_an_external_dataset_needs_the_dataset_named(tmp_path, reg, real_images, nothing_written) -> None:
    folder = _external(tmp_path / "theirs", real_images, [str(i) for i in range(10)], None)
    with pytest.raises(UsageError, match="its dataset card does not name a condensekit dataset; pass --data DATASET"):
        import_source(folder, reg)
    nothing_written(reg)


def test_an_external_float_dataset_assumes_the_dataset_normalization(tmp_path, real_images) -> None:
    images, labels = real_images(1)
    ds = datasets.Dataset.from_dict({"pixel_values": images.numpy(), "label": labels.numpy()})
    ds.save_to_disk(str(tmp_path / "saved"))
    imported = read_source(tmp_path / "saved", options=ImportOptions(dataset="cifar10-mini"))
    assert imported.found == "a Hugging Face dataset saved with save_to_disk (no condensekit card)"
    assert torch.equal(imported.synset.images, images) and imported.synset.pixel_space == "normalized"
    assert imported.facts["normalization"] == "the card states none: cifar10-mini's mean and std assumed"


def test_hf_repo_id_imports_from_the_hub_cache(tmp_path, dm_export) -> None:
    """``import hf:OWNER/NAME`` through huggingface_hub's snapshot_download, offline, from a
    Hub cache holding the export as the repository's main revision."""
    reg, ref, out = dm_export
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "datasets--someone--dm-mini"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots").mkdir()
    os.symlink(out, repo / "snapshots" / commit)
    env = {
        **os.environ,
        "HF_HOME": str(tmp_path / "hf-home"),
        "HF_HUB_CACHE": str(tmp_path / "hub"),
        "HF_HUB_OFFLINE": "1",
        "CONDENSEKIT_REGISTRY": str(tmp_path / "registry"),
    }
    result = subprocess.run(
        [sys.executable, "-m", "condensekit", "import", "hf:someone/dm-mini", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ref"] == "dm-mini:v1" and report["format"] == "hf" and report["source"] == "hf:someone/dm-mini"
    assert Registry(tmp_path / "registry").resolve("dm-mini").sha256 == reg.resolve(ref).sha256


def test_without_the_libraries_the_error_names_the_extra(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # what an install without the extra has
    with pytest.raises(UsageError, match=r"export --hf needs the Hugging Face libraries .*condensekit\[hf\]"):
        hf.check_hf_target(Path("anywhere"))


def test_overwrite_replaces_only_a_previous_hf_export(tmp_path, dm_export) -> None:
    reg, ref, _ = dm_export
    other = tmp_path / "project"
    other.mkdir()
    (other / "README.md").write_text("# my project\n")
    with pytest.raises(UsageError, match="holds no previous --hf export"):
        hf.export_hf(reg.load(ref), other, overwrite=True)
    assert (other / "README.md").read_text() == "# my project\n"
    first = hf.export_hf(reg.load(ref), tmp_path / "export").path
    with pytest.raises(UsageError, match="is not empty"):
        hf.export_hf(reg.load(ref), first)
    assert hf.export_hf(reg.load(ref), first, overwrite=True).path == first


def test_push_dry_run_exports_and_uploads_nothing(tmp_path, dm_export) -> None:
    reg, ref, _ = dm_export
    result = hf.push(reg.load(ref), "someone/dm-mini", dry_run=True, folder=tmp_path / "staged")
    assert not result.uploaded and result.url == "https://huggingface.co/datasets/someone/dm-mini"
    assert result.files == ["README.md", "data/train-00000-of-00001.parquet", "preview.png"]
    assert _load(tmp_path / "staged", tmp_path).num_rows == 20


def test_push_refuses_a_bad_repository_id(dm_export) -> None:
    reg, ref, _ = dm_export
    with pytest.raises(UsageError, match="is not a Hub repository id"):
        hf.push(reg.load(ref), "two//slashes", dry_run=True)


def test_push_without_a_login_stops_before_the_export(tmp_path, dm_export) -> None:
    """Run in a process whose Hugging Face home holds no token and whose environment has none."""
    reg, ref, _ = dm_export
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    env.update(HF_HOME=str(tmp_path / "hf-home"), CONDENSEKIT_REGISTRY=str(reg.root))
    result = subprocess.run(
        [sys.executable, "-m", "condensekit", "push", ref, "someone/dm-mini", "--folder", str(tmp_path / "kept")],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: push needs a Hugging Face login")
    assert not (tmp_path / "kept").exists()
