"""One distillation as four named steps: request -> plan -> run -> record.

- :class:`DistillRequest`: what the user asked for (frozen; the CLI builds one from options).
- :func:`plan`: everything resolved once, before any heavy work: the method and its config,
  the dataset, the backbone, the experts the run will use, the run key, the output name.
  Reads the registry, writes nothing; printable (``condensekit distill ... --dry-run``).
- :func:`run`: the method's loop on this process's classes, with checkpoints and progress;
  rank-aware (experts trained once by rank 0, classes gathered on rank 0).
- :func:`record`: the registry write (rank 0), then the run's checkpoints are dropped.

:func:`distill` chains the four for library callers (``condensekit.distill(...)``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import json
import logging
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from condensekit import __version__, distributed, plugins, runtime
from condensekit.backbones import check_backbone, create_backbone
from condensekit.checkpoints import FileCheckpointer, NoCheckpoints, run_key
from condensekit.data import check_available, dataset_info, load_dataset
from condensekit.data.base import DatasetInfo
from condensekit.errors import InterruptError, PluginError, RegistryError, UsageError
from condensekit.evaluation.teacher import Teacher, load_teacher, newest_experts, teacher_spec
from condensekit.experts import ExpertsPlan, ExpertsProgress, format_duration, plan_experts, provide_experts
from condensekit.methods.base import DistillContext, Method, ProgressCallback
from condensekit.registry import Registry, SetVersion
from condensekit.registry.refs import default_name, validate_name
from condensekit.synthetic import SyntheticSet

log = logging.getLogger("condensekit.distill")

DEFAULT_ITERATIONS = 1000
DEFAULT_CHECKPOINT_EVERY = 100
#: Written into each run's folder under ``<registry>/runs/<key>/`` (see docs/format.md).
RUN_FILE = "run.json"


@dataclass(frozen=True)
class DistillRequest:
    """What the user asked for, as given: nothing here is resolved or checked yet."""

    method: str
    data: str
    ipc: int
    backbone: str | None = None
    preset: str | None = None
    config: Mapping[str, Any] = field(default_factory=dict)  # method config overrides (None = not given)
    iterations: int | None = None
    seed: int = 0
    device: str = "auto"
    nproc: int = 1
    name: str | None = None
    resolution: int | None = None
    data_root: str | None = None
    registry: str | None = None  # registry root; None: nothing is saved, no checkpoints
    resume: bool = False
    checkpoint_every: int | None = None
    experts: str | None = None  # an experts reference (--experts)
    teacher: str | None = None  # a teacher spec (--teacher; see condensekit.evaluation.teacher)
    teacher_weights: str | None = None  # --teacher-weights FILE for --teacher timm:NAME
    dtype: str = "float32"
    compile: bool = False
    command: tuple[str, ...] | None = None  # the command line, kept with the run's checkpoints


@dataclass(frozen=True)
class Plan:
    """Everything resolved once from a request; :meth:`as_dict` is what ``--dry-run`` prints."""

    request: DistillRequest
    method_cls: type[Method]
    plugin: plugins.PluginInfo
    config: Any  # the method's resolved config dataclass (what the registry records)
    dataset: DatasetInfo
    backbone: str
    iterations: int
    device: torch.device
    rank: int
    world_size: int
    classes: tuple[int, ...]  # this process's classes
    experts: ExpertsPlan | None
    run_key: str
    output_name: str | None  # the registry name the set is saved under (None: not saved)
    checkpoint_every: int
    teacher: Teacher | None = None  # loaded and checked (on the CPU) when the method needs one

    @property
    def ipc(self) -> int:
        return self.request.ipc

    @property
    def registry_root(self) -> Path | None:
        return None if self.request.registry is None else Path(self.request.registry)

    @property
    def run_dir(self) -> Path | None:
        """Where this run's checkpoints live until its set is saved."""
        root = self.registry_root
        return None if root is None else root / "runs" / self.run_key

    def as_dict(self) -> dict[str, Any]:
        return {
            "method": self.plugin.name,
            "distribution": f"{self.plugin.distribution} {self.plugin.distribution_version}",
            "method_version": self.method_cls.version,
            "preset": self.request.preset or self.method_cls.default_preset,
            "config": dataclasses.asdict(self.config),
            "dataset": self.dataset.name,
            "resolution": self.dataset.resolution,
            "ipc": self.ipc,
            "images": self.ipc * self.dataset.num_classes,
            "backbone": self.backbone,
            "iterations": self.iterations,
            "seed": self.request.seed,
            "device": str(self.device),
            "world_size": self.world_size,
            "classes": list(self.classes),
            "experts": None if self.experts is None else self.experts.as_dict(),
            "teacher": None if self.teacher is None else self.teacher.describe(),
            "run_key": self.run_key,
            "run_dir": None if self.run_dir is None else str(self.run_dir),
            "resume": self.request.resume,
            "checkpoint_every": self.checkpoint_every,
            "registry": None if self.registry_root is None else str(self.registry_root),
            "output_name": self.output_name,
            "dtype": self.request.dtype,
            "compile": self.request.compile,
        }


