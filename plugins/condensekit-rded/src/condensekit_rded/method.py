"""RDED: On the Diversity and Realism of Distilled Dataset (Sun et al., CVPR 2024).

No optimization: each stored image is stitched from real crops that a trained classifier (the
*teacher*) finds most typical of their class. Per class:

1. draw ``mipc`` real images (without replacement);
2. cut ``num_crop`` random square crops from each (RandomResizedCrop, ratio 1, scale
   ``(scale_min, scale_max)``, output side ``resolution // factor``, bilinear with antialias);
3. score every crop by the teacher's cross-entropy to the class, the crop zero-padded to the
   full resolution in the normalized space (the dataset's mean colour around it);
4. keep, per image, its lowest-loss crop, then the ``ipc * factor**2`` lowest-loss crops of the
   class, in loss order;
5. stitch them ``factor x factor`` into ``ipc`` images: patch position ``k`` (row-major) of
   image ``i`` is crop ``k * ipc + i`` of that order, resized (nearest) to the patch size.

The stored images are in the normalized space with ``factor`` 1 (the stitched images are the
training images themselves) and carry the teacher's soft labels; evaluation's ``kd`` protocol
relabels each augmented view with the teacher.

Every random draw comes from ``ctx.generator(0, class, stream)``, so a class gets the same
crops whichever other classes its process holds, and the same seed gives the same set. The
official code is LINs-lab/RDED at commit 3f6453d (``synthesize/main.py``,
``synthesize/utils.py``); this is a re-implementation, not a copy.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from condensekit.api import (
    CLASS_SIZE,
    DistillContext,
    Method,
    SyntheticSet,
    UsageError,
    inference_model,
    random_resized_crop_box,
)

#: Above this resolution the official scripts stitch 2 x 2 crops (every ImageNet-subset script, at
#: 128 and 224 px); up to it one crop per image (every CIFAR script at 32 px and every Tiny
#: ImageNet script at 64 px). LINs-lab/RDED@3f6453d, scripts/*.sh.
STITCH_ABOVE = 64
#: RandomResizedCrop's ratio range, fixed by RDED to squares.
RATIO = (1.0, 1.0)


def _help(text: str, **limits: Any) -> dict[str, Any]:
    """A field's metadata: its help text and the range core checks (``min``, ``max``, ...)."""
    return {"help": text, **limits}


@dataclass
class RDEDConfig:
    """RDED's options (official defaults: LINs-lab/RDED@3f6453d, see the README)."""

    factor: int | None = field(
        default=None,
        metadata=_help(
            "crops per side of each stored image: each holds factor x factor crops of side resolution//factor "
            f"(default: 1 up to {STITCH_ABOVE} px, 2 above, as the official CIFAR, Tiny ImageNet and ImageNet "
            "scripts)",
            min=1,
        ),
    )
    num_crop: int = field(default=5, metadata=_help("random crops scored per candidate image", min=1))
    mipc: int = field(
        default=300,
        metadata=_help(
            "candidate real images per class, drawn without replacement (the default is capped at the smallest "
            "class); must be at least ipc x factor^2",
            min=1,
            max=CLASS_SIZE,
        ),
    )
    scale_min: float = field(
        default=0.08,
        metadata=_help("smallest crop area, as a fraction of the image (RandomResizedCrop scale)", min=0, max=1),
    )
    scale_max: float = field(
        default=1.0,
        metadata=_help(
            "largest crop area, as a fraction of the image (RandomResizedCrop scale)",
            min=0,
            min_exclusive=True,
            max=1,
        ),
    )
    batch: int = field(default=500, metadata=_help("crops per teacher forward pass (memory only)", min=1))


