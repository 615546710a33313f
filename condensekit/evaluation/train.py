"""Training fresh networks on a synthetic set, and testing them on the real test split.

:func:`train_runs` takes every seed of one architecture at once and trains them one after
another or as one batched ensemble (waves of ``parallel`` runs). All randomness of a run
(init, shuffling, DSA, CutMix) derives from its seed, so both paths train the same networks.
:func:`train_models` is the trainer under it, for any :class:`BatchSource`: evaluation's
synthetic tensors, or the real training split experts learn from.
"""

from __future__ import annotations

import copy
import math
import typing
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from condensekit import runtime
from condensekit.augment import DSA
from condensekit.backbones.convnet import InstanceNorm
from condensekit.data.base import RealData
from condensekit.errors import UsageError
from condensekit.evaluation.protocols import OPTIMIZERS, Protocol

#: ``(index of the run in seeds, epochs completed in that run)``, called after every epoch.
EpochCallback = Callable[[int, int], None]

#: ``(index of the run, epochs completed in it, its mean training loss over that epoch as a
#: 0-d tensor on the device)``, called after every epoch; at a run's last epoch its model
#: already holds the trained weights.
RunCallback = Callable[[int, int, torch.Tensor], None]

#: ``(views, labels) -> logits``: a teacher's soft targets for a batch of augmented training
#: views (normalized, after DSA and CutMix) and the hard labels of the images they were made
#: from; called under ``torch.no_grad`` (see :func:`relabel_batches`).
Relabel = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

TEST_BATCH = 1024


def make_augment(protocol: Protocol) -> DSA | None:
    """The protocol's per-sample DSA, or None when it trains without augmentation."""
    if not protocol.dsa:
        return None
    dsa = DSA(protocol.dsa_strategy, mode=protocol.dsa_mode)
    return None if dsa.identity else dsa


def train_runs(
    make_model: Callable[[int], nn.Module],
    seeds: Sequence[int],
    images: torch.Tensor,
    labels: torch.Tensor,
    soft_labels: torch.Tensor | None,
    protocol: Protocol,
    device: torch.device,
    progress: EpochCallback | None = None,
    precision: str = "fp32",
    parallel: int = 1,
    relabel: Relabel | None = None,
) -> list[nn.Module]:
    """Train one fresh ``make_model(seed)`` per seed on (images, labels) with ``protocol``.

    ``images`` are normalized (N, C, H, W); ``soft_labels`` (N, K) class probabilities, used as
    targets instead of ``labels`` when given. Up to ``parallel`` runs train together as one
    batched ensemble (see :func:`train_models`). Returns the trained models, in ``seeds``
    order, on ``device`` in eval mode. The accuracy that counts is the final epoch's: no model
    selection happens here. With ``relabel`` (a protocol whose teacher relabels every view),
    every augmented batch's targets are ``relabel(views, labels)`` instead.
    """
    images = images.to(device)
    targets = (soft_labels.float() if soft_labels is not None else labels.long()).to(device)
    models = [make_model(seed).to(device) for seed in seeds]

    def on_epoch(run: int, epoch: int, _loss: torch.Tensor) -> None:
        if progress is not None:
            progress(run, epoch)

    source = TensorBatches(images, targets)
    return train_models(models, seeds, source, protocol, device, on_epoch, precision, parallel, relabel)


def train_models(
    models: Sequence[nn.Module],
    seeds: Sequence[int],
    source: BatchSource,
    protocol: Protocol,
    device: torch.device,
    progress: RunCallback | None = None,
    precision: str = "fp32",
    parallel: int = 1,
    relabel: Relabel | None = None,
) -> list[nn.Module]:
    """Train ``models`` (on ``device``) in place on ``source`` with ``protocol``, run ``k``
    drawing its batches, DSA and CutMix from ``seeds[k]``.

    Up to ``parallel`` runs train together as one batched ensemble (stacked weights, one
    forward, backward and optimizer step for all of them; :func:`can_train_together` says
    which models can), the rest in waves of that size; ``parallel=1`` trains them one after
    another. Either way run ``k`` draws exactly the random stream it draws alone, so both
    paths give the same networks up to float summation order. ``progress`` follows
    :data:`RunCallback`. ``relabel`` (:data:`Relabel`) gives the targets of every augmented
    batch, once per step for all runs of a wave. Returns ``models`` in eval mode.
    """
    check_max_parallel_runs(parallel)
    models = list(models)
    together = parallel if can_train_together(models[0]) else 1
    for first in range(0, len(models), together):
        wave = list(range(first, min(first + together, len(models))))

        def on_epoch(epoch: int, losses: torch.Tensor, wave: list[int] = wave) -> None:
            if progress is not None:
                for i, index in enumerate(wave):
                    progress(index, epoch, losses[i])

        trainer = _train_ensemble if len(wave) > 1 else _train_one
        trainer(
            [models[i] for i in wave], [seeds[i] for i in wave], source, protocol, device, on_epoch, precision, relabel
        )
    return [model.eval() for model in models]