@dataclass
class DistillResult:
    """What :func:`run` produced on this process. On rank 0 ``synset`` is the whole set with
    its provenance; on other ranks it is their share, and :func:`record` saves nothing."""

    plan: Plan
    synset: SyntheticSet
    version: SetVersion | None = None  # once recorded (rank 0 only)

    @property
    def complete(self) -> bool:
        return self.plan.rank == 0


def plan(request: DistillRequest, registry: Registry | None = None) -> Plan:
    """Resolve and validate ``request`` without loading data (fast; errors surface early).

    Every input a run would fail on later is refused here, in one line, before any image is
    decoded, network built or file written: the numbers, the name, the method's config
    ranges (:func:`~condensekit.methods.base.check_config`), the data being there (or
    downloadable from here), ``--ipc`` and real batches against the smallest class (counted
    from the labels alone), the backbone at this resolution (built on the ``meta`` device),
    and the registry (writable; the name not holding another dataset's sets).

    ``registry`` (a :class:`~condensekit.registry.Registry`) is read for experts; by default it
    is opened at ``request.registry``.
    """
    if request.ipc < 1:
        raise UsageError(f"--ipc must be a positive number of images per class, got {request.ipc}")
    if request.iterations is not None and request.iterations < 0:
        raise UsageError(f"--iterations must be >= 0, got {request.iterations}")
    if request.nproc < 1:
        raise UsageError(f"--nproc must be >= 1, got {request.nproc}")
    if request.checkpoint_every is not None and request.checkpoint_every < 0:
        raise UsageError(f"--checkpoint-every must be >= 0, got {request.checkpoint_every}")
    if request.resume and request.registry is None:
        raise UsageError("--resume needs a registry (checkpoints live in it)")
    if request.name is not None:
        validate_name(request.name)
    cls, info = plugins.load_method(request.method)
    ds = dataset_info(request.data, request.resolution)
    ds = dataclasses.replace(ds, class_sizes=check_available(ds.name, "train", ds.resolution, request.data_root))
    smallest = ds.smallest_class
    if smallest is not None and request.ipc > smallest:
        raise UsageError(
            f"--ipc {request.ipc} is more than the {smallest} train images in the smallest class of "
            f"{ds.name}; use --ipc {smallest} or less"
        )
    try:
        method = cls.configured(ds, request.ipc, request.preset, **dict(request.config))
    except TypeError as exc:
        raise UsageError(f"invalid option for method {request.method!r}: {exc}") from None
    config = method.config
    backbone = request.backbone or method.preferred_backbone(ds) or ds.default_backbone
    check_backbone(backbone, channels=ds.channels, num_classes=ds.num_classes, resolution=ds.resolution)
    iterations = request.iterations
    if iterations is None:
        iterations = method.default_iterations(ds, request.ipc)
    if iterations is None:
        iterations = DEFAULT_ITERATIONS
    group = distributed.current()
    rank, world = (group.rank, group.world_size) if group is not None else (0, request.nproc)
    if world > 1 and not cls.partitionable:
        raise UsageError(
            f"method {info.name!r} does not decompose over classes and cannot run on several "
            f"processes; run it without --nproc/torchrun"
        )
    device = runtime.select_device(str(request.device))
    if group is not None:
        device = group.device(device)
    if registry is None and request.registry is not None:
        registry = Registry(request.registry)
    output_name = None
    if request.registry is not None and registry is not None:  # saved only where asked to
        output_name = request.name or default_name(info.name, ds.name, f"ipc{request.ipc}")
        registry.check_writable()  # before hours of work whose set could not be saved
        _check_name_holds(registry, output_name, ds.name)
    experts = None
    experts_request = method.experts_request(ds)
    if experts_request is None and request.experts:
        raise UsageError(f"method {info.name!r} uses no experts; drop --experts")
    if experts_request is not None:
        experts = plan_experts(experts_request, ds, backbone, request.seed, registry, request.experts)
    teacher = _plan_teacher(method, info.name, request, ds, registry)
    key = run_key(
        method=info.name,
        version=cls.version,
        data=ds.name,
        res=ds.resolution,
        ipc=request.ipc,
        backbone=backbone,
        seed=request.seed,
        config=dataclasses.asdict(config),
        experts=None if experts is None else experts.recipe_hash,
        world=world,
        **({} if teacher is None else {"teacher": teacher.identity}),  # keys of teacher-free runs unchanged
    )
    every = DEFAULT_CHECKPOINT_EVERY if request.checkpoint_every is None else request.checkpoint_every
    classes = tuple(distributed.partition(range(ds.num_classes), rank, world))
    return Plan(
        request,
        cls,
        info,
        config,
        ds,
        backbone,
        iterations,
        device,
        rank,
        world,
        classes,
        experts,
        key,
        output_name,
        every,
        teacher,
    )


