"""DANCE: Dual-View Distribution Alignment for Dataset Condensation (Zhang et al., IJCAI 2024).

DM with two additions that need a few experts (networks trained on the real data, each with
its exact initial weights kept):

- inner-class view (PLTDA): every iteration the mean embeddings are matched through a
  "middle" encoder ``l * initial + (1 - l) * trained`` of a random expert, ``l ~ U(0, 1)``;
- inter-class view (distribution calibration): the synthetic images of each class are then
  pushed through the fully trained expert with cross-entropy on their label.

Images are optimized as [0, 1] pixels; normalization happens inside the augmentation, as in
the official code. With ``factor`` > 1 every stored image holds ``factor**2`` downsampled
images (IDC's multi-formation), decoded inside the losses.

The step structure is the official one: one optimizer step per class for the matching loss,
then one per class (``iter_calib`` times) for calibration, with one SGD-with-momentum
optimizer over the whole synthetic tensor. A step for class ``c`` also moves the other
classes' images by their momentum; to keep that exact when classes are split over processes,
a process makes the steps of the classes it does not hold with a zero gradient.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Literal, get_args

import torch
import torch.nn.functional as F

from condensekit.api import (
    CLASS_SIZE,
    DSA,
    AugParams,
    DistillContext,
    ExpertsRequest,
    Method,
    SyntheticSet,
    UsageError,
    class_means,
    decode_multiformation,
    encode_multiformation,
    frozen,
    run_iterations,
)

#: From this resolution on, the official ImageNet-subset recipe applies (lr 0.1·ipc, 80-epoch
#: experts, ConvNet-5): the official code keys it on the dataset, condensekit on resolution.
HIGH_RESOLUTION = 128

Init = Literal["auto", "real", "mix", "noise"]
INITS: tuple[str, ...] = get_args(Init)


def _help(text: str, **limits: Any) -> dict[str, Any]:
    """A field's metadata: its help text and the range core checks (``min``, ``max``, ...)."""
    return {"help": text, **limits}


_POSITIVE: dict[str, Any] = {"min": 0, "min_exclusive": True}


@dataclass
class DANCEConfig:
    """DANCE's options. Ranges are declared in each field's metadata and checked by core
    (``condensekit.api.check_config``) before any work; :func:`_validate` keeps the rules
    metadata cannot say (the factor against the resolution, the strategy string)."""

    factor: int = field(
        default=2,
        metadata=_help("multi-formation factor: each stored image holds factor x factor images (1 = plain)", min=1),
    )
    lr_img: float | None = field(
        default=None,
        metadata=_help("SGD learning rate of the images (default: 0.01*ipc, 0.1*ipc at 128 px and above)", **_POSITIVE),
    )
    momentum: float = field(default=0.5, metadata=_help("SGD momentum of the images", min=0, max=1, max_exclusive=True))
    batch_real: int = field(
        default=128,
        metadata=_help(
            "real images per class per matching step (the default is capped at the smallest class)",
            min=1,
            max=CLASS_SIZE,
        ),
    )
    batch_syn_max: int = field(
        default=200, metadata=_help("at most this many decoded synthetic images per class per step", min=1)
    )
    iter_calib: int = field(
        default=1,
        metadata=_help("calibration passes over the classes per iteration (0 disables calibration)", min=0),
    )
    num_experts: int | None = field(
        default=None,
        metadata=_help(
            "experts sampled from, each trained on the real data (default: all of the newest stored "
            "experts; 5 when new ones are trained). Giving it or --expert-epochs asks for that recipe",
            min=1,
        ),
    )
    expert_epochs: int | None = field(
        default=None,
        metadata=_help(
            "training epochs of each expert (default: those of the stored experts; 60, or 80 at "
            "128 px and above, when new ones are trained)",
            min=1,
        ),
    )
    init: Init = field(
        default="auto",
        metadata=_help(
            "initialization: real (first ipc images per class), mix (first ipc*factor^2, tiled), "
            "noise, or auto (mix when factor > 1, else real)",
            choices=INITS,
        ),
    )
    aug: str = field(
        default="color_crop_cutout",
        metadata=_help("differentiable augmentation strategy during condensation ('none' to disable)"),
    )
    batched: bool = field(
        default=False,
        metadata=_help(
            "one optimizer step over all classes per view instead of one per class (faster, not the official dynamics)"
        ),
    )


