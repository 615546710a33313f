"""The method plugin contract: everything a distillation method implements and receives.

This file is the whole contract (as pytest's ``hookspec.py`` is for pytest): a method is a
subclass of :class:`Method` registered in the ``condensekit.methods`` entry-point group.
Core builds a :class:`DistillContext`, calls :meth:`Method.distill` and stores the returned
:class:`~condensekit.synthetic.SyntheticSet`. A method never opens files or the registry.

Randomness: every random draw comes from :meth:`DistillContext.generator`, derived from
(seed, iteration, class). The same seed gives the same set, a resumed run continues the same
stream, and a class distilled on another process draws exactly what it would draw alone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import torch

from condensekit.data.base import DatasetInfo, RealData
from condensekit.synthetic import SyntheticSet

if TYPE_CHECKING:
    from condensekit.experts import Experts


class ProgressCallback(Protocol):
    def __call__(self, iteration: int, **metrics: float) -> None:
        """Called after iteration ``iteration`` (1-based) with scalar metrics (e.g. loss)."""


class Checkpointer(Protocol):
    """Where a method keeps its resumable state; core decides the file and the cadence."""

    every: int  # save every this many iterations (0: never)

    def load(self) -> tuple[int, dict[str, Any]] | None:
        """The (completed iterations, state) to resume from, or None to start fresh."""

    def save(self, iteration: int, state: dict[str, Any]) -> None:
        """Persist ``state`` (tensors and plain values) after ``iteration`` iterations."""


@dataclass(frozen=True)
class ExpertsRequest:
    """What a method asks core to provide as ``ctx.experts`` (trained real-data models).

    Leave ``num`` and ``epochs`` None unless the user asked for a recipe: core then uses the
    newest stored experts for the dataset x backbone x resolution, and trains the default
    recipe (5 experts, ``default_epochs``) only when none are stored. Naming either one asks
    for exactly that recipe (with the run's seed): stored experts are reused only when their
    whole recipe matches.
    """

    num: int | None = None
    epochs: int | None = None
    backbone: str | None = None  # None: the run's backbone
    default_epochs: int = 60


@dataclass
class DistillContext:
    """Everything core hands to :meth:`Method.distill`."""

    data: RealData  # training split on ``device``, per-class access
    dataset: DatasetInfo
    ipc: int  # images per class to produce (stored images)
    iterations: int
    backbone_name: str
    make_backbone: Callable[[int], torch.nn.Module]  # seed -> fresh network on ``device``
    device: torch.device
    seed: int
    classes: Sequence[int]  # the classes this process distills (all, unless class-parallel)
    progress: ProgressCallback
    checkpoint: Checkpointer
    experts: Experts | None = None  # present when the method asked for them
    rank: int = 0
    world_size: int = 1

    def seed_for(self, iteration: int, class_index: int | None = None, stream: str = "") -> int:
        """A 63-bit seed for (run seed, iteration, class, stream), stable across processes."""
        key = f"{self.seed}/{iteration}/{class_index}/{stream}".encode()
        return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1

    def generator(self, iteration: int, class_index: int | None = None, stream: str = "") -> torch.Generator:
        """A fresh CPU generator seeded by :meth:`seed_for`."""
        return torch.Generator().manual_seed(self.seed_for(iteration, class_index, stream))


class Method:
    """Base class of every distillation method plugin.

    Subclasses set the class attributes and implement :meth:`distill`. ``Config`` is a
    dataclass; each field becomes a CLI option ``--field-name`` with its default and the
    ``help`` text from ``field(metadata={"help": ...})``. Fields typed ``X | None`` with default
    None mean "chosen from dataset and IPC" by :meth:`resolve_config`.
    """

    name: ClassVar[str]  # the entry-point name, e.g. "dm"
    version: ClassVar[str]  # the method implementation's version
    plugin_api: ClassVar[str]  # the contract version this class implements, e.g. "1.0" (checked at load)
    Config: ClassVar[type]  # a dataclass type
    presets: ClassVar[dict[str, dict[str, Any]]] = {}  # --preset NAME -> field overrides
    default_preset: ClassVar[str | None] = None
    #: True when the objective decomposes over classes, so classes can be distilled on
    #: several processes (each gets ``ctx.classes``) and gathered.
    partitionable: ClassVar[bool] = False
    #: Config overrides for a few-iteration CPU smoke run (the conformance kit uses them).
    smoke_config: ClassVar[dict[str, Any]] = {}

    def __init__(self, config: Any | None = None) -> None:
        self.config = config if config is not None else self.make_config()

    @classmethod
    def make_config(cls, preset: str | None = None, **overrides: Any) -> Any:
        """A config from the defaults, then the preset, then explicit overrides."""
        values: dict[str, Any] = {}
        chosen = preset if preset is not None else cls.default_preset
        if chosen is not None:
            if chosen not in cls.presets:
                from condensekit.errors import UsageError

                raise UsageError(f"unknown preset {chosen!r} for {cls.name}; choose one of {', '.join(cls.presets)}")
            values.update(cls.presets[chosen])
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.Config(**values)

    @classmethod
    def configured(cls, dataset: DatasetInfo, ipc: int, preset: str | None = None, **overrides: Any) -> Method:
        """The method as core runs it: config from defaults, preset and overrides, resolved
        once for ``dataset`` and ``ipc`` (:meth:`distill` reads it as ``self.config``)."""
        return cls(cls(cls.make_config(preset, **overrides)).resolve_config(dataset, ipc))

    def resolve_config(self, dataset: DatasetInfo, ipc: int) -> Any:
        """A copy of ``self.config`` with the "auto" (None) fields filled from the dataset and
        IPC, validated; the result is what is recorded. Core calls it once, before any work."""
        return self.config

    def default_iterations(self, dataset: DatasetInfo, ipc: int) -> int | None:
        """Iterations when the user gives no ``--iterations`` (None: core's default)."""
        return None

    def preferred_backbone(self, dataset: DatasetInfo) -> str | None:
        """A backbone this configuration calls for (None: ``--backbone`` or the dataset's
        default). ``--backbone`` always wins."""
        return None

    def experts_request(self, dataset: DatasetInfo) -> ExpertsRequest | None:
        """Return a request when the method needs trained experts in ``ctx.experts`` (called
        with the resolved config, before any work: core plans which experts the run uses)."""
        return None

    def distill(self, ctx: DistillContext) -> SyntheticSet:
        """Produce ``ctx.ipc`` images for each class in ``ctx.classes`` (class-major order),
        with ``self.config`` already resolved (see :meth:`configured`).

        The returned set's ``metadata`` may add method-specific facts; core adds provenance.
        """
        raise NotImplementedError
