"""Peers' native files, written in each code base's own layout, imported into a real registry."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from condensekit.errors import UsageError
from condensekit.registry import Registry
from condensekit.sharing.formats import ImportOptions, import_source, read_source
from condensekit.synthetic import decode_multiformation


def _dc_file(folder: Path, images: list[torch.Tensor], labels: list[torch.Tensor], name: str) -> Path:
    """What DC/DSA/DM's main.py saves: ``{'data': [[images, labels], ...], 'accs_all_exps': ...}``
    with the accuracies as NumPy floats, as its evaluate_synset returns them."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    accs = {"ConvNet": [np.float64(0.41), np.float64(0.43)]}
    torch.save({"data": [[i.cpu(), y.cpu()] for i, y in zip(images, labels, strict=True)], "accs_all_exps": accs}, path)
    return path


# --- DC / DSA / DM ------------------------------------------------------------------------


def test_a_dc_results_file_imports_and_evaluates(tmp_path, reg, real_images, one_epoch_accuracy) -> None:
    images, labels = real_images(10)
    path = _dc_file(tmp_path / "result", [images], [labels], "res_DM_CIFAR10_ConvNet_10ipc.pt")
    saved, imported = import_source(path, reg, options=ImportOptions(dataset="cifar10-mini"))
    assert imported.format == "dc" and saved.ref == "dc-cifar10-mini-ipc10:v1"
    stored = reg.load(saved.ref)
    assert torch.equal(stored.images, images) and torch.equal(stored.labels, labels)
    meta = stored.metadata
    assert (meta["method"], meta["ipc"], meta["backbone"]) == ("dm", 10, "convnet")
    origin = meta["imported_from"]
    assert origin["format"] == "dc" and origin["detected"] and origin["path"] == str(path)
    assert origin["file_name"] == {"method": "DM", "dataset": "CIFAR10", "model": "ConvNet", "ipc": "10"}
    assert origin["reported_accuracies"] == {"ConvNet": [0.41, 0.43]}
    assert 0.0 <= one_epoch_accuracy(stored) <= 100.0


def test_the_dataset_comes_from_the_file_name(tmp_path, real_images) -> None:
    images, labels = real_images(1)
    path = _dc_file(tmp_path, [images], [labels], "res_DC_CIFAR10_ConvNet_1ipc.pt")
    imported = read_source(path)
    assert imported.synset.metadata["dataset"] == "cifar10" and imported.synset.metadata["method"] == "dc"


def test_exp_picks_one_experiment(tmp_path, real_images) -> None:
    first, labels = real_images(1)
    second = first + 0.5
    path = _dc_file(tmp_path, [first, second], [labels, labels], "res_DSA_CIFAR10_ConvNet_1ipc.pt")
    imported = read_source(path, options=ImportOptions(dataset="cifar10-mini", exp=1))
    assert torch.equal(imported.synset.images, second) and imported.facts["experiment"] == 1


def test_several_experiments_need_exp(tmp_path, reg, real_images, nothing_written) -> None:
    images, labels = real_images(1)
    path = _dc_file(tmp_path, [images, images], [labels, labels], "res_DM_CIFAR10_ConvNet_1ipc.pt")
    with pytest.raises(UsageError, match=r"holds 2 experiments; pick one with --exp 0\.\.1"):
        import_source(path, reg)
    with pytest.raises(UsageError, match="--exp 2 is out of range"):
        import_source(path, reg, options=ImportOptions(exp=2))
    nothing_written(reg)


def test_the_ipc_of_the_file_name_must_match(tmp_path, reg, real_images, nothing_written) -> None:
    images, labels = real_images(2)
    path = _dc_file(tmp_path, [images], [labels], "res_DM_CIFAR10_ConvNet_10ipc.pt")
    with pytest.raises(UsageError, match="says 10 images per class but holds 2 per class"):
        import_source(path, reg)
    nothing_written(reg)


def test_a_datadam_file_is_told_apart_by_its_name(tmp_path, reg, real_images, one_epoch_accuracy) -> None:
    """DataDAM's main_DataDAM.py: the DC dict, saved as res_DataDAM_..._<ipc>ipc_.pt."""
    images, labels = real_images(1)
    path = _dc_file(tmp_path, [images], [labels], "res_DataDAM_CIFAR10_ConvNet_1ipc_.pt")
    saved, imported = import_source(path, reg, options=ImportOptions(dataset="cifar10-mini"))
    assert imported.format == "datadam" and saved.name == "datadam-cifar10-mini-ipc1"
    stored = reg.load(saved.ref)
    assert stored.metadata["method"] == "datadam"
    assert 0.0 <= one_epoch_accuracy(stored) <= 100.0