class RDED(Method):
    """RDED: the teacher's most confident real crops, stitched, with the teacher's soft labels."""

    name: ClassVar[str] = "rded"
    version: ClassVar[str] = "0.1.0"
    plugin_api: ClassVar[str] = "1.2"
    Config: ClassVar[type] = RDEDConfig
    partitionable: ClassVar[bool] = True
    needs_teacher: ClassVar[bool] = True
    #: Any classifier of the dataset can teach RDED: no suggested backbone.
    teacher_backbone: ClassVar[str | None] = None
    #: The conformance suite's budget: few candidates, two crops each.
    smoke_config: ClassVar[dict[str, Any]] = {"mipc": 16, "num_crop": 2}

    def resolve_config(self, dataset: Any, ipc: int) -> RDEDConfig:
        cfg: RDEDConfig = self.config
        factor = cfg.factor if cfg.factor is not None else default_factor(dataset.resolution)
        if factor > dataset.resolution:
            raise UsageError(
                f"--factor {factor} is larger than the {dataset.resolution}px images; use a smaller factor"
            )
        if cfg.scale_min > cfg.scale_max:
            raise UsageError(f"--scale-min {cfg.scale_min} is above --scale-max {cfg.scale_max}; swap them")
        needed = ipc * factor**2
        if cfg.mipc < needed:
            raise UsageError(
                f"--mipc {cfg.mipc} gives {cfg.mipc} candidate crops per class, fewer than the {needed} that "
                f"ipc {ipc} x factor {factor}^2 stitches; raise --mipc (at most the smallest class) or lower "
                "--ipc or --factor"
            )
        return replace(cfg, factor=factor)

    def default_iterations(self, dataset: Any, ipc: int) -> int:
        return 1  # no optimization loop: --iterations is ignored

    # ------------------------------------------------------------------------------------
    @torch.no_grad()
    def distill(self, ctx: DistillContext) -> SyntheticSet:
        cfg: RDEDConfig = self.config
        teacher = ctx.teacher
        if teacher is None:
            raise UsageError(
                "RDED needs a trained classifier of the dataset; pass --teacher REF (condensekit list experts, "
                "or train one: condensekit experts train --data DATASET --num 1)"
            )
        # The same logits as teacher.model, BatchNorm folded and channels_last: scoring is
        # nearly all of RDED's time (0.59x per forward on a CPU; condensekit.api.inference_model).
        model = inference_model(teacher.model)
        factor = cfg.factor if cfg.factor is not None else default_factor(ctx.dataset.resolution)
        res = ctx.dataset.resolution
        side = res // factor
        needed = ctx.ipc * factor**2
        classes = list(ctx.classes)
        parts = []
        for done, c in enumerate(classes, start=1):
            count = min(cfg.mipc, ctx.data.class_count(c))
            if count < needed:
                raise UsageError(
                    f"class {c} of {ctx.dataset.name} gives {count} candidate images, fewer than the {needed} "
                    f"crops ipc {ctx.ipc} x factor {factor}^2 stitches; lower --ipc or --factor"
                )
            images = ctx.data.random(c, count, ctx.generator(0, c, "images"), space="unit")
            crops = random_resized_crops(
                images, cfg.num_crop, side, (cfg.scale_min, cfg.scale_max), ctx.generator(0, c, "crops")
            )
            crops = ctx.dataset.normalize(crops.flatten(0, 1))  # (count * num_crop, C, side, side)
            losses = crop_losses(model, crops, c, res, cfg.batch).view(count, cfg.num_crop)
            chosen, chosen_loss = select_crops(losses, needed)
            patches = crops.view(count, cfg.num_crop, *crops.shape[1:])[chosen[:, 0], chosen[:, 1]]
            parts.append(stitch(patches, ctx.ipc, factor, res))
            ctx.progress(1, loss=float(chosen_loss.mean()), classes_done=float(done))
        images = torch.cat(parts).contiguous()
        labels = torch.tensor(classes, dtype=torch.long).repeat_interleave(ctx.ipc)
        return SyntheticSet(
            images=images,
            labels=labels,
            soft_labels=soft_labels(model, images, cfg.batch),
            pixel_space="normalized",
            factor=1,
            # The dataset facts make the set usable as returned (core records them again).
            metadata={**ctx.dataset.as_metadata(), "crops_per_image": factor**2, "crop_side": side},
        )


# ----------------------------------------------------------------------------------------------
# The pieces, each testable on its own.


def default_factor(resolution: int) -> int:
    """The official scripts' factor for a resolution: 1 up to 64 px, 2 above."""
    return 1 if resolution <= STITCH_ABOVE else 2


