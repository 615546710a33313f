"""One distillation run, end to end: resolve the method, data and backbone, run, record.

This is the library function behind ``condensekit distill``; the CLI only parses options
and renders progress. Flow: plugin -> config -> dataset -> backbone -> (experts) ->
``Method.distill(ctx)`` -> validated ``SyntheticSet`` with provenance -> registry.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import logging
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from condensekit import __version__, distributed, plugins, runtime
from condensekit.checkpoints import FileCheckpointer, NoCheckpoints, run_key
from condensekit.data.base import DatasetInfo, RealData
from condensekit.errors import DatasetError, PluginError, UsageError
from condensekit.methods.base import DistillContext, Method, ProgressCallback
from condensekit.runtime import select_device
from condensekit.synthetic import SyntheticSet

log = logging.getLogger("condensekit.distill")

DEFAULT_ITERATIONS = 1000
DEFAULT_CHECKPOINT_EVERY = 100


@dataclass
class DistillResult:
    synset: SyntheticSet
    version: Any | None  # registry.SetVersion when saved (rank 0 only)


@dataclass
class Plan:
    """Everything resolved before any heavy work: validated, cheap, printable."""

    method_cls: type[Method]
    plugin: plugins.PluginInfo
    method: Method
    config: Any
    dataset: DatasetInfo
    ipc: int
    iterations: int
    backbone: str
    seed: int


def plan(
    method: str,
    data: str,
    ipc: int,
    *,
    iterations: int | None = None,
    backbone: str | None = None,
    seed: int = 0,
    preset: str | None = None,
    config: dict[str, Any] | None = None,
    resolution: int | None = None,
) -> Plan:
    """Resolve and validate a run without loading data (fast; errors surface early)."""
    from condensekit.backbones import check_backbone_name
    from condensekit.data import dataset_info

    if ipc < 1:
        raise UsageError(f"--ipc must be a positive number of images per class, got {ipc}")
    if iterations is not None and iterations < 0:
        raise UsageError(f"--iterations must be >= 0, got {iterations}")
    cls, info = plugins.load_method(method)
    try:
        cfg = cls.make_config(preset, **(config or {}))
    except TypeError as exc:
        raise UsageError(f"invalid option for method {method!r}: {exc}") from None
    method_obj = cls(cfg)
    ds = dataset_info(data, resolution)
    resolved = method_obj.resolve_config(ds, ipc)
    method_obj.config = resolved
    chosen = backbone or method_obj.preferred_backbone(ds) or ds.default_backbone
    check_backbone_name(chosen)
    its = iterations
    if its is None:
        its = method_obj.default_iterations(ds, ipc)
    if its is None:
        its = DEFAULT_ITERATIONS
    return Plan(cls, info, method_obj, resolved, ds, ipc, its, chosen, seed)


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _validate(synset: SyntheticSet, p: Plan, classes: Sequence[int]) -> None:
    """A plugin that breaks the contract gets a PluginError naming what it returned."""
    name = p.plugin.name
    expected = len(classes) * p.ipc
    ds = p.dataset
    if not isinstance(synset, SyntheticSet):
        raise PluginError(f"method {name!r} returned {type(synset).__name__}, not a SyntheticSet")
    shape = (expected, ds.channels, ds.resolution, ds.resolution)
    if tuple(synset.images.shape) != shape:
        raise PluginError(f"method {name!r} returned images of shape {tuple(synset.images.shape)}, expected {shape}")
    want = torch.tensor(list(classes)).repeat_interleave(p.ipc)
    if not torch.equal(synset.labels.cpu().long(), want):
        raise PluginError(f"method {name!r} returned labels that are not {p.ipc} per class in class-major order")
    if not torch.isfinite(synset.images).all():
        raise PluginError(f"method {name!r} returned non-finite pixel values")


def _make_backbone_factory(name: str, ds: DatasetInfo, device: torch.device,
                           compile: bool = False) -> Callable[[int], torch.nn.Module]:
    """``seed -> fresh network on device``. With ``compile``, the network's ``embed``,
    ``intermediates`` and ``forward`` go through ``torch.compile``: the graph is compiled once
    per input shape and reused by every later network of the same architecture."""
    from condensekit.backbones import create_backbone

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


def _resolve_experts(p: Plan, real: RealData, registry: Any, experts_ref: str | None, device: torch.device,
                     seed: int, notify: Callable[[str], None], data_root: Any = None) -> Any:
    """The experts a method asked for: ``--experts REF``, else the latest matching experts in
    the registry trained with the requested recipe, else freshly trained (and saved) ones."""
    from condensekit import experts as experts_mod
    from condensekit.data import load_dataset

    request = p.method.experts_request()
    if request is None:
        if experts_ref:
            raise UsageError(f"method {p.plugin.name!r} uses no experts; drop --experts")
        return None
    backbone = request.backbone or p.backbone
    if experts_ref:
        if registry is None:
            raise UsageError("--experts needs a registry to load them from")
        found = registry.load_experts(experts_ref)
        experts_mod.check_experts_match(found, p.dataset, backbone, num=request.num)
        return found
    if registry is not None:
        version = registry.find_experts(p.dataset.name, backbone, p.dataset.resolution, min_experts=request.num)
        if version is not None:
            found = registry.load_experts(version.ref)
            if found.metadata.get("epochs") == request.epochs:
                notify(f"using experts {version.ref} ({len(found)} experts)")
                return found
            notify(f"experts {version.ref} were trained for {found.metadata.get('epochs')} epochs, not "
                   f"{request.epochs}: training new ones (pass --experts {version.ref} to use them anyway)")
    estimate = experts_mod.estimate_expert_seconds(real, backbone, request.epochs, request.num, device)
    notify(
        f"no matching experts in the registry: training {request.num} {backbone} experts on "
        f"{p.dataset.name} for {request.epochs} epochs first (about {estimate / 60:.1f} min)"
    )
    try:
        test = load_dataset(p.dataset.name, "test", p.dataset.resolution, data_root=data_root, device=device)
    except DatasetError:  # test accuracy is a courtesy; training needs only the train split
        test = None
    trained = experts_mod.train_experts(
        real, backbone=backbone, num=request.num, epochs=request.epochs, seed=seed, device=device, test=test
    )
    if registry is not None:
        version = registry.save_experts(trained)
        trained.metadata["ref"] = version.ref
        notify(f"saved experts as {version.ref}")
    return trained


def distill(
    method: str,
    data: str,
    ipc: int,
    *,
    iterations: int | None = None,
    backbone: str | None = None,
    seed: int = 0,
    device: str | torch.device = "auto",
    preset: str | None = None,
    config: dict[str, Any] | None = None,
    registry: Any | None = None,
    name: str | None = None,
    resume: bool = False,
    checkpoint_every: int | None = None,
    data_root: str | Path | None = None,
    resolution: int | None = None,
    progress: ProgressCallback | None = None,
    experts: str | None = None,
    dtype: str = "float32",
    notify: Callable[[str], None] | None = None,
    compile: bool = False,
) -> DistillResult:
    """Distill ``ipc`` images per class of ``data`` with ``method``; save to ``registry``.

    In a class-parallel run (``torch.distributed`` initialized, see ``condensekit.distributed``)
    each rank distills its share of the classes and rank 0 gathers and saves the set; every rank
    returns once it is saved.
    """
    from condensekit.data import load_dataset

    notify = notify or (lambda message: log.info(message))
    runtime.reuse_freed_memory()
    p = plan(method, data, ipc, iterations=iterations, backbone=backbone, seed=seed, preset=preset,
             config=config, resolution=resolution)
    group = distributed.current()
    if group is not None and not p.method_cls.partitionable:
        raise UsageError(
            f"method {p.plugin.name!r} does not decompose over classes and cannot run on several "
            f"processes; run it without --nproc/torchrun"
        )
    if resume and registry is None:
        raise UsageError("--resume needs a registry (checkpoints live in it)")
    dev = torch.device(device) if isinstance(device, torch.device) else select_device(device)
    if group is not None:
        dev = group.device(dev)
    real = load_dataset(p.dataset.name, "train", p.dataset.resolution, data_root=data_root, device=dev)
    make_backbone = _make_backbone_factory(p.backbone, p.dataset, dev, compile)
    found_experts = None
    if p.method.experts_request() is not None or experts:
        # Experts are resolved (or trained) once, by every rank alike: training is seeded.
        found_experts = _resolve_experts(p, real, registry, experts, dev, seed, notify, data_root)
    classes = list(range(p.dataset.num_classes))
    rank, world = 0, 1
    if group is not None:
        rank, world = group.rank, group.world_size
        classes = distributed.partition(classes, rank, world)
    config_dict = dataclasses.asdict(p.config)
    key = run_key(method=p.plugin.name, version=p.method_cls.version, data=p.dataset.name,
                  res=p.dataset.resolution, ipc=ipc, backbone=p.backbone, seed=seed, config=config_dict,
                  experts=None if found_experts is None else found_experts.metadata.get("ref"), world=world)
    every = DEFAULT_CHECKPOINT_EVERY if checkpoint_every is None else checkpoint_every
    if registry is not None:
        suffix = f"-rank{rank}" if world > 1 else ""
        checkpointer: Any = FileCheckpointer(
            Path(registry.root) / "runs" / key / f"checkpoint{suffix}.pt", every=every, resume=resume
        )
        if resume and not checkpointer.exists():
            notify("no checkpoint of this run to resume from: starting from iteration 0")
    else:
        checkpointer = NoCheckpoints()
    ctx = DistillContext(
        data=real,
        dataset=p.dataset,
        ipc=ipc,
        iterations=p.iterations,
        backbone_name=p.backbone,
        make_backbone=make_backbone,
        device=dev,
        seed=seed,
        classes=classes,
        progress=progress or (lambda iteration, **metrics: None),
        checkpoint=checkpointer,
        experts=found_experts,
        rank=rank,
        world_size=world,
    )
    started = time.perf_counter()
    synset = p.method.distill(ctx)
    _validate(synset, p, classes)
    wall = time.perf_counter() - started
    synset.images = synset.images.detach().float().cpu()
    synset.labels = synset.labels.detach().long().cpu()
    if synset.soft_labels is not None:
        synset.soft_labels = synset.soft_labels.detach().float().cpu()
    if group is not None:
        gathered = group.gather_set(synset, p.dataset.num_classes)
        wall = group.max_value(wall)
        if gathered is None:  # not rank 0: rank 0 writes the registry exactly once
            if isinstance(checkpointer, FileCheckpointer):
                checkpointer.discard()
            group.finish_together()
            return DistillResult(synset=synset, version=None)
        synset = gathered
    synset.metadata = {
        **synset.metadata,
        **p.dataset.as_metadata(),
        "method": p.plugin.name,
        "method_version": p.method_cls.version,
        "distribution": p.plugin.distribution,
        "distribution_version": p.plugin.distribution_version,
        "plugin_api": p.method_cls.plugin_api,
        "condensekit_version": __version__,
        "git_commit": _git_commit(),
        "ipc": ipc,
        "seed": seed,
        "config": config_dict,
        "preset": preset or p.method_cls.default_preset,
        "backbone": p.backbone,
        "device": str(dev),
        "world_size": world,
        "compiled": compile,
        "wall_time_s": round(wall, 3),
        "iterations": p.iterations,
        "experts": None if found_experts is None else found_experts.metadata.get("ref"),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    version = None
    if registry is not None:
        version = registry.save(synset, name=name, dtype=dtype)
        if isinstance(checkpointer, FileCheckpointer):
            checkpointer.discard()
    if group is not None:
        group.finish_together()
    return DistillResult(synset=synset, version=version)
