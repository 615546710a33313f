"""The synthetic-set file format: one self-describing HDF5 file per set version.

``docs/format.md`` is the specification; this module is its reference implementation.
Readers need only h5py: arrays are plain datasets, metadata plain attributes, and long
strings (the method config, class names) small datasets under ``/meta`` because HDF5
attributes should stay under 64 KiB.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import h5py
import numpy as np
import torch

from condensekit.errors import RegistryError
from condensekit.synthetic import PIXEL_SPACES, SyntheticSet

FORMAT = "condensekit-synset"
FORMAT_VERSION = 1
STORE_DTYPES: dict[str, np.dtype] = {"float32": np.dtype("<f4"), "float16": np.dtype("<f2")}
ARRAYS: tuple[str, ...] = ("images", "labels", "soft_labels")  # hashing order

# Root attributes describing the file itself, never copied from a set's metadata.
_FILE_ATTRS = ("format", "format_version", "pixel_space", "factor", "sha256")
# Facts the registry adds on load; they belong to the index, not the immutable file.
REGISTRY_KEYS = ("name", "version", "ref", "sha256", "stored_dtype", "path")
_MAX_ATTR_STR = 4096  # longer strings go to /meta/extra (attributes should stay small)
_CHUNK_BYTES = 1 << 20


@contextlib.contextmanager
def open_h5(path: Path, mode: str = "r") -> Iterator[h5py.File]:
    """``h5py.File`` with HDF5's opaque open errors turned into one-line RegistryErrors."""
    try:
        handle = h5py.File(path, mode)
    except FileNotFoundError:
        raise RegistryError(f"{path}: file not found; run `condensekit registry check`") from None
    except OSError as exc:
        if "unable to lock file" in str(exc).lower():
            raise RegistryError(
                f"cannot lock {path}: this file system does not support HDF5 file locking; "
                "set HDF5_USE_FILE_LOCKING=FALSE and retry"
            ) from None
        raise RegistryError(f"{path}: not a readable HDF5 file ({_first_line(exc)})") from None
    with handle:
        yield handle


def content_sha256(arrays: Mapping[str, np.ndarray]) -> str:
    """sha256 over the stored arrays, in ``ARRAYS`` order, each preceded by a header line
    ``<name>|<numpy dtype str>|<comma-separated shape>\\n`` then its C-order little-endian
    bytes. Absent arrays (no soft labels) contribute nothing. See docs/format.md."""
    digest = hashlib.sha256()
    for name in ARRAYS:
        if name not in arrays or arrays[name] is None:
            continue
        arr = np.ascontiguousarray(arrays[name])
        arr = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
        shape = ",".join(str(n) for n in arr.shape)
        digest.update(f"{name}|{arr.dtype.str}|{shape}\n".encode())
        digest.update(arr.tobytes())
    return digest.hexdigest()


def stored_arrays(synset: SyntheticSet, dtype: str = "float32") -> dict[str, np.ndarray]:
    """The exact arrays a save writes (and hashes): images cast to ``dtype``."""
    if dtype not in STORE_DTYPES:
        raise RegistryError(f"unsupported dtype {dtype!r}: use one of {', '.join(STORE_DTYPES)}")
    if len(synset) == 0:
        raise RegistryError("cannot save an empty synthetic set (0 images)")
    with np.errstate(over="ignore"):  # float16 overflow becomes inf, rejected by _validate
        images = synset.images.detach().cpu().float().numpy().astype(STORE_DTYPES[dtype])
    arrays = {
        "images": images,
        "labels": synset.labels.detach().cpu().numpy().astype("<i8"),
    }
    if synset.soft_labels is not None:
        arrays["soft_labels"] = synset.soft_labels.detach().cpu().float().numpy().astype("<f4")
    return arrays


def write_set(path: Path, synset: SyntheticSet, dtype: str = "float32") -> tuple[str, dict[str, Any]]:
    """Write ``synset`` to a new file at ``path`` (which must not exist) and fsync it.

    Returns the content sha256 and the metadata as written (with the facts filled in from
    the arrays). The caller renames the file into place.

    The HDF5 file is built in memory (:func:`encode_set`) and written with plain file I/O
    (:func:`write_new_file`): when the disk fails (full, ``ulimit -f``), HDF5 writing
    straight to disk leaves h5py objects whose finalizers print "Exception ignored"
    tracebacks and can crash the interpreter at exit; here the failure is one ``OSError``
    and ``path`` is removed. The price is a second copy of the compressed set in memory
    while it is written."""
    arrays = stored_arrays(synset, dtype)
    written = _complete_metadata(synset)
    _validate(f"cannot save as {dtype}", arrays["images"], arrays["labels"], written)
    sha = content_sha256(arrays)
    write_new_file(
        path, lambda: encode_set(arrays, written, synset.pixel_space, int(synset.factor), sha, name=str(path))
    )
    return sha, written