def test_format_datadam_refuses_another_method(tmp_path, real_images) -> None:
    images, labels = real_images(1)
    path = _dc_file(tmp_path, [images], [labels], "res_DM_CIFAR10_ConvNet_1ipc.pt")
    with pytest.raises(UsageError, match=r"is not a DataDAM results file .*\(--format datadam\)"):
        read_source(path, "datadam")


# --- MTT ----------------------------------------------------------------------------------


def test_an_mtt_pair_imports_and_evaluates(tmp_path, reg, real_images, one_epoch_accuracy) -> None:
    images, labels = real_images(1)
    run = tmp_path / "logged_files" / "CIFAR10" / "run-1"
    run.mkdir(parents=True)
    torch.save(images, run / "images_best.pt")
    torch.save(labels, run / "labels_best.pt")
    saved, imported = import_source(run, reg, options=ImportOptions(dataset="cifar10-mini"))
    assert imported.format == "mtt" and "images_best.pt (10, 3, 32, 32)" in imported.found
    stored = reg.load(saved.ref)
    assert torch.equal(stored.images, images) and stored.soft_labels is None
    assert stored.metadata["imported_from"]["zca_check"] == "statistics"
    assert 0.0 <= one_epoch_accuracy(stored) <= 100.0


def test_mtt_learned_soft_labels_and_lr_are_kept(tmp_path, real_images) -> None:
    images, labels = real_images(1)
    logits = torch.nn.functional.one_hot(labels, 10).float() * 3.0 + 0.1
    torch.save(images, tmp_path / "images_best.pt")
    torch.save(logits, tmp_path / "labels_best.pt")
    torch.save(torch.tensor(0.0123), tmp_path / "lr_best.pt")
    imported = read_source(tmp_path / "images_best.pt", "mtt", ImportOptions(dataset="cifar10-mini"))
    synset = imported.synset
    assert torch.allclose(synset.soft_labels, torch.softmax(logits, 1)) and torch.equal(synset.labels, labels)
    assert synset.metadata["learned_lr"] == pytest.approx(0.0123)
    assert imported.facts["soft_labels"] == "not probabilities (logits): softmax applied"


def test_mtt_takes_the_dataset_from_its_logged_files_path(tmp_path, real_images) -> None:
    images, labels = real_images(1)
    run = tmp_path / "logged_files" / "CIFAR10" / "run-7"
    run.mkdir(parents=True)
    torch.save(images, run / "images_1000.pt")
    torch.save(labels, run / "labels_1000.pt")
    imported = read_source(run)
    assert imported.synset.metadata["dataset"] == "cifar10" and imported.facts["tag"] == "1000"


def _zca(images: torch.Tensor, eps: float = 0.1) -> torch.Tensor:
    """ZCA whitening as kornia's ZCAWhitening (MTT's --zca) computes it, fitted on ``images``
    and applied to them: ``(x - mean) V diag((S + eps)^-1/2) V^T`` with ``V S V^T`` the
    covariance. For the fitted rows themselves this equals ``U diag((L/(n-1) + eps)^-1/2) U^T
    (x - mean)`` with ``U L U^T`` the n x n Gram matrix of the centred rows: the same result
    as the 3072 x 3072 decomposition, at a fraction of the cost."""
    flat = images.reshape(images.shape[0], -1).double()
    centred = flat - flat.mean(0, keepdim=True)
    gram_values, gram_vectors = torch.linalg.eigh(centred @ centred.T)
    scale = torch.rsqrt(gram_values.clamp_min(0) / (flat.shape[0] - 1) + eps)
    return ((gram_vectors * scale) @ (gram_vectors.T @ centred)).float().reshape_as(images)


def test_zca_whitened_images_are_refused(tmp_path, reg, real_images, nothing_written) -> None:
    fit, _ = real_images(50)
    whitened = _zca(fit)[::50]  # the first image of each class
    torch.save(whitened, tmp_path / "images_best.pt")
    torch.save(torch.arange(10), tmp_path / "labels_best.pt")
    with pytest.raises(UsageError, match=r"look ZCA-whitened .*--no-zca-check"):
        import_source(tmp_path, reg, options=ImportOptions(dataset="cifar10-mini"))
    nothing_written(reg)


def test_a_zca_flag_beside_the_files_is_refused(tmp_path, reg, real_images, nothing_written) -> None:
    images, labels = real_images(1)
    torch.save(images, tmp_path / "images_best.pt")
    torch.save(labels, tmp_path / "labels_best.pt")
    (tmp_path / "args.json").write_text(json.dumps({"zca": True, "dataset": "CIFAR10"}))
    options = ImportOptions(dataset="cifar10-mini", zca_check=False)
    with pytest.raises(UsageError, match=r"ZCA-whitened images \(args.json beside it says zca: True\)"):
        import_source(tmp_path, reg, options=options)
    nothing_written(reg)


# --- DANCE --------------------------------------------------------------------------------


