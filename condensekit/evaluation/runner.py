"""``evaluate``: train fresh networks on a synthetic set, test them on the real test split.

The protocol of the dataset-condensation literature (DC/DSA/DM ``evaluate_synset``, or IDC/
DANCE's recipe): per architecture and run, a freshly initialized, seeded network is trained on
the synthetic set only, and its top-1 accuracy after the final epoch on the full real test
split is reported (never a checkpoint chosen by test accuracy). Mean and std over runs use
the population std (``np.std``, ddof 0) as the DC code does (see :mod:`.report`).
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from condensekit import runtime
from condensekit.errors import UsageError
from condensekit.evaluation.protocols import PROTOCOLS, Protocol, get_protocol
from condensekit.evaluation.report import ArchResult, EvalReport
from condensekit.evaluation.train import (
    Relabel,
    TestSplit,
    check_max_parallel_runs,
    make_augment,
    runs_per_wave,
    top1_accuracy,
    train_runs,
)
from condensekit.precision import check_precision
from condensekit.synthetic import SyntheticSet

if TYPE_CHECKING:
    from condensekit.evaluation.teacher import Teacher

#: The architecture name meaning "the dataset's default backbone at the set's resolution".
DEFAULT_ARCH = "default"


@dataclass(frozen=True)
class EvalProgress:
    """One progress event: ``phase`` "train" after each epoch, "test" before testing an arch."""

    phase: str
    arch: str
    run: int  # 0-based run of ``arch``
    runs: int
    epoch: int  # epochs completed in this run
    epochs: int
    done: int  # epochs completed over all archs and runs
    total: int


def run_seed(seed: int, arch: str, run: int) -> int:
    """A 63-bit seed for (evaluation seed, architecture, run), stable across processes."""
    key = f"eval/{seed}/{arch}/{run}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1


def evaluate(
    synset: SyntheticSet,
    *,
    archs: Sequence[str] | str = (DEFAULT_ARCH,),
    runs: int = 5,
    protocol: str | Protocol = "dc",
    epochs: int | None = None,
    lr: float | None = None,
    batch: int | None = None,
    dsa: bool | None = None,
    device: str | torch.device = "auto",
    seed: int = 0,
    data_root: str | None = None,
    progress: Callable[[EvalProgress], None] | None = None,
    precision: str = "fp32",
    max_parallel_runs: int | None = None,
    teacher: Teacher | None = None,
) -> EvalReport:
    """Train ``runs`` fresh networks per architecture on ``synset`` and test them.

    ``protocol`` names a registered :class:`Protocol` (``dc``, ``idc`` or ``kd``), or is one
    (a variant of a registered protocol is recorded under its name with what differs as its
    overrides); ``epochs``, ``lr``, ``batch`` and ``dsa`` override its values, and the
    effective values are recorded in the report. A protocol whose teacher relabels every
    view (``kd``) needs ``teacher`` (:func:`~condensekit.evaluation.teacher.load_teacher`),
    checked against the set's dataset and resolution before anything is loaded; the method
    that made the set relabels in its place where it ships a relabel hook. ``archs`` are
    backbone names (``timm:NAME`` included); ``"default"`` is the dataset's default backbone
    at the set's resolution. The test split is loaded first, so a missing one fails before
    any training (``DatasetError``). ``precision`` ("fp32", "bf16", "fp16" on CUDA) is the
    autocast dtype of training and testing. Runs of one architecture train as one batched
    ensemble, as many at a time as fit in memory (``max_parallel_runs`` caps it; 1 trains them
    one after another; on the CPU they train in turn unless it is given, since the ensemble is
    slower there). ``KeyboardInterrupt`` propagates: nothing is returned or recorded for an
    interrupted evaluation.
    """
    from condensekit.backbones import create_backbone
    from condensekit.data import dataset_info, load_dataset

    if runs < 1:
        raise UsageError(f"--runs must be >= 1, got {runs}")
    runtime.reuse_freed_memory()
    given = protocol if isinstance(protocol, Protocol) else get_protocol(protocol)
    base = PROTOCOLS.get(given.name, given)  # a variant's overrides count against its preset
    proto = given.with_overrides(epochs=epochs, lr=lr, batch=batch, dsa=dsa)
    dev = device if isinstance(device, torch.device) else runtime.select_device(device)
    check_precision(precision, dev.type)
    check_max_parallel_runs(max_parallel_runs)

    dataset = synset.metadata.get("dataset")
    if not dataset:
        raise UsageError("the synthetic set has no 'dataset' in its metadata; cannot find its test split")
    # What differs from the named protocol: a result with overrides is not a "dc" result.
    overrides = proto.overrides_against(base)
    proto = proto.for_dataset(dataset)
    resolution = int(synset.images.shape[-1])
    info = dataset_info(dataset, resolution)
    relabel, relabel_source = _relabel(proto, synset, teacher, info, dev)
    images, labels, soft = _training_tensors(synset, info)
    ipc = int(synset.metadata.get("ipc") or max(1, labels.numel() // info.num_classes))
    proto = proto.for_set(ipc, info.num_classes)
    if not proto.uses_stored_soft_labels:
        soft = None  # hard labels, or the teacher's
    names = _arch_names(archs, info.default_backbone)
    test = TestSplit(load_dataset(dataset, split="test", resolution=resolution, data_root=data_root, device=dev), dev)

    def make_model(arch: str, s: int) -> torch.nn.Module:
        return create_backbone(
            arch, channels=info.channels, num_classes=info.num_classes, resolution=resolution, seed=s
        )

    # An unknown or unsuitable architecture fails now, not after hours; the built network
    # also sizes that architecture's waves of runs.
    probes = {arch: _probe(make_model, arch, info, resolution) for arch in names}

    epochs_per_run = proto.trained_epochs  # dc: its E + 1
    total = len(names) * runs * epochs_per_run
    done = 0  # epochs completed over all archs and runs (batched runs report in turns)
    results = []
    waves: dict[str, int] = {}
    for a, arch in enumerate(names):
        start = time.perf_counter()
        seeds = [run_seed(seed, arch, r) for r in range(runs)]
        parallel = waves[arch] = runs_per_wave(probes[arch].to(dev), images, proto, dev, runs, max_parallel_runs)

        def on_epoch(run: int, epoch: int, arch: str = arch) -> None:
            nonlocal done
            done += 1
            if progress is not None:
                progress(EvalProgress("train", arch, run, runs, epoch, epochs_per_run, done, total))

        models = train_runs(
            functools.partial(make_model, arch),
            seeds,
            images,
            labels,
            soft,
            proto,
            dev,
            on_epoch,
            precision,
            parallel,
            relabel,
        )
        if progress is not None:
            done = (a + 1) * runs * epochs_per_run
            progress(EvalProgress("test", arch, runs - 1, runs, epochs_per_run, epochs_per_run, done, total))
        accuracies = top1_accuracy(models, test, dev, precision, batched=parallel > 1)
        results.append(ArchResult(arch, accuracies, seeds, time.perf_counter() - start))

    augment = make_augment(proto)
    params = {
        **proto.as_dict(),
        "trained_epochs": epochs_per_run,
        "overrides": overrides,
        "dsa_params": augment.describe() if augment is not None else None,
        "archs": names,
        "runs": runs,
        "seed": seed,
        "precision": precision,
        "runs_per_wave": waves,
        "dataset": dataset,
        "resolution": resolution,
        "train_images": int(images.shape[0]),
        "soft_labels": soft is not None,
        "teacher": None if relabel is None or teacher is None else teacher.describe(),
        "relabel": relabel_source,
        "test_split": "test",
        "test_images": len(test),
    }
    return EvalReport(protocol=proto.name, params=params, results=results, device=str(dev))


def _relabel(
    proto: Protocol, synset: SyntheticSet, teacher: Teacher | None, info: Any, dev: torch.device
) -> tuple[Relabel | None, str | None]:
    """How the protocol's teacher relabels the views (None where it does not), and the
    source in words; a missing or unfit teacher fails here, before any data is loaded."""
    if not proto.relabels:
        return None, None
    from condensekit.evaluation.teacher import check_teacher, relabel_for

    if teacher is None:
        raise UsageError(
            f"protocol {proto.name} relabels every view with a teacher; pass one (--teacher REF, "
            f"or train experts of {info.name}: condensekit experts train --data {info.name})"
        )
    check_teacher(teacher, info)
    teacher.to(dev)
    return relabel_for(synset.metadata, teacher)


def _probe(make_model: Callable[[str, int], torch.nn.Module], arch: str, info: Any, resolution: int) -> torch.nn.Module:
    """``arch``'s network for run seed 0, checked on one image of the set's size: an
    architecture that cannot take that resolution (its downsampling leaves nothing, timm
    refuses the size) is a one-line :class:`UsageError` (exit 2: an ``--arch`` value this set
    rules out) naming it and the way out, before any training. An unknown name keeps its own
    :class:`BackboneError`."""
    from condensekit.backbones import check_backbone_name

    check_backbone_name(arch)
    shape = (info.channels, resolution, resolution)
    try:
        model = make_model(arch, 0)
        training = model.training
        model.eval()  # batch norm on one image
        with torch.no_grad():
            logits = model(torch.zeros(1, *shape))
        model.train(training)
        if tuple(logits.shape) != (1, info.num_classes):
            raise ValueError(f"it gives outputs of shape {tuple(logits.shape)}, not (1, {info.num_classes})")
    except Exception as exc:  # noqa: BLE001 -- factories and timm raise anything for a size they cannot take
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UsageError(
            f"--arch {arch} cannot take this set's {'x'.join(map(str, shape))} images ({reason}); drop it from "
            f"--arch or pick one made for {resolution} px inputs (this dataset's default: {info.default_backbone})"
        ) from None
    return model


def _arch_names(archs: Sequence[str] | str, default_backbone: str) -> list[str]:
    """Resolved, de-duplicated architecture names (``"default"`` -> the dataset's backbone)."""
    raw = archs.split(",") if isinstance(archs, str) else list(archs)
    names: list[str] = []
    for given in (a.strip() for a in raw):
        name = default_backbone if given == DEFAULT_ARCH else given
        if name and name not in names:
            names.append(name)
    if not names:
        raise UsageError("no architecture given; pass --arch NAME[,NAME...]")
    return names


def _training_tensors(synset: SyntheticSet, info: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The decoded set in the test split's normalized space, checked against the dataset."""
    if "mean" not in synset.metadata or "std" not in synset.metadata:
        if synset.pixel_space != "normalized":
            raise UsageError("the synthetic set has unit-space images but no mean/std in its metadata")
        synset = SyntheticSet(  # a normalized set without its statistics: the dataset's own
            synset.images,
            synset.labels,
            synset.soft_labels,
            synset.pixel_space,
            synset.factor,
            {**synset.metadata, "mean": list(info.mean), "std": list(info.std)},
        )
    images, labels, soft = synset.training_tensors()
    if images.shape[1] != info.channels:
        raise UsageError(f"the set has {images.shape[1]}-channel images but {info.name} has {info.channels}")
    if labels.numel() and (labels.min() < 0 or labels.max() >= info.num_classes):
        raise UsageError(f"the set's labels must lie in [0, {info.num_classes}) for {info.name}")
    # Evaluation trains in the test data's normalized space; a set normalized with other
    # statistics is mapped through [0, 1] pixels.
    if not (np.allclose(synset.metadata["mean"], info.mean) and np.allclose(synset.metadata["std"], info.std)):
        images = info.normalize(images * synset.std + synset.mean)
    if soft is not None:
        soft = soft.float()
        if soft.dim() != 2 or soft.shape[1] != info.num_classes:
            raise UsageError(
                f"soft labels must be (N, {info.num_classes}) class probabilities, got {tuple(soft.shape)}"
            )
        if (soft < 0).any() or not torch.allclose(soft.sum(1), torch.ones(soft.shape[0]), atol=1e-2):
            raise UsageError("soft labels must be class probabilities (non-negative rows summing to 1)")
    return images, labels, soft
