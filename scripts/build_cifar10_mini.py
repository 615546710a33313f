#!/usr/bin/env python3
"""Build ``condensekit/data/embedded/cifar10-mini.npz``, the embedded default dataset.

A class-balanced subset of real CIFAR-10: 200 train + 100 test images per class, taken from
the lossless CIFAR-10 arrays in ``../shared/data/cifar10-npz/`` (``train.npz``/``test.npz``,
rows class-major, sorted by source file name within a class; see that folder's README).

Selection (fixed, reproducible): for split ``s`` (train = 0, test = 1) and class ``c``, the
rows of class ``c`` are permuted with ``np.random.default_rng([SEED, s, c])``; the first
``k`` (200 or 100) positions are kept and sorted, so rows stay in source order.

Output keys: ``x_train`` (2000, 32, 32, 3) uint8, ``y_train`` (2000,) int64, ``x_test``
(1000, 32, 32, 3), ``y_test`` (1000,), and ``files_train``/``files_test``: the source image
of every row (from ``train_files.txt``/``test_files.txt``), so the subset can be audited.

The file is deflate-compressed like ``np.savez_compressed`` writes it, but with fixed zip
timestamps, so rebuilding gives a byte-identical file (``np.savez_compressed`` stamps the
current time). The script asserts the SHA-256 of every array against ``EXPECTED``.

    .venv/bin/python scripts/build_cifar10_mini.py [--source DIR] [--out FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO.parent / "shared" / "data" / "cifar10-npz"
DEFAULT_OUT = REPO / "condensekit" / "data" / "embedded" / "cifar10-mini.npz"
SEED = 20240613
PER_CLASS = {"train": 200, "test": 100}
NUM_CLASSES = 10

#: SHA-256 of each array's dtype, shape and bytes (see :func:`digest`).
EXPECTED = {
    "x_train": "005c0f840f6ad0d7aed1199e474185488ecdff823285f45b3580ab39bf4a4ce5",
    "y_train": "be95c89136246a4db44b9d8de7f921420289dc2bfb327024d192ef5a51f973b6",
    "files_train": "03ef38843d776d29c34c60bcc6be0d42b4d1a0b85f17e442e38657ff8169adc8",
    "x_test": "93f71d2e234baa2b9b6e6fbc1becf9dabd22271fb04dc33307d4c50b36f1b5b6",
    "y_test": "af14d407348f124f3f84987cf111d73e323164066c4f06b17ad5c3c2dee3302b",
    "files_test": "4201b0b6258f080af96ce71c843fed24c203aef63cf4c135fecd60295a56dbad",
}


def select(y: np.ndarray, split: str) -> np.ndarray:
    """Row indices of the subset of one split: ``PER_CLASS[split]`` per class, in source order."""
    split_id = list(PER_CLASS).index(split)
    picked = []
    for c in range(NUM_CLASSES):
        rows = np.flatnonzero(y == c)
        if len(rows) < PER_CLASS[split]:
            raise SystemExit(f"class {c} of the {split} split has {len(rows)} images, need {PER_CLASS[split]}")
        keep = np.random.default_rng([SEED, split_id, c]).permutation(len(rows))[: PER_CLASS[split]]
        picked.append(rows[np.sort(keep)])
    return np.concatenate(picked)


def build(source: Path) -> dict[str, np.ndarray]:
    """The arrays of ``cifar10-mini.npz`` from the CIFAR-10 arrays in ``source``."""
    arrays: dict[str, np.ndarray] = {}
    for split in PER_CLASS:
        with np.load(source / f"{split}.npz") as data:
            x, y = data["x"], data["y"].astype(np.int64)
        names = np.array((source / f"{split}_files.txt").read_text().split())
        if not (len(names) == len(x) == len(y)):
            raise SystemExit(f"{source}: {split}.npz and {split}_files.txt disagree on the number of rows")
        idx = select(y, split)
        arrays[f"x_{split}"] = np.ascontiguousarray(x[idx])
        arrays[f"y_{split}"] = y[idx]
        arrays[f"files_{split}"] = names[idx]
    return arrays


def digest(a: np.ndarray) -> str:
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """A compressed ``.npz`` with fixed timestamps, written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh, zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
            for key, array in arrays.items():
                info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                with zf.open(info, "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, array, allow_pickle=False)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="folder with CIFAR-10 train.npz/test.npz")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the .npz file to write")
    args = parser.parse_args(argv)
    if not (args.source / "train.npz").is_file():
        print(f"error: {args.source}/train.npz not found; pass --source DIR (the cifar10-npz folder)", file=sys.stderr)
        return 2
    arrays = build(args.source)
    wrong = []
    for key, array in arrays.items():
        sha = digest(array)
        print(f"{key:12s} {array.dtype!s:6s} {array.shape!s:18s} sha256 {sha}")
        if sha != EXPECTED[key]:
            wrong.append(key)
    if wrong:
        print(
            f"error: {', '.join(wrong)} differ from EXPECTED; the source data or the selection changed", file=sys.stderr
        )
        return 1
    write_npz(args.out, arrays)
    file_sha = hashlib.sha256(args.out.read_bytes()).hexdigest()
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes, sha256 {file_sha})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