def _dance_run(folder: Path, images: torch.Tensor, labels: torch.Tensor, **args: object) -> Path:
    """What DANCE.py saves: ``torch.save([synset.data, synset.targets], 'data_best.pt')`` and
    ``json.dump(args.__dict__, 'args.log')``."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save([images, labels], folder / "data_best.pt")
    if args:
        (folder / "args.log").write_text(json.dumps(args, indent=3))
    return folder


def test_a_dance_run_imports_with_its_factor_and_decodes(tmp_path, reg, real_images, one_epoch_accuracy) -> None:
    unit, labels = real_images(1, space="unit")
    run = _dance_run(tmp_path / "dance", unit, labels, dataset="cifar10", ipc=1, factor=2, decode_type="single")
    saved, imported = import_source(run, reg, options=ImportOptions(dataset="cifar10-mini"))
    assert imported.format == "dance" and imported.facts["factor_from"] == "args.log"
    stored = reg.load(saved.ref)
    assert (stored.pixel_space, stored.factor) == ("unit", 2) and torch.equal(stored.images, unit)
    decoded = stored.decoded()
    assert torch.equal(decoded.images, decode_multiformation(unit, 2)) and len(decoded) == 40
    assert 0.0 <= one_epoch_accuracy(stored) <= 100.0


def test_a_dance_file_without_args_log_needs_factor(tmp_path, reg, real_images, nothing_written) -> None:
    unit, labels = real_images(1, space="unit")
    run = _dance_run(tmp_path / "dance", unit, labels)
    with pytest.raises(UsageError, match="pass --factor F"):
        import_source(run / "data_best.pt", reg, options=ImportOptions(dataset="cifar10-mini"))
    nothing_written(reg)
    imported = read_source(run / "data_best.pt", "dance", ImportOptions(dataset="cifar10-mini", factor=2))
    assert imported.synset.factor == 2 and imported.facts["factor_from"] == "--factor"


def test_dance_decode_types_other_than_single_are_refused(tmp_path, real_images) -> None:
    unit, labels = real_images(1, space="unit")
    run = _dance_run(tmp_path / "dance", unit, labels, dataset="cifar10", factor=2, decode_type="multi")
    with pytest.raises(UsageError, match="decode_type 'multi'"):
        read_source(run)


# --- RDED / SRe2L ImageFolder -------------------------------------------------------------


def _image_folder(folder: Path, unit: torch.Tensor, labels: torch.Tensor, names: list[str]) -> Path:
    for i, (image, label) in enumerate(zip(unit, labels.tolist(), strict=True)):
        target = folder / names[label]
        target.mkdir(parents=True, exist_ok=True)
        pixels = (image.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
        Image.fromarray(pixels).save(target / f"{i:05d}.png")
    return folder


def test_an_rded_folder_with_soft_labels_imports_and_evaluates(tmp_path, reg, real_images, one_epoch_accuracy) -> None:
    unit, labels = real_images(2, space="unit")
    folder = _image_folder(tmp_path / "syn", unit, labels, [f"new{c:03d}" for c in range(10)])
    soft = torch.softmax(torch.randn(20, 10, generator=torch.Generator().manual_seed(0)), 1)
    torch.save(soft, tmp_path / "teacher_soft.pt")
    options = ImportOptions(dataset="cifar10-mini", soft_labels=tmp_path / "teacher_soft.pt")
    saved, imported = import_source(folder, reg, options=options)
    assert imported.format == "rded" and imported.found == "an ImageFolder of 20 images in 10 class folders"
    stored = reg.load(saved.ref)
    assert stored.pixel_space == "unit" and torch.equal(stored.labels, labels)
    assert torch.allclose(stored.images, (unit * 255).round() / 255) and torch.allclose(stored.soft_labels, soft)
    assert stored.metadata["imported_from"]["class_order"] == "sorted folder names (ImageFolder order)"
    assert 0.0 <= one_epoch_accuracy(stored) <= 100.0


def test_class_folders_named_after_the_classes_are_mapped_by_name(tmp_path, real_images) -> None:
    unit, labels = real_images(1, space="unit")
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    # Upper-case names sort first, so sorted folder order is not the class order.
    folder = _image_folder(tmp_path / "syn", unit, labels, [n.upper() if i % 2 else n for i, n in enumerate(names)])
    imported = read_source(folder, options=ImportOptions(dataset="cifar10-mini"))
    synset = imported.synset  # images in sorted folder order, each with its class's label
    order = torch.argsort(synset.labels)
    assert torch.equal(synset.labels[order], labels) and torch.allclose(
        synset.images[order], (unit * 255).round() / 255
    )
    assert imported.facts["class_order"] == "folder names matched to the dataset's class names"


def test_a_folder_export_round_trips_with_its_soft_labels(tmp_path, real_images) -> None:
    """``export --folder`` writes labels.json with soft labels and metadata.json naming the dataset."""
    from condensekit.registry import exchange
    from condensekit.sharing.formats import build_set

    unit, labels = real_images(1, space="unit")
    soft = torch.softmax(torch.randn(10, 10, generator=torch.Generator().manual_seed(1)), 1)
    from condensekit.data import dataset_info

    synset = build_set(
        unit, labels, soft, dataset_info("cifar10-mini"), where=("i", "l", "s"), method="x", pixel_space="unit"
    )
    out = exchange.export_folder(synset, tmp_path / "folder")
    imported = read_source(out)
    assert imported.format == "rded" and imported.synset.metadata["dataset"] == "cifar10-mini"
    assert torch.allclose(imported.synset.soft_labels, soft) and torch.equal(imported.synset.labels, labels)


# --- bad inputs: one line, exit 2 (UsageError), nothing written ---------------------------


def test_mismatched_counts_are_refused(tmp_path, reg, real_images, nothing_written) -> None:
    images, labels = real_images(1)
    torch.save(images, tmp_path / "images_best.pt")
    torch.save(labels[:9], tmp_path / "labels_best.pt")
    with pytest.raises(UsageError, match=r"expected 10 labels \(one per image\), got shape \(9,\)"):
        import_source(tmp_path, reg, options=ImportOptions(dataset="cifar10-mini"))
    nothing_written(reg)


def test_a_wrong_resolution_is_refused(tmp_path, reg, nothing_written) -> None:
    images = torch.randn(10, 3, 28, 28)
    path = _dc_file(tmp_path, [images], [torch.arange(10)], "res_DM_CIFAR10_ConvNet_1ipc.pt")
    with pytest.raises(UsageError, match=r"expected \(N, 3, 32, 32\) for cifar10 \(wrong resolution: 28x28 px\)"):
        import_source(path, reg)
    nothing_written(reg)


def test_a_wrong_image_size_in_a_folder_is_refused(tmp_path, reg, nothing_written) -> None:
    for c in range(10):
        (tmp_path / "syn" / f"c{c}").mkdir(parents=True)
        Image.new("RGB", (64, 64)).save(tmp_path / "syn" / f"c{c}" / "0.png")
    with pytest.raises(UsageError, match=r"a 64x64 px image; cifar10-mini's are 32x32 px \(wrong resolution"):
        import_source(tmp_path / "syn", reg, options=ImportOptions(dataset="cifar10-mini"))
    nothing_written(reg)


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (torch.arange(10) % 9, r"the set has images of 9 classes, cifar10 has 10"),
        (torch.arange(10) + 90, r"labels must be in \[0, 10\) for cifar10, got 90\.\.99"),
    ],
)
def test_unknown_class_counts_are_refused(tmp_path, reg, nothing_written, labels, message) -> None:
    path = _dc_file(tmp_path, [torch.randn(10, 3, 32, 32)], [labels], "res_DM_CIFAR10_ConvNet_1ipc.pt")
    with pytest.raises(UsageError, match=message):
        import_source(path, reg)
    nothing_written(reg)


def test_a_folder_with_another_class_count_is_refused(tmp_path, reg, real_images, nothing_written) -> None:
    unit, labels = real_images(1, space="unit")
    folder = _image_folder(tmp_path / "syn", unit[:9], labels[:9], [f"c{c}" for c in range(10)])
    with pytest.raises(UsageError, match="9 class folders, cifar10-mini has 10 classes"):
        import_source(folder, reg, options=ImportOptions(dataset="cifar10-mini"))
    nothing_written(reg)


def test_soft_labels_of_another_class_count_are_refused(tmp_path, reg, real_images, nothing_written) -> None:
    images, _ = real_images(1)
    torch.save(images, tmp_path / "images_best.pt")
    torch.save(torch.rand(10, 100), tmp_path / "labels_best.pt")
    with pytest.raises(UsageError, match="soft labels over 100 classes, cifar10-mini has 10"):
        import_source(tmp_path, reg, options=ImportOptions(dataset="cifar10-mini"))
    nothing_written(reg)


def test_a_registry_untouched_by_a_refusal_still_takes_a_good_import(tmp_path, real_images) -> None:
    images, labels = real_images(1)
    reg = Registry(tmp_path / "registry")
    bad = _dc_file(tmp_path / "bad", [images[:, :, :28, :28]], [labels], "res_DM_CIFAR10_ConvNet_1ipc.pt")
    with pytest.raises(UsageError):
        import_source(bad, reg)
    good = _dc_file(tmp_path / "good", [images], [labels], "res_DM_CIFAR10_ConvNet_1ipc.pt")
    saved, _ = import_source(good, reg, name="good")
    assert saved.ref == "good:v1"
