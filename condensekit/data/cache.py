"""The array cache: one ``.npz`` per split, written once, atomically, and memory-mapped on reuse.

Layout (documented in :mod:`condensekit.data`): ``<folder>/train.npz`` and ``<folder>/test.npz``,
each with ``x`` (uint8, N x H x W x C) and ``y`` (int64, N). Files are written uncompressed
with ``np.savez``: any NumPy reads them with ``np.load``, and because a stored (uncompressed)
zip member is one contiguous byte range, :func:`read_arrays` memory-maps ``x`` in place
instead of reading it into RAM. Compressed files (such as the CIFAR-10 arrays a data root may
provide) are read whole. Nothing here imports torch.
"""

from __future__ import annotations

import os
import struct
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from condensekit.errors import DatasetError

SPLITS: tuple[str, ...] = ("train", "test")

#: Bytes held at once while an array set becomes a class-sorted tensor: the sorted copy
#: plus the tensor :class:`~condensekit.data.base.RealData` makes of it.
LOAD_COPIES = 2


def folder_name(name: str, resolution: int, native_resolution: int | None) -> str:
    """``<name>-npz``, or ``<name>-<res>-npz`` when the images were resized."""
    return f"{name}-npz" if resolution == native_resolution else f"{name}-{resolution}-npz"


def write_arrays(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    """Write ``x``/``y`` to ``path`` through a temporary file and ``os.replace`` (atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, x=x, y=y)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a cache is as readable as any file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _member_header(path: Path, key: str) -> tuple[tuple[int, ...], np.dtype, bool, int | None]:
    """Shape, dtype, Fortran order and (for stored members) the data offset of ``key``."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(f"{key}.npy")
        with zf.open(info) as member:
            version = np.lib.format.read_magic(member)
            read_header = (
                np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            )
            shape, fortran, dtype = read_header(member)
            header_len = member.tell()
    if info.compress_type != zipfile.ZIP_STORED:
        return shape, dtype, fortran, None
    with open(path, "rb") as fh:
        # The local header (30 bytes + name + extra field) precedes the member's bytes; its
        # extra field can differ from the central directory's, so read it from the file.
        fh.seek(info.header_offset)
        local = fh.read(30)
        name_len, extra_len = struct.unpack("<HH", local[26:30])
    return shape, dtype, fortran, info.header_offset + 30 + name_len + extra_len + header_len


def peek(path: Path) -> tuple[int, ...]:
    """The shape of ``x`` in ``path``, without loading it."""
    try:
        shape, _, _, _ = _member_header(path, "x")
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"array cache {path} is unreadable ({exc}); delete it to rebuild it") from None
    return tuple(shape)


def read_arrays(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``x`` (memory-mapped when stored uncompressed) and ``y`` from one cache file."""
    try:
        shape, dtype, fortran, offset = _member_header(path, "x")
        if offset is not None:
            # Copy-on-write: torch.from_numpy accepts it without a read-only warning, and
            # nothing is ever written back to the file.
            x = np.memmap(path, dtype=dtype, mode="c", offset=offset, shape=shape, order="F" if fortran else "C")
        else:
            with np.load(path) as data:
                x = data["x"]
        with np.load(path) as data:
            y = data["y"]
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"array cache {path} is unreadable ({exc}); delete it to rebuild it") from None
    return x, y


def read_labels(path: Path) -> np.ndarray:
    """Only ``y`` of one cache file (a zip member read on its own: the images are not touched),
    for checks that need the class sizes before a run loads anything."""
    try:
        with np.load(path) as data:
            return np.asarray(data["y"], dtype=np.int64)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"array cache {path} is unreadable ({exc}); delete it to rebuild it") from None


def available_memory() -> int | None:
    """``MemAvailable`` from ``/proc/meminfo`` in bytes; None where it cannot be read."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB"


def ensure_fits(what: str, shape: tuple[int, ...]) -> None:
    """Refuse to load ``shape`` uint8 images when the peak while loading exceeds free memory."""
    nbytes = int(np.prod(shape, dtype=np.int64))
    free = available_memory()
    if free is not None and LOAD_COPIES * nbytes > free:
        raise DatasetError(
            f"{what} is {shape[0]} images of {'x'.join(map(str, shape[1:]))} = {_gb(nbytes)} "
            f"({_gb(LOAD_COPIES * nbytes)} while loading) but only {_gb(free)} of memory is available; "
            f"choose a lower resolution (--res) or a machine with more memory"
        )