def _plan_teacher(
    method: Method, name: str, request: DistillRequest, ds: DatasetInfo, registry: Registry | None
) -> Teacher | None:
    """The teacher a method that needs one distills with: named by ``--teacher`` (there is
    no default: which network teaches decides the set), loaded on the CPU, checked against
    the dataset and by the method; a one-line UsageError otherwise, before any data is loaded."""
    spec = teacher_spec(request.teacher, request.teacher_weights)
    if not type(method).needs_teacher:
        if spec is not None:
            raise UsageError(f"method {name!r} distills without a teacher; drop --teacher")
        return None
    if spec is None:
        raise UsageError(f"method {name!r} distills with a trained teacher; {_teacher_hint(method, ds, registry)}")
    teacher = load_teacher(spec, dataset=ds, registry=registry)
    method.check_teacher(teacher)
    return teacher


def _teacher_hint(method: Method, ds: DatasetInfo, registry: Registry | None) -> str:
    """How to name a teacher: the newest stored experts of the dataset, else how to train one."""
    if registry is not None:
        try:
            return (
                f"pass --teacher REF, e.g. --teacher {newest_experts(registry, ds)} (the newest experts of {ds.name})"
            )
        except UsageError:
            pass
    backbone = type(method).teacher_backbone or ds.default_backbone
    res = "" if dataset_info(ds.name).resolution == ds.resolution else f" --res {ds.resolution}"
    return (
        f"train one with `condensekit experts train --data {ds.name}{res} --backbone {backbone} --num 1` and pass "
        f"--teacher NAME:vN, or pass --teacher timm:NAME --teacher-weights FILE"
    )


def _check_name_holds(registry: Registry, name: str, dataset: str) -> None:
    """One name holds the versions of one dataset: ``name:v2`` of another dataset than
    ``name:v1`` would make ``name`` (its latest) and comparisons across versions mean
    different data. RegistryError naming the dataset it holds and the fix."""
    for row in registry.list_sets():
        if row["name"] == name and row["dataset"] not in (None, dataset):
            raise RegistryError(
                f"set name {name!r} holds versions of {row['dataset']} (latest {name}:v{row['latest']}), "
                f"not {dataset}; pass another --name, e.g. --name {name}-{dataset}"
            )