def check_max_parallel_runs(value: int | None) -> None:
    """Refuse ``--max-parallel-runs`` below 1 (None: the default), in one line; every entry
    point calls it before any work."""
    if value is not None and value < 1:
        raise UsageError(f"--max-parallel-runs must be >= 1, got {value}")


def runs_per_wave(
    model: nn.Module,
    images: torch.Tensor,
    protocol: Protocol,
    device: torch.device,
    runs: int,
    max_parallel: int | None = None,
) -> int:
    """How many runs of ``model`` train together: 1 where the ensemble cannot run or does not
    pay, else as many as fit in the device's free memory (and ``max_parallel``).

    On the CPU the stacked ensemble is slower than runs one after another (a ConvNet-3 step on
    100 CIFAR-10 images, 3 runs, 2 threads: 11.5 s stacked vs 5.8 s in turn), so it is used
    there only when ``max_parallel`` asks for it.
    """
    check_max_parallel_runs(max_parallel)
    if runs < 2 or not can_train_together(model) or (device.type == "cpu" and max_parallel is None):
        return 1
    wanted = min(runs, max_parallel or runs)
    per_run = training_bytes(model, images, protocol.batch, device)
    return max(1, min(wanted, int(0.8 * free_memory(device) // max(per_run, 1))))


def training_bytes(model: nn.Module, images: torch.Tensor, batch: int, device: torch.device) -> int:
    """An upper estimate of one run's training memory: its weights four times (weights,
    gradients, momentum, the stacked copy) and three copies of every module's output for a
    batch (saved for backward, their gradients, workspace)."""
    sizes: list[int] = []
    hooks = [
        m.register_forward_hook(lambda _m, _i, out: sizes.append(out.numel() if torch.is_tensor(out) else 0))
        for m in model.modules()
        if not list(m.children())
    ]
    try:
        with torch.no_grad():
            model(images[:1].to(device))
    finally:
        for hook in hooks:
            hook.remove()
    weights = sum(p.numel() for p in model.parameters())
    return 4 * (4 * weights + 3 * batch * sum(sizes))


def free_memory(device: torch.device) -> int:
    """Bytes the device can still give: CUDA's free memory, or Linux's MemAvailable."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 << 30  # unknown: assume a small machine


def can_train_together(model: nn.Module) -> bool:
    """Whether runs of ``model`` can train as one stacked ensemble: it must keep no buffers
    (batch norm's running statistics are updated in place, which ``vmap`` cannot batch)."""
    return next(iter(model.buffers()), None) is None


class BatchSource(typing.Protocol):
    """Where runs take their training batches from: ``len(source)`` examples, indexed on
    ``source.index_device``; ``take(idx)`` gives the (inputs, targets) of examples ``idx`` on
    the training device, inputs normalized."""

    @property
    def index_device(self) -> torch.device: ...

    def __len__(self) -> int: ...

    def take(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


class TensorBatches:
    """A training set held as tensors on the training device (evaluation's synthetic set):
    normalized images and hard (int) or soft (probability) targets."""

    def __init__(self, images: torch.Tensor, targets: torch.Tensor) -> None:
        self.images, self.targets = images, targets

    @property
    def index_device(self) -> torch.device:
        return self.images.device

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def take(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[idx], self.targets[idx]


class RealBatches:
    """A real training split (what experts learn from), kept as uint8 where it was loaded and
    converted to normalized floats on ``device`` one batch at a time."""

    def __init__(self, data: RealData, device: torch.device) -> None:
        self.data, self.device = data, device

    @property
    def index_device(self) -> torch.device:
        return self.data.device

    def __len__(self) -> int:
        return len(self.data)

    def take(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.data.as_float(self.data.images[idx].to(self.device, non_blocking=True), "normalized")
        return x, self.data.labels[idx].to(self.device, non_blocking=True)


class _Run:
    """One run's random streams and its batches: what makes run ``k`` of an ensemble draw
    exactly what it draws when trained alone."""

    def __init__(self, seed: int, protocol: Protocol) -> None:
        self.protocol = protocol
        self.generator = torch.Generator().manual_seed(seed)  # shuffling, DSA and CutMix images
        self.mix_rng = np.random.default_rng(seed)  # CutMix's coin, Beta draw and box (as IDC, NumPy)
        self.augment = make_augment(protocol)
        self.order = torch.empty(0, dtype=torch.long)
        self.losses: list[torch.Tensor] = []  # this epoch's batch losses, detached

    def shuffle(self, source: BatchSource) -> None:
        self.order = torch.randperm(len(source), generator=self.generator).to(source.index_device)
        self.losses = []

    def batch(self, source: BatchSource, start: int) -> _Batch:
        x, y = source.take(self.order[start : start + self.protocol.batch])
        if self.augment is not None:
            with torch.no_grad():
                x = self.augment(x, self.generator)
        x, partner, keep = mix_batch(x, self.protocol, self.generator, self.mix_rng)
        return _Batch(x, y, partner, keep, self.protocol.temperature)

    def mean_loss(self) -> torch.Tensor:
        return torch.stack(self.losses).mean()


class _Batch:
    def __init__(
        self, x: torch.Tensor, y: torch.Tensor, partner: torch.Tensor | None, keep: float, temperature: float
    ) -> None:
        self.x, self.y, self.partner, self.keep, self.temperature = x, y, partner, keep, temperature
        self.teacher: torch.Tensor | None = None  # a teacher's logits on ``x``, when it relabels

    def loss(self, logits: torch.Tensor) -> torch.Tensor:
        if self.teacher is not None:
            return kd_loss(logits, self.teacher, self.temperature)
        return batch_loss(logits, self.y, self.partner, self.keep)


def relabel_batches(batches: Sequence[_Batch], relabel: Relabel) -> None:
    """Set every batch's targets to ``relabel`` of exactly its augmented views: one call for
    all of them (the runs of an ensemble step), without gradients."""
    with torch.no_grad():
        logits = relabel(torch.cat([b.x for b in batches]), torch.cat([b.y for b in batches]))
    for batch, part in zip(batches, logits.float().split([len(b.x) for b in batches]), strict=True):
        batch.teacher = part


def _train_one(
    models: list[nn.Module],
    seeds: list[int],
    source: BatchSource,
    protocol: Protocol,
    device: torch.device,
    on_epoch: Callable[[int, torch.Tensor], None],
    precision: str,
    relabel: Relabel | None = None,
) -> None:
    (model,), (seed,) = models, seeds
    run = _Run(seed, protocol)
    optimizer = _optimizer(list(model.named_parameters()), protocol)
    model.train()
    for epoch in _epochs(protocol, optimizer):
        run.shuffle(source)
        for start in range(0, len(source), protocol.batch):
            batch = run.batch(source, start)
            with runtime.precision(device, precision):
                if relabel is not None:
                    relabel_batches([batch], relabel)
                loss = batch.loss(model(batch.x))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            run.losses.append(loss.detach())
        on_epoch(epoch + 1, run.mean_loss()[None])


def _train_ensemble(
    models: list[nn.Module],
    seeds: list[int],
    source: BatchSource,
    protocol: Protocol,
    device: torch.device,
    on_epoch: Callable[[int, torch.Tensor], None],
    precision: str,
    relabel: Relabel | None = None,
) -> None:
    """The runs of ``models`` as one model: weights stacked on a leading run dimension, one
    ``vmap``-ed forward over every run's own batch, the sum of the runs' losses (each run's
    gradient is its own loss's), and one optimizer step, which is elementwise (SGD, AdamW)
    and so per run. A teacher relabels every run's views in one batched forward."""
    from torch.func import vmap

    runs = [_Run(seed, protocol) for seed in seeds]
    stacked, skeleton, forward = _stacked(models)
    weights = {name: tensor.requires_grad_(True) for name, tensor in stacked.items()}
    batched_forward = vmap(forward)
    optimizer = _optimizer(list(weights.items()), protocol, run_dims=1)
    skeleton.train()
    for epoch in _epochs(protocol, optimizer):
        for run in runs:
            run.shuffle(source)
        for start in range(0, len(source), protocol.batch):
            batches = [run.batch(source, start) for run in runs]
            with runtime.precision(device, precision):
                if relabel is not None:
                    relabel_batches(batches, relabel)
                logits = batched_forward(weights, torch.stack([b.x for b in batches]))
                losses = [b.loss(out) for b, out in zip(batches, logits, strict=True)]
            optimizer.zero_grad(set_to_none=True)
            torch.stack(losses).sum().backward()
            optimizer.step()
            for run, loss in zip(runs, losses, strict=True):
                run.losses.append(loss.detach())
        if epoch + 1 == protocol.trained_epochs:  # the models hold their weights from the last report on
            _unstack(weights, models)
        on_epoch(epoch + 1, torch.stack([run.mean_loss() for run in runs]))


def _unstack(weights: dict[str, torch.Tensor], models: Sequence[nn.Module]) -> None:
    """Copy run ``k``'s slice of the stacked ``weights`` into ``models[k]``."""
    with torch.no_grad():
        for k, model in enumerate(models):
            for name, param in model.named_parameters():
                param.copy_(weights[name][k])


def _stacked(
    models: Sequence[nn.Module],
) -> tuple[dict[str, torch.Tensor], nn.Module, Callable[[dict[str, torch.Tensor], torch.Tensor], torch.Tensor]]:
    """The weights of ``models`` stacked on a leading run dimension (detached copies), a
    weightless skeleton of their architecture, and ``forward(weights, x)`` for one run's
    weights, to be ``vmap``-ed over the runs."""
    from torch.func import functional_call, stack_module_state

    stacked, _ = stack_module_state(list(models))
    weights = {name: tensor.detach() for name, tensor in stacked.items()}
    skeleton = _vmap_ready(copy.deepcopy(models[0]).to("meta"))

    def forward(params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = functional_call(skeleton, params, (x,))
        return out

    return weights, skeleton, forward


def _vmap_ready(model: nn.Module) -> nn.Module:
    """The ConvNet's InstanceNorm routes channels_last maps by asking for the memory format,
    which ``vmap`` does not allow: the ensemble runs it as the plain GroupNorm it computes."""
    for name, child in model.named_children():
        if isinstance(child, InstanceNorm):
            setattr(model, name, nn.GroupNorm(child.num_groups, child.num_channels, child.eps, child.affine))
        else:
            _vmap_ready(child)
    return model


def _optimizer(
    named: Sequence[tuple[str, torch.Tensor]], protocol: Protocol, run_dims: int = 0
) -> torch.optim.Optimizer:
    """The protocol's optimizer over ``named`` parameters (``run_dims`` leading run dimensions)."""
    return OPTIMIZERS[protocol.optimizer](named, protocol, run_dims)


def _epochs(protocol: Protocol, optimizer: torch.optim.Optimizer) -> Iterator[int]:
    """The protocol's trained epochs, with its learning-rate schedule applied to ``optimizer``."""
    milestones = set(protocol.milestone_epochs())
    for epoch in range(protocol.trained_epochs):
        for group in optimizer.param_groups:
            group["lr"] = protocol.lr_at(epoch)
        if protocol.reset_momentum and epoch in milestones:
            optimizer.state.clear()  # DC builds a new optimizer at the decay
        yield epoch


def mix_batch(
    x: torch.Tensor, protocol: Protocol, generator: torch.Generator, mix_rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor | None, float]:
    """IDC's CutMix when the protocol has it and its coin says so: (images, partner index of
    each image or None, fraction of the original kept)."""
    if protocol.cutmix_prob > 0 and mix_rng.random() < protocol.cutmix_prob:
        return cutmix(x, protocol.cutmix_beta, generator, mix_rng)
    return x, None, 1.0


def batch_loss(logits: torch.Tensor, y: torch.Tensor, partner: torch.Tensor | None, keep: float) -> torch.Tensor:
    """Cross-entropy on hard (int) or soft (probability) targets, mixed as CutMix mixed the images."""
    out = logits.float()
    if partner is None:
        return F.cross_entropy(out, y)
    return F.cross_entropy(out, y) * keep + F.cross_entropy(out, y[partner]) * (1.0 - keep)


def kd_loss(logits: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """RDED's and SRe2L's distillation loss: ``KLDivLoss(reduction="batchmean")`` of the
    student's ``log_softmax(logits / T)`` against the teacher's ``softmax(teacher / T)``
    (no ``T ** 2`` factor, as both codes and DD-Ranking's default)."""
    student = F.log_softmax(logits.float() / temperature, dim=1)
    return F.kl_div(student, F.softmax(teacher.float() / temperature, dim=1), reduction="batchmean")


def cutmix(
    x: torch.Tensor, beta: float, generator: torch.Generator, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """CutMix as IDC's ``train_epoch``: paste a box of a permuted batch into ``x``.

    Returns (mixed images, partner index of each image, fraction of ``x`` kept) so the loss is
    ``keep * CE(y) + (1 - keep) * CE(y[partner])``.
    """
    lam = rng.beta(beta, beta)
    partner = torch.randperm(x.shape[0], generator=generator).to(x.device)
    h, w = x.shape[2], x.shape[3]
    cut = math.sqrt(1.0 - lam)
    ch, cw = int(h * cut), int(w * cut)
    cy, cx = int(rng.integers(h)), int(rng.integers(w))
    y1, y2 = np.clip([cy - ch // 2, cy + ch // 2], 0, h)
    x1, x2 = np.clip([cx - cw // 2, cx + cw // 2], 0, w)
    mixed = x.clone()
    mixed[:, :, y1:y2, x1:x2] = x[partner, :, y1:y2, x1:x2]
    keep = 1.0 - float((y2 - y1) * (x2 - x1)) / (h * w)
    return mixed, partner, keep


#: The test split is kept on the device as one float tensor up to this size (CIFAR-10's
#: 10,000 test images are 123 MB), so every architecture and run reuses one conversion.
TEST_FLOAT_BUDGET = 1 << 30


class TestSplit:
    """A real test split ready for repeated passes: normalized floats on the device when they
    fit in ``TEST_FLOAT_BUDGET``, else converted batch by batch."""

    def __init__(self, split: RealData, device: torch.device) -> None:
        self.split = split
        self.labels = split.labels.to(device)
        self.device = device
        size = split.images.numel() * 4
        self.images = split.as_float(split.images.to(device)) if size <= TEST_FLOAT_BUDGET else None

    def __len__(self) -> int:
        return len(self.split)

    def batches(self, batch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, len(self.split), batch):
            if self.images is not None:
                x = self.images[start : start + batch]
            else:
                x = self.split.as_float(self.split.images[start : start + batch].to(self.device))
            yield x, self.labels[start : start + batch]


@torch.no_grad()
def top1_accuracy(
    models: Sequence[nn.Module],
    test: RealData | TestSplit,
    device: torch.device,
    precision: str = "fp32",
    batch: int = TEST_BATCH,
    batched: bool = False,
) -> list[float]:
    """Top-1 accuracy (percent) of each model on the whole split, in batches shared by all
    models; with ``batched`` (models that :func:`can_train_together`), all models run as one
    stacked forward per batch."""
    split = test if isinstance(test, TestSplit) else TestSplit(test, device)
    for model in models:
        model.eval()
    forward = _stacked_forward(models) if batched and len(models) > 1 else None
    correct = torch.zeros(len(models), dtype=torch.long)
    for x, y in split.batches(batch):
        with runtime.precision(device, precision):
            if forward is not None:
                correct += (forward(x).argmax(-1) == y).sum(-1).cpu()
            else:
                for i, model in enumerate(models):
                    correct[i] += int((model(x).argmax(1) == y).sum())
    return [100.0 * int(c) / len(split) for c in correct]


def _stacked_forward(models: Sequence[nn.Module]) -> Callable[[torch.Tensor], torch.Tensor]:
    """``x -> logits of every model`` (models, B, classes) in one vmap-ed call."""
    from torch.func import vmap

    weights, skeleton, forward = _stacked(models)
    skeleton.eval()
    run_all = vmap(forward, in_dims=(0, None))
    return lambda x: run_all(weights, x)