def write_new_file(path: Path, encode: Callable[[], bytes]) -> None:
    """Create ``path`` (it must not exist), fill it with ``encode()`` and fsync it; on any
    failure (including Ctrl-C) ``path`` is removed and the error raised.

    The file is created before ``encode`` runs, so an unwritable folder fails before the
    slow part and a concurrent ``registry check`` sees the temp file of a live writer. The
    content is written with plain file I/O, after a free-space check: a full disk or a file
    size limit is then one ``OSError``, whatever library produced the bytes."""
    with open(path, "xb", buffering=0) as fh:
        try:
            data = encode()
            _check_free_space(path.parent, len(data))
            _write_all(fh, data)
            os.fsync(fh.fileno())
        except BaseException:
            fh.close()
            path.unlink(missing_ok=True)
            raise


def encode_set(
    arrays: Mapping[str, np.ndarray],
    metadata: Mapping[str, Any],
    pixel_space: str,
    factor: int,
    sha: str,
    name: str = "set.h5",
) -> bytes:
    """The bytes of the HDF5 file holding ``arrays`` and ``metadata`` (docs/format.md).

    HDF5's core driver without a backing store keeps the whole file in memory, so nothing
    here touches the disk; ``name`` only labels the in-memory file in HDF5's messages."""
    meta = dict(metadata)
    with h5py.File(name, "w", driver="core", backing_store=False) as f:
        f.attrs["format"] = FORMAT
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["pixel_space"] = pixel_space
        f.attrs["factor"] = factor
        f.attrs["sha256"] = sha
        for key, arr in arrays.items():
            _create_array(f, key, arr)
        group = f.create_group("meta")
        group.create_dataset("config", data=to_json(meta.pop("config", {})), dtype=h5py.string_dtype())
        names = [str(n) for n in meta.pop("class_names", [])]
        group.create_dataset("class_names", data=np.array(names, dtype=object), dtype=h5py.string_dtype())
        for key in ("mean", "std"):
            f.attrs[key] = np.asarray(meta.pop(key), dtype="<f8")
        extra = {}
        for key, value in meta.items():
            if _is_attr_scalar(value):
                f.attrs[key] = value
            else:
                extra[key] = value
        group.create_dataset("extra", data=to_json(extra), dtype=h5py.string_dtype())
        f.flush()
        image: bytes = f.id.get_file_image()
    return image


def read_set(path: Path, verify: bool = True) -> tuple[SyntheticSet, str]:
    """Read a file written by :func:`write_set`; with ``verify``, check its sha256.

    Returns the set (images as float32 tensors, ``metadata["stored_dtype"]`` telling how
    they were stored) and the sha256 recorded in the file."""
    with open_h5(path) as f:
        header = _check_header(path, f)
        arrays = read_arrays(path, f)
        meta = read_metadata(f)
    if verify and content_sha256(arrays) != header["sha256"]:
        raise RegistryError(
            f"{path}: contents do not match the file's sha256 (corrupted); run `condensekit registry check`"
        )
    meta["stored_dtype"] = str(arrays["images"].dtype.name)
    soft = arrays.get("soft_labels")
    try:
        synset = SyntheticSet(
            images=torch.from_numpy(arrays["images"].astype(np.float32)),
            labels=torch.from_numpy(arrays["labels"].astype(np.int64)),
            soft_labels=None if soft is None else torch.from_numpy(soft.astype(np.float32)),
            pixel_space=header["pixel_space"],
            factor=header["factor"],
            metadata=meta,
        )
    except ValueError as exc:
        raise RegistryError(f"{path}: invalid condensekit set: {exc}") from None
    _validate(f"{path}: invalid condensekit set", arrays["images"], arrays["labels"], meta)
    return synset, header["sha256"]


def file_content_sha256(path: Path) -> str:
    """Recompute the content sha256 of a set file from its stored arrays."""
    with open_h5(path) as f:
        _check_header(path, f)
        return content_sha256(read_arrays(path, f))


def read_arrays(path: Path, f: h5py.File) -> dict[str, np.ndarray]:
    arrays = {}
    for name in ARRAYS:
        if name in f:
            try:
                arrays[name] = f[name][()]
            except (OSError, ValueError) as exc:
                raise RegistryError(f"{path}: cannot read {name!r} (corrupted): {_first_line(exc)}") from None
    return arrays


def read_metadata(f: h5py.File) -> dict[str, Any]:
    meta: dict[str, Any] = {k: _to_python(v) for k, v in f.attrs.items() if k not in _FILE_ATTRS}
    group = f.get("meta")
    if group is not None:
        meta.update(json.loads(group["extra"].asstr()[()]) if "extra" in group else {})
        meta["config"] = json.loads(group["config"].asstr()[()]) if "config" in group else {}
        meta["class_names"] = list(group["class_names"].asstr()[()]) if "class_names" in group else []
    return meta