def random_resized_crops(
    images: torch.Tensor, num_crop: int, side: int, scale: tuple[float, float], generator: torch.Generator
) -> torch.Tensor:
    """``num_crop`` square random-resized crops of each image (M, C, H, W) -> (M, num_crop, C,
    side, side), bilinear with antialias (torchvision's tensor resize). Boxes are drawn image by
    image, crop by crop; crops of the same box size are resized in one call."""
    m, channels, height, width = images.shape
    boxes = [random_resized_crop_box(height, width, scale, RATIO, generator) for _ in range(m * num_crop)]
    out = images.new_empty(m * num_crop, channels, side, side)
    by_size: dict[tuple[int, int], list[int]] = defaultdict(list)
    for k, (_, _, h, w) in enumerate(boxes):
        by_size[(h, w)].append(k)
    for (h, w), ks in by_size.items():
        cut = torch.stack(
            [images[k // num_crop, :, boxes[k][0] : boxes[k][0] + h, boxes[k][1] : boxes[k][1] + w] for k in ks]
        )
        if (h, w) != (side, side):
            cut = F.interpolate(cut, size=(side, side), mode="bilinear", align_corners=False, antialias=True)
        out[torch.tensor(ks, device=out.device)] = cut
    return out.view(m, num_crop, channels, side, side)


def pad_to(crops: torch.Tensor, resolution: int) -> torch.Tensor:
    """Crops (N, C, s, s) centred in zeros of ``resolution`` x ``resolution`` (the extra pixel,
    if odd, goes right and bottom, as the official ``pad``)."""
    extra_h, extra_w = resolution - crops.shape[-2], resolution - crops.shape[-1]
    if extra_h == 0 and extra_w == 0:
        return crops
    return F.pad(crops, (extra_w // 2, extra_w - extra_w // 2, extra_h // 2, extra_h - extra_h // 2))


def crop_losses(model: torch.nn.Module, crops: torch.Tensor, label: int, resolution: int, batch: int) -> torch.Tensor:
    """The teacher's cross-entropy to ``label`` of each normalized crop, zero-padded to
    ``resolution``, in forward passes of ``batch`` crops: (N,) float32."""
    losses = []
    for chunk in crops.split(batch):
        logits = model(pad_to(chunk, resolution)).float()
        target = torch.full((chunk.shape[0],), label, dtype=torch.long, device=logits.device)
        losses.append(F.cross_entropy(logits, target, reduction="none"))
    return torch.cat(losses)


def select_crops(losses: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """From per-crop losses (images, crops): each image's lowest-loss crop, then the ``n``
    lowest of those, lowest first (ties: the earlier crop, the earlier image). Returns
    (n, 2) (image, crop) indices and their (n,) losses."""
    best, crop = losses.min(dim=1)  # the first minimum, like argmin
    order = torch.sort(best, stable=True).indices[:n]
    return torch.stack([order, crop[order]], dim=1), best[order]


def stitch(patches: torch.Tensor, ipc: int, factor: int, resolution: int) -> torch.Tensor:
    """``ipc * factor**2`` patches (in selection order) -> ``ipc`` images of ``resolution``: the
    patch at row ``r``, column ``q`` of image ``i`` is ``patches[(r * factor + q) * ipc + i]``,
    resized (nearest) to its cell; when ``resolution`` is not a multiple of ``factor`` the first
    ``resolution % factor`` rows and columns are one pixel larger (the official ``mix_images``)."""
    base, extra = divmod(resolution, factor)
    sizes = [base + 1 if r < extra else base for r in range(factor)]
    out = patches.new_zeros(ipc, patches.shape[1], resolution, resolution)
    k, top = 0, 0
    for h in sizes:
        left = 0
        for w in sizes:
            block = patches[k * ipc : (k + 1) * ipc]
            if block.shape[-2:] != (h, w):
                block = F.interpolate(block, size=(h, w), mode="nearest")
            out[:, :, top : top + h, left : left + w] = block
            left += w
            k += 1
        top += h
    return out


def soft_labels(model: torch.nn.Module, images: torch.Tensor, batch: int) -> torch.Tensor:
    """The teacher's class probabilities of the stored images: (N, K) float32, rows summing to 1."""
    probs = torch.cat([F.softmax(model(chunk).float(), dim=1) for chunk in images.split(batch)])
    return probs / probs.sum(dim=1, keepdim=True)
