"""SRe2L: Squeeze, Recover and Relabel (Yin, Xing, Shen, NeurIPS 2023).

- squeeze: a teacher trained on the real data, with BatchNorm (``--teacher``, loaded and
  checked by core, handed over as ``ctx.teacher``);
- recover: images grown from Gaussian noise so that the teacher classifies them as their class
  (cross-entropy) while the statistics of the batch entering every BatchNorm layer match that
  layer's running mean and variance::

      loss = CE(teacher(aug(x)), y) + r_bn * sum_l m_l (||mu_l - running_mean_l||_2 + ||var_l - running_var_l||_2)

  with ``m_0 = first_bn_multiplier`` and ``m_l = 1`` after; ``aug`` is a random roll
  (jitter), preceded above 32 px by a random-resized crop and a horizontal flip (the official
  ImageNet/Tiny-ImageNet recovery; CIFAR recovery uses the roll only). Adam with betas
  (0.5, 0.9), cosine learning rate without warm-up, pixels clipped to [0, 1] after each step;
- relabel: the soft labels of the final images by the teacher are stored with the set, and
  the ``kd`` evaluation protocol relabels every augmented view with a teacher on the fly.

As in the official code, the images are recovered in batches: for each IPC index, the classes
in chunks of ``batch_classes`` (one image per class; 100 by default, all classes of CIFAR-10 or
CIFAR-100), each batch optimized for ``ctx.iterations`` steps from fresh noise with a fresh
optimizer. Images live in the dataset-normalized space (as the official code optimizes them)
and are stored as ``pixel_space="normalized"``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from condensekit.api import DistillContext, Method, SyntheticSet, UsageError, autocast, random_resized_crop_box

if TYPE_CHECKING:
    from condensekit.api import DatasetInfo, Teacher

#: Up to this resolution the official CIFAR recipe applies (recover_cifar.py/.sh: 1000
#: iterations, no crop or flip); above it the ImageNet one (data_synthesis.py/recover.sh: 4000
#: iterations, random-resized crop and flip). Jitter follows the scripts too: 4 px in the
#: CIFAR and Tiny-ImageNet (64 px) scripts, 32 px in the ImageNet (224 px) one.
SMALL_RESOLUTION = 32
SMALL_JITTER_UP_TO = 64

#: Official Adam settings of the recovery (both recover_cifar.py and data_synthesis.py).
ADAM_BETAS = (0.5, 0.9)
ADAM_EPS = 1e-8
#: torchvision's RandomResizedCrop aspect-ratio range (the official code uses its defaults).
CROP_RATIO = (3 / 4, 4 / 3)


def _help(text: str, **limits: Any) -> dict[str, Any]:
    """A field's metadata: its help text and the range core checks (``min``, ``max``, ...)."""
    return {"help": text, **limits}


_POSITIVE: dict[str, Any] = {"min": 0, "min_exclusive": True}


@dataclass
class SRe2LConfig:
    """SRe2L's recovery options (ranges declared in metadata and checked by core)."""

    lr: float = field(default=0.25, metadata=_help("Adam learning rate of the images (cosine-decayed)", **_POSITIVE))
    r_bn: float = field(
        default=0.01, metadata=_help("weight of the BatchNorm-statistics loss against the cross-entropy", min=0)
    )
    first_bn_multiplier: float = field(
        default=10.0, metadata=_help("extra weight of the first BatchNorm layer in the statistics loss", min=0)
    )
    jitter: int | None = field(
        default=None,
        metadata=_help("largest random roll in pixels, each axis, per step (default: 4 up to 64 px, else 32)", min=0),
    )
    crop: bool | None = field(
        default=None,
        metadata=_help(
            "random-resized crop and horizontal flip of the batch each step (default: off up to 32 px, on above)"
        ),
    )
    crop_scale_min: float = field(
        default=0.08,
        metadata=_help("smallest crop area as a fraction of the image", min=0, min_exclusive=True, max=1),
    )
    batch_classes: int = field(
        default=100, metadata=_help("classes recovered together in one batch, one image each", min=1)
    )
    autocast: bool = field(default=False, metadata=_help("mixed precision teacher passes (bf16 on CPU, fp16 on CUDA)"))