def fsync_path(path: Path) -> None:
    """Flush a file's (or directory's) contents to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_free_space(folder: Path, size: int) -> None:
    """Refuse a write the file system has no room for before writing any of it (a full disk
    otherwise fails halfway, after the slow part). Raised as ``ENOSPC`` like the write would."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return  # no statistics (some network file systems): let the write itself tell
    if size > free:
        raise OSError(
            errno.ENOSPC, f"no space left on the device: the file needs {_mb(size)}, {_mb(free)} free", str(folder)
        )


def _write_all(fh: BinaryIO, data: bytes) -> None:
    """Write every byte: an unbuffered write may write part of ``data`` (e.g. up to a file
    size limit) and raise only on the next call."""
    view = memoryview(data)
    while view:
        count = fh.write(view)
        if not count:
            raise OSError(errno.EIO, "the file system accepted no data")
        view = view[count:]


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def _check_header(path: Path, f: h5py.File) -> dict[str, Any]:
    fmt = f.attrs.get("format")
    if fmt != FORMAT:
        raise RegistryError(
            f"{path}: not a condensekit set (format attribute is {_to_python(fmt)!r}, expected {FORMAT!r})"
        )
    version = int(f.attrs.get("format_version", -1))
    if version > FORMAT_VERSION or version < 1:
        raise RegistryError(
            f"{path}: format_version {version} is not supported by this condensekit "
            f"(reads 1..{FORMAT_VERSION}); upgrade condensekit"
        )
    missing = [k for k in ("sha256", "pixel_space", "factor") if k not in f.attrs] + [
        k for k in ("images", "labels") if k not in f
    ]
    if missing:
        raise RegistryError(f"{path}: invalid condensekit set, missing {', '.join(missing)}")
    space = _to_python(f.attrs["pixel_space"])
    if space not in PIXEL_SPACES:
        raise RegistryError(f"{path}: invalid pixel_space {space!r}")
    return {
        "format_version": version,
        "sha256": _to_python(f.attrs["sha256"]),
        "pixel_space": space,
        "factor": int(f.attrs["factor"]),
    }


def _validate(where: str, images: np.ndarray, labels: np.ndarray, meta: Mapping[str, Any]) -> None:
    """Content checks a set must pass to be usable, on save and on load (``where`` starts
    the error message)."""
    channels = images.shape[1]
    for key in ("mean", "std"):
        if len(meta.get(key) or []) != channels:
            raise RegistryError(f"{where}: metadata {key!r} must have {channels} values (one per channel)")
    num_classes = int(meta.get("num_classes") or 0)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise RegistryError(f"{where}: labels outside [0, {num_classes}) (num_classes)")
    if not np.isfinite(images).all():
        raise RegistryError(f"{where}: images contain NaN or infinity")


def _complete_metadata(synset: SyntheticSet) -> dict[str, Any]:
    """The metadata to write: registry-owned keys dropped, derivable facts filled in."""
    from condensekit import __version__

    # pixel_space and factor are the set's own fields, written as file attributes.
    dropped = REGISTRY_KEYS + _FILE_ATTRS
    kept = {k: v for k, v in synset.metadata.items() if k not in dropped and v is not None}
    meta: dict[str, Any] = json.loads(to_json(kept))  # plain JSON types only (tuples, numpy and torch scalars)
    _, c, h, _ = synset.images.shape
    for key in ("dataset", "mean", "std"):
        if key not in meta:
            raise RegistryError(
                f"cannot save: the set's metadata has no {key!r} (a set must say "
                "which dataset and normalization it belongs to)"
            )
    meta.setdefault("channels", c)
    meta.setdefault("resolution", h)
    meta.setdefault("class_names", [])
    meta.setdefault("num_classes", len(meta["class_names"]) or int(synset.labels.max()) + 1)
    meta.setdefault("condensekit_version", __version__)
    meta.setdefault("created", dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    return meta


def _create_array(f: h5py.File, name: str, arr: np.ndarray) -> None:
    row = max(1, arr[0].nbytes if arr.ndim > 1 else arr.itemsize)
    chunks = (max(1, min(arr.shape[0], _CHUNK_BYTES // row)), *arr.shape[1:])
    f.create_dataset(name, data=arr, chunks=chunks, compression="gzip", compression_opts=4, shuffle=True)


def _is_attr_scalar(value: Any) -> bool:
    if isinstance(value, str):
        return len(value) <= _MAX_ATTR_STR
    return isinstance(value, (bool, int, float))


def to_json(value: Any) -> str:
    """JSON text of plain data; numpy/torch scalars and arrays, paths and sets are converted."""
    return json.dumps(value, default=_json_default, sort_keys=True)


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.generic, torch.Tensor)) and getattr(value, "ndim", 0) == 0:
        return value.item()
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return value.tolist()
    if isinstance(value, (Path, dt.datetime, dt.date)):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise RegistryError(f"cannot store a value of type {type(value).__name__}: not JSON-serializable")


def _to_python(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
