"""Export to an image grid / .pt tensors / ImageFolder, and validated import."""

from __future__ import annotations

import json
import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image, ImageFont

from condensekit.errors import RegistryError, UsageError
from condensekit.registry import Registry, exchange
from condensekit.synthetic import SyntheticSet

Factory = Callable[..., SyntheticSet]


@pytest.fixture
def reg(tmp_path: Path) -> Registry:
    with Registry(tmp_path / "registry") as registry:
        yield registry


def _expected_grid_size(names: list[str], side: int, cols: int) -> tuple[int, int]:
    """The grid geometry documented in export_grid, computed independently."""
    cell = side * 2 if side <= 32 else side
    font = ImageFont.load_default()
    label_w = max(font.getbbox(n)[2] for n in names)
    row_h = max(cell, *(font.getbbox(n)[3] for n in names))
    width = 2 * 4 + label_w + 6 + cols * cell + (cols - 1) * 2
    height = 2 * 4 + len(names) * row_h + (len(names) - 1) * 2
    return width, height


def test_png_grid_has_the_expected_geometry(tmp_path: Path, synset_factory: Factory) -> None:
    synset = synset_factory(ipc=3)
    path = exchange.export_grid(synset, tmp_path / "grid.png").path
    image = Image.open(path)
    assert image.format == "PNG" and image.mode == "RGB"
    assert image.size == _expected_grid_size(synset.class_names, 32, cols=3)
    assert image.getpixel((0, 0)) == (255, 255, 255)  # white margin


def test_png_grid_caps_images_per_row_and_decodes(tmp_path: Path, synset_factory: Factory) -> None:
    synset = synset_factory(ipc=3, factor=2)  # 12 decoded images per class, capped at 10
    written = exchange.export_grid(synset, tmp_path / "grid.png")
    assert (written.shown, written.available, written.capped) == (10, 12, True)
    assert Image.open(written.path).size == _expected_grid_size(synset.class_names, 32, cols=10)


