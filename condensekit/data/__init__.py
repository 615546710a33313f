"""Datasets by name: static facts, real images as class-grouped uint8 tensors, and the array cache.

A dataset name resolves, through the ``condensekit.datasets`` entry points, to a
:class:`~condensekit.data.catalog.DatasetSpec` (built-ins live in :mod:`condensekit.data.catalog`).
:func:`load_dataset` finds one split's arrays in this order:

1. ``<data root>/<folder>/<split>.npz`` -- an array cache placed in the data root, used as is
   (this is how CIFAR-10 is provided as ``cifar10-npz/``);
2. ``<cache dir>/<folder>/<split>.npz`` -- condensekit's own array cache;
3. the dataset's own files under the data root (torchvision's layouts), downloaded first when
   absent and the data root is writable, decoded once and written to (2). A resolution other
   than the native one is made from the native arrays of (1) or (2) when those exist.

:func:`check_available` is what a run's plan calls first: it finds the same source without
decoding anything, counts the images per class from the labels alone, and refuses an absent
split that cannot be downloaded from here (data root not writable, no download host answering)
before anything is created.

The data root is ``--data-root`` > ``$CONDENSEKIT_DATA`` > ``~/.cache/condensekit/data``; the
cache dir is ``$CONDENSEKIT_CACHE`` > ``~/.cache/condensekit``. The cache is never written into
the data root, which may be shared or read-only. It is keyed by dataset name and resolution
only, so it is reused whatever data root it was built from.

Array cache layout
------------------
``<folder>`` is ``<name>-npz`` at the native resolution and ``<name>-<res>-npz`` where the
images were resized (``imagenette-128-npz``). It holds ``train.npz`` and ``test.npz`` (for
ImageNet subsets and Tiny ImageNet, ``test`` is their ``val`` split), each with

- ``x``: uint8, shape (N, H, W, C), RGB or grey, not normalized;
- ``y``: int64, shape (N,), class indices in the order of ``dataset_info(name).class_names``.

Files are written with ``np.savez`` (uncompressed) to a temporary file renamed into place
(``os.replace``), so a crash never leaves a half-written cache. Uncompressed, because decoding
a compressed member costs a full extra copy in RAM: an uncompressed ``x`` is memory-mapped in
place instead, so a set as large as RAM allows still loads (plain ``np.load`` reads the files
anywhere). Compressed ``.npz`` files in the data root are read whole. Before loading, the
memory needed (twice the images' bytes while the class-sorted tensor is built) is compared
with ``MemAvailable`` on Linux, and a set that does not fit is refused with the numbers.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from condensekit import paths, plugins
from condensekit.data.cache import SPLITS, ensure_fits, peek, read_arrays, read_labels, write_arrays
from condensekit.data.catalog import DatasetSpec, default_backbone
from condensekit.data.loaders import resize_array
from condensekit.errors import CondensekitError, DatasetError, PluginError, UsageError

if TYPE_CHECKING:
    import torch

    from condensekit.data.base import DatasetInfo, RealData

__all__ = [
    "DatasetInfo",
    "DatasetSpec",
    "RealData",
    "cache_path",
    "check_available",
    "dataset_info",
    "default_backbone",
    "describe_datasets",
    "get_spec",
    "load_arrays",
    "load_dataset",
]

log = logging.getLogger("condensekit.data")

_LAZY = {"DatasetInfo": "condensekit.data.base", "RealData": "condensekit.data.base"}


def __getattr__(name: str) -> Any:
    # DatasetInfo and RealData import torch: only pay for it when they are used.
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'condensekit.data' has no attribute {name!r}")


def get_spec(name: str) -> DatasetSpec:
    """The spec registered under ``name``; DatasetError naming close names if there is none."""
    try:
        spec, info = plugins.load("dataset", name)
    except PluginError as exc:
        if name in plugins.names("dataset"):
            raise  # installed but broken: a plugin problem, not a dataset one
        raise DatasetError(str(exc)) from None
    if not isinstance(spec, DatasetSpec):
        raise PluginError(
            f"dataset plugin {name!r} ({info.value}) is not a condensekit.data.DatasetSpec; "
            f"reinstall or uninstall {info.distribution}"
        )
    return spec


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise UsageError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    return split


def dataset_info(name: str, resolution: int | None = None) -> DatasetInfo:
    """Classes, channels, normalization and default backbone of ``name`` at ``resolution`` (no data read)."""
    return get_spec(name).info(resolution)


def cache_path(name: str, split: str, resolution: int | None = None) -> Path:
    """Where condensekit's array cache for one split of ``name`` at ``resolution`` lives."""
    spec = get_spec(name)
    return paths.cache_dir() / spec.cache_folder(resolution) / f"{_check_split(split)}.npz"


