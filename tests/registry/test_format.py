"""The HDF5 set file: round trip, documented layout, sha256 definition, bad files."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from condensekit.errors import RegistryError
from condensekit.registry import format as h5format
from condensekit.synthetic import SyntheticSet

Factory = Callable[..., SyntheticSet]


def test_round_trip_is_bit_exact(tmp_path: Path, synset_factory: Factory) -> None:
    synset = synset_factory(ipc=3, soft=True, factor=2, pixel_space="unit")
    sha, written = h5format.write_set(tmp_path / "s.h5", synset)
    loaded, stored_sha = h5format.read_set(tmp_path / "s.h5")
    assert stored_sha == sha
    assert written == {k: v for k, v in loaded.metadata.items() if k != "stored_dtype"}
    assert torch.equal(loaded.images, synset.images) and loaded.images.dtype == torch.float32
    assert torch.equal(loaded.labels, synset.labels) and loaded.labels.dtype == torch.int64
    assert torch.equal(loaded.soft_labels, synset.soft_labels)
    assert (loaded.pixel_space, loaded.factor) == ("unit", 2)
    expected = {k: v for k, v in synset.metadata.items() if v is not None}
    assert {k: loaded.metadata[k] for k in expected} == expected
    assert "git_commit" not in loaded.metadata  # unknown values are absent, not "None"
    assert loaded.metadata["stored_dtype"] == "float32"


def test_file_follows_the_documented_layout(tmp_path: Path, synset_factory: Factory) -> None:
    synset = synset_factory(ipc=2)
    h5format.write_set(tmp_path / "s.h5", synset)
    with h5py.File(tmp_path / "s.h5", "r") as f:  # plain h5py, as docs/format.md shows
        assert f.attrs["format"] == "condensekit-synset" and f.attrs["format_version"] == 1
        assert f["images"].shape == (20, 3, 32, 32) and f["images"].dtype == np.float32
        assert f["labels"].dtype == np.int64 and "soft_labels" not in f
        assert f["images"].compression == "gzip" and f["images"].shuffle
        assert f.attrs["pixel_space"] == "normalized" and f.attrs["factor"] == 1
        assert f.attrs["method"] == "dm" and f.attrs["ipc"] == 2 and f.attrs["resolution"] == 32
        np.testing.assert_allclose(f.attrs["std"], [0.2023, 0.1994, 0.2010])
        assert json.loads(f["meta/config"].asstr()[()])["nested"] == {"dsa": True}
        assert list(f["meta/class_names"].asstr()[()])[:2] == ["airplane", "automobile"]
        assert json.loads(f["meta/extra"].asstr()[()]) == {}


def test_sha256_matches_the_documented_definition(tmp_path: Path, synset_factory: Factory) -> None:
    """Recomputed here from the spec in docs/format.md, independently of the implementation."""
    h5format.write_set(tmp_path / "s.h5", synset_factory(ipc=1, soft=True))
    digest = hashlib.sha256()
    with h5py.File(tmp_path / "s.h5", "r") as f:
        for name in ("images", "labels", "soft_labels"):
            arr = np.ascontiguousarray(f[name][()])
            digest.update(f"{name}|{arr.dtype.str}|{','.join(map(str, arr.shape))}\n".encode())
            digest.update(arr.tobytes())
        assert f.attrs["sha256"] == digest.hexdigest()


def test_float16_storage_rounds_and_hashes_the_stored_arrays(tmp_path: Path, synset_factory: Factory) -> None:
    synset = synset_factory(ipc=2)
    sha, _ = h5format.write_set(tmp_path / "s.h5", synset, dtype="float16")
    loaded, _ = h5format.read_set(tmp_path / "s.h5")
    assert torch.equal(loaded.images, synset.images.half().float())
    assert not torch.equal(loaded.images, synset.images)
    assert loaded.metadata["stored_dtype"] == "float16"
    assert sha != h5format.content_sha256(h5format.stored_arrays(synset, "float32"))
    assert (tmp_path / "s.h5").stat().st_size < 0.7 * 20 * 3 * 32 * 32 * 4


def test_long_metadata_goes_to_datasets_not_attributes(tmp_path: Path, synset_factory: Factory) -> None:
    names = [f"class-{i:04d}-" + "x" * 80 for i in range(1000)]  # ~90 KB of class names
    config = {"schedule": list(range(20000))}  # ~110 KB of JSON
    synset = synset_factory(ipc=1, class_names=names, config=config, num_classes=1000, note="y" * 10000)
    h5format.write_set(tmp_path / "s.h5", synset)
    loaded, _ = h5format.read_set(tmp_path / "s.h5")
    assert loaded.metadata["class_names"] == names
    assert loaded.metadata["config"] == config
    assert loaded.metadata["note"] == "y" * 10000
    with h5py.File(tmp_path / "s.h5", "r") as f:
        assert all(len(str(v)) < 65536 for v in f.attrs.values())


def test_unsupported_dtype_is_rejected(tmp_path: Path, synset_factory: Factory) -> None:
    with pytest.raises(RegistryError, match="unsupported dtype 'uint8'"):
        h5format.write_set(tmp_path / "s.h5", synset_factory(), dtype="uint8")
    assert not (tmp_path / "s.h5").exists()


def test_non_finite_images_are_rejected_on_save(tmp_path: Path, synset_factory: Factory) -> None:
    synset = synset_factory(ipc=1)
    synset.images[3, 0, 0, 0] = float("nan")
    with pytest.raises(RegistryError, match="NaN or infinity"):
        h5format.write_set(tmp_path / "s.h5", synset)


def test_float16_overflow_is_rejected(tmp_path: Path, synset_factory: Factory) -> None:
    synset = synset_factory(ipc=1)
    synset.images[0, 0, 0, 0] = 1e6
    with pytest.raises(RegistryError, match="cannot save as float16: images contain NaN or infinity"):
        h5format.write_set(tmp_path / "s.h5", synset, dtype="float16")


def test_metadata_without_normalization_is_rejected(tmp_path: Path, synset_factory: Factory) -> None:
    synset = synset_factory(ipc=1)
    del synset.metadata["std"]
    with pytest.raises(RegistryError, match="no 'std'"):
        h5format.write_set(tmp_path / "s.h5", synset)


def test_foreign_hdf5_is_not_a_set(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["data"] = np.zeros(3)
    with pytest.raises(RegistryError, match="not a condensekit set"):
        h5format.read_set(tmp_path / "other.h5")


def test_newer_format_version_asks_for_an_upgrade(tmp_path: Path, synset_factory: Factory) -> None:
    path = tmp_path / "s.h5"
    h5format.write_set(path, synset_factory(ipc=1))
    with h5py.File(path, "a") as f:
        f.attrs["format_version"] = 99
    with pytest.raises(RegistryError, match=r"format_version 99 .* upgrade condensekit"):
        h5format.read_set(path)


def test_non_hdf5_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "x.h5").write_text("hello")
    with pytest.raises(RegistryError, match="not a readable HDF5 file"):
        h5format.read_set(tmp_path / "x.h5")


def test_tampered_arrays_fail_the_sha256_check(tmp_path: Path, synset_factory: Factory) -> None:
    path = tmp_path / "s.h5"
    h5format.write_set(path, synset_factory(ipc=1))
    with h5py.File(path, "a") as f:
        f["labels"][0] = 9
    with pytest.raises(RegistryError, match="do not match the file's sha256"):
        h5format.read_set(path)


def test_file_lock_failure_names_the_environment_variable(tmp_path: Path, synset_factory: Factory) -> None:
    path = tmp_path / "s.h5"
    h5format.write_set(path, synset_factory(ipc=1))
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # what another writer's HDF5 lock looks like
        with pytest.raises(RegistryError, match="HDF5_USE_FILE_LOCKING=FALSE"):
            h5format.read_set(path)
    finally:
        os.close(fd)