def run(
    plan: Plan,
    *,
    progress: ProgressCallback | None = None,
    notify: Callable[[str], None] | None = None,
    experts_progress: ExpertsProgress | None = None,
) -> DistillResult:
    """Distill this process's classes as planned; on rank 0 the result is the whole set.

    Experts are provided first (loaded, or trained once by rank 0 and handed to the others;
    ``experts_progress`` follows their training); the method's loop then runs with this run's
    checkpoints (``--resume`` continues them), and ``notify`` says what the whole run will
    cost once a few iterations are measured.
    """
    notify = notify or log.info
    runtime.reuse_freed_memory()
    group = distributed.current()
    reported = _Watch(progress, plan, notify)  # its last iteration is what a Ctrl-C reports
    try:
        registry = None if plan.registry_root is None else Registry(plan.registry_root)
        ds = plan.dataset
        real = load_dataset(ds.name, "train", ds.resolution, data_root=plan.request.data_root, device=plan.device)
        make_backbone = backbone_factory(plan.backbone, ds, plan.device, plan.request.compile)
        experts = None
        if plan.experts is not None:
            experts = provide_experts(
                plan.experts, real, registry, plan.device, group, notify, plan.request.data_root, experts_progress
            )
        checkpointer = _checkpointer(plan, notify)
        ctx = DistillContext(
            data=real,
            dataset=ds,
            ipc=plan.ipc,
            iterations=plan.iterations,
            backbone_name=plan.backbone,
            make_backbone=make_backbone,
            device=plan.device,
            seed=plan.request.seed,
            classes=list(plan.classes),
            progress=reported,
            checkpoint=checkpointer,
            experts=experts,
            rank=plan.rank,
            world_size=plan.world_size,
            teacher=None if plan.teacher is None else plan.teacher.to(plan.device),
        )
        started = time.perf_counter()
        synset = plan.method_cls(plan.config).distill(ctx)
        _validate(synset, plan)
        wall = time.perf_counter() - started
        synset.images = synset.images.detach().float().cpu()
        synset.labels = synset.labels.detach().long().cpu()
        if synset.soft_labels is not None:
            synset.soft_labels = synset.soft_labels.detach().float().cpu()
        experts_ref = None if experts is None else experts.metadata.get("ref")
        if group is not None:
            wall = group.max_value(wall)
            gathered = group.gather_set(synset, ds.num_classes)
            if gathered is None:  # not rank 0: rank 0 holds the whole set
                return DistillResult(plan, synset)
            synset = gathered
        synset.metadata = {**synset.metadata, **_provenance(plan, wall, experts_ref)}
        return DistillResult(plan, synset)
    except BaseException as exc:
        distributed.shutdown_owned()
        if isinstance(exc, KeyboardInterrupt):  # say what Ctrl-C kept, and how to go on
            raise InterruptError(_interrupted(plan, reported.last)) from exc
        raise


class _Watch:
    """The progress callback the method sees: passes each report on, remembers the last
    iteration reported (an interrupted run says where it stopped), and once a few iterations
    are timed says what the rest will cost, with the cheaper options, when that is long."""

    #: Iterations timed before the estimate, and the remaining time worth an estimate.
    TIMED, WORTH_SAYING_S = 3, 120.0

    def __init__(self, progress: ProgressCallback | None, plan: Plan, notify: Callable[[str], None]) -> None:
        self._progress = progress
        self._plan = plan
        self._notify = notify
        self._first: tuple[int, float] | None = None
        self.last: int | None = None

    def __call__(self, iteration: int, **metrics: float) -> None:
        now = time.perf_counter()
        if self._first is None:
            self._first = (iteration, now)
        elif iteration - self._first[0] == self.TIMED:
            per_iteration = (now - self._first[1]) / self.TIMED
            remaining = per_iteration * (self._plan.iterations - iteration)
            if remaining > self.WORTH_SAYING_S:
                self._notify(
                    f"about {format_duration(remaining)} left: {per_iteration:.2f} s per iteration on "
                    f"{self._plan.device}, {self._plan.iterations - iteration} iterations to go"
                    f" (cheaper: fewer --iterations{'' if self._plan.device.type == 'cuda' else ', a GPU'})"
                )
        self.last = iteration
        if self._progress is not None:
            self._progress(iteration, **metrics)


def _interrupted(plan: Plan, done: int | None) -> str:
    """The one line of an interrupted run: where it stopped, what was kept, how to go on."""
    where = (
        "interrupted before the first iteration"
        if done is None
        else f"interrupted at iteration {done} of {plan.iterations}"
    )
    run_dir = plan.run_dir
    if run_dir is None or not plan.checkpoint_every:
        why = "without a registry" if run_dir is None else "with --checkpoint-every 0"
        return f"{where}; nothing was kept (a run {why} saves no checkpoints)"
    # A Ctrl-C during a checkpoint save leaves this process's temp file: not worth keeping.
    with contextlib.suppress(OSError):
        _checkpoint_path(plan).with_suffix(f".tmp{os.getpid()}").unlink(missing_ok=True)
    from condensekit.registry.runs import read_run  # reads only the checkpoints' headers

    try:
        kept = read_run(run_dir).iteration
    except OSError:
        kept = None
    if not isinstance(kept, int) or kept <= 0:
        return (
            f"{where}; nothing was kept (no checkpoint yet: one is saved every "
            f"{plan.checkpoint_every} iterations); rerun the command to start again"
        )
    return (
        f"{where}; checkpoint of run {plan.run_key} kept at iteration {kept} "
        f"(condensekit runs); continue with: {_resume_command(plan)}"
    )