def _cached_files(spec: DatasetSpec, split: str, resolution: int, root: Path) -> list[Path]:
    """Array files that may already hold this split, in order of precedence."""
    folder = spec.cache_folder(resolution)
    found = [root / folder / f"{split}.npz"]
    if spec.cache:
        found.append(paths.cache_dir() / folder / f"{split}.npz")
    return [p for p in found if p.is_file()]


def check_available(
    name: str, split: str = "train", resolution: int | None = None, data_root: str | Path | None = None
) -> tuple[int, ...] | None:
    """Make sure one split can be loaded, and count its images per class, without decoding any.

    Where :func:`load_arrays` would read (an array cache, else the dataset's files) only the
    labels are read: ``y`` of a cache file, or the reader's ``labels`` (MNIST's label file,
    the file names in class folders). Returns the images per class, or None when the labels
    cannot be had without the images (CIFAR's pickles before their cache exists) or the split
    will be downloaded. A split that is absent and cannot be downloaded from here (the data
    root cannot be written, or no download host answers) is a one-line DatasetError saying
    what is missing where and how to get it; nothing is created.
    """
    spec = get_spec(name)
    split = _check_split(split)
    res = spec.resolution(resolution)
    root = paths.data_root(data_root)
    cached = _cached_files(spec, split, res, root)
    if not cached and spec.native_resolution is not None and res != spec.native_resolution:
        cached = _cached_files(spec, split, spec.native_resolution, root)  # resized from these
    if cached:
        labels: np.ndarray | None = read_labels(cached[0])
    elif spec.present(root, split):
        labels = spec.labels(root, split)
    else:
        spec.check_download(root, split, res)
        return None
    if labels is None or len(labels) == 0 or int(labels.min()) < 0 or int(labels.max()) >= spec.num_classes:
        return None  # unknown, or invalid: loading reports invalid labels with the details
    return tuple(int(n) for n in np.bincount(labels, minlength=spec.num_classes))


def _validate(spec: DatasetSpec, resolution: int, x: np.ndarray, y: np.ndarray, origin: str) -> None:
    expected = (resolution, resolution, spec.channels)
    ok = (
        x.dtype == np.uint8
        and x.ndim == 4
        and tuple(x.shape[1:]) == expected
        and len(x) == len(y) > 0
        and int(y.min()) >= 0
        and int(y.max()) < spec.num_classes
    )
    if not ok:
        labels = f"labels in [{int(y.min())}, {int(y.max())}]" if len(y) else "no labels"
        raise DatasetError(
            f"{origin} holds x {x.dtype}{tuple(x.shape)} with {len(y)} {labels}, but {spec.name} at {resolution} px "
            f"needs uint8 (N, {', '.join(map(str, expected))}) and labels in [0, {spec.num_classes}); "
            f"delete or fix it"
        )


def _read_source(spec: DatasetSpec, split: str, resolution: int, root: Path) -> tuple[np.ndarray, np.ndarray, str]:
    """Arrays not cached yet: resized from the native-resolution arrays when those are cached,
    else decoded from the dataset's files."""
    native = spec.native_resolution
    if native is not None and resolution != native:
        found = _cached_files(spec, split, native, root)
        if found:
            ensure_fits(f"{spec.name} {split} ({found[0]})", peek(found[0]))
            x, y = read_arrays(found[0])
            return resize_array(x, resolution), y, str(found[0])
    x, y = spec.read(root, split, resolution)
    return x, y, spec.reader.where(root, split) or str(root)


