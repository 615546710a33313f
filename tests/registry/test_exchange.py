"""Export to PNG grid / .pt tensors / ImageFolder, and validated import."""

from __future__ import annotations

import json
import shutil
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
    """The grid geometry documented in export_png, computed independently."""
    cell = side * 2 if side <= 32 else side
    font = ImageFont.load_default()
    label_w = max(font.getbbox(n)[2] for n in names)
    row_h = max(cell, *(font.getbbox(n)[3] for n in names))
    width = 2 * 4 + label_w + 6 + cols * cell + (cols - 1) * 2
    height = 2 * 4 + len(names) * row_h + (len(names) - 1) * 2
    return width, height


def test_png_grid_has_the_expected_geometry(tmp_path: Path, synset_factory: Factory) -> None:
    synset = synset_factory(ipc=3)
    path = exchange.export_png(synset, tmp_path / "grid.png")
    image = Image.open(path)
    assert image.format == "PNG" and image.mode == "RGB"
    assert image.size == _expected_grid_size(synset.class_names, 32, cols=3)
    assert image.getpixel((0, 0)) == (255, 255, 255)  # white margin


def test_png_grid_caps_images_per_row_and_decodes(tmp_path: Path, synset_factory: Factory) -> None:
    synset = synset_factory(ipc=3, factor=2)  # 12 decoded images per class, capped at 10
    image = Image.open(exchange.export_png(synset, tmp_path / "grid.png"))
    assert image.size == _expected_grid_size(synset.class_names, 32, cols=10)


def test_png_grid_shows_denormalized_pixels(tmp_path: Path, synset_factory: Factory) -> None:
    synset = synset_factory(ipc=1, side=48)  # > 32 px: not upscaled
    image = np.asarray(Image.open(exchange.export_png(synset, tmp_path / "grid.png")))
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