def _resume_command(plan: Plan) -> str:
    """The command that continues ``plan`` from its checkpoint: the command line as given,
    with ``--resume``, the registry (which may have come from $CONDENSEKIT_REGISTRY) and,
    for a run torchrun started from ``--nproc N``, that option (the run key depends on it)."""
    if plan.request.command is None:
        return "the same call with resume=True"
    args = list(plan.request.command)

    def given(option: str) -> bool:
        return any(arg == option or arg.startswith(option + "=") for arg in args)

    if not given("--registry") and plan.registry_root is not None:
        args += ["--registry", str(plan.registry_root)]
    if plan.world_size > 1 and not given("--nproc"):
        args += ["--nproc", str(plan.world_size)]
    if "--resume" not in args:
        args.append("--resume")
    return shlex.join(["condensekit", *args])


def record(result: DistillResult) -> SetVersion | None:
    """Save a run's set in the registry (rank 0) and drop its checkpoints; every rank returns
    once the set is saved. Returns the ``SetVersion`` on rank 0 with a registry, else None."""
    plan = result.plan
    group = distributed.current()
    try:
        version = None
        if result.complete and plan.registry_root is not None:
            version = Registry(plan.registry_root).save(result.synset, name=plan.output_name, dtype=plan.request.dtype)
            result.version = version
        if plan.run_dir is not None and not result.complete:
            # On another machine this rank's checkpoint may sit in a registry of its own.
            _checkpoint_path(plan).unlink(missing_ok=True)
        if group is not None:
            group.finish_together()
        if result.complete and plan.run_dir is not None:
            shutil.rmtree(plan.run_dir, ignore_errors=True)
        return version
    finally:
        distributed.shutdown_owned()


def distill(
    method: str,
    data: str,
    ipc: int,
    *,
    registry: Any | None = None,
    progress: ProgressCallback | None = None,
    notify: Callable[[str], None] | None = None,
    **options: Any,
) -> DistillResult:
    """Distill ``ipc`` images per class of ``data`` with ``method`` and save the set in
    ``registry`` (a ``Registry`` or its root; None saves nothing). ``options`` are the fields
    of :class:`DistillRequest` (``iterations``, ``backbone``, ``seed``, ``config``, ...).

    Under torchrun each rank distills its share of the classes; rank 0 saves the set.
    """
    # A Registry, or its root as a str or Path (a Path has a ``root`` attribute too: "/").
    opened = registry if isinstance(registry, Registry) else None
    root = opened.root if opened is not None else registry
    request = DistillRequest(
        method,
        data,
        ipc,
        registry=None if root is None else str(root),
        config=options.pop("config", None) or {},
        **options,
    )
    result = run(plan(request, opened), progress=progress, notify=notify)
    record(result)
    return result


def backbone_factory(
    name: str, ds: DatasetInfo, device: torch.device, compile: bool = False
) -> Callable[[int], torch.nn.Module]:
    """``seed -> fresh network on device``. With ``compile``, the network's ``embed``,
    ``intermediates`` and ``forward`` go through ``torch.compile``: the graph is compiled once
    per input shape and reused by every later network of the same architecture."""

    def make(seed: int) -> torch.nn.Module:
        model = create_backbone(
            name, channels=ds.channels, num_classes=ds.num_classes, resolution=ds.resolution, seed=seed
        ).to(device)
        if compile:
            for view in ("embed", "intermediates", "forward"):
                if callable(getattr(model, view, None)):
                    setattr(model, view, torch.compile(getattr(model, view), dynamic=False))
        return model

    make(0)  # fail fast on a backbone that cannot be built for this data
    return make


def _checkpoint_path(plan: Plan) -> Path:
    assert plan.run_dir is not None
    suffix = f"-rank{plan.rank}" if plan.world_size > 1 else ""
    return plan.run_dir / f"checkpoint{suffix}.pt"


