"""Getting sets out of and into the registry in the formats people already exchange.

* PNG grid: one row per class, for papers and a quick look.
* ``images.pt`` + ``labels.pt``: what the DC/DM/MTT code bases save (normalized float
  tensors, decoded), so their evaluation scripts can train on our sets and vice versa.
* ImageFolder of PNGs, for any image tool.
* Import of our own HDF5 files (validated, sha256 checked) and of ``images.pt`` pairs.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

import h5py
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from condensekit.errors import RegistryError, UsageError
from condensekit.registry import format as h5format
from condensekit.synthetic import SyntheticSet

if TYPE_CHECKING:
    from condensekit.registry.store import Registry, SetVersion

GRID_MAX_PER_ROW = 10
GRID_MARGIN = 4  # around the grid, px
GRID_PAD = 2  # between cells and between rows, px
GRID_LABEL_GAP = 6  # between a class name and its row's first image, px


def grid_scale(size: int) -> int:
    """Nearest-neighbour upscale factor making small images legible (x2 up to 32 px)."""
    return 2 if size <= 32 else 1


def export_png(synset: SyntheticSet, path: str | os.PathLike[str], max_per_row: int = GRID_MAX_PER_ROW) -> Path:
    """An image grid: one row per class with its name on the left, at most ``max_per_row``
    (default 10) images per class (the first ones), decoded and de-normalized, on white.

    Geometry: cell = side * :func:`grid_scale`; width = 2*margin + label width + gap +
    cols*cell + (cols-1)*pad; height = 2*margin + rows*row_h + (rows-1)*pad with
    row_h = max(cell, text height); cols = the most images any class shows."""
    images = _to_uint8(synset.for_display())
    labels = synset.decoded().labels
    names = _class_names(synset, labels)
    _, _, h, w = images.shape
    scale = grid_scale(max(h, w))
    cell_h, cell_w = h * scale, w * scale
    per_class = [torch.nonzero(labels == k).flatten()[:max_per_row].tolist() for k in range(len(names))]
    cols = max(1, *(len(p) for p in per_class))
    font = ImageFont.load_default()
    boxes = [font.getbbox(name) for name in names]
    label_w = max(b[2] for b in boxes)
    text_h = max(b[3] for b in boxes)
    row_h = max(cell_h, text_h)
    width = 2 * GRID_MARGIN + label_w + GRID_LABEL_GAP + cols * cell_w + (cols - 1) * GRID_PAD
    height = 2 * GRID_MARGIN + len(names) * row_h + (len(names) - 1) * GRID_PAD
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    for row, (name, indices) in enumerate(zip(names, per_class, strict=True)):
        top = GRID_MARGIN + row * (row_h + GRID_PAD)
        draw.text((GRID_MARGIN, top + (row_h - text_h) // 2), name, fill="black", font=font)
        for col, i in enumerate(indices):
            tile = _pil(images[i]).resize((cell_w, cell_h), Image.Resampling.NEAREST)
            left = GRID_MARGIN + label_w + GRID_LABEL_GAP + col * (cell_w + GRID_PAD)
            canvas.paste(tile, (left, top + (row_h - cell_h) // 2))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path, format="PNG")
    return path


def export_pt(synset: SyntheticSet, directory: str | os.PathLike[str]) -> Path:
    """``images.pt`` (N, C, H, W) float32 in the dataset's normalized space, decoded, and
    ``labels.pt`` (N,) int64 (plus ``soft_labels.pt`` when the set has soft labels)."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    images, labels, soft = synset.training_tensors()
    torch.save(images.detach().cpu().contiguous(), out / "images.pt")
    torch.save(labels.detach().cpu().contiguous(), out / "labels.pt")
    if soft is not None:
        torch.save(soft.detach().cpu().float().contiguous(), out / "soft_labels.pt")
    return out


def export_folder(synset: SyntheticSet, directory: str | os.PathLike[str]) -> Path:
    """An ImageFolder tree ``<dir>/<class_index>_<class_name>/<i>.png`` (8-bit, decoded and
    de-normalized), plus ``labels.json`` (file -> label) and ``metadata.json``. Class
    indices are zero-padded so that sorting the folders (as ImageFolder does) keeps the
    label order."""
    out = Path(directory)
    images = _to_uint8(synset.for_display())
    dec = synset.decoded()
    names = _class_names(synset, dec.labels)
    width = len(str(len(names) - 1))
    entries = []
    counts = [0] * len(names)
    for i, label in enumerate(dec.labels.tolist()):
        folder = f"{label:0{width}d}_{_safe(names[label])}"
        (out / folder).mkdir(parents=True, exist_ok=True)
        rel = f"{folder}/{counts[label]}.png"
        counts[label] += 1
        _pil(images[i]).save(out / rel, format="PNG")
        entry = {"file": rel, "label": label}
        if dec.soft_labels is not None:
            entry["soft_label"] = dec.soft_labels[i].tolist()
        entries.append(entry)
    (out / "labels.json").write_text(json.dumps(entries, indent=1))
    meta = {k: v for k, v in synset.metadata.items() if k != "path"}
    meta.update(pixel_space_of_pngs="unit (8-bit)", exported_from_factor=synset.factor)
    (out / "metadata.json").write_text(h5format.to_json(meta))
    return out


