"""Evaluation protocols: how a fresh network is trained on a synthetic set before testing.

Numbers in this field move by several points with the recipe (epochs, augmentation, CutMix,
schedule), so a protocol is a named, complete recipe and is stored with every result.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from condensekit.errors import UsageError

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Protocol:
    """A complete training recipe for evaluating a synthetic set.

    ``epochs`` is the number a recipe's users quote (DC's ``epoch_eval_train``, IDC's
    ``epochs``); a network trains :attr:`trained_epochs` ``= epochs + extra_epochs`` of them.
    ``milestones`` are fractions of ``epochs``: after ``floor(m * epochs) + milestone_offset``
    trained epochs the learning rate is multiplied by ``gamma``. ``reset_momentum`` clears
    SGD's momentum buffers at each milestone (DC rebuilds its optimizer there; IDC's
    MultiStepLR keeps them).

    DC's ``evaluate_synset`` for ``epoch_eval_train = E`` runs ``for ep in range(E + 1)`` and
    decays (with a new optimizer) after epoch ``ep == E // 2 + 1``: E + 1 epochs, the first
    E // 2 + 2 at the full rate, hence ``extra_epochs=1`` and ``milestone_offset=2`` for ``dc``
    (E = 300: 301 epochs, 152 at 0.01 and 149 at 0.001). IDC trains exactly ``epochs`` and
    decays after ``floor(m * epochs)``: both 0.

    ``optimizer`` and ``schedule`` name entries of :data:`OPTIMIZERS` and :data:`SCHEDULES`,
    ``targets`` one of :data:`TARGETS`: what a network learns from, the set's labels or a
    teacher relabelling every augmented view (``kd``), softened at ``temperature``.
    ``ipc_batches`` sizes the batch from the set's images per class (RDED: the batch of the
    largest listed IPC not above the set's, times the ``class_batch_factor`` for that many
    classes); an explicit ``batch`` override clears both (:attr:`DERIVED`).
    """

    name: str
    epochs: int
    batch: int
    lr: float
    momentum: float = 0.9
    weight_decay: float = 5e-4
    milestones: tuple[float, ...] = (0.5,)
    gamma: float = 0.1
    reset_momentum: bool = False
    extra_epochs: int = 0  # trained beyond ``epochs`` (DC: 1)
    milestone_offset: int = 0  # added to every milestone epoch (DC: 2)
    dsa: bool = True
    dsa_strategy: str = "color_crop_cutout_flip_scale_rotate"
    dsa_mode: str = "dsa"
    cutmix_prob: float = 0.0
    cutmix_beta: float = 1.0
    no_flip_datasets: tuple[str, ...] = ()  # datasets whose DSA drops 'flip' (digits)
    description: str = ""
    optimizer: str = "sgd"  # OPTIMIZERS key
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW's
    decay_all: bool = True  # False: weight decay on conv/linear weights only (RDED's get_parameters)
    schedule: str = "step"  # SCHEDULES key
    targets: str = "stored"  # TARGETS key
    temperature: float = 1.0  # softens the teacher's and the student's logits (targets "teacher")
    ipc_batches: tuple[tuple[int, int], ...] = ()  # (IPC, batch), ascending
    class_batch_factor: tuple[tuple[int, int], ...] = ()  # (classes, factor): batch x factor from that many

    #: Fields an override of the key clears (and so are no overrides of their own).
    DERIVED: ClassVar[dict[str, tuple[str, ...]]] = {"batch": ("ipc_batches", "class_batch_factor")}
    #: Fields left out of :meth:`as_dict` where all of them are at their defaults, so recipes
    #: recorded before they existed (stored experts' ``recipe_hash``) read and hash the same.
    OPTIONAL_FIELDS: ClassVar[tuple[str, ...]] = (
        "optimizer",
        "betas",
        "decay_all",
        "schedule",
        "targets",
        "temperature",
        "ipc_batches",
        "class_batch_factor",
    )

    @property
    def trained_epochs(self) -> int:
        """How many epochs a network actually trains."""
        return self.epochs + self.extra_epochs

    def milestone_epochs(self) -> list[int]:
        """Trained-epoch counts after which the learning rate decays."""
        # The epsilon keeps 2/3 * 1500 at 1000 despite float rounding (IDC: 2 * E // 3).
        return [int(m * self.epochs + 1e-9) + self.milestone_offset for m in self.milestones]

    def lr_at(self, epoch: int) -> float:
        """Learning rate of epoch ``epoch`` (0-based), from the protocol's schedule."""
        return self.lr * SCHEDULES[self.schedule](self, epoch)

    @property
    def relabels(self) -> bool:
        """Whether a teacher relabels every augmented view (the protocol needs a teacher)."""
        return TARGETS[self.targets].teacher

    @property
    def uses_stored_soft_labels(self) -> bool:
        """Whether a set's stored soft labels are the targets (else its hard labels, or the teacher)."""
        return TARGETS[self.targets].stored_soft

    def with_overrides(self, **overrides: Any) -> Protocol:
        """A copy with the non-None ``overrides`` applied, validated."""
        values = {k: v for k, v in overrides.items() if v is not None}
        unknown = set(values) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise UsageError(f"unknown protocol parameter(s) {', '.join(sorted(unknown))}")
        for key, cleared in self.DERIVED.items():
            if key in values:
                values.update({name: () for name in cleared if name not in values})
        protocol = dataclasses.replace(self, **values)
        for name, registry in (("optimizer", OPTIMIZERS), ("schedule", SCHEDULES), ("targets", TARGETS)):
            if getattr(protocol, name) not in registry:
                raise UsageError(
                    f"unknown protocol {name} {getattr(protocol, name)!r}; choose one of {', '.join(registry)}"
                )
        if not protocol.temperature > 0:
            raise UsageError(f"protocol temperature must be > 0, got {protocol.temperature}")
        for name in ("epochs", "batch"):
            if getattr(protocol, name) < 1:
                raise UsageError(f"--{name} must be >= 1, got {getattr(protocol, name)}")
        for name in ("extra_epochs", "milestone_offset"):
            if getattr(protocol, name) < 0:
                raise UsageError(f"protocol {name} must be >= 0, got {getattr(protocol, name)}")
        if protocol.lr <= 0:
            raise UsageError(f"--lr must be > 0, got {protocol.lr}")
        return protocol

    def for_dataset(self, dataset: str) -> Protocol:
        """The protocol as applied to ``dataset`` (IDC drops flips for digit datasets)."""
        if dataset not in self.no_flip_datasets:
            return self
        kept = [op for op in self.dsa_strategy.split("_") if op != "flip"]
        return dataclasses.replace(self, dsa_strategy="_".join(kept) or "none")

    def for_set(self, ipc: int, num_classes: int) -> Protocol:
        """The protocol as applied to a set of ``ipc`` images per class of ``num_classes``
        classes: the batch of its ``ipc_batches`` (unchanged without them)."""
        listed = [batch for at, batch in self.ipc_batches if at <= ipc] or [b for _, b in self.ipc_batches[:1]]
        if not listed:
            return self
        factor = max([f for classes, f in self.class_batch_factor if num_classes >= classes], default=1)
        return dataclasses.replace(self, batch=listed[-1] * factor)

    def overrides_against(self, base: Protocol) -> dict[str, Any]:
        """The fields that differ from ``base`` (what makes a result not a ``base`` result),
        leaving out the fields an override cleared (:attr:`DERIVED`)."""
        changed = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        changed = {k: v for k, v in changed.items() if v != getattr(base, k)}
        for key, cleared in self.DERIVED.items():
            if key in changed:
                for name in cleared:
                    changed.pop(name, None)
        return changed

    def as_dict(self) -> dict[str, Any]:
        """The recipe as recorded with results, with its ``milestone_epochs``.

        ``extra_epochs`` and ``milestone_offset`` are left out where both are 0, and the
        :attr:`OPTIONAL_FIELDS` where all are at their defaults, so a recipe recorded before
        they existed reads, and hashes (stored experts' ``recipe_hash``), the same."""
        out = dataclasses.asdict(self)
        out["milestones"] = list(self.milestones)
        out["no_flip_datasets"] = list(self.no_flip_datasets)
        out["milestone_epochs"] = self.milestone_epochs()
        if not (self.extra_epochs or self.milestone_offset):
            del out["extra_epochs"], out["milestone_offset"]
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        omitted = all(getattr(self, name) == defaults[name] for name in self.OPTIONAL_FIELDS)
        for name in self.OPTIONAL_FIELDS:
            if omitted:
                del out[name]
            elif isinstance(out[name], tuple):
                out[name] = [list(v) if isinstance(v, tuple) else v for v in out[name]]
        return out