def _checkpointer(plan: Plan, notify: Callable[[str], None]) -> Any:
    """This rank's checkpoint file in the run's folder (rank 0 also describes the run there)."""
    run_dir = plan.run_dir
    if run_dir is None:
        return NoCheckpoints()
    checkpointer = FileCheckpointer(
        _checkpoint_path(plan),
        every=plan.checkpoint_every,
        resume=plan.request.resume,
        registry_root=plan.registry_root,
    )
    if plan.request.resume and not checkpointer.exists():
        notify("no checkpoint of this run to resume from: starting from iteration 0")
    if plan.rank == 0 and plan.checkpoint_every:
        run_dir.mkdir(parents=True, exist_ok=True)
        description = {
            "key": plan.run_key,
            "method": plan.plugin.name,
            "dataset": plan.dataset.name,
            "ipc": plan.ipc,
            "name": plan.output_name,
            "iterations": plan.iterations,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "command": None if plan.request.command is None else list(plan.request.command),
        }
        path = run_dir / RUN_FILE
        if not path.exists():  # a resumed run keeps its first description
            tmp = path.with_suffix(f".tmp{os.getpid()}")  # never a half-written run.json
            tmp.write_text(json.dumps(description, indent=1))
            os.replace(tmp, path)
    return checkpointer


def _validate(synset: SyntheticSet, plan: Plan) -> None:
    """A plugin that breaks the contract gets a PluginError naming what it returned."""
    name = plan.plugin.name
    classes = plan.classes
    ds = plan.dataset
    if not isinstance(synset, SyntheticSet):
        raise PluginError(f"method {name!r} returned {type(synset).__name__}, not a SyntheticSet")
    shape = (len(classes) * plan.ipc, ds.channels, ds.resolution, ds.resolution)
    if tuple(synset.images.shape) != shape:
        raise PluginError(f"method {name!r} returned images of shape {tuple(synset.images.shape)}, expected {shape}")
    want = torch.tensor(list(classes)).repeat_interleave(plan.ipc)
    if not torch.equal(synset.labels.cpu().long(), want):
        raise PluginError(f"method {name!r} returned labels that are not {plan.ipc} per class in class-major order")
    if not torch.isfinite(synset.images).all():
        raise PluginError(f"method {name!r} returned non-finite pixel values")
    if synset.soft_labels is not None:
        _validate_soft_labels(synset.soft_labels, name, shape[0], ds.num_classes)


def _validate_soft_labels(soft: torch.Tensor, name: str, rows: int, num_classes: int) -> None:
    """Soft labels are class probabilities: (images, classes), finite, non-negative, rows summing to 1."""
    if tuple(soft.shape) != (rows, num_classes):
        raise PluginError(
            f"method {name!r} returned soft labels of shape {tuple(soft.shape)}, expected ({rows}, {num_classes})"
        )
    soft = soft.detach().double()
    if not torch.isfinite(soft).all() or (soft < 0).any():
        raise PluginError(f"method {name!r} returned soft labels that are not non-negative probabilities")
    worst = float((soft.sum(dim=1) - 1).abs().max()) if rows else 0.0
    if worst > 1e-4:
        raise PluginError(f"method {name!r} returned soft labels whose rows do not sum to 1 (off by {worst:.2g})")


def _provenance(plan: Plan, wall: float, experts_ref: str | None) -> dict[str, Any]:
    """What the registry keeps about how a set was made."""
    return {
        **plan.dataset.as_metadata(),
        "method": plan.plugin.name,
        "method_version": plan.method_cls.version,
        "distribution": plan.plugin.distribution,
        "distribution_version": plan.plugin.distribution_version,
        "plugin_api": plan.method_cls.plugin_api,
        "condensekit_version": __version__,
        "git_commit": _git_commit(),
        "ipc": plan.ipc,
        "seed": plan.request.seed,
        "config": dataclasses.asdict(plan.config),
        "preset": plan.request.preset or plan.method_cls.default_preset,
        "backbone": plan.backbone,
        "device": str(plan.device),
        "world_size": plan.world_size,
        "compiled": plan.request.compile,
        "wall_time_s": round(wall, 3),
        "iterations": plan.iterations,
        "experts": experts_ref,
        "experts_recipe": None if plan.experts is None else plan.experts.recipe_hash,
        "teacher": None if plan.teacher is None else plan.teacher.describe(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,  # a failing git (not a checkout) means no commit to record
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


__all__: Sequence[str] = [
    "DistillRequest",
    "Plan",
    "DistillResult",
    "plan",
    "run",
    "record",
    "distill",
    "backbone_factory",
]