def import_set(path: str | os.PathLike[str], name: str, registry: Registry, dataset: str | None = None) -> SetVersion:
    """Store a set given as a condensekit HDF5 file, or as an ``images.pt``/``labels.pt``
    pair (a directory holding them, or the ``images.pt`` path) of normalized-space float
    images of ``dataset``. Everything is validated before anything is written; a bad
    file raises a one-line RegistryError naming the problem."""
    source = Path(path)
    if not source.exists():
        raise RegistryError(f"{source}: no such file or directory")
    if source.is_file() and h5py.is_hdf5(source):
        synset, _ = h5format.read_set(source, verify=True)
        if dataset is not None and synset.metadata.get("dataset") != dataset:
            raise RegistryError(f"{source}: holds a {synset.metadata.get('dataset')!r} set, not {dataset!r}")
        dtype = synset.metadata.pop("stored_dtype", "float32")
        return registry.save(synset, name, dtype=dtype)
    images_path = source / "images.pt" if source.is_dir() else source
    if images_path.name != "images.pt" or not images_path.is_file():
        raise RegistryError(f"{source}: not a condensekit HDF5 set nor an images.pt/labels.pt pair")
    if dataset is None:
        raise UsageError(f"importing {images_path.name} needs the dataset it belongs to: pass --data DATASET")
    synset = _from_pt(images_path, dataset)
    return registry.save(synset, name)


def _from_pt(images_path: Path, dataset: str) -> SyntheticSet:
    from condensekit.data import dataset_info

    info = dataset_info(dataset)
    labels_path = images_path.with_name("labels.pt")
    if not labels_path.is_file():
        raise RegistryError(f"{images_path}: labels.pt is missing beside it")
    images = _load_tensor(images_path)
    labels = _load_tensor(labels_path)
    soft_path = images_path.with_name("soft_labels.pt")
    soft = _load_tensor(soft_path) if soft_path.is_file() else None
    expected = (info.channels, info.resolution, info.resolution)
    if images.dim() != 4 or tuple(images.shape[1:]) != expected:
        raise RegistryError(
            f"{images_path}: images have shape {tuple(images.shape)}, "
            f"expected (N, {', '.join(map(str, expected))}) for {info.name}"
        )
    if not images.is_floating_point() or not torch.isfinite(images).all():
        raise RegistryError(f"{images_path}: images must be finite floating-point values")
    if labels.dim() != 1 or labels.shape[0] != images.shape[0]:
        raise RegistryError(
            f"{labels_path}: expected {images.shape[0]} labels (one per image), got shape {tuple(labels.shape)}"
        )
    if labels.is_floating_point() and not torch.equal(labels, labels.round()):
        raise RegistryError(f"{labels_path}: labels must be integer class indices")
    labels = labels.long()
    if labels.numel() and (labels.min() < 0 or labels.max() >= info.num_classes):
        raise RegistryError(
            f"{labels_path}: labels must be in [0, {info.num_classes}) for {info.name}, "
            f"got {int(labels.min())}..{int(labels.max())}"
        )
    if soft is not None and tuple(soft.shape) != (images.shape[0], info.num_classes):
        raise RegistryError(
            f"{soft_path}: expected shape ({images.shape[0]}, {info.num_classes}), got {tuple(soft.shape)}"
        )
    counts = torch.bincount(labels, minlength=info.num_classes)
    ipc = int(counts[0]) if bool((counts == counts[0]).all()) else None
    metadata = {**info.as_metadata(), "method": "imported", "source": str(images_path.parent), "ipc": ipc}
    return SyntheticSet(
        images=images.float(),
        labels=labels,
        soft_labels=None if soft is None else soft.float(),
        pixel_space="normalized",
        factor=1,
        metadata=metadata,
    )


def _load_tensor(path: Path) -> torch.Tensor:
    try:
        value = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 -- torch.load raises many types for foreign or broken files
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise RegistryError(f"{path}: not a loadable tensor file ({first})") from None
    if not isinstance(value, torch.Tensor):
        raise RegistryError(f"{path}: expected a single tensor, found {type(value).__name__}")
    return value


def _to_uint8(unit: torch.Tensor) -> np.ndarray:
    if unit.shape[1] not in (1, 3):
        raise UsageError(f"cannot export {unit.shape[1]}-channel images as PNG (1 or 3 channels)")
    return (unit.detach().cpu().float() * 255).round().clamp(0, 255).to(torch.uint8).numpy()


def _pil(image: np.ndarray) -> Image.Image:
    hwc = np.ascontiguousarray(image.transpose(1, 2, 0))
    return Image.fromarray(hwc[:, :, 0], "L").convert("RGB") if hwc.shape[2] == 1 else Image.fromarray(hwc, "RGB")


def _class_names(synset: SyntheticSet, labels: torch.Tensor) -> list[str]:
    count = max(
        int(synset.metadata.get("num_classes", 0)),
        len(synset.class_names),
        int(labels.max()) + 1 if labels.numel() else 0,
    )
    names = synset.class_names
    return [names[k] if k < len(names) else str(k) for k in range(count)]


def _safe(name: str) -> str:
    """A class name usable as a folder name on every OS."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "class"
