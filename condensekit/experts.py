"""Experts: models trained on the real data, kept as a registry artifact of their own kind.

Methods that need them (DANCE) declare an :class:`~condensekit.methods.base.ExpertsRequest`;
core finds matching experts in the registry, or trains them, and hands them over in
``ctx.experts``. Each expert keeps its exact initial and final weights.

Training follows the official DANCE recipe (``pretrain.py`` + IDC's ``train.py::train_epoch``):
SGD 0.01 / momentum 0.9 / weight decay 5e-4, step decay x0.2 at 2/3 and 5/6 of the epochs,
batch 64 (128 at 128 px), per-sample DSA ``color_crop`` (IDC mode) in the normalized space,
and CutMix with probability 0.5. Every random draw comes from a generator seeded from
(seed, expert), so the same seed gives the same experts.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
import typing
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from condensekit import runtime
from condensekit.errors import UsageError

if TYPE_CHECKING:
    from condensekit.data.base import DatasetInfo, RealData
    from condensekit.evaluation.protocols import Protocol

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
    """Protocol of ``progress``: ``progress(done, total, **metrics)`` after every epoch, where
    ``done``/``total`` count epochs over all experts and ``metrics`` holds ``expert`` (1-based),
    ``epoch`` (1-based), ``loss`` and, after an expert's last epoch, ``test_accuracy``."""

    def __call__(self, done: int, total: int, **metrics: float) -> None: ...


def expert_protocol(resolution: int, epochs: int, batch: int | None = None) -> "Protocol":
    """The official expert recipe as an evaluation protocol: IDC's training recipe (the
    ``idc`` protocol) with DSA ``color_crop`` only, batch 64 (128 at 128 px and above)."""
    from condensekit.evaluation.protocols import get_protocol

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
    from condensekit.runtime import select_device

    return select_device(device)


def _build(backbone: str, info: "DatasetInfo", seed: int) -> torch.nn.Module:
    from condensekit.backbones import create_backbone

    return create_backbone(
        backbone, channels=info.channels, num_classes=info.num_classes, resolution=info.resolution, seed=seed
    )


def _cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


class _Trainer:
    """One expert's optimizer and schedule; ``epoch`` runs one epoch of ``protocol``.

    The per-batch work (DSA, CutMix, loss) is evaluation's; only the data access differs:
    batches are drawn from the uint8 real data and converted to float one at a time.
    """

    def __init__(self, model: torch.nn.Module, protocol: "Protocol", device: torch.device, seed: int) -> None:
        from condensekit.evaluation.train import make_augment

        self.model = model
        self.protocol = protocol
        self.device = device
        self.optimizer = torch.optim.SGD(
            model.parameters(), lr=protocol.lr, momentum=protocol.momentum, weight_decay=protocol.weight_decay
        )
        self.augment = make_augment(protocol)
        self.generator = torch.Generator().manual_seed(seed)  # order, DSA, CutMix images
        self.mix_rng = np.random.default_rng(seed)  # CutMix's coin, Beta draw and box
        self.epochs_done = 0

    def step(self, data: "RealData", idx: torch.Tensor) -> torch.Tensor:
        """One SGD step on the real images ``idx``; returns the (detached) loss."""
        from condensekit.evaluation.train import protocol_loss

        idx = idx.to(data.device)
        x = data.as_float(data.images[idx].to(self.device, non_blocking=True), "normalized")
        y = data.labels[idx].to(self.device, non_blocking=True)
        if self.augment is not None:
            with torch.no_grad():
                x = self.augment(x, self.generator)
        loss = protocol_loss(self.model, x, y, self.protocol, self.generator, self.mix_rng)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def epoch(self, data: "RealData") -> float:
        """ceil(N / batch) batches of a random permutation of the training set; mean loss."""
        for group in self.optimizer.param_groups:
            group["lr"] = self.protocol.lr_at(self.epochs_done)
        n, b = len(data), self.protocol.batch
        perm = torch.randperm(n, generator=self.generator)
        losses = [self.step(data, perm[s:s + b]) for s in range(0, n, b)]
        self.epochs_done += 1
        return float(torch.stack(losses).mean())


def _check_counts(num: int, epochs: int) -> None:
    if num < 1:
        raise UsageError(f"the number of experts must be >= 1, got {num}")
    if epochs < 1:
        raise UsageError(f"expert epochs must be >= 1, got {epochs}")


def _test_accuracy(model: torch.nn.Module, test: "RealData", device: torch.device) -> float:
    from condensekit.evaluation.train import top1_accuracy

    accuracy = top1_accuracy([model], test, device)[0]
    model.train()
    return accuracy


