"""Experts: models trained on the real data, kept as a registry artifact of their own kind.

Methods that need them (DANCE) declare an :class:`~condensekit.methods.base.ExpertsRequest`;
core finds matching experts in the registry, or trains them, and hands them over in
``ctx.experts``. Each expert keeps its exact initial and final weights.

Training follows the official DANCE recipe (``pretrain.py`` + IDC's ``train.py::train_epoch``):
SGD 0.01 / momentum 0.9 / weight decay 5e-4, step decay x0.2 at 2/3 and 5/6 of the epochs,
batch 64 (128 at 128 px), per-sample DSA ``color_crop`` (IDC mode) in the normalized space,
and CutMix with probability 0.5. Every random draw comes from a generator seeded from
(seed, expert), so the same seed gives the same experts. The experts train through
evaluation's trainer (:func:`condensekit.evaluation.train.train_models`): on a GPU as one
batched ensemble, as many at a time as fit in memory, on the CPU one after another unless
asked; either way expert ``k`` draws exactly what it draws alone.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import time
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from condensekit import __version__, runtime
from condensekit.backbones import create_backbone
from condensekit.data import dataset_info, load_dataset
from condensekit.data.base import RealData
from condensekit.errors import DatasetError, UsageError
from condensekit.evaluation.protocols import Protocol, get_protocol
from condensekit.evaluation.train import (
    RealBatches,
    check_max_parallel_runs,
    runs_per_wave,
    top1_accuracy,
    train_models,
)
from condensekit.runtime import select_device

if TYPE_CHECKING:
    from condensekit.data.base import DatasetInfo

#: From this resolution on the official recipe uses real batches of 128 (ImageNet subsets).
HIGH_RESOLUTION = 128


@dataclass
class Experts:
    """``initial[i]`` and ``trained[i]`` are the state dicts of expert ``i`` before and after
    training on the real data (CPU tensors)."""

    dataset: str
    backbone: str
    resolution: int
    initial: list[dict[str, torch.Tensor]]
    trained: list[dict[str, torch.Tensor]]
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.initial) != len(self.trained) or not self.initial:
            raise ValueError("experts need one initial and one trained state dict each, at least one")

    def __len__(self) -> int:
        return len(self.initial)


class ExpertsProgress(typing.Protocol):
    """Protocol of ``progress``: ``progress(done, total, **metrics)`` after every epoch of every
    expert (experts training together report each epoch in turn), where ``done``/``total``
    count epochs over all experts and ``metrics`` holds ``expert`` (1-based), ``epoch``
    (1-based), ``loss`` (the epoch's mean batch loss) and, after an expert's last epoch,
    ``test_accuracy``."""

    def __call__(self, done: int, total: int, **metrics: float) -> None: ...


def expert_protocol(resolution: int, epochs: int, batch: int | None = None) -> Protocol:
    """The official expert recipe as an evaluation protocol: IDC's training recipe (the
    ``idc`` protocol) with DSA ``color_crop`` only, batch 64 (128 at 128 px and above)."""

    if batch is not None and batch < 1:
        raise UsageError(f"expert batch size must be >= 1, got {batch}")
    return get_protocol("idc").with_overrides(
        epochs=epochs,
        batch=batch if batch is not None else (128 if resolution >= HIGH_RESOLUTION else 64),
        dsa_strategy="color_crop",
        name="dance-experts",
        description="DANCE pretrain.py: SGD 0.01, x0.2 at 2/3 and 5/6, IDC DiffAug color_crop + CutMix p=0.5",
    )


def expert_seed(seed: int, index: int, stream: str) -> int:
    """A 63-bit seed for expert ``index`` of a run seeded ``seed``; ``stream`` is "init" (the
    network's initial weights) or "train" (batches, augmentation, CutMix)."""
    key = f"experts/{seed}/{index}/{stream}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1


def _device(device: str | torch.device) -> torch.device:
    if isinstance(device, torch.device):
        return device
    return select_device(device)


def _build(backbone: str, info: DatasetInfo, seed: int) -> torch.nn.Module:
    return create_backbone(
        backbone, channels=info.channels, num_classes=info.num_classes, resolution=info.resolution, seed=seed
    )


def _cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _check_counts(num: int, epochs: int) -> None:
    if num < 1:
        raise UsageError(f"the number of experts must be >= 1, got {num}")
    if epochs < 1:
        raise UsageError(f"expert epochs must be >= 1, got {epochs}")


def _test_accuracy(model: torch.nn.Module, test: RealData, device: torch.device) -> float:
    accuracy = top1_accuracy([model], test, device)[0]
    model.train()
    return accuracy


def train_experts(
    data: RealData,
    *,
    backbone: str,
    num: int,
    epochs: int,
    seed: int,
    device: str | torch.device,
    test: RealData | None = None,
    batch: int | None = None,
    progress: ExpertsProgress | None = None,
    max_parallel_runs: int | None = None,
) -> Experts:
    """Train ``num`` experts of ``backbone`` on ``data`` for ``epochs`` epochs each.

    Each expert's initial weights are snapshotted before training (the exact weights it was
    trained from); with ``test`` its top-1 test accuracy is recorded in the metadata.
    ``progress`` follows :class:`ExpertsProgress`. The experts train as evaluation's runs do
    (:func:`~condensekit.evaluation.train.runs_per_wave`): together as one batched ensemble on
    a GPU, as many as fit in its free memory; one after another on the CPU unless
    ``max_parallel_runs`` asks (the ensemble is slower there); ``max_parallel_runs=1`` always
    trains them in turn. Both give the same experts up to float summation order.
    """
    _check_counts(num, epochs)
    runtime.reuse_freed_memory()
    dev = _device(device)
    info = data.info
    protocol = expert_protocol(info.resolution, epochs, batch)
    init_seeds = [expert_seed(seed, k, "init") for k in range(num)]
    train_seeds = [expert_seed(seed, k, "train") for k in range(num)]
    started = time.perf_counter()
    models = [_build(backbone, info, s) for s in init_seeds]
    initial = [_cpu_state(model) for model in models]
    models = [model.to(dev) for model in models]
    source = RealBatches(data, dev)
    parallel = runs_per_wave(models[0], _one_image(source), protocol, dev, num, max_parallel_runs)
    accuracies: list[float | None] = [None] * num
    total = num * protocol.trained_epochs
    done = 0

    def on_epoch(k: int, epoch: int, loss: torch.Tensor) -> None:
        nonlocal done
        done += 1
        metrics: dict[str, float] = {"expert": k + 1, "epoch": epoch, "loss": float(loss)}
        if epoch == protocol.trained_epochs and test is not None:
            accuracies[k] = metrics["test_accuracy"] = _test_accuracy(models[k], test, dev)
        if progress is not None:
            progress(done, total, **metrics)

    train_models(models, train_seeds, source, protocol, dev, on_epoch, parallel=parallel)
    trained = [_cpu_state(model) for model in models]
    metadata = {
        "num": num,
        "epochs": epochs,
        "seed": seed,
        "init_seeds": init_seeds,
        "train_seeds": train_seeds,
        "recipe": protocol.as_dict(),
        "recipe_hash": recipe_hash(info.name, info.resolution, backbone, num, epochs, seed, protocol.as_dict()),
        "test_accuracy": accuracies,
        "train_images": len(data),
        "num_classes": info.num_classes,
        "channels": info.channels,
        "device": str(dev),
        "runs_per_wave": parallel,
        "wall_time_s": round(time.perf_counter() - started, 3),
        "condensekit_version": __version__,
    }
    return Experts(
        dataset=info.name,
        backbone=backbone,
        resolution=info.resolution,
        initial=initial,
        trained=trained,
        metadata=metadata,
    )


def _one_image(source: RealBatches) -> torch.Tensor:
    """The first training image, normalized on the training device: what sizes a wave."""
    x, _ = source.take(torch.zeros(1, dtype=torch.long, device=source.index_device))
    return x


#: Training steps :func:`estimate_expert_seconds` times, after one step of warm-up.
_TIMED_STEPS = 2


def estimate_expert_seconds(
    data: RealData,
    backbone: str,
    epochs: int,
    num: int,
    device: str | torch.device,
    batch: int | None = None,
    max_parallel_runs: int | None = None,
) -> float:
    """Expected wall time of :func:`train_experts`, from timing a few real training steps of
    the experts that train together (one wave), through the same trainer."""
    dev = _device(device)
    protocol = expert_protocol(data.info.resolution, 1 + _TIMED_STEPS, batch)
    idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[: protocol.batch].to(data.device)
    one_batch = RealBatches(RealData(data.info, data.images[idx], data.labels[idx]), dev)  # an epoch is a step
    probe = _build(backbone, data.info, 0).to(dev)
    wave = runs_per_wave(probe, _one_image(one_batch), protocol, dev, num, max_parallel_runs)
    models = [probe, *(_build(backbone, data.info, k).to(dev) for k in range(1, wave))]
    marks: list[float] = []

    def on_epoch(k: int, _epoch: int, _loss: torch.Tensor) -> None:
        if k == 0:
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            marks.append(time.perf_counter())  # the first mark ends the warm-up step

    train_models(models, range(wave), one_batch, protocol, dev, on_epoch, parallel=wave)
    per_step = (marks[-1] - marks[0]) / _TIMED_STEPS
    return per_step * math.ceil(len(data) / protocol.batch) * epochs * math.ceil(num / wave)


def train_for_dataset(
    dataset: str,
    *,
    backbone: str | None = None,
    num: int = 5,
    epochs: int = 60,
    seed: int = 0,
    device: str | torch.device = "auto",
    resolution: int | None = None,
    data_root: str | Path | None = None,
    batch: int | None = None,
    progress: ExpertsProgress | None = None,
    notify: Callable[[str], None] | None = None,
    max_parallel_runs: int | None = None,
) -> Experts:
    """Load ``dataset`` (train, and test when available) and train experts on it: what
    ``condensekit experts train`` does before saving them. ``max_parallel_runs`` as in
    :func:`train_experts`."""
    _check_counts(num, epochs)
    check_max_parallel_runs(max_parallel_runs)
    info = dataset_info(dataset, resolution)
    name = backbone or info.default_backbone
    dev = _device(device)
    real = load_dataset(info.name, "train", info.resolution, data_root=data_root, device=dev)
    try:
        test = load_dataset(info.name, "test", info.resolution, data_root=data_root, device=dev)
    except DatasetError as exc:
        test = None
        if notify is not None:
            notify(f"no test split ({exc}): experts are trained without test accuracy")
    if notify is not None:
        seconds = estimate_expert_seconds(real, name, epochs, num, dev, batch, max_parallel_runs)
        notify(
            f"training {num} {name} expert{'s' if num != 1 else ''} on {info.name} ({info.resolution}px) "
            f"for {epochs} epoch{'s' if epochs != 1 else ''} on {dev}: about {format_duration(seconds)}"
        )
    return train_experts(
        real,
        backbone=name,
        num=num,
        epochs=epochs,
        seed=seed,
        device=dev,
        test=test,
        batch=batch,
        progress=progress,
        max_parallel_runs=max_parallel_runs,
    )


def format_duration(seconds: float) -> str:
    """An estimate for people: ``40 s``, ``25 min``, ``3.5 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _check_match(
    ref: str | None,
    trained_on: str,
    resolution: int,
    trained_backbone: str,
    count: int,
    dataset: DatasetInfo,
    backbone: str,
    num: int | None,
) -> None:
    """Raise a one-line :class:`UsageError` when experts ``ref`` were not trained for this run
    (another dataset, resolution or backbone) or hold fewer than ``num`` experts."""
    problems = []
    if trained_on != dataset.name:
        problems.append(f"dataset {trained_on}, not {dataset.name}")
    if resolution != dataset.resolution:
        problems.append(f"resolution {resolution}px, not {dataset.resolution}px")
    if trained_backbone != backbone:
        problems.append(f"backbone {trained_backbone}, not {backbone}")
    label = f"experts {ref}" if ref else "the experts"
    if problems:
        raise UsageError(
            f"{label} do not match this run ({'; '.join(problems)}); pass experts trained for it "
            f"(condensekit list experts) or omit --experts to train new ones"
        )
    if num is not None and count < num:
        raise UsageError(
            f"{label} hold {count} experts but {num} are needed; lower the number of experts or "
            f"train more with condensekit experts train"
        )


# --- recipes, planning and providing experts for a distillation -------------------------

#: Expert training expected to take longer than this is announced with its cheaper options.
CHEAPER_ABOVE_S = 600.0

#: What a method gets when it asks for experts without naming a recipe and none are stored.
DEFAULT_NUM = 5


def recipe_hash(
    dataset: str, resolution: int, backbone: str, num: int, epochs: int, seed: int, protocol: dict[str, Any]
) -> str:
    """A short hash of everything that determines trained experts: two experts versions with
    the same hash hold the same networks (training is seeded)."""
    import json

    identity = {
        "dataset": dataset,
        "resolution": int(resolution),
        "backbone": backbone,
        "num": int(num),
        "epochs": int(epochs),
        "seed": int(seed),
        "protocol": protocol,
    }
    blob = json.dumps(identity, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def stored_recipe_hash(metadata: dict[str, Any], dataset: str, resolution: int, backbone: str) -> str | None:
    """The recipe hash of stored experts, from their metadata (computed for experts saved
    before the hash was recorded); None when the metadata does not say how they were trained."""
    if metadata.get("recipe_hash"):
        return str(metadata["recipe_hash"])
    try:
        return recipe_hash(
            dataset,
            resolution,
            backbone,
            int(metadata["num"]),
            int(metadata["epochs"]),
            int(metadata["seed"]),
            metadata["recipe"],
        )
    except (KeyError, TypeError, ValueError):
        return None


@dataclass(frozen=True)
class ExpertsPlan:
    """How a run gets its experts, decided before any work: load the stored version ``ref``,
    or train ``num`` x ``epochs`` with ``seed`` (and save them when there is a registry).
    ``recipe_hash`` identifies the networks either way, so it is part of the run key."""

    dataset: str
    resolution: int
    backbone: str
    recipe_hash: str
    ref: str | None = None  # stored experts to load
    num: int | None = None  # to train (None when loading)
    epochs: int | None = None
    seed: int | None = None
    reason: str = ""  # one line for the user: why these experts

    @property
    def train(self) -> bool:
        return self.ref is None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def plan_experts(
    request: Any, dataset: DatasetInfo, backbone: str, seed: int, registry: Any, explicit_ref: str | None = None
) -> ExpertsPlan:
    """Decide which experts a run uses (reads the registry, writes nothing).

    ``request`` is the method's :class:`~condensekit.methods.base.ExpertsRequest`.
    - ``--experts REF``: those, checked against the run (dataset, resolution, backbone, count).
    - A request that names a recipe (``num`` or ``epochs``): the newest stored experts whose
      full recipe (dataset, resolution, backbone, count, epochs, seed, optimizer and
      augmentation) hashes the same, else train that recipe.
    - No recipe named: the newest stored experts for dataset x backbone x resolution, else the
      default recipe (``DEFAULT_NUM`` experts, the method's default epochs).
    """
    name = request.backbone or backbone
    if explicit_ref:
        if registry is None:
            raise UsageError("--experts needs a registry to load them from")
        version, meta = registry.experts_metadata(explicit_ref)
        _check_match(
            version.ref,
            meta["dataset"],
            int(meta["resolution"]),
            meta["backbone"],
            int(meta["num_experts"]),
            dataset,
            name,
            request.num,
        )
        return ExpertsPlan(
            dataset.name,
            dataset.resolution,
            name,
            _identity(version, meta, dataset, name),
            ref=version.ref,
            reason=f"using experts {version.ref} (--experts)",
        )
    explicit = request.num is not None or request.epochs is not None
    num = request.num if request.num is not None else DEFAULT_NUM
    epochs = request.epochs if request.epochs is not None else request.default_epochs
    _check_counts(num, epochs)
    wanted = recipe_hash(
        dataset.name, dataset.resolution, name, num, epochs, seed, expert_protocol(dataset.resolution, epochs).as_dict()
    )
    if registry is not None:
        for version, meta in registry.experts_versions(dataset.name, name, dataset.resolution):
            if explicit and stored_recipe_hash(meta, dataset.name, dataset.resolution, name) != wanted:
                continue
            recipe = f"{meta.get('num_experts')} x {meta.get('epochs')} epochs, seed {meta.get('seed')}"
            why = "same recipe" if explicit else "newest for this dataset and backbone"
            return ExpertsPlan(
                dataset.name,
                dataset.resolution,
                name,
                _identity(version, meta, dataset, name),
                ref=version.ref,
                reason=f"using experts {version.ref} ({recipe}; {why})",
            )
    what = "with the requested recipe" if explicit else "for this dataset and backbone"
    return ExpertsPlan(
        dataset.name,
        dataset.resolution,
        name,
        wanted,
        num=num,
        epochs=epochs,
        seed=seed,
        reason=f"no stored experts {what}: training {num} {name} experts for {epochs} epochs first",
    )


def _identity(version: Any, meta: dict[str, Any], dataset: DatasetInfo, backbone: str) -> str:
    """What names stored experts in a run key: their recipe hash, or (for metadata that does
    not say how they were trained) their file's sha256."""
    return stored_recipe_hash(meta, dataset.name, dataset.resolution, backbone) or str(version.sha256)[:16]


def provide_experts(
    plan: ExpertsPlan,
    real: RealData,
    registry: Any,
    device: torch.device,
    group: Any,
    notify: Callable[[str], None],
    data_root: Any = None,
    progress: ExpertsProgress | None = None,
) -> Experts:
    """The planned experts on every rank: loaded, or trained once by rank 0 (and saved when
    there is a registry) while the other ranks wait, then handed to them."""
    rank0 = group is None or group.rank == 0
    if not plan.train:
        notify(plan.reason)
        stored: Experts = registry.load_experts(plan.ref)
        return stored
    trained = None
    if rank0:
        assert plan.num is not None and plan.epochs is not None and plan.seed is not None
        estimate = estimate_expert_seconds(real, plan.backbone, plan.epochs, plan.num, device)
        notify(f"{plan.reason} (about {format_duration(estimate)} on {device}, measured on a few steps)")
        if estimate > CHEAPER_ABOVE_S:
            notify(
                "cheaper: fewer --expert-epochs or --num-experts, stored experts (condensekit experts train, "
                f"or --experts REF){'' if device.type == 'cuda' else ', or a GPU (--device cuda)'}; Ctrl-C stops now"
            )
        try:
            test = load_dataset(plan.dataset, "test", plan.resolution, data_root=data_root, device=device)
        except DatasetError:  # test accuracy is a courtesy; training needs only the train split
            test = None
        trained = train_experts(
            real,
            backbone=plan.backbone,
            num=plan.num,
            epochs=plan.epochs,
            seed=plan.seed,
            device=device,
            test=test,
            progress=progress,
        )
        if registry is not None:
            version = registry.save_experts(trained)
            trained.metadata["ref"] = version.ref
            notify(f"saved experts as {version.ref}")
    if group is not None:
        trained = group.broadcast(trained)
    assert trained is not None
    return trained