# ----------------------------------------------------------------------------------------
# The BatchNorm statistics loss


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The BatchNorm layers of ``model`` that keep running statistics, in module order."""
    return [
        m
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
        and m.track_running_stats
        and m.running_mean is not None
        and m.running_var is not None
    ]


class BNStatistics:
    """Forward hooks on BatchNorm layers recording, per forward pass, each layer's distance
    between the statistics of the batch entering it and its running statistics.

    The hooks are in place inside ``with stats.hooked():`` only. After a forward pass there,
    :meth:`loss` is ``sum_l m_l (||mu_l - running_mean_l||_2 + ||var_l - running_var_l||_2)``
    with the biased batch variance, ``m_0 = first_multiplier`` and 1 for the other layers.
    """

    def __init__(self, layers: Sequence[nn.Module], first_multiplier: float = 1.0) -> None:
        if not layers:
            raise ValueError("no BatchNorm layers to hook")
        self.layers = list(layers)
        self.first_multiplier = first_multiplier
        self.distances: list[torch.Tensor | None] = [None] * len(self.layers)

    @contextmanager
    def hooked(self) -> Iterator[BNStatistics]:
        handles = [layer.register_forward_hook(self._hook(i)) for i, layer in enumerate(self.layers)]
        try:
            yield self
        finally:
            for handle in handles:
                handle.remove()

    def _hook(self, index: int) -> Any:
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            x = inputs[0].float()
            dims = [d for d in range(x.dim()) if d != 1]  # all but the channels
            mean = x.mean(dim=dims)
            var = x.var(dim=dims, unbiased=False)
            running_mean = module.running_mean.float()  # type: ignore[union-attr]
            running_var = module.running_var.float()  # type: ignore[union-attr]
            self.distances[index] = torch.linalg.vector_norm(mean - running_mean) + torch.linalg.vector_norm(
                var - running_var
            )

        return hook

    def loss(self) -> torch.Tensor:
        missing = [i for i, d in enumerate(self.distances) if d is None]
        if missing:
            raise RuntimeError(f"BatchNorm layers {missing} saw no input; run a forward pass first")
        total = self.distances[0] * self.first_multiplier  # type: ignore[operator]
        for distance in self.distances[1:]:
            total = total + distance
        return total


# ----------------------------------------------------------------------------------------
# Augmentation of the synthetic batch (one draw per step for the whole batch, as the
# official transforms applied to a 4-D tensor do)


def augment(x: torch.Tensor, jitter: int, crop: bool, scale_min: float, generator: torch.Generator) -> torch.Tensor:
    """One step's view of the batch: (random-resized crop, horizontal flip,) then a roll of
    0..jitter pixels down and right (the official order)."""
    height, width = x.shape[-2:]
    if crop:
        top, left, h, w = random_resized_crop_box(height, width, (scale_min, 1.0), CROP_RATIO, generator)
        x = x[..., top : top + h, left : left + w]
        if (h, w) != (height, width):
            x = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False)
        if float(torch.rand(1, generator=generator)) < 0.5:
            x = x.flip(-1)
    if jitter > 0:
        shifts = torch.randint(0, jitter + 1, (2,), generator=generator).tolist()
        x = torch.roll(x, shifts=(shifts[0], shifts[1]), dims=(-2, -1))
    return x


def cosine_lr(base: float, step: int, total: int) -> float:
    """The official ``lr_cosine_policy`` without warm-up: ``base`` at step 0, decaying to 0."""
    return 0.5 * (1 + math.cos(math.pi * step / total)) * base


# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Batch:
    """One recovery batch: IPC index ``ipc_index``, classes ``classes`` (one image each)."""

    number: int
    ipc_index: int
    chunk: int
    classes: tuple[int, ...]


class SRe2L(Method):
    """SRe2L: recover images from a BatchNorm teacher's statistics; soft labels by the teacher."""

    name: ClassVar[str] = "sre2l"
    version: ClassVar[str] = "0.1.0"
    plugin_api: ClassVar[str] = "1.2"
    Config: ClassVar[type] = SRe2LConfig
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        # SRe2L/*small_dataset/recover_cifar.sh (+ recover_cifar.py defaults)
        "cifar": {"lr": 0.25, "r_bn": 0.01, "first_bn_multiplier": 10.0, "jitter": 4, "crop": False},
        # SRe2L/*small_dataset/recover_tiny.sh (+ recover_tiny.py defaults)
        "tiny": {"lr": 0.1, "r_bn": 1.0, "first_bn_multiplier": 10.0, "jitter": 4, "crop": True},
        # SRe2L/recover/recover.sh (+ data_synthesis.py defaults)
        "imagenet": {"lr": 0.25, "r_bn": 0.01, "first_bn_multiplier": 10.0, "jitter": 32, "crop": True},
    }
    default_preset: ClassVar[str | None] = None
    # A batch holds one image of each of up to ``batch_classes`` classes and its BatchNorm
    # statistics are taken over the whole batch, so an image depends on which classes share its
    # batch: splitting the classes over processes would change the result.
    partitionable: ClassVar[bool] = False
    needs_teacher: ClassVar[bool] = True
    teacher_backbone: ClassVar[str | None] = "convnet-bn"
    smoke_config: ClassVar[dict[str, Any]] = {}

    def resolve_config(self, dataset: DatasetInfo, ipc: int) -> SRe2LConfig:
        cfg: SRe2LConfig = self.config
        res = dataset.resolution
        return replace(
            cfg,
            jitter=cfg.jitter if cfg.jitter is not None else (4 if res <= SMALL_JITTER_UP_TO else 32),
            crop=cfg.crop if cfg.crop is not None else res > SMALL_RESOLUTION,
        )

    def default_iterations(self, dataset: DatasetInfo, ipc: int) -> int:
        """Recovery steps per batch: 1000 up to 32 px (recover_cifar.sh), 4000 above (recover.sh)."""
        return 1000 if dataset.resolution <= SMALL_RESOLUTION else 4000

    def check_teacher(self, teacher: Teacher) -> None:
        """Refuse a teacher without BatchNorm running statistics: there is nothing to match."""
        if not batchnorm_layers(teacher.model):
            data = teacher.dataset or "DATASET"
            raise UsageError(
                f"sre2l matches the teacher's BatchNorm statistics but {teacher.source} ({teacher.backbone}) has no "
                f"BatchNorm layers; train one with BatchNorm: condensekit experts train --data {data} "
                f"--backbone {self.teacher_backbone} --num 1"
            )

    # ------------------------------------------------------------------------------------
    def distill(self, ctx: DistillContext) -> SyntheticSet:
        cfg: SRe2LConfig = self.config
        teacher = _teacher(ctx)
        self.check_teacher(teacher)
        recovery = Recovery(ctx, cfg, teacher.model)
        images = recovery.run()
        classes = list(ctx.classes)
        soft = soft_labels(teacher.model, images)
        return SyntheticSet(
            images=images,
            labels=torch.tensor(classes).repeat_interleave(ctx.ipc),
            soft_labels=soft,
            pixel_space="normalized",
            metadata={
                # The dataset facts make the set usable as returned (core records them again, and
                # the teacher: its description under "teacher").
                **ctx.dataset.as_metadata(),
                "recovery_batches": len(recovery.batches),
            },
        )