def load_arrays(
    name: str, split: str = "train", resolution: int | None = None, data_root: str | Path | None = None
) -> tuple[np.ndarray, np.ndarray, str]:
    """One split as ``(x uint8 NHWC, y int64, origin)``; builds the array cache if needed.

    ``origin`` says where the arrays came from: an ``.npz`` file, the dataset's folder under
    the data root (the cache is then written for next time) or ``embedded``. ``x`` may be a
    memory map of the cache file.
    """
    spec = get_spec(name)
    split = _check_split(split)
    res = spec.resolution(resolution)
    root = paths.data_root(data_root)
    cached = _cached_files(spec, split, res, root)
    if cached:
        origin = str(cached[0])
        ensure_fits(f"{name} {split} ({origin})", peek(cached[0]))
        x, y = read_arrays(cached[0])
    else:
        x, y, origin = _read_source(spec, split, res, root)
        if spec.cache:
            target = paths.cache_dir() / spec.cache_folder(res) / f"{split}.npz"
            try:
                write_arrays(target, x, np.asarray(y, dtype=np.int64))
                log.info("cached %s %s (%d images) in %s", name, split, len(x), target)
            except OSError as exc:  # a read-only cache slows later runs but must not fail this one
                log.warning(
                    "could not write the array cache %s (%s); set CONDENSEKIT_CACHE to a writable folder", target, exc
                )
    y = np.asarray(y, dtype=np.int64)
    _validate(spec, res, x, y, origin)
    return x, y, origin


def _class_sorted_tensor(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """NHWC arrays -> a class-sorted (N, C, H, W) uint8 tensor, filled in chunks.

    Chunks keep the transient memory small and read a memory-mapped ``x`` page by page.
    """
    import torch

    order = np.argsort(y, kind="stable")
    n, h, w, c = x.shape
    images = torch.empty((n, c, h, w), dtype=torch.uint8)
    step = max(1, (64 << 20) // (h * w * c))
    for start in range(0, n, step):
        idx = order[start : start + step]
        images[start : start + len(idx)] = torch.from_numpy(np.ascontiguousarray(x[idx])).permute(0, 3, 1, 2)
    return images, torch.from_numpy(y[order])


def load_dataset(
    name: str,
    split: str = "train",
    resolution: int | None = None,
    data_root: str | Path | None = None,
    device: str | torch.device = "cpu",
) -> RealData:
    """One split of ``name`` as :class:`RealData` (uint8, class-contiguous) on ``device``.

    Reads the array cache when there is one, else the dataset's files (see the module
    docstring); ``resolution`` defaults to the dataset's (128 for ImageNet subsets).
    """
    import torch

    from condensekit.data.base import RealData
    from condensekit.runtime import select_device

    info = dataset_info(name, resolution)
    x, y, _ = load_arrays(name, split, info.resolution, data_root)
    images, labels = _class_sorted_tensor(x, y)
    del x, y  # drop the (possibly decompressed) arrays before RealData takes its copy
    data = RealData(info, images, labels)
    target = select_device(device) if isinstance(device, str) else torch.device(device)
    return data if target.type == "cpu" else data.to(target)


def describe_datasets(data_root: str | Path | None = None) -> list[dict[str, Any]]:
    """One row per installed dataset for ``condensekit list datasets`` (no images are read).

    ``present`` is whether its train split can be loaded without a download; ``where`` is the
    array file or folder it would come from (``embedded`` for package data).
    """
    root = paths.data_root(data_root)
    rows = []
    for plugin in plugins.discover("dataset"):
        row: dict[str, Any] = {
            "name": plugin.name,
            "resolution": None,
            "classes": None,
            "channels": None,
            "present": False,
            "where": "",
            "distribution": plugin.distribution,
            "version": plugin.distribution_version,
            "description": "",
            "status": plugin.status,
        }
        rows.append(row)
        if plugin.broken:
            continue
        try:
            spec = get_spec(plugin.name)
        except CondensekitError as exc:
            row["status"] = f"broken: {exc}"
            continue
        res = spec.resolution()
        cached = _cached_files(spec, "train", res, root)
        where = str(cached[0].parent) if cached else (spec.reader.where(root, "train") if spec.present(root) else "")
        row.update(
            resolution=res,
            classes=spec.num_classes,
            channels=spec.channels,
            present=bool(where),
            where=where,
            description=spec.description,
        )
    return rows
