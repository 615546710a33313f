"""Test helpers and the method conformance kit, for condensekit and for plugin authors.

``make_context`` builds a real :class:`~condensekit.methods.base.DistillContext` on a tiny
real dataset (the embedded ``cifar10-mini`` by default) for unit tests of a method's
internals. :class:`MethodConformance` is a pytest test class that checks the plugin
contract end to end; subclass it and set ``method``::

    from condensekit.testing import MethodConformance

    class TestMyMethod(MethodConformance):
        method = "my-method"
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from condensekit.checkpoints import FileCheckpointer, NoCheckpoints
from condensekit.evaluation.teacher import Teacher
from condensekit.methods.base import DistillContext, ProgressCallback

__all__ = ["isolate_environment", "make_context", "make_teacher", "MethodConformance"]


def isolate_environment(cache_dir: str | Path, data_root: str | Path | None = None) -> None:
    """Test-session setup: caches in ``cache_dir``, ``data_root`` as the data root unless
    ``CONDENSEKIT_DATA`` is set, no registry override, at most two intra-op threads."""
    import os

    os.environ["CONDENSEKIT_CACHE"] = str(cache_dir)
    if not os.environ.get("CONDENSEKIT_DATA") and data_root is not None and Path(data_root).is_dir():
        os.environ["CONDENSEKIT_DATA"] = str(data_root)
    os.environ.pop("CONDENSEKIT_REGISTRY", None)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def make_context(
    dataset: str = "cifar10-mini",
    ipc: int = 2,
    iterations: int = 5,
    backbone: str | None = None,
    seed: int = 0,
    classes: Sequence[int] | None = None,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int = 0,
    resume: bool = False,
    progress: ProgressCallback | None = None,
    data_root: str | Path | None = None,
    experts: Any = None,
    resolution: int | None = None,
    device: str = "cpu",
    compile: bool = False,
    teacher: Teacher | None = None,
) -> DistillContext:
    """A real context on CPU: real data, the dataset's backbone, optional checkpoints, and
    ``teacher`` (see :func:`make_teacher`) for methods that distill with one."""
    from condensekit.data import dataset_info, load_dataset
    from condensekit.distill import backbone_factory

    info = dataset_info(dataset, resolution)
    dev = torch.device(device)
    real = load_dataset(dataset, "train", info.resolution, data_root=data_root, device=dev)
    name = backbone or info.default_backbone
    checkpointer: Any = NoCheckpoints()
    if checkpoint_dir is not None:
        checkpointer = FileCheckpointer(Path(checkpoint_dir) / "checkpoint.pt", checkpoint_every, resume)
    return DistillContext(
        data=real,
        dataset=info,
        ipc=ipc,
        iterations=iterations,
        backbone_name=name,
        make_backbone=backbone_factory(name, info, dev, compile),
        device=dev,
        seed=seed,
        classes=list(range(info.num_classes)) if classes is None else list(classes),
        progress=progress or (lambda iteration, **metrics: None),
        checkpoint=checkpointer,
        experts=experts,
        teacher=None if teacher is None else teacher.to(dev),
    )


def make_teacher(
    dataset: str = "cifar10-mini",
    backbone: str | None = None,
    epochs: int = 0,
    seed: int = 0,
    resolution: int | None = None,
    data_root: str | Path | None = None,
) -> Teacher:
    """A real teacher for tests, on the CPU: a fresh ``backbone`` network (the dataset's by
    default) of ``dataset``, trained ``epochs`` epochs on its train split with the experts
    recipe when ``epochs`` > 0 (0: the untrained network, enough to check plumbing). It is
    what ``ctx.teacher`` holds in a real run: eval mode, frozen weights."""
    from condensekit.backbones import create_backbone
    from condensekit.data import dataset_info, load_dataset
    from condensekit.evaluation.teacher import frozen_teacher_model
    from condensekit.experts import train_experts

    info = dataset_info(dataset, resolution)
    name = backbone or info.default_backbone
    model = create_backbone(
        name, channels=info.channels, num_classes=info.num_classes, resolution=info.resolution, seed=seed
    )
    if epochs > 0:
        real = load_dataset(info.name, "train", info.resolution, data_root=data_root)
        experts = train_experts(real, backbone=name, num=1, epochs=epochs, seed=seed, device="cpu")
        model.load_state_dict(experts.trained[0])
    return Teacher(
        model=frozen_teacher_model(model),
        source=f"test teacher: {name} on {info.name}, {epochs} epochs, seed {seed}",
        identity=f"test-{info.name}-{info.resolution}-{name}-{epochs}-{seed}",
        dataset=info.name,
        resolution=info.resolution,
        num_classes=info.num_classes,
        backbone=name,
    )


def __getattr__(name: str) -> Any:
    # The conformance class imports pytest; load it only when asked for.
    if name == "MethodConformance":
        from condensekit.testing.conformance import MethodConformance

        return MethodConformance
    raise AttributeError(name)