def _teacher(ctx: DistillContext) -> Any:
    teacher = getattr(ctx, "teacher", None)
    if teacher is None:
        raise UsageError("sre2l recovers images from a trained teacher; pass --teacher (e.g. cifar10-convnet-bn:v1)")
    return teacher


@torch.no_grad()
def soft_labels(model: nn.Module, images: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """``softmax(model(images))`` in float32, (N, K), on the CPU."""
    out = [F.softmax(model(images[i : i + chunk]).float(), dim=1) for i in range(0, images.shape[0], chunk)]
    probs = torch.cat(out).cpu()
    return probs / probs.sum(dim=1, keepdim=True)


class Recovery:
    """The recover phase over all batches, with resume after a completed batch and progress."""

    def __init__(self, ctx: DistillContext, cfg: SRe2LConfig, model: nn.Module) -> None:
        self.ctx, self.cfg, self.model = ctx, cfg, model
        self.layers = batchnorm_layers(model)
        info = ctx.dataset
        mean = torch.tensor(info.mean, dtype=torch.float32, device=ctx.device).view(1, -1, 1, 1)
        std = torch.tensor(info.std, dtype=torch.float32, device=ctx.device).view(1, -1, 1, 1)
        # The normalized images of [0, 1] pixels: the clipping range of every channel.
        self.low, self.high = (0 - mean) / std, (1 - mean) / std
        self.classes = list(ctx.classes)
        self.slot = {c: k for k, c in enumerate(self.classes)}
        per = cfg.batch_classes
        chunks = [tuple(self.classes[i : i + per]) for i in range(0, len(self.classes), per)]
        self.batches = [
            _Batch(len(chunks) * i + j, i, j, chunk) for i in range(ctx.ipc) for j, chunk in enumerate(chunks)
        ]

    def rows(self, batch: _Batch) -> torch.Tensor:
        """The rows of the class-major set that ``batch`` recovers."""
        return torch.tensor([self.slot[c] * self.ctx.ipc + batch.ipc_index for c in batch.classes])

    def noise(self, batch: _Batch) -> torch.Tensor:
        """Standard normal noise in the normalized space, drawn per (IPC index, class) so an
        image's start does not depend on the batch it is in."""
        info = self.ctx.dataset
        shape = (info.channels, info.resolution, info.resolution)
        draws = [torch.randn(shape, generator=self.ctx.generator(batch.ipc_index, c, "init")) for c in batch.classes]
        return torch.stack(draws).to(self.ctx.device)

    def run(self) -> torch.Tensor:
        ctx = self.ctx
        info = ctx.dataset
        n = len(self.classes) * ctx.ipc
        images = torch.zeros((n, info.channels, info.resolution, info.resolution), dtype=torch.float32)
        done = 0
        resumed = ctx.checkpoint.load()
        if resumed is not None:
            _, state = resumed
            if int(state["iterations"]) != ctx.iterations or int(state["batches"]) != len(self.batches):
                raise UsageError(
                    f"the checkpoint was made with --iterations {state['iterations']} over {state['batches']} batches; "
                    f"resume with the same options, or start again without --resume"
                )
            images.copy_(state["images"])
            done = int(state["done"])
        every, count = ctx.checkpoint.every, len(self.batches)
        for batch in self.batches[done:]:
            images[self.rows(batch)] = self.recover(batch).cpu()
            done = batch.number + 1
            # The iteration reported at the end of this batch and of the one before it: a
            # checkpoint is saved after the batch that crosses a multiple of ``every``.
            reported, before = done * ctx.iterations // count, batch.number * ctx.iterations // count
            if every and done < count and reported // every > before // every:
                state = {"images": images.clone(), "done": done, "iterations": ctx.iterations, "batches": count}
                ctx.checkpoint.save(reported, state)
        return images.to(ctx.device)

    def recover(self, batch: _Batch) -> torch.Tensor:
        """Optimize one batch from noise for ``ctx.iterations`` steps; its final images."""
        ctx, cfg = self.ctx, self.cfg
        steps = ctx.iterations
        x = self.noise(batch).requires_grad_(True)
        targets = torch.tensor(batch.classes, device=ctx.device)
        optimizer = torch.optim.Adam([x], lr=cfg.lr, betas=ADAM_BETAS, eps=ADAM_EPS)
        jitter, crop = int(cfg.jitter or 0), bool(cfg.crop)
        with BNStatistics(self.layers, cfg.first_bn_multiplier).hooked() as stats:
            for t in range(steps):
                for group in optimizer.param_groups:
                    group["lr"] = cosine_lr(cfg.lr, t, steps)
                g = ctx.generator(t, None, f"aug/ipc{batch.ipc_index}/chunk{batch.chunk}")
                view = augment(x, jitter, crop, cfg.crop_scale_min, g)
                optimizer.zero_grad(set_to_none=True)
                with autocast(ctx.device, cfg.autocast):
                    logits = self.model(view)
                loss_ce = F.cross_entropy(logits.float(), targets)
                loss_bn = stats.loss()
                loss = loss_ce + cfg.r_bn * loss_bn
                loss.backward()
                optimizer.step()
                with torch.no_grad():
                    x.copy_(torch.maximum(torch.minimum(x, self.high), self.low))
                step = batch.number * steps + t + 1  # 1 .. total over the whole run
                if step % len(self.batches) == 0:  # report ctx.iterations times, evenly spaced
                    ctx.progress(
                        step // len(self.batches),
                        loss=float(loss.detach()),
                        loss_ce=float(loss_ce.detach()),
                        loss_bn=float(loss_bn.detach()),
                    )
        return x.detach()