def test_png_grid_shows_denormalized_pixels(tmp_path: Path, synset_factory: Factory) -> None:
    synset = synset_factory(ipc=1, side=48)  # > 32 px: not upscaled
    image = np.asarray(Image.open(exchange.export_grid(synset, tmp_path / "grid.png").path))
    font = ImageFont.load_default()
    label_w = max(font.getbbox(n)[2] for n in synset.class_names)
    row_h = max(48, *(font.getbbox(n)[3] for n in synset.class_names))
    top, left = 4 + (row_h - 48) // 2, 4 + label_w + 6
    tile = image[top : top + 48, left : left + 48]
    want = (synset.for_display()[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    assert np.array_equal(tile, want)


def test_pt_export_round_trips_through_import(tmp_path: Path, reg: Registry, synset_factory: Factory) -> None:
    synset = synset_factory(ipc=2, factor=2, pixel_space="unit")
    out = exchange.export_pt(synset, tmp_path / "pt")
    images, labels, _ = synset.training_tensors()
    assert torch.equal(torch.load(out / "images.pt"), images)  # decoded, normalized space
    assert torch.equal(torch.load(out / "labels.pt"), labels) and labels.shape == (80,)
    saved = exchange.import_set(out, "imported", reg, dataset="cifar10")
    loaded = reg.load(saved.ref)
    assert torch.equal(loaded.images, images) and torch.equal(loaded.labels, labels)
    assert (loaded.pixel_space, loaded.factor) == ("normalized", 1)
    assert loaded.metadata["class_names"][0] == "airplane" and loaded.metadata["ipc"] == 8
    assert loaded.metadata["method"] == "imported"


def test_import_accepts_the_images_pt_path_and_soft_labels(
    tmp_path: Path, reg: Registry, synset_factory: Factory
) -> None:
    synset = synset_factory(ipc=1, soft=True)
    out = exchange.export_pt(synset, tmp_path / "pt")
    saved = exchange.import_set(out / "images.pt", "soft", reg, dataset="cifar10")
    assert torch.equal(reg.load(saved.ref).soft_labels, synset.soft_labels)


def test_folder_export_is_an_imagefolder(tmp_path: Path, synset_factory: Factory) -> None:
    synset = synset_factory(ipc=2, num_classes=10)
    out = exchange.export_folder(synset, tmp_path / "folder")
    folders = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert folders[:2] == ["0_airplane", "1_automobile"] and len(folders) == 10
    entries = json.loads((out / "labels.json").read_text())
    assert len(entries) == 20 and entries[2] == {"file": "1_automobile/0.png", "label": 1}
    pixels = np.asarray(Image.open(out / "1_automobile/0.png"))
    want = (synset.for_display()[2].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    assert np.array_equal(pixels, want)
    assert json.loads((out / "metadata.json").read_text())["dataset"] == "cifar10"


def test_folder_names_sort_in_label_order_beyond_ten_classes(tmp_path: Path) -> None:
    names = [f"c{i}" for i in range(12)]
    synset = SyntheticSet(
        images=torch.rand(12, 1, 8, 8),
        labels=torch.arange(12),
        pixel_space="unit",
        metadata={"mean": [0.5], "std": [0.5], "class_names": names, "num_classes": 12},
    )
    out = exchange.export_folder(synset, tmp_path / "folder")
    folders = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert folders == [f"{i:02d}_c{i}" for i in range(12)]


def test_hdf5_import_keeps_contents_and_hash(tmp_path: Path, reg: Registry, synset_factory: Factory) -> None:
    original = reg.save(synset_factory(ipc=2), name="a", dtype="float16")
    copy = reg.root.parent / "shared.h5"
    shutil.copy(original.path, copy)
    imported = exchange.import_set(copy, "b", reg)
    assert imported.ref == "b:v1" and imported.sha256 == original.sha256
    assert reg.show("b")["metadata"]["stored_dtype"] == "float16"


def _assert_nothing_written(reg: Registry) -> None:
    assert reg.list_sets() == []
    tmp = reg.root / "tmp"
    assert not tmp.exists() or list(tmp.iterdir()) == []


def _pt_pair(folder: Path, images: torch.Tensor, labels: torch.Tensor) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(images, folder / "images.pt")
    torch.save(labels, folder / "labels.pt")
    return folder


@pytest.mark.parametrize(
    ("images", "labels", "message"),
    [
        (torch.randn(10, 3, 28, 28), torch.arange(10), r"shape \(10, 3, 28, 28\), expected \(N, 3, 32, 32\)"),
        (torch.randn(10, 3, 32, 32), torch.arange(9), "expected 10 labels"),
        (torch.randn(10, 3, 32, 32), torch.arange(10) + 1, r"labels must be in \[0, 10\)"),
        (torch.full((10, 3, 32, 32), float("nan")), torch.arange(10), "finite"),
        (torch.randint(0, 255, (10, 3, 32, 32)), torch.arange(10), "floating-point"),
        (torch.randn(10, 3, 32, 32), torch.arange(10) + 0.5, "integer class indices"),
    ],
)
def test_invalid_pt_pairs_are_rejected(
    tmp_path: Path, reg: Registry, images: torch.Tensor, labels: torch.Tensor, message: str
) -> None:
    folder = _pt_pair(tmp_path / "pt", images, labels)
    with pytest.raises(RegistryError, match=message):
        exchange.import_set(folder, "bad", reg, dataset="cifar10")
    _assert_nothing_written(reg)


def test_pt_import_needs_a_dataset(tmp_path: Path, reg: Registry) -> None:
    folder = _pt_pair(tmp_path / "pt", torch.randn(10, 3, 32, 32), torch.arange(10))
    with pytest.raises(UsageError, match="--data DATASET"):
        exchange.import_set(folder, "x", reg)
    _assert_nothing_written(reg)


def test_pt_import_needs_labels(tmp_path: Path, reg: Registry) -> None:
    folder = _pt_pair(tmp_path / "pt", torch.randn(10, 3, 32, 32), torch.arange(10))
    (folder / "labels.pt").unlink()
    with pytest.raises(RegistryError, match=r"labels\.pt is missing"):
        exchange.import_set(folder, "x", reg, dataset="cifar10")


def test_a_pickle_that_is_not_a_tensor_is_rejected(tmp_path: Path, reg: Registry) -> None:
    folder = _pt_pair(tmp_path / "pt", torch.randn(10, 3, 32, 32), torch.arange(10))
    torch.save({"images": torch.randn(2)}, folder / "images.pt")
    with pytest.raises(RegistryError, match="expected a single tensor, found dict"):
        exchange.import_set(folder, "x", reg, dataset="cifar10")
    _assert_nothing_written(reg)


@pytest.mark.parametrize("kind", ["text", "foreign-hdf5", "corrupted-set"])
def test_foreign_or_broken_files_are_rejected(
    tmp_path: Path, reg: Registry, synset_factory: Factory, kind: str
) -> None:
    path = tmp_path / "input.h5"
    if kind == "text":
        path.write_text("not a set")
        message = "not a condensekit HDF5 set nor an images.pt/labels.pt pair"
    elif kind == "foreign-hdf5":
        with h5py.File(path, "w") as f:
            f["x"] = np.zeros((2, 2))
        message = "not a condensekit set"
    else:
        other = Registry(tmp_path / "other").save(synset_factory(ipc=1), name="s")
        shutil.copy(other.path, path)
        path.chmod(0o644)
        with h5py.File(path, "a") as f:
            f["images"][0, 0, 0, 0] += 1.0
        message = "do not match the file's sha256"
    with pytest.raises(RegistryError, match=message):
        exchange.import_set(path, "x", reg)
    _assert_nothing_written(reg)


def test_import_of_a_missing_path(tmp_path: Path, reg: Registry) -> None:
    with pytest.raises(RegistryError, match="no such file or directory"):
        exchange.import_set(tmp_path / "missing", "x", reg)


# --- exports that cannot surprise: real sets from a real registry -----------------------


def _stored(reg: Registry, synset: SyntheticSet, name: str = "s") -> SyntheticSet:
    """The set as `condensekit export` sees it: saved to the registry, then loaded back."""
    return reg.load(reg.save(synset, name=name).ref)


def _hidden_leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize(
    ("filename", "fmt"),
    [("grid.png", "PNG"), ("grid.jpg", "JPEG"), ("grid.jpeg", "JPEG"), ("grid.JPG", "JPEG"), ("grid.webp", "WEBP")],
)
def test_grid_format_follows_the_extension(
    tmp_path: Path, reg: Registry, synset_factory: Factory, filename: str, fmt: str
) -> None:
    synset = _stored(reg, synset_factory(ipc=2))
    written = exchange.export_grid(synset, tmp_path / "out" / filename)
    assert written.format == fmt and written.path == tmp_path / "out" / filename
    with Image.open(written.path) as image:
        assert image.format == fmt and image.mode == "RGB"
        assert image.size == _expected_grid_size(synset.class_names, 32, cols=2)
    assert _hidden_leftovers(tmp_path / "out") == []


def test_webp_grid_is_lossless(tmp_path: Path, reg: Registry, synset_factory: Factory) -> None:
    synset = _stored(reg, synset_factory(ipc=2))
    png = np.asarray(Image.open(exchange.export_grid(synset, tmp_path / "grid.png").path))
    webp = np.asarray(Image.open(exchange.export_grid(synset, tmp_path / "grid.webp").path))
    assert np.array_equal(png, webp)


@pytest.mark.parametrize("filename", ["grid.bmp", "grid.gif", "grid", "grid.png.txt"])
def test_grid_with_an_unsupported_extension_is_refused(
    tmp_path: Path, reg: Registry, synset_factory: Factory, filename: str
) -> None:
    synset = _stored(reg, synset_factory(ipc=1))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(UsageError, match=r"cannot write an image grid with .*; name the file \.png, \.jpg, \.jpeg"):
        exchange.export_grid(synset, out / filename)
    assert list(out.iterdir()) == []


def test_grid_into_a_folder_path_is_refused(tmp_path: Path, reg: Registry, synset_factory: Factory) -> None:
    (tmp_path / "x.png").mkdir()
    with pytest.raises(UsageError, match="is a folder; --grid needs a file name"):
        exchange.export_grid(_stored(reg, synset_factory(ipc=1)), tmp_path / "x.png")


def test_grid_per_class_cap_and_all(tmp_path: Path, reg: Registry, synset_factory: Factory) -> None:
    synset = _stored(reg, synset_factory(ipc=40))
    default = exchange.export_grid(synset, tmp_path / "default.png")
    assert (default.shown, default.available, default.capped) == (10, 40, True)
    assert Image.open(default.path).size == _expected_grid_size(synset.class_names, 32, cols=10)
    every = exchange.export_grid(synset, tmp_path / "all.png", per_class=None)
    assert (every.shown, every.available, every.capped) == (40, 40, False)
    assert Image.open(every.path).size == _expected_grid_size(synset.class_names, 32, cols=40)
    three = exchange.export_grid(synset, tmp_path / "three.png", per_class=3)
    assert (three.shown, three.capped) == (3, True)
    small = exchange.export_grid(_stored(reg, synset_factory(ipc=4), name="small"), tmp_path / "small.png")
    assert (small.shown, small.available, small.capped) == (4, 4, False)


@pytest.mark.parametrize(("value", "expected"), [(None, 10), ("all", None), ("ALL", None), ("3", 3), (7, 7)])
def test_parse_per_class(value: str | int | None, expected: int | None) -> None:
    assert exchange.parse_per_class(value) == expected


@pytest.mark.parametrize("value", ["0", "-2", "ten", "2.5", ""])
def test_parse_per_class_refuses_nonsense(value: str) -> None:
    with pytest.raises(UsageError, match="--per-class takes a positive number or 'all'"):
        exchange.parse_per_class(value)


def test_a_failed_grid_leaves_the_previous_file(tmp_path: Path) -> None:
    four_channels = SyntheticSet(
        images=torch.rand(2, 4, 8, 8),
        labels=torch.arange(2),
        pixel_space="unit",
        metadata={"mean": [0.5] * 4, "std": [0.5] * 4, "class_names": ["a", "b"], "num_classes": 2},
    )
    target = tmp_path / "grid.png"
    target.write_bytes(b"previous grid")
    with pytest.raises(UsageError, match="4-channel"):
        exchange.export_grid(four_channels, target)
    assert target.read_bytes() == b"previous grid" and _hidden_leftovers(tmp_path) == []


def test_exports_get_the_usual_permissions(tmp_path: Path, reg: Registry, synset_factory: Factory) -> None:
    """Staged under a temporary name, but not owner-only as tempfile would make them."""
    synset = _stored(reg, synset_factory(ipc=1))
    umask = os.umask(0o022)
    try:
        grid = exchange.export_grid(synset, tmp_path / "grid.png").path
        folder = exchange.export_folder(synset, tmp_path / "folder")
        pt = exchange.export_pt(synset, tmp_path / "pt")
    finally:
        os.umask(umask)
    assert stat.S_IMODE(grid.stat().st_mode) == 0o644
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755
    assert stat.S_IMODE((pt / "images.pt").stat().st_mode) == 0o644


def test_folder_export_refuses_a_non_empty_folder(tmp_path: Path, reg: Registry, synset_factory: Factory) -> None:
    synset = _stored(reg, synset_factory(ipc=2))
    out = tmp_path / "folder"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match=r"folder is not empty; pick a new or empty folder, or pass --overwrite"):
        exchange.export_folder(synset, out)
    assert [p.name for p in out.iterdir()] == ["notes.txt"] and _hidden_leftovers(tmp_path) == []


def test_folder_export_into_an_empty_folder(tmp_path: Path, reg: Registry, synset_factory: Factory) -> None:
    out = tmp_path / "folder"
    out.mkdir()
    exchange.export_folder(_stored(reg, synset_factory(ipc=1)), out)
    assert len(json.loads((out / "labels.json").read_text())) == 10
    assert _hidden_leftovers(tmp_path) == []


def test_folder_export_into_a_file_is_refused(tmp_path: Path, reg: Registry, synset_factory: Factory) -> None:
    (tmp_path / "taken").write_text("a file")
    with pytest.raises(UsageError, match="is a file; --folder needs a new or empty folder"):
        exchange.export_folder(_stored(reg, synset_factory(ipc=1)), tmp_path / "taken")


def test_overwrite_replaces_a_previous_export_without_mixing(
    tmp_path: Path, reg: Registry, synset_factory: Factory
) -> None:
    out = tmp_path / "folder"
    exchange.export_folder(_stored(reg, synset_factory(ipc=3), name="big"), out)
    assert len(list((out / "0_airplane").iterdir())) == 3
    second = _stored(reg, synset_factory(ipc=1, seed=1), name="small")
    with pytest.raises(UsageError, match="not empty"):
        exchange.export_folder(second, out)
    exchange.export_folder(second, out, overwrite=True)
    assert sorted(p.name for p in (out / "0_airplane").iterdir()) == ["0.png"]  # no stale 1.png, 2.png
    assert len(json.loads((out / "labels.json").read_text())) == 10
    assert json.loads((out / "metadata.json").read_text())["ref"] == "small:v1"
    pixels = np.asarray(Image.open(out / "0_airplane/0.png"))
    want = (second.for_display()[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    assert np.array_equal(pixels, want)
    assert _hidden_leftovers(tmp_path) == []


def test_overwrite_never_replaces_a_folder_that_is_not_an_export(
    tmp_path: Path, reg: Registry, synset_factory: Factory
) -> None:
    out = tmp_path / "photos"
    out.mkdir()
    (out / "holiday.png").write_bytes(b"precious")
    with pytest.raises(UsageError, match=r"holds no previous export \(labels\.json and metadata\.json\)"):
        exchange.export_folder(_stored(reg, synset_factory(ipc=1)), out, overwrite=True)
    assert (out / "holiday.png").read_bytes() == b"precious"


def test_a_failed_folder_export_leaves_the_previous_one(tmp_path: Path, reg: Registry, synset_factory: Factory) -> None:
    out = tmp_path / "folder"
    exchange.export_folder(_stored(reg, synset_factory(ipc=2)), out)
    before = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    # Metadata JSON cannot hold: the failure comes after every PNG is written.
    broken = SyntheticSet(
        images=torch.rand(3, 3, 8, 8),
        labels=torch.arange(3),
        pixel_space="unit",
        metadata={"mean": [0.5] * 3, "std": [0.5] * 3, "class_names": ["a", "b", "c"], "oops": object()},
    )
    with pytest.raises(RegistryError, match="not JSON-serializable"):
        exchange.export_folder(broken, out, overwrite=True)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == before
    with pytest.raises(RegistryError, match="not JSON-serializable"):
        exchange.export_folder(broken, tmp_path / "fresh")
    assert not (tmp_path / "fresh").exists() and _hidden_leftovers(tmp_path) == []


def test_pt_export_refuses_to_mix_and_overwrite_drops_stale_soft_labels(
    tmp_path: Path, reg: Registry, synset_factory: Factory
) -> None:
    out = tmp_path / "pt"
    out.mkdir()
    (out / "train.py").write_text("# the user's script beside the tensors")
    exchange.export_pt(_stored(reg, synset_factory(ipc=1, soft=True), name="soft"), out)
    assert (out / "soft_labels.pt").is_file()
    hard = _stored(reg, synset_factory(ipc=2), name="hard")
    with pytest.raises(UsageError, match=r"already holds images\.pt, labels\.pt, soft_labels\.pt; .*--overwrite"):
        exchange.export_pt(hard, out)
    exchange.export_pt(hard, out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["images.pt", "labels.pt", "train.py"]
    assert torch.equal(torch.load(out / "labels.pt"), hard.labels)
