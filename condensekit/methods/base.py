"""The method plugin contract: everything a distillation method implements and receives.

This file is the whole contract (as pytest's ``hookspec.py`` is for pytest): a method is a
subclass of :class:`Method` registered in the ``condensekit.methods`` entry-point group.
Core builds a :class:`DistillContext`, calls :meth:`Method.distill` and stores the returned
:class:`~condensekit.synthetic.SyntheticSet`. A method never opens files or the registry.

Randomness: every random draw comes from :meth:`DistillContext.generator`, derived from
(seed, iteration, class). The same seed gives the same set, a resumed run continues the same
stream, and a class distilled on another process draws exactly what it would draw alone.

Config ranges: each ``Config`` field declares the values it accepts in its metadata (see
:class:`Method`), and core checks them all with :func:`check_config` when it plans a run, so
a bad value is one line before any data is loaded, whichever plugin declared it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import torch

from condensekit.data.base import DatasetInfo, RealData
from condensekit.errors import PluginError, UsageError
from condensekit.synthetic import SyntheticSet

if TYPE_CHECKING:
    from condensekit.evaluation.teacher import Teacher
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
    #: The trained classifier the user named with ``--teacher`` (API 1.2), present when the
    #: method sets ``needs_teacher``: ``teacher.model`` is in eval mode with frozen weights on
    #: ``device`` and takes images normalized with the dataset's mean/std.
    teacher: Teacher | None = None

    def seed_for(self, iteration: int, class_index: int | None = None, stream: str = "") -> int:
        """A 63-bit seed for (run seed, iteration, class, stream), stable across processes."""
        key = f"{self.seed}/{iteration}/{class_index}/{stream}".encode()
        return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1

    def generator(self, iteration: int, class_index: int | None = None, stream: str = "") -> torch.Generator:
        """A fresh CPU generator seeded by :meth:`seed_for`."""
        return torch.Generator().manual_seed(self.seed_for(iteration, class_index, stream))


#: The range keys core reads from a Config field's metadata (besides "help"; other keys are
#: left to the plugin).
MIN, MAX, MIN_EXCLUSIVE, MAX_EXCLUSIVE, CHOICES = "min", "max", "min_exclusive", "max_exclusive", "choices"
#: A ``"max"`` that is not a number but the train images of the dataset's smallest class
#: (e.g. a real batch per class, drawn without replacement).
CLASS_SIZE = "class_size"


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _choices(f: dataclasses.Field[Any], hints: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """A field's allowed values: ``"choices"`` metadata, else the values of a Literal type."""
    declared = f.metadata.get(CHOICES)
    if declared is not None:
        return tuple(declared)
    tp = hints.get(f.name)
    for arg in (tp, *typing.get_args(tp)):  # Literal[...] or Literal[...] | None
        if typing.get_origin(arg) is typing.Literal:
            return typing.get_args(arg)
    return None


def _type_hints(config_cls: type) -> dict[str, Any]:
    """The fields' types, or none where an annotation cannot be evaluated (a Config defined in
    a function): such a field then declares its choices in metadata only."""
    try:
        return typing.get_type_hints(config_cls)
    except (NameError, TypeError):
        return {}


def describe_range(f: dataclasses.Field[Any]) -> str:
    """The declared range of one field in words (``> 0``, ``>= 0 and < 1``, ``<= the smallest
    class's image count``), for ``--help``; ``""`` when it declares none."""
    parts = []
    if f.metadata.get(MIN) is not None:
        parts.append(f"{'>' if f.metadata.get(MIN_EXCLUSIVE) else '>='} {f.metadata[MIN]}")
    high = f.metadata.get(MAX)
    if high is not None:
        shown = "the smallest class's image count" if high == CLASS_SIZE else high
        parts.append(f"{'<' if f.metadata.get(MAX_EXCLUSIVE) else '<='} {shown}")
    return " and ".join(parts)