# --- what the names in a protocol stand for ---------------------------------------------------


def _step(protocol: Protocol, epoch: int) -> float:
    """x ``gamma`` after each of the protocol's milestone epochs (DC, IDC)."""
    return protocol.gamma ** sum(1 for m in protocol.milestone_epochs() if epoch >= m)


def _half_cosine(protocol: Protocol, epoch: int) -> float:
    """RDED's (and DD-Ranking's ``cosine``) ``LambdaLR``, stepped once per epoch:
    ``0.5 * (1 + cos(pi * epoch / epochs / 2))``, from 1 down to 0.5 at ``epochs``."""
    return 0.5 * (1.0 + math.cos(math.pi * epoch / protocol.epochs / 2)) if epoch <= protocol.epochs else 0.0


#: ``schedule`` -> the learning-rate factor of a (0-based) epoch.
SCHEDULES: dict[str, Callable[[Protocol, int], float]] = {"step": _step, "half_cosine": _half_cosine}


def _param_groups(named: Sequence[tuple[str, torch.Tensor]], protocol: Protocol, run_dims: int) -> list[dict[str, Any]]:
    """All parameters in one group, or (``decay_all`` False) RDED's ``get_parameters``: weight
    decay only on weights of more than one dimension (convolutions, linear layers); biases and
    norm parameters in a group without it. ``run_dims`` leading dimensions stack runs."""
    if protocol.decay_all:
        return [{"params": [p for _, p in named]}]
    decayed = [p for name, p in named if "weight" in name and p.dim() - run_dims > 1]
    kept = [p for name, p in named if not ("weight" in name and p.dim() - run_dims > 1)]
    return [{"params": decayed}, {"params": kept, "weight_decay": 0.0}]


