"""The import-format registry, auto detection, the weights-only loader and the shared checks."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from condensekit.errors import RegistryError, UsageError
from condensekit.sharing.formats import (
    AUTO,
    ImportOptions,
    detect,
    format_names,
    import_formats,
    import_source,
    load_torch,
    probabilities,
    read_source,
    zca_statistics,
)


class _RunsCode:
    """A pickle payload that runs a shell command when unpickled (what a hostile file does)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def test_every_peer_format_is_registered_in_detection_order() -> None:
    assert format_names() == [AUTO, "condensekit", "pt", "hf", "datadam", "dc", "mtt", "dance", "rded"]
    assert all(fmt.expects for fmt in import_formats().values())


def test_a_hostile_pickle_is_refused_and_never_run(tmp_path: Path, reg, nothing_written) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "res_DM_CIFAR10_ConvNet_1ipc.pt"
    torch.save({"data": [[torch.zeros(10, 3, 32, 32), _RunsCode(marker)]]}, path)
    with pytest.raises(UsageError, match=r"refused: it holds pickled objects .* \(torch.load with weights_only=True: "):
        import_source(path, reg)
    assert not marker.exists()
    nothing_written(reg)


def test_a_plain_pickle_is_refused_in_one_line(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "images_best.pt"
    path.write_bytes(pickle.dumps(_RunsCode(marker)))
    with pytest.raises(UsageError) as caught:
        load_torch(path)
    assert "not a loadable tensor file" in str(caught.value) and "\n" not in str(caught.value)
    assert not marker.exists()


def test_numpy_scalars_load_as_dc_saves_them(tmp_path: Path) -> None:
    path = tmp_path / "accs.pt"
    torch.save({"accs": [np.float64(0.5), np.int64(3)]}, path)
    assert load_torch(path) == {"accs": [0.5, 3]}


def test_the_error_class_is_the_callers(tmp_path: Path) -> None:
    (tmp_path / "notes.pt").write_text("not a torch file")
    with pytest.raises(RegistryError, match="not a loadable tensor file"):
        load_torch(tmp_path / "notes.pt", error=RegistryError)


def test_auto_says_what_it_found(tmp_path: Path, real_images) -> None:
    images, labels = real_images(1)
    torch.save([images, labels], tmp_path / "data_best.pt")
    fmt, probe = detect(tmp_path)
    assert fmt.name == "dance"
    assert probe.found == "DANCE-style data_best.pt: images (10, 3, 32, 32), targets (10,)"


def test_nothing_recognized_lists_what_auto_tried(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(UsageError, match=r"no import format recognizes it \(auto tried condensekit: .*; rded: "):
        read_source(tmp_path)


def test_an_explicit_format_that_does_not_match_is_refused(tmp_path: Path, real_images) -> None:
    images, labels = real_images(1)
    torch.save([images, labels], tmp_path / "data_best.pt")
    with pytest.raises(UsageError, match=r"is not an MTT-style images_best.pt \+ labels_best.pt pair .*--format mtt"):
        read_source(tmp_path, "mtt")


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(UsageError, match="unknown import format 'npz'; choose one of auto, condensekit, pt, hf"):
        read_source("anything", "npz")


def test_an_option_the_format_does_not_take_is_refused(tmp_path: Path, reg, real_images, nothing_written) -> None:
    images, labels = real_images(1)
    torch.save(images, tmp_path / "images_best.pt")
    torch.save(labels, tmp_path / "labels_best.pt")
    with pytest.raises(UsageError, match=r"is mtt input, which takes --data, --no-zca-check, not --exp"):
        import_source(tmp_path, reg, options=ImportOptions(dataset="cifar10-mini", exp=0))
    nothing_written(reg)


def test_a_missing_path_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file or directory"):
        read_source(tmp_path / "missing")


def test_an_invalid_name_is_refused_before_reading(tmp_path: Path, reg) -> None:
    with pytest.raises(RegistryError, match="invalid name 'no/slash'"):
        import_source(tmp_path / "missing", reg, name="no/slash")


def test_each_import_records_its_source(tmp_path: Path, real_images) -> None:
    images, labels = real_images(1)
    torch.save(images, tmp_path / "images_best.pt")
    torch.save(labels, tmp_path / "labels_best.pt")
    meta = read_source(tmp_path / "images_best.pt", options=ImportOptions(dataset="cifar10-mini")).synset.metadata
    assert meta["source"] == str(tmp_path / "images_best.pt")
    origin = meta["imported_from"]
    assert (origin["format"], origin["path"], origin["detected"]) == ("mtt", str(tmp_path / "images_best.pt"), True)
    assert origin["found"].startswith("MTT-style images_best.pt") and "neighbour_correlation" in origin


def test_logits_become_probabilities_and_probabilities_stay() -> None:
    probs = torch.tensor([[0.25, 0.75], [1.0, 0.0]])
    kept, how = probabilities(probs)
    assert torch.equal(kept, probs) and how == "class probabilities, kept"
    logits = torch.tensor([[2.0, -1.0]])
    soft, how = probabilities(logits)
    assert torch.allclose(soft, torch.softmax(logits, 1)) and how.startswith("not probabilities")


def test_natural_images_are_smooth_and_noise_is_not(real_images) -> None:
    images, _ = real_images(5)
    correlation, std = zca_statistics(images)
    assert correlation > 0.6 and std > 0.8
    noise_correlation, _ = zca_statistics(torch.randn(50, 3, 32, 32, generator=torch.Generator().manual_seed(0)))
    assert abs(noise_correlation) < 0.05