def _validate(cfg: DANCEConfig, resolution: int) -> None:
    """The rules field metadata cannot declare (core has checked each field's own range)."""
    if cfg.factor > resolution:
        raise UsageError(f"--factor {cfg.factor} is larger than the {resolution}px images; use a smaller factor")
    DSA(cfg.aug, mode="idc")  # an unknown op is a one-line UsageError now, not at the first step


class ExpertBank:
    """The experts' weights on the device, and the two networks DANCE runs them in.

    ``middle`` and ``trained`` are built once; choosing an expert writes its weights into them
    in place (nothing is re-read from disk, nothing is re-allocated per iteration).
    """

    def __init__(self, ctx: DistillContext, num: int) -> None:
        experts = ctx.experts
        if experts is None:
            raise UsageError(
                "DANCE needs trained experts but none were provided; pass --experts REF or let condensekit train them"
            )
        if len(experts) < num:
            raise UsageError(
                f"DANCE asks for {num} experts but only {len(experts)} were provided; lower "
                f"--num-experts or train more with condensekit experts train"
            )
        self.middle = frozen(ctx.make_backbone(0))
        self.trained = frozen(ctx.make_backbone(0))
        keys = list(self.middle.state_dict().keys())
        self._mid = list(self.middle.state_dict(keep_vars=True).values())
        self._trained = list(self.trained.state_dict(keep_vars=True).values())
        self._is_float = [t.is_floating_point() for t in self._mid]
        self.initial = [self._tensors(experts.initial[k], keys, ctx, experts) for k in range(num)]
        self.final = [self._tensors(experts.trained[k], keys, ctx, experts) for k in range(num)]
        self._loaded: int | None = None

    def __len__(self) -> int:
        return len(self.initial)

    def _tensors(
        self, state: dict[str, torch.Tensor], keys: list[str], ctx: DistillContext, experts: Any
    ) -> list[torch.Tensor]:
        fits = set(keys) == set(state) and all(
            tuple(state[k].shape) == tuple(t.shape) for k, t in zip(keys, self._mid, strict=True)
        )
        if not fits:
            raise UsageError(
                f"the experts ({experts.backbone} on {experts.dataset}, {experts.resolution}px) do not fit the "
                f"{ctx.backbone_name} backbone of this run on {ctx.dataset.name} ({ctx.dataset.resolution}px); "
                f"use experts trained with the same backbone and dataset"
            )
        return [state[k].to(ctx.device, dtype=t.dtype) for k, t in zip(keys, self._mid, strict=True)]

    def _floats(self, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        return [t for t, is_float in zip(tensors, self._is_float, strict=True) if is_float]

    @torch.no_grad()
    def use(self, expert: int, coefficient: float) -> None:
        """``middle`` := ``coefficient * initial + (1 - coefficient) * trained`` of ``expert``
        (computed as a lerp from the trained weights, so 0 and 1 give either end exactly);
        ``trained`` := the trained weights of ``expert``."""
        init, final = self.initial[expert], self.final[expert]
        mid = self._floats(self._mid)
        torch._foreach_copy_(mid, self._floats(final))
        torch._foreach_lerp_(mid, self._floats(init), float(coefficient))
        for t, src, is_float in zip(self._mid, final, self._is_float, strict=True):
            if not is_float:  # e.g. BatchNorm's num_batches_tracked: not interpolable
                t.copy_(src)
        if self._loaded != expert:
            torch._foreach_copy_(self._trained, final)
            self._loaded = expert


class DANCE(Method):
    """DANCE: DM through interpolated expert encoders plus calibration by a trained expert."""

    name: ClassVar[str] = "dance"
    version: ClassVar[str] = "0.1.0"
    plugin_api: ClassVar[str] = "1.0"
    Config: ClassVar[type] = DANCEConfig
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        # The official reproduce settings (arguments/reproduce_condense.py); None = by resolution/IPC.
        "official": {
            "factor": 2,
            "momentum": 0.5,
            "batch_real": 128,
            "batch_syn_max": 200,
            "iter_calib": 1,
            "init": "auto",
            "aug": "color_crop_cutout",
            "batched": False,
        },
    }
    default_preset: ClassVar[str | None] = "official"
    partitionable: ClassVar[bool] = True
    #: The conformance suite's budget: one quick expert, small real batches.
    smoke_config: ClassVar[dict[str, Any]] = {"batch_real": 16, "num_experts": 1, "expert_epochs": 1}

    def resolve_config(self, dataset: Any, ipc: int) -> DANCEConfig:
        cfg: DANCEConfig = self.config
        _validate(cfg, dataset.resolution)
        high = dataset.resolution >= HIGH_RESOLUTION
        resolved = replace(
            cfg,
            lr_img=cfg.lr_img if cfg.lr_img is not None else (0.1 if high else 0.01) * ipc,
            init=cfg.init if cfg.init != "auto" else ("mix" if cfg.factor > 1 else "real"),
        )
        return resolved

    def experts_request(self, dataset: Any) -> ExpertsRequest:
        """The stored experts unless a recipe is named; the official recipe when training."""
        cfg: DANCEConfig = self.config
        default_epochs = 80 if dataset.resolution >= HIGH_RESOLUTION else 60
        return ExpertsRequest(num=cfg.num_experts, epochs=cfg.expert_epochs, default_epochs=default_epochs)

    def default_iterations(self, dataset: Any, ipc: int) -> int:
        return 10000

    def preferred_backbone(self, dataset: Any) -> str:
        """The official networks: ConvNet-3 up to 64 px (also TinyImageNet), ConvNet-5 at 128 px."""
        if dataset.resolution <= 64:
            return "convnet"
        if dataset.resolution == HIGH_RESOLUTION:
            return "convnetd5"
        return dataset.default_backbone

    # ------------------------------------------------------------------------------------
    def distill(self, ctx: DistillContext) -> SyntheticSet:
        cfg: DANCEConfig = self.config
        classes = list(ctx.classes)
        bank = ExpertBank(ctx, cfg.num_experts if cfg.num_experts is not None else len(ctx.experts or ()))
        syn = initial_images(ctx, cfg.init, cfg.factor).requires_grad_(True)
        optimizer = torch.optim.SGD([syn], lr=cfg.lr_img, momentum=cfg.momentum)
        step = (_BatchedStep if cfg.batched else _PerClassStep)(ctx, cfg, bank, syn, optimizer, classes)
        run_iterations(ctx, {"images": syn}, optimizer, step)
        labels = torch.tensor(classes).repeat_interleave(ctx.ipc)
        return SyntheticSet(
            images=syn.detach().clamp(0, 1),
            labels=labels,
            pixel_space="unit",
            factor=cfg.factor,
            # The dataset facts make the set usable as returned (core records them again).
            metadata={**ctx.dataset.as_metadata(), "decoded_per_class": ctx.ipc * cfg.factor**2},
        )