def _sgd(named: Sequence[tuple[str, torch.Tensor]], protocol: Protocol, run_dims: int) -> torch.optim.Optimizer:
    import torch

    groups = _param_groups(named, protocol, run_dims)
    return torch.optim.SGD(groups, lr=protocol.lr, momentum=protocol.momentum, weight_decay=protocol.weight_decay)


def _adamw(named: Sequence[tuple[str, torch.Tensor]], protocol: Protocol, run_dims: int) -> torch.optim.Optimizer:
    import torch

    groups = _param_groups(named, protocol, run_dims)
    return torch.optim.AdamW(groups, lr=protocol.lr, betas=protocol.betas, weight_decay=protocol.weight_decay)


#: ``optimizer`` -> ``(named parameters, protocol, leading run dimensions) -> optimizer``.
OPTIMIZERS: dict[str, Callable[[Sequence[tuple[str, torch.Tensor]], Protocol, int], torch.optim.Optimizer]] = {
    "sgd": _sgd,
    "adamw": _adamw,
}


@dataclass(frozen=True)
class Targets:
    """What a network learns from: ``stored_soft`` the set's soft labels where it has them
    (else its hard labels); ``teacher`` a teacher's logits on each augmented view."""

    stored_soft: bool
    teacher: bool


#: ``targets`` -> what the network learns from.
TARGETS: dict[str, Targets] = {
    "stored": Targets(stored_soft=True, teacher=False),
    "hard": Targets(stored_soft=False, teacher=False),
    "teacher": Targets(stored_soft=False, teacher=True),
}


PROTOCOLS: dict[str, Protocol] = {
    "dc": Protocol(
        name="dc",
        epochs=1000,
        batch=256,
        lr=0.01,
        milestones=(0.5,),
        gamma=0.1,
        reset_momentum=True,
        extra_epochs=1,
        milestone_offset=2,
        dsa_strategy="color_crop_cutout_flip_scale_rotate",
        dsa_mode="dsa",
        description="DC/DSA/DM evaluate_synset: E + 1 epochs, SGD 0.01, x0.1 after E // 2 + 2, per-sample DSA",
    ),
    "idc": Protocol(
        name="idc",
        epochs=1500,
        batch=64,
        lr=0.01,
        milestones=(2 / 3, 5 / 6),
        gamma=0.2,
        reset_momentum=False,
        dsa_strategy="color_crop_flip_scale_rotate",
        dsa_mode="idc",
        cutmix_prob=0.5,
        cutmix_beta=1.0,
        no_flip_datasets=("mnist", "svhn"),
        description="IDC/DANCE: batch 64, x0.2 at 2/3 and 5/6, IDC DiffAug + CutMix p=0.5",
    ),
    # RDED's validation/main.py + argument.py (LINs-lab/RDED 3f6453d) for its small-dataset
    # scripts (cifar10_10ipc_conv3_to_conv3_cr5.sh: factor 1, 300 epochs): see docs/evaluation.md.
    "kd": Protocol(
        name="kd",
        epochs=300,
        batch=50,
        lr=0.001,
        weight_decay=0.01,
        optimizer="adamw",
        betas=(0.9, 0.999),
        decay_all=False,
        schedule="half_cosine",
        milestones=(),
        dsa_strategy="flip",
        dsa_mode="idc",
        cutmix_prob=1.0,
        cutmix_beta=1.0,
        targets="teacher",
        temperature=20.0,
        ipc_batches=((1, 10), (10, 50), (50, 100)),
        class_batch_factor=((100, 2),),
        description="RDED: teacher relabels every view (KL at T = 20), AdamW 0.001, half-cosine, flip + CutMix",
    ),
}


def get_protocol(name: str) -> Protocol:
    """The registered protocol ``name``."""
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise UsageError(f"unknown protocol {name!r}; choose one of {', '.join(PROTOCOLS)}") from None
