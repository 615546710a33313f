"""The teacher of the ``kd`` protocol: a trained network that relabels every augmented view.

A teacher is named by ``--teacher``:

- an experts artifact, ``NAME[:vN|:ALIAS]`` (or ``experts:NAME[:vN]``) as ``condensekit list
  experts`` shows it: its first trained network (expert 0) is the teacher, as RDED and SRe2L
  relabel with one network trained on the real data;
- ``timm:NAME=FILE`` (or ``timm:NAME`` with ``--teacher-weights FILE``): a timm model with the
  weights in FILE (a state dict of ``timm.create_model(NAME, num_classes=K, in_chans=C)``, or
  of condensekit's ``timm:NAME`` backbone); ``timm:NAME`` alone takes timm's pretrained
  weights from the local caches only (the Hugging Face cache or torch hub's), never from the
  network;
- nothing: the teacher the set records (a set made with a teacher, e.g. by RDED or SRe2L,
  keeps its :attr:`Teacher.spec`), else the newest experts artifact of the set's dataset at
  its resolution.

A teacher must classify the set's dataset at its resolution: another dataset, class count or
resolution is a one-line :class:`~condensekit.errors.UsageError` before any training. A
method plugin that ships :meth:`~condensekit.methods.base.Method.relabel` relabels the views
of the sets it made in place of the plain teacher (:func:`relabel_for`).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from condensekit.errors import PluginError, UsageError

if TYPE_CHECKING:
    from condensekit.data.base import DatasetInfo
    from condensekit.evaluation.train import Relabel
    from condensekit.registry import Registry
    from condensekit.synthetic import SyntheticSet

TIMM_PREFIX = "timm:"
EXPERTS_PREFIX = "experts:"
#: The network of an experts artifact that teaches (RDED and SRe2L relabel with one network).
EXPERT_INDEX = 0


@dataclass
class Teacher:
    """A trained classifier in eval mode with frozen weights, and where it came from.

    ``dataset`` is None where it cannot be known (a timm weights file); ``identity`` names
    the exact weights (an experts recipe hash or a file's sha256), so stored results can be
    matched to the teacher that made them; ``spec`` is what ``--teacher`` takes to load it
    again (a set made with it records it); ``test_accuracy`` is the mean test accuracy the
    experts recorded (percent), when known."""

    model: nn.Module
    source: str
    identity: str
    dataset: str | None
    resolution: int
    num_classes: int
    backbone: str
    ref: str | None = None
    test_accuracy: float | None = None
    spec: str | None = None

    def to(self, device: torch.device | str) -> Teacher:
        """This teacher with its network moved to ``device`` (in place)."""
        self.model.to(device)
        return self

    def describe(self) -> dict[str, Any]:
        """What an evaluation records about its teacher."""
        fields = dataclasses.asdict(self)
        del fields["model"]
        return fields


def load_teacher(
    spec: str | None, *, dataset: DatasetInfo, registry: Registry | None, device: torch.device | str = "cpu"
) -> Teacher:
    """The teacher ``spec`` names (see the module docstring), checked against ``dataset`` (the
    set's, at its resolution) before its weights are read where the registry can tell."""
    if spec is not None and spec.startswith(EXPERTS_PREFIX):
        spec = spec[len(EXPERTS_PREFIX) :]
    if spec is not None and spec.startswith(TIMM_PREFIX):
        teacher = _timm_teacher(spec[len(TIMM_PREFIX) :], dataset)
    else:
        teacher = _experts_teacher(spec, dataset, registry)
    check_teacher(teacher, dataset)
    return teacher.to(device)


def teacher_spec(spec: str | None, weights: str | Path | None = None) -> str | None:
    """``--teacher SPEC`` with ``--teacher-weights FILE`` folded in (``timm:NAME`` + FILE is
    ``timm:NAME=FILE``); a weights file for anything but a bare ``timm:NAME`` is a usage error."""
    if weights is None:
        return spec
    if spec is None or not spec.startswith(TIMM_PREFIX) or "=" in spec:
        raise UsageError(
            f"--teacher-weights goes with --teacher timm:NAME (a timm model without weights in the spec), not "
            f"{spec or 'no --teacher'}; pass --teacher timm:NAME --teacher-weights {weights}"
        )
    return f"{spec}={weights}"


def recorded_teacher(metadata: Mapping[str, Any]) -> str | None:
    """The ``--teacher`` spec of the teacher a set was made with (None: made without one)."""
    teacher = metadata.get("teacher")
    spec = teacher.get("spec") if isinstance(teacher, Mapping) else None
    return str(spec) if spec else None


def teacher_for(
    spec: str | None, synset: SyntheticSet, registry: Registry | None, device: torch.device | str = "cpu"
) -> Teacher:
    """:func:`load_teacher` for ``synset``: its dataset at its resolution; without ``spec``,
    the teacher the set records (see :func:`recorded_teacher`), else the newest experts."""
    from condensekit.data import dataset_info

    dataset = synset.metadata.get("dataset")
    if not dataset:
        raise UsageError("the synthetic set has no 'dataset' in its metadata; cannot choose or check a teacher")
    info = dataset_info(str(dataset), int(synset.images.shape[-1]))
    recorded = recorded_teacher(synset.metadata) if spec is None else None
    if recorded is None:
        return load_teacher(spec, dataset=info, registry=registry, device=device)
    try:
        return load_teacher(recorded, dataset=info, registry=registry, device=device)
    except UsageError as exc:
        raise UsageError(
            f"the teacher this set was made with ({recorded}) cannot be loaded here ({exc}); pass --teacher REF"
        ) from None


def check_teacher(teacher: Teacher, dataset: DatasetInfo) -> None:
    """Refuse (one line, exit 2) a teacher of another dataset, class count or resolution."""
    _refuse_mismatch(teacher.source, teacher.dataset, teacher.resolution, teacher.num_classes, dataset)


def _refuse_mismatch(
    source: str, trained_on: str | None, resolution: int, num_classes: int, dataset: DatasetInfo
) -> None:
    problems = []
    if trained_on is not None and trained_on != dataset.name:
        problems.append(f"dataset {trained_on}, not {dataset.name}")
    if num_classes != dataset.num_classes:
        problems.append(f"{num_classes} classes, not {dataset.num_classes}")
    if resolution != dataset.resolution:
        problems.append(f"resolution {resolution}px, not {dataset.resolution}px")
    if problems:
        raise UsageError(
            f"teacher {source} does not fit this set ({'; '.join(problems)}); pass --teacher with experts "
            f"trained on {dataset.name} at {dataset.resolution}px (condensekit list experts), or train them: "
            f"condensekit experts train --data {dataset.name}{_res_flag(dataset)}"
        )


def _res_flag(dataset: DatasetInfo) -> str:
    from condensekit.data import dataset_info

    return "" if dataset_info(dataset.name).resolution == dataset.resolution else f" --res {dataset.resolution}"


def _experts_teacher(ref: str | None, dataset: DatasetInfo, registry: Registry | None) -> Teacher:
    from condensekit.backbones import create_backbone
    from condensekit.experts import stored_recipe_hash

    if registry is None:
        raise UsageError("a teacher from stored experts needs a registry; pass --registry or --teacher timm:NAME=FILE")
    chosen = ref if ref is not None else newest_experts(registry, dataset)
    version, meta = registry.experts_metadata(chosen)
    trained_on, resolution = str(meta.get("dataset")), int(meta.get("resolution", 0))
    num_classes = int(meta.get("num_classes") or dataset.num_classes)  # unrecorded: the dataset's
    _refuse_mismatch(f"{version.ref} (experts)", trained_on, resolution, num_classes, dataset)
    experts = registry.load_experts(version.ref)
    model = create_backbone(
        experts.backbone, channels=dataset.channels, num_classes=num_classes, resolution=experts.resolution
    )
    model.load_state_dict(experts.trained[EXPERT_INDEX])
    accuracies = [a for a in meta.get("test_accuracy") or [] if isinstance(a, (int, float))]
    return Teacher(
        model=frozen_teacher_model(model),
        source=f"{version.ref} (expert {EXPERT_INDEX} of {len(experts)}, {experts.backbone})",
        identity=stored_recipe_hash(meta, trained_on, resolution, experts.backbone) or str(version.sha256)[:16],
        dataset=trained_on,
        resolution=resolution,
        num_classes=num_classes,
        backbone=experts.backbone,
        ref=version.ref,
        test_accuracy=sum(accuracies) / len(accuracies) if accuracies else None,
        spec=version.ref,
    )


def newest_experts(registry: Registry, dataset: DatasetInfo) -> str:
    """The reference of the newest experts version for ``dataset`` at its resolution (any
    backbone); a one-line :class:`UsageError` saying how to train them when there are none."""
    rows = [
        row
        for row in registry.list_experts()
        if row["dataset"] == dataset.name and int(row["resolution"]) == dataset.resolution
    ]
    if not rows:
        raise UsageError(
            f"no experts of {dataset.name} at {dataset.resolution}px to teach the kd protocol; train them with "
            f"`condensekit experts train --data {dataset.name}{_res_flag(dataset)}` or pass --teacher REF"
        )
    newest = max(rows, key=lambda row: (str(row["created"]), row["name"]))
    return f"{newest['name']}:v{newest['latest']}"


def _timm_teacher(spec: str, dataset: DatasetInfo) -> Teacher:
    from condensekit.backbones.api import check_backbone_name

    name, _, file = spec.partition("=")
    check_backbone_name(TIMM_PREFIX + name)
    if file:
        return _timm_from_file(name, Path(file), dataset)
    return _timm_from_cache(name, dataset)


def _timm_from_file(name: str, path: Path, dataset: DatasetInfo) -> Teacher:
    from condensekit.backbones.timm_adapter import TimmBackbone

    if not path.is_file():
        raise UsageError(f"teacher weights {path} do not exist; pass --teacher timm:{name}=FILE with an existing file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 -- torch.load raises many types for a file it cannot read
        raise UsageError(f"cannot read teacher weights {path}: {_first_line(exc)}") from None
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise UsageError(f"teacher weights {path} hold no state dict; save model.state_dict() with torch.save")
    model = TimmBackbone(name, dataset.channels, dataset.num_classes, dataset.resolution)
    wrapped = {k if k.startswith("model.") else f"model.{k}": v for k, v in state.items()}
    try:
        model.load_state_dict(wrapped)
    except RuntimeError as exc:
        raise UsageError(
            f"teacher weights {path} do not fit timm:{name} for {dataset.num_classes} classes of "
            f"{dataset.channels}x{dataset.resolution}x{dataset.resolution} images: {_first_line(exc)}"
        ) from None
    return Teacher(
        model=frozen_teacher_model(model),
        source=f"timm:{name}={path}",
        identity=_sha256(path),
        dataset=None,
        resolution=dataset.resolution,
        num_classes=dataset.num_classes,
        backbone=TIMM_PREFIX + name,
        spec=f"{TIMM_PREFIX}{name}={path.resolve()}",
    )


def _timm_from_cache(name: str, dataset: DatasetInfo) -> Teacher:
    """timm's pretrained weights, read from the local caches only (this never downloads)."""
    import timm

    path = cached_timm_weights(name)
    if path is None:
        raise UsageError(
            f"no local weights for teacher timm:{name} (pretrained weights are never downloaded here): pass "
            f"--teacher timm:{name}=FILE with a state dict trained on {dataset.name} "
            f"(torch.save(timm.create_model('{name}', num_classes={dataset.num_classes}).state_dict(), FILE)), "
            f"or put its weights in the Hugging Face cache (HF_HOME)"
        )
    cfg = timm.models.get_pretrained_cfg(name)
    num_classes = int(getattr(cfg, "num_classes", 0) or 0)
    _refuse_mismatch(f"timm:{name} (pretrained)", None, dataset.resolution, num_classes, dataset)
    model = timm.create_model(
        name, pretrained=True, pretrained_cfg_overlay={"file": str(path)}, in_chans=dataset.channels
    )
    return Teacher(
        model=frozen_teacher_model(model),
        source=f"timm:{name} (pretrained, {path})",
        identity=_sha256(path),
        dataset=None,
        resolution=dataset.resolution,
        num_classes=num_classes,
        backbone=TIMM_PREFIX + name,
        spec=TIMM_PREFIX + name,
    )


def cached_timm_weights(name: str) -> Path | None:
    """The file of timm's pretrained weights for ``name`` in the Hugging Face cache or torch
    hub's checkpoint folder, or None where neither holds it (nothing is downloaded)."""
    import timm

    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None:
        return None
    if isinstance(cfg.file, str) and Path(cfg.file).is_file():
        return Path(cfg.file)
    if cfg.hf_hub_id:
        from huggingface_hub import try_to_load_from_cache

        for filename in ([cfg.hf_hub_filename] if cfg.hf_hub_filename else []) + [
            "model.safetensors",
            "pytorch_model.bin",
        ]:
            found = try_to_load_from_cache(cfg.hf_hub_id, filename)
            if isinstance(found, str):
                return Path(found)
    if isinstance(cfg.url, str) and cfg.url:
        hub = Path(torch.hub.get_dir()) / "checkpoints" / Path(cfg.url).name
        if hub.is_file():
            return hub
    return None


def relabel_for(metadata: Mapping[str, Any], teacher: Teacher) -> tuple[Relabel, str]:
    """How the views of a set with ``metadata`` are relabelled, and that source in words:
    by the method that made it where its plugin ships :meth:`Method.relabel` (built with the
    set's stored config), else by the plain teacher. A method not installed here cannot
    relabel: the teacher does, and the source says so."""
    from condensekit import plugins
    from condensekit.backbones import inference_model
    from condensekit.methods.base import Method

    model = inference_model(teacher.model)  # the same logits, ~0.6x the time on a CPU (BN folded)

    def plain(views: torch.Tensor, _labels: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = model(views)
        return out

    name = metadata.get("method")
    if not name:
        return plain, "teacher"
    try:
        cls, _ = plugins.load_method(str(name))
    except PluginError as exc:
        return plain, f"teacher (method {name} cannot be loaded here, so a relabel hook it ships is not used: {exc})"
    if cls.relabel is Method.relabel:
        return plain, "teacher"
    method = cls(_stored_config(cls, metadata))

    def hook(views: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        out = method.relabel(views, labels, model)
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (views.shape[0], teacher.num_classes):
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise PluginError(
                f"method {name!r}: relabel returned {shape}, not logits of shape ({views.shape[0]}, "
                f"{teacher.num_classes}); fix its relabel hook"
            )
        return out

    return hook, f"{name}.relabel"


def _stored_config(cls: Any, metadata: Mapping[str, Any]) -> Any:
    """The method's config as the set recorded it (fields it did not record keep their defaults)."""
    stored = metadata.get("config") or {}
    known = {f.name for f in dataclasses.fields(cls.Config)}
    try:
        return cls.Config(**{k: v for k, v in stored.items() if k in known})
    except (TypeError, ValueError) as exc:
        raise PluginError(
            f"method {cls.name!r} cannot rebuild the config this set was made with, so it cannot relabel it: "
            f"{_first_line(exc)}"
        ) from None


def frozen_teacher_model(model: nn.Module) -> nn.Module:
    """``model`` in eval mode with frozen weights, as every teacher is handed over."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