def initial_images(ctx: DistillContext, init: str, factor: int) -> torch.Tensor:
    """The stored images of ``ctx.classes`` (class-major) in [0, 1], as the official code
    initializes them: deterministic dataset order, never a random draw (except ``noise``)."""
    parts = []
    shape = (ctx.ipc, ctx.dataset.channels, ctx.dataset.resolution, ctx.dataset.resolution)
    for c in ctx.classes:
        if init == "mix":
            parts.append(encode_multiformation(_first(ctx, c, ctx.ipc * factor * factor), factor))
        elif init == "real":
            parts.append(_first(ctx, c, ctx.ipc))
        elif init == "noise":
            noise = torch.randn(shape, generator=ctx.generator(0, c, "init-noise"))
            parts.append((noise / 4 + 0.5).clamp(0, 1).to(ctx.device))
        else:
            raise UsageError(f"unknown --init {init!r}; choose one of {', '.join(INITS)}")
    return torch.cat(parts).to(ctx.device).contiguous()


def _first(ctx: DistillContext, c: int, n: int) -> torch.Tensor:
    """The first ``n`` images of class ``c``; a class with fewer images is cycled through."""
    count = ctx.data.class_count(c)
    images = ctx.data.first(c, min(n, count), space="unit")
    if count >= n:
        return images
    return images.repeat((n + count - 1) // count, 1, 1, 1)[:n]


class _Step:
    """One DANCE iteration; subclasses differ only in how classes share optimizer steps."""

    def __init__(
        self,
        ctx: DistillContext,
        cfg: DANCEConfig,
        bank: ExpertBank,
        syn: torch.Tensor,
        optimizer: torch.optim.Optimizer,
        classes: Sequence[int],
    ) -> None:
        self.ctx, self.cfg, self.bank, self.syn, self.optimizer = ctx, cfg, bank, syn, optimizer
        self.classes = list(classes)
        self.local = {c: i for i, c in enumerate(self.classes)}
        self.dsa = DSA(cfg.aug, mode="idc")
        self.normalize = ctx.dataset.normalize

    def __call__(self, iteration: int) -> dict[str, float]:
        g = self.ctx.generator(iteration, None, "expert")
        expert = int(torch.randint(len(self.bank), (1,), generator=g))
        coefficient = float(torch.rand(1, generator=g))
        self.bank.use(expert, coefficient)
        with torch.no_grad():
            self.syn.clamp_(0, 1)
        match = self.match(iteration)
        calib = [self.calibrate(iteration, r) for r in range(self.cfg.iter_calib)]
        metrics = {"loss_match": match}
        if calib:
            metrics["loss_calib"] = sum(calib) / len(calib)
        return metrics

    def match(self, iteration: int) -> float:
        raise NotImplementedError

    def calibrate(self, iteration: int, rnd: int) -> float:
        raise NotImplementedError

    # -- shared pieces -------------------------------------------------------------------
    def decoded(self, c: int, generator: torch.Generator) -> torch.Tensor:
        """Class ``c``'s stored images decoded, randomly subsampled to ``batch_syn_max``."""
        i = self.local[c]
        images = decode_multiformation(self.syn[i * self.ctx.ipc : (i + 1) * self.ctx.ipc], self.cfg.factor)
        if images.shape[0] > self.cfg.batch_syn_max:
            keep = torch.randperm(images.shape[0], generator=generator)[: self.cfg.batch_syn_max]
            images = images[keep.to(images.device)]
        return images

    def real(self, iteration: int, c: int) -> torch.Tensor:
        # The official loader draws without replacement, at most the whole class.
        n = min(self.cfg.batch_real, self.ctx.data.class_count(c))
        return self.ctx.data.random(c, n, self.ctx.generator(iteration, c, "real"), space="unit")

    def augment(self, x: torch.Tensor, params: AugParams, groups: torch.Tensor) -> torch.Tensor:
        return self.dsa.apply(self.normalize(x), params, groups)

    def params(self, iteration: int, c: int, stream: str) -> AugParams:
        return self.dsa.sample(1, self.ctx.generator(iteration, c, stream))

    @staticmethod
    def zeros(n: int) -> torch.Tensor:
        # Parameter-set indices live on the CPU, like the parameters (no device round trip).
        return torch.zeros(n, dtype=torch.long)


class _PerClassStep(_Step):
    """The official structure: per class, one matching step; then per class, one calibration
    step (``iter_calib`` times). Classes this process does not hold get a zero-gradient step,
    so momentum moves each image exactly as in a run over all classes."""

    def _steps(self, loss_for: Callable[[int], torch.Tensor]) -> float:
        losses = []
        if self.syn.grad is None:
            self.syn.grad = torch.zeros_like(self.syn)
        for c in range(self.ctx.dataset.num_classes):
            self.syn.grad.zero_()
            if c in self.local:
                loss = loss_for(c)
                loss.backward()
                losses.append(loss.detach())
            self.optimizer.step()
        return float(torch.stack(losses).mean()) if losses else 0.0

    def match(self, iteration: int) -> float:
        def loss_for(c: int) -> torch.Tensor:
            params = self.params(iteration, c, "dsa")
            real = self.real(iteration, c)
            syn = self.decoded(c, self.ctx.generator(iteration, c, "syn"))
            with torch.no_grad():
                f_real = self.bank.middle.embed(self.augment(real, params, self.zeros(real.shape[0])))
            f_syn = self.bank.middle.embed(self.augment(syn, params, self.zeros(syn.shape[0])))
            return (f_real.mean(0) - f_syn.mean(0)).pow(2).sum()

        return self._steps(loss_for)

    def calibrate(self, iteration: int, rnd: int) -> float:
        def loss_for(c: int) -> torch.Tensor:
            syn = self.decoded(c, self.ctx.generator(iteration, c, f"calib{rnd}-syn"))
            params = self.params(iteration, c, f"calib{rnd}-dsa")
            logits = self.bank.trained(self.augment(syn, params, self.zeros(syn.shape[0])))
            target = torch.full((syn.shape[0],), c, dtype=torch.long, device=logits.device)
            return F.cross_entropy(logits, target)

        return self._steps(loss_for)


class _BatchedStep(_Step):
    """One matching step and one calibration step over all classes, on summed per-class
    losses (same losses, same augmentation draws; one forward pass per view)."""

    @staticmethod
    def _groups(sizes: list[int]) -> torch.Tensor:
        return torch.arange(len(sizes)).repeat_interleave(torch.tensor(sizes))

    def match(self, iteration: int) -> float:
        params = AugParams.cat([self.params(iteration, c, "dsa") for c in self.classes])
        reals = [self.real(iteration, c) for c in self.classes]
        syns = [self.decoded(c, self.ctx.generator(iteration, c, "syn")) for c in self.classes]
        real_sizes, syn_sizes = [len(r) for r in reals], [len(s) for s in syns]
        with torch.no_grad():
            f_real = self.bank.middle.embed(self.augment(torch.cat(reals), params, self._groups(real_sizes)))
        f_syn = self.bank.middle.embed(self.augment(torch.cat(syns), params, self._groups(syn_sizes)))
        losses = (_means(f_real, real_sizes) - _means(f_syn, syn_sizes)).pow(2).sum(1)
        self._step(losses.sum())
        return float(losses.detach().mean())

    def calibrate(self, iteration: int, rnd: int) -> float:
        syns = [self.decoded(c, self.ctx.generator(iteration, c, f"calib{rnd}-syn")) for c in self.classes]
        sizes = [len(s) for s in syns]
        params = AugParams.cat([self.params(iteration, c, f"calib{rnd}-dsa") for c in self.classes])
        logits = self.bank.trained(self.augment(torch.cat(syns), params, self._groups(sizes)))
        target = torch.tensor(self.classes, device=logits.device).repeat_interleave(
            torch.tensor(sizes, device=logits.device)
        )
        losses = _means(F.cross_entropy(logits, target, reduction="none").unsqueeze(1), sizes).squeeze(1)
        self._step(losses.sum())
        return float(losses.detach().mean())

    def _step(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()


def _means(features: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Per-class means of class-major rows with per-class counts ``sizes``: (classes, D)."""
    if len(set(sizes)) == 1:
        return class_means(features, len(sizes))
    return torch.stack([chunk.flatten(1).mean(0) for chunk in features.split(sizes)])