def check_config(config: Any, dataset: DatasetInfo | None = None) -> None:
    """Refuse, in one line, the first field of ``config`` outside the range its metadata declares.

    Core calls it for every method when it plans a run (on the config after presets and
    overrides, and again once :meth:`Method.resolve_config` filled the auto values), so a
    plugin declares its ranges instead of checking them, and ``--lr-img -1`` fails before any
    data is loaded. None values ("chosen from dataset and IPC") are skipped until resolved.
    ``"max": "class_size"`` is checked only when ``dataset`` knows its class sizes.
    """
    hints = _type_hints(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if value is None:
            continue
        flag = _flag(f.name)
        choices = _choices(f, hints)
        if choices is not None and value not in choices:
            raise UsageError(f"{flag} must be one of {', '.join(map(str, choices))}, got {value!r}")
        low, high = f.metadata.get(MIN), f.metadata.get(MAX)
        if high == CLASS_SIZE:
            high = None if dataset is None else dataset.smallest_class
        if low is None and high is None:
            continue
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or not math.isfinite(value):
            raise UsageError(f"{flag} must be a finite number, got {value!r}")
        if low is not None and not (value > low if f.metadata.get(MIN_EXCLUSIVE) else value >= low):
            raise UsageError(f"{flag} must be {'>' if f.metadata.get(MIN_EXCLUSIVE) else '>='} {low}, got {value}")
        if high is not None and not (value < high if f.metadata.get(MAX_EXCLUSIVE) else value <= high):
            sign = "<" if f.metadata.get(MAX_EXCLUSIVE) else "<="
            if f.metadata.get(MAX) == CLASS_SIZE and dataset is not None:
                raise UsageError(
                    f"{flag} must be {sign} {high}, the train images in the smallest class of {dataset.name}, "
                    f"got {value}; pass {flag} {high} or less"
                )
            raise UsageError(f"{flag} must be {sign} {high}, got {value}")


def check_metadata(config_cls: type) -> None:
    """Refuse (PluginError) range metadata core cannot read, so a typo never turns a check off
    silently: ``min``/``max`` numbers (``max`` may be ``"class_size"``), exclusivity flags
    bools, ``choices`` a non-empty collection."""
    for f in dataclasses.fields(config_cls):
        where = f"{config_cls.__name__}.{f.name}"
        for key in (MIN, MAX):
            bound = f.metadata.get(key)
            numeric = isinstance(bound, (int, float)) and not isinstance(bound, bool)
            if bound is not None and not numeric and not (key == MAX and bound == CLASS_SIZE):
                allowed = 'a number or "class_size"' if key == MAX else "a number"
                raise PluginError(f"{where} metadata {key!r} is {bound!r}; make it {allowed}")
        for key in (MIN_EXCLUSIVE, MAX_EXCLUSIVE):
            if not isinstance(f.metadata.get(key, False), bool):
                raise PluginError(f"{where} metadata {key!r} is {f.metadata[key]!r}; make it True or False")
        choices = f.metadata.get(CHOICES)
        if choices is not None and (isinstance(choices, str) or not isinstance(choices, (Sequence, frozenset, set))):
            raise PluginError(f"{where} metadata 'choices' is {choices!r}; make it a tuple of the allowed values")
        if choices is not None and not choices:
            raise PluginError(f"{where} metadata 'choices' is empty; list the allowed values")


def fit_to_classes(config: Any, dataset: DatasetInfo, given: Mapping[str, Any]) -> Any:
    """``config`` with each ``"max": "class_size"`` field that the user did not give capped at
    the smallest class (so a default real batch of 256 becomes 200 on 200 images per class,
    and the resolved config records it); a value the user gave is left for
    :func:`check_config` to refuse."""
    smallest = dataset.smallest_class
    if smallest is None:
        return config
    capped = {
        f.name: smallest
        for f in dataclasses.fields(config)
        if f.metadata.get(MAX) == CLASS_SIZE
        and given.get(f.name) is None
        and isinstance(getattr(config, f.name), int)
        and getattr(config, f.name) > smallest
    }
    return dataclasses.replace(config, **capped) if capped else config


class Method:
    """Base class of every distillation method plugin.

    Subclasses set the class attributes and implement :meth:`distill`. ``Config`` is a
    dataclass; each field becomes a CLI option ``--field-name`` with its default and the
    ``help`` text from ``field(metadata={"help": ...})``. Fields typed ``X | None`` with default
    None mean "chosen from dataset and IPC" by :meth:`resolve_config` (say what is chosen in
    the help text: ``--help`` shows it).

    A field declares the values it accepts in the same metadata, and core enforces them for
    every method (:func:`check_config`, before any work), so ``distill`` never sees a value
    outside them:

    - ``"min"`` / ``"max"``: inclusive bounds of a number; ``"min_exclusive": True`` /
      ``"max_exclusive": True`` make them strict (a learning rate: ``"min": 0,
      "min_exclusive": True``; a momentum: ``"min": 0, "max": 1, "max_exclusive": True``);
    - ``"max": "class_size"``: at most the train images of the dataset's smallest class (a
      real batch per class drawn without replacement). A default or preset value above it is
      capped there (the resolved config records the cap); a value the user gave is refused;
    - ``"choices"``: the allowed values (a ``Literal[...]`` type declares them too).

    Rules that tie several fields together, or a field to the dataset, stay in
    :meth:`resolve_config` as one-line ``UsageError`` s.
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
    #: True when the method distills with a trained classifier (RDED, SRe2L; API 1.2): core
    #: then requires ``--teacher``, loads and checks it against the dataset before any work
    #: (and :meth:`check_teacher`), hands it over as ``ctx.teacher`` and records it in the set,
    #: whose ``kd`` evaluation uses it unless told otherwise.
    needs_teacher: ClassVar[bool] = False
    #: The backbone a teacher of this method is suggested to be (hints, the conformance kit's
    #: teacher); None: the dataset's default.
    teacher_backbone: ClassVar[str | None] = None

    def __init__(self, config: Any | None = None) -> None:
        self.config = config if config is not None else self.make_config()

    @classmethod
    def make_config(cls, preset: str | None = None, **overrides: Any) -> Any:
        """A config from the defaults, then the preset, then explicit overrides, with every
        declared range checked (:func:`check_config`; the class size is not known here)."""
        values: dict[str, Any] = {}
        chosen = preset if preset is not None else cls.default_preset
        if chosen is not None:
            if chosen not in cls.presets:
                raise UsageError(f"unknown preset {chosen!r} for {cls.name}; choose one of {', '.join(cls.presets)}")
            values.update(cls.presets[chosen])
        values.update({k: v for k, v in overrides.items() if v is not None})
        check_metadata(cls.Config)  # a plugin whose metadata core cannot read fails when it loads
        config = cls.Config(**values)
        check_config(config)
        return config

    @classmethod
    def configured(cls, dataset: DatasetInfo, ipc: int, preset: str | None = None, **overrides: Any) -> Method:
        """The method as core runs it: config from defaults, preset and overrides, fitted to
        the dataset's class sizes (:func:`fit_to_classes`), resolved once for ``dataset`` and
        ``ipc`` and checked again with its auto values (:meth:`distill` reads ``self.config``)."""
        config = fit_to_classes(cls.make_config(preset, **overrides), dataset, overrides)
        check_config(config, dataset)
        resolved = cls(config).resolve_config(dataset, ipc)
        check_config(resolved, dataset)
        return cls(resolved)

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

    def check_teacher(self, teacher: Teacher) -> None:
        """Refuse, with a one-line ``UsageError`` naming the fix, a teacher this configuration
        cannot distill with (e.g. one without BatchNorm layers for BN-statistics matching).
        Core calls it once the teacher is loaded and checked against the dataset, before any
        data is loaded (API 1.2). The default accepts any classifier."""

    def relabel(self, views: torch.Tensor, labels: torch.Tensor, teacher: torch.nn.Module) -> torch.Tensor:
        """Soft targets of augmented training views, for evaluation protocols whose teacher
        relabels every view (``kd``); override it to ship your own relabelling with the sets
        your method makes (API 1.1).

        ``views`` (B, C, H, W) are the exact images a student trains on in one step: the set's
        images normalized in the dataset's space, after the protocol's augmentation and
        CutMix. ``labels`` (B,) are the hard labels of the images the views were made from
        (before CutMix pasted a box of another image). ``teacher`` is the evaluation's trained
        network (eval mode, frozen weights) on the views' device; calling it is up to you.
        Return logits (B, num_classes): the protocol softens them with its temperature, and
        the student learns ``KL(softmax(logits / T) || softmax(student / T))``. Core calls it
        under ``torch.no_grad`` and the evaluation's autocast, once per training step, with
        ``self.config`` the config the set was made with; it may pass the views of several
        runs at once, so treat every view on its own. The default is the plain teacher.
        """
        out: torch.Tensor = teacher(views)
        return out

    def distill(self, ctx: DistillContext) -> SyntheticSet:
        """Produce ``ctx.ipc`` images for each class in ``ctx.classes`` (class-major order),
        with ``self.config`` already resolved (see :meth:`configured`).

        The returned set's ``metadata`` may add method-specific facts; core adds provenance.
        """
        raise NotImplementedError
