"""Getting sets out of and into the registry in the formats people already exchange.

* Image grid (PNG, JPEG or WebP, from the file's extension): one row per class, for papers
  and a quick look.
* ``images.pt`` + ``labels.pt``: what the DC/DM/MTT code bases save (normalized float
  tensors, decoded), so their evaluation scripts can train on our sets and vice versa.
* ImageFolder of PNGs, for any image tool.
* Import of our own HDF5 files (validated, sha256 checked) and of ``images.pt`` pairs.

Exports never mix with what was there and never leave half a result: files are written
under a temporary name beside the target and renamed into place once complete, and a
target that already holds something is only replaced when the caller says so.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import h5py
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont, features

from condensekit.errors import RegistryError, UsageError
from condensekit.registry import format as h5format
from condensekit.synthetic import SyntheticSet

if TYPE_CHECKING:
    from condensekit.registry.store import Registry, SetVersion

GRID_PER_CLASS = 10  # images per class a grid shows unless told otherwise
GRID_MARGIN = 4  # around the grid, px
GRID_PAD = 2  # between cells and between rows, px
GRID_LABEL_GAP = 6  # between a class name and its row's first image, px

#: Grid file extensions and the Pillow format each one means. WebP needs Pillow built with
#: libwebp; :func:`grid_formats` leaves it out where it is not.
GRID_EXTENSIONS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
#: Encoder options: lossless WebP keeps the pixels exact like PNG; JPEG is lossy by nature,
#: so a high quality keeps the small upscaled tiles recognisable.
_SAVE_OPTIONS: dict[str, dict[str, object]] = {"PNG": {}, "JPEG": {"quality": 95}, "WEBP": {"lossless": True}}
#: The files an ``images.pt`` export writes (soft labels only for sets that have them).
PT_FILES = ("images.pt", "labels.pt", "soft_labels.pt")
#: What a folder must hold to count as a previous ``--folder`` export that may be replaced.
FOLDER_MARKERS = ("labels.json", "metadata.json")


def grid_scale(size: int) -> int:
    """Nearest-neighbour upscale factor making small images legible (x2 up to 32 px)."""
    return 2 if size <= 32 else 1


def grid_formats() -> dict[str, str]:
    """The grid extensions this installation can write (extension -> Pillow format)."""
    webp = features.check("webp")
    return {ext: fmt for ext, fmt in GRID_EXTENSIONS.items() if fmt != "WEBP" or webp}


def grid_format(path: str | os.PathLike[str]) -> str:
    """The Pillow format a grid file gets, from its extension (case-insensitive).

    The extension decides because a file named ``grid.jpg`` holding PNG bytes surprises
    every viewer and upload form; an extension we cannot honour is refused up front."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{path} is a folder; --grid needs a file name such as {path / 'grid.png'}")
    supported = grid_formats()
    fmt = supported.get(path.suffix.lower())
    if fmt is None:
        given = f"extension {path.suffix!r}" if path.suffix else "no extension"
        raise UsageError(f"{path}: cannot write an image grid with {given}; name the file {', '.join(supported)}")
    return fmt


def parse_per_class(value: str | int | None) -> int | None:
    """``--per-class``: a positive count, or ``all`` (returned as None, meaning no cap)."""
    if value is None:
        return GRID_PER_CLASS
    if isinstance(value, str) and value.strip().lower() == "all":
        return None
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count < 1:
        raise UsageError(f"--per-class takes a positive number or 'all', got {value!r}")
    return count


@dataclass(frozen=True)
class GridExport:
    """What a grid export wrote: where, in which format, and how much of each class it shows.

    ``shown`` is the widest row, ``available`` the most images any class has: when
    ``shown < available`` the grid is a sample, and the caller should say so."""

    path: Path
    format: str
    shown: int
    available: int

    @property
    def capped(self) -> bool:
        return self.shown < self.available