def train_experts(
    data: "RealData",
    *,
    backbone: str,
    num: int,
    epochs: int,
    seed: int,
    device: str | torch.device,
    test: "RealData | None" = None,
    batch: int | None = None,
    progress: ExpertsProgress | None = None,
) -> Experts:
    """Train ``num`` experts of ``backbone`` on ``data`` for ``epochs`` epochs each.

    Each expert's initial weights are snapshotted before training (the exact weights it was
    trained from); with ``test`` its top-1 test accuracy is recorded in the metadata.
    ``progress`` follows :class:`ExpertsProgress`.
    """
    _check_counts(num, epochs)
    runtime.reuse_freed_memory()
    dev = _device(device)
    info = data.info
    protocol = expert_protocol(info.resolution, epochs, batch)
    initial: list[dict[str, torch.Tensor]] = []
    trained: list[dict[str, torch.Tensor]] = []
    accuracies: list[float | None] = []
    init_seeds = [expert_seed(seed, k, "init") for k in range(num)]
    train_seeds = [expert_seed(seed, k, "train") for k in range(num)]
    started = time.perf_counter()
    for k in range(num):
        model = _build(backbone, info, init_seeds[k])
        initial.append(_cpu_state(model))
        model.to(dev)
        trainer = _Trainer(model, protocol, dev, train_seeds[k])
        test_accuracy = None
        for epoch in range(epochs):
            loss = trainer.epoch(data)
            metrics: dict[str, float] = {"expert": k + 1, "epoch": epoch + 1, "loss": loss}
            if epoch == epochs - 1 and test is not None:
                test_accuracy = metrics["test_accuracy"] = _test_accuracy(model, test, dev)
            if progress is not None:
                progress(k * epochs + epoch + 1, num * epochs, **metrics)
        trained.append(_cpu_state(model))
        accuracies.append(test_accuracy)
    from condensekit import __version__

    metadata = {
        "num": num,
        "epochs": epochs,
        "seed": seed,
        "init_seeds": init_seeds,
        "train_seeds": train_seeds,
        "recipe": protocol.as_dict(),
        "test_accuracy": accuracies,
        "train_images": len(data),
        "num_classes": info.num_classes,
        "channels": info.channels,
        "device": str(dev),
        "wall_time_s": round(time.perf_counter() - started, 3),
        "condensekit_version": __version__,
    }
    return Experts(
        dataset=info.name, backbone=backbone, resolution=info.resolution,
        initial=initial, trained=trained, metadata=metadata,
    )


def estimate_expert_seconds(
    data: "RealData", backbone: str, epochs: int, num: int, device: str | torch.device, batch: int | None = None
) -> float:
    """Expected wall time of :func:`train_experts`, from timing a few real training steps."""
    dev = _device(device)
    protocol = expert_protocol(data.info.resolution, max(epochs, 1), batch)
    trainer = _Trainer(_build(backbone, data.info, 0).to(dev), protocol, dev, 0)
    idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[: protocol.batch]
    trainer.step(data, idx)  # warm-up: first-call allocations and kernel selection
    timed = 2
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    started = time.perf_counter()
    for _ in range(timed):
        trainer.step(data, idx)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    per_step = (time.perf_counter() - started) / timed
    return per_step * math.ceil(len(data) / protocol.batch) * epochs * num


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
) -> Experts:
    """Load ``dataset`` (train, and test when available) and train experts on it: what
    ``condensekit experts train`` does before saving them."""
    from condensekit.data import dataset_info, load_dataset
    from condensekit.errors import DatasetError

    _check_counts(num, epochs)
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
        seconds = estimate_expert_seconds(real, name, epochs, num, dev, batch)
        notify(f"training {num} {name} expert{'s' if num != 1 else ''} on {info.name} ({info.resolution}px) "
               f"for {epochs} epoch{'s' if epochs != 1 else ''} on {dev}: about {_duration(seconds)}")
    return train_experts(real, backbone=name, num=num, epochs=epochs, seed=seed, device=dev, test=test,
                         batch=batch, progress=progress)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def check_experts_match(experts: Experts, dataset: "DatasetInfo", backbone: str, num: int | None = None) -> None:
    """Raise a one-line :class:`UsageError` when ``experts`` were not trained for this run
    (another dataset, resolution or backbone) or hold fewer than ``num`` experts."""
    problems = []
    if experts.dataset != dataset.name:
        problems.append(f"dataset {experts.dataset}, not {dataset.name}")
    if experts.resolution != dataset.resolution:
        problems.append(f"resolution {experts.resolution}px, not {dataset.resolution}px")
    if experts.backbone != backbone:
        problems.append(f"backbone {experts.backbone}, not {backbone}")
    ref = experts.metadata.get("ref")
    label = f"experts {ref}" if ref else "the experts"
    if problems:
        raise UsageError(
            f"{label} do not match this run ({'; '.join(problems)}); pass experts trained for it "
            f"(condensekit list experts) or omit --experts to train new ones"
        )
    if num is not None and len(experts) < num:
        raise UsageError(
            f"{label} hold {len(experts)} experts but {num} are needed; lower the number of experts or "
            f"train more with condensekit experts train"
        )