def export_grid(
    synset: SyntheticSet, path: str | os.PathLike[str], per_class: int | None = GRID_PER_CLASS
) -> GridExport:
    """An image grid: one row per class with its name on the left, the first ``per_class``
    images of each class (every one when None), decoded and de-normalized, on white. The
    format follows the extension (:func:`grid_format`); the file is replaced atomically.

    Geometry: cell = side * :func:`grid_scale`; width = 2*margin + label width + gap +
    cols*cell + (cols-1)*pad; height = 2*margin + rows*row_h + (rows-1)*pad with
    row_h = max(cell, text height); cols = the most images any class shows."""
    fmt = grid_format(path)
    if per_class is not None and per_class < 1:
        raise UsageError(f"per_class must be at least 1 (or None for every image), got {per_class}")
    images = _to_uint8(synset.for_display())
    labels = synset.decoded().labels
    names = _class_names(synset, labels)
    _, _, h, w = images.shape
    scale = grid_scale(max(h, w))
    cell_h, cell_w = h * scale, w * scale
    members = [torch.nonzero(labels == k).flatten().tolist() for k in range(len(names))]
    per_row = [m if per_class is None else m[:per_class] for m in members]
    cols = max(1, *(len(p) for p in per_row))
    font = ImageFont.load_default()
    boxes = [font.getbbox(name) for name in names]
    label_w = max(b[2] for b in boxes)
    text_h = max(b[3] for b in boxes)
    row_h = max(cell_h, text_h)
    width = 2 * GRID_MARGIN + label_w + GRID_LABEL_GAP + cols * cell_w + (cols - 1) * GRID_PAD
    height = 2 * GRID_MARGIN + len(names) * row_h + (len(names) - 1) * GRID_PAD
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    for row, (name, indices) in enumerate(zip(names, per_row, strict=True)):
        top = GRID_MARGIN + row * (row_h + GRID_PAD)
        draw.text((GRID_MARGIN, top + (row_h - text_h) // 2), name, fill="black", font=font)
        for col, i in enumerate(indices):
            tile = _pil(images[i]).resize((cell_w, cell_h), Image.Resampling.NEAREST)
            left = GRID_MARGIN + label_w + GRID_LABEL_GAP + col * (cell_w + GRID_PAD)
            canvas.paste(tile, (left, top + (row_h - cell_h) // 2))
    target = Path(path)
    with _atomic_file(target) as tmp:
        canvas.save(tmp, format=fmt, **_SAVE_OPTIONS[fmt])
    return GridExport(
        path=target,
        format=fmt,
        shown=max(len(p) for p in per_row) if per_row else 0,
        available=max(len(m) for m in members) if members else 0,
    )


def check_pt_target(directory: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """Refuse an ``images.pt`` export into a folder that already holds one (unless
    ``overwrite``): a stale ``soft_labels.pt`` beside new tensors would silently change
    what an import or a DC-style script reads. Other files in the folder are left alone."""
    out = Path(directory)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} is a file; --pt needs a folder (new, or one without {', '.join(PT_FILES)})")
    present = [name for name in PT_FILES if (out / name).exists()]
    if present and not overwrite:
        raise UsageError(
            f"{out} already holds {', '.join(present)}; pick another folder, or pass --overwrite to replace them"
        )
    return out


def export_pt(synset: SyntheticSet, directory: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """``images.pt`` (N, C, H, W) float32 in the dataset's normalized space, decoded, and
    ``labels.pt`` (N,) int64 (plus ``soft_labels.pt`` when the set has soft labels).

    Every file is written under a temporary name first and renamed once all are complete;
    with ``overwrite``, a previous export's ``soft_labels.pt`` that this set does not have
    is removed so the folder never mixes two sets."""
    out = check_pt_target(directory, overwrite)
    images, labels, soft = synset.training_tensors()
    tensors = {"images.pt": images, "labels.pt": labels}
    if soft is not None:
        tensors["soft_labels.pt"] = soft.float()
    out.mkdir(parents=True, exist_ok=True)
    staged: dict[str, Path] = {}
    try:
        for name, tensor in tensors.items():
            staged[name] = _sibling(out / name, "partial")
            torch.save(tensor.detach().cpu().contiguous(), staged[name])
        check_pt_target(out, overwrite)  # still true now that the tensors are ready
    except BaseException:
        for tmp in staged.values():
            tmp.unlink(missing_ok=True)
        raise
    for name, tmp in staged.items():
        os.replace(tmp, out / name)
    for name in PT_FILES:
        if name not in tensors:
            (out / name).unlink(missing_ok=True)
    return out


def check_folder_target(
    directory: str | os.PathLike[str],
    overwrite: bool = False,
    markers: tuple[str, ...] = FOLDER_MARKERS,
    option: str = "--folder",
) -> Path:
    """Refuse an ImageFolder export into a folder that is not empty, unless ``overwrite``
    and the folder holds a previous export (``markers``: ``labels.json`` and ``metadata.json``
    for ``--folder``; ``option`` names the export in messages).

    Writing into a non-empty folder used to mix two sets' images under one labels.json;
    and ``--overwrite`` replaces the whole folder, so it is kept from deleting a folder
    that is not an export (a typo'd ``--folder ~`` must not cost the home folder)."""
    out = Path(directory)
    if not out.exists():
        return out
    if not out.is_dir():
        raise UsageError(f"{out} is a file; {option} needs a new or empty folder")
    if not any(out.iterdir()):
        return out
    if not overwrite:
        raise UsageError(f"{out} is not empty; pick a new or empty folder, or pass --overwrite to replace it")
    if not all((out / marker).is_file() for marker in markers):
        raise UsageError(
            f"{out} is not empty and holds no previous export ({' and '.join(markers)}), "
            "so --overwrite will not replace it; pick a new or empty folder"
        )
    return out


def export_folder(synset: SyntheticSet, directory: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """An ImageFolder tree ``<dir>/<class_index>_<class_name>/<i>.png`` (8-bit, decoded and
    de-normalized), plus ``labels.json`` (file -> label) and ``metadata.json``. Class
    indices are zero-padded so that sorting the folders (as ImageFolder does) keeps the
    label order.

    The tree is built in a hidden folder beside ``directory`` and renamed into place when
    complete, so a failure leaves the target as it was; see :func:`check_folder_target`
    for when an existing folder is refused or replaced."""
    out = check_folder_target(directory, overwrite)
    images = _to_uint8(synset.for_display())
    dec = synset.decoded()
    names = _class_names(synset, dec.labels)
    width = len(str(len(names) - 1))
    meta = {k: v for k, v in synset.metadata.items() if k != "path"}
    meta.update(pixel_space_of_pngs="unit (8-bit)", exported_from_factor=synset.factor)
    with staged_folder(out, overwrite) as stage:
        entries = []
        counts = [0] * len(names)
        for i, label in enumerate(dec.labels.tolist()):
            folder = f"{label:0{width}d}_{_safe(names[label])}"
            (stage / folder).mkdir(exist_ok=True)
            rel = f"{folder}/{counts[label]}.png"
            counts[label] += 1
            _pil(images[i]).save(stage / rel, format="PNG")
            entry = {"file": rel, "label": label}
            if dec.soft_labels is not None:
                entry["soft_label"] = dec.soft_labels[i].tolist()
            entries.append(entry)
        (stage / "labels.json").write_text(json.dumps(entries, indent=1))
        (stage / "metadata.json").write_text(h5format.to_json(meta))
    return out


@contextmanager
def _atomic_file(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path``, renamed onto it when the block succeeds and
    removed when it fails: readers see the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(path, "partial")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _sibling(path: Path, kind: str) -> Path:
    """An unused hidden name beside ``path`` (``.NAME.<random>.<kind>``). Not tempfile's
    mkstemp/mkdtemp: those create owner-only (0600/0700) entries, and an export renamed
    into place must get the usual permissions (umask), as a direct write would."""
    while True:
        candidate = path.with_name(f".{path.name}.{secrets.token_hex(4)}.{kind}")
        if not candidate.exists():
            return candidate


@contextmanager
def staged_folder(out: Path, overwrite: bool, markers: tuple[str, ...] = FOLDER_MARKERS) -> Iterator[Path]:
    """A hidden folder beside ``out`` to build an export in; on success it takes ``out``'s
    place (an empty ``out`` is removed, a previous export moved aside, then deleted), on
    failure it is deleted and ``out`` is untouched."""
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = _sibling(out, "partial")
    stage.mkdir()
    try:
        yield stage
        check_folder_target(out, overwrite, markers)  # still true now that the export is complete
        old = None
        if out.exists():
            old = _sibling(out, "old")
            old.mkdir()
            os.replace(out, old / "export")
        try:
            os.replace(stage, out)
        except BaseException:
            if old is not None:
                os.replace(old / "export", out)
            raise
        finally:
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


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
    synset = read_pt_pair(images_path, dataset)
    return registry.save(synset, name)


def read_pt_pair(images_path: Path, dataset: str) -> SyntheticSet:
    """The set held by ``images_path`` (``images.pt``) and the ``labels.pt`` (and optional
    ``soft_labels.pt``) beside it: normalized-space float images of ``dataset``, checked by
    :func:`condensekit.sharing.formats.check_tensors`; a bad file is a one-line RegistryError."""
    from condensekit.data import dataset_info
    from condensekit.sharing.formats import check_tensors

    info = dataset_info(dataset)
    labels_path = images_path.with_name("labels.pt")
    if not labels_path.is_file():
        raise RegistryError(f"{images_path}: labels.pt is missing beside it")
    images = _load_tensor(images_path)
    labels = _load_tensor(labels_path)
    soft_path = images_path.with_name("soft_labels.pt")
    soft = _load_tensor(soft_path) if soft_path.is_file() else None
    where = (str(images_path), str(labels_path), str(soft_path))
    images, labels, soft = check_tensors(images, labels, soft, info, where, error=RegistryError)
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
    from condensekit.sharing.formats import load_torch

    value = load_torch(path, error=RegistryError)
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
