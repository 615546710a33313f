"""DC (Zhao et al., ICLR 2021) and DSA (Zhao & Bilen, ICML 2021): gradient matching.

Each iteration draws a fresh network. For ``outer_loop`` steps it computes, class by class,
the gradient of the cross-entropy of a real batch and of the class's synthetic images with
respect to the network's weights, and moves the synthetic images to shrink the layer-wise
distance between the two (``match_loss``); between two steps the network trains
``inner_loop`` epochs on the synthetic set, so later steps match gradients of a partly
trained network (the official ``main.py``). Preset ``dsa`` adds differentiable Siamese
augmentation: one augmentation per class and step, shared by its real and synthetic images,
and per-image augmentation while the network trains.

Where the work goes (README, Speed): the real gradients are one ``autograd.grad`` per class
(batched over classes through ``torch.func.vmap`` they were 2.5x slower on the CPU); the
synthetic gradients, which need a second derivative, are one ``vmap(grad(...))`` pass over all
classes (2.5x faster than per-class passes at IPC 10, the same values up to float rounding).
Only the weights the distance reads are differentiated (``ours`` ignores 1-D parameters).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from condensekit.api import (
    CLASS_SIZE,
    DEFAULT_STRATEGY,
    DSA,
    AugParams,
    DatasetInfo,
    DistillContext,
    Method,
    SyntheticSet,
    initial_images,
    run_iterations,
)
from condensekit_dc.matching import METRICS, match_distance, needs_parameter

#: DC's ``get_loops`` (utils.py:275-293): IPC -> (outer_loop, inner_loop).
LOOPS: dict[int, tuple[int, int]] = {1: (1, 1), 10: (10, 50), 20: (20, 25), 30: (30, 20), 40: (40, 15), 50: (50, 10)}
#: Real images per class for the batch-norm statistics pass before every outer step (main.py:164).
BN_IMAGES_PER_CLASS = 16
#: Synthetic images per vmapped gradient pass (whole classes): bounds the memory of the
#: second-derivative graph at large IPC x classes; CIFAR-10 up to IPC 25 is one pass.
SYN_IMAGES_PER_PASS = 256
#: Layers whose output depends on the other samples of the batch in train mode.
BATCH_NORM_LAYERS: tuple[type[nn.Module], ...] = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)

_POSITIVE: dict[str, Any] = {"min": 0, "min_exclusive": True}


def get_loops(ipc: int) -> tuple[int, int]:
    """``(outer_loop, inner_loop)`` for ``ipc``: DC's table (utils.py:275-293) where it has the
    IPC; otherwise the entry of the largest tabulated IPC below it (the official code exits)."""
    return LOOPS[max(k for k in LOOPS if k <= max(ipc, 1))]


@dataclass
class DCConfig:
    """DC/DSA's options; ranges are declared in the metadata and checked by core."""

    outer_loop: int | None = field(
        default=None,
        metadata={
            "help": "image updates per iteration (default: DC's get_loops by IPC: 1 at IPC 1, 10 at 10, "
            "20/30/40/50 at 20/30/40/50; other IPCs take the next smaller entry)",
            "min": 1,
        },
    )
    inner_loop: int | None = field(
        default=None,
        metadata={
            "help": "epochs the network trains on the synthetic set between image updates (default: "
            "get_loops by IPC: 1 at IPC 1, 50 at 10, 25/20/15/10 at 20/30/40/50)",
            "min": 0,
        },
    )
    dis_metric: Literal["ours", "mse", "cos"] = field(
        default="ours",
        metadata={
            "help": "gradient distance: ours (layer-wise, per output unit 1 - cos), mse or cos",
            "choices": METRICS,
        },
    )
    lr_img: float = field(default=0.1, metadata={"help": "SGD learning rate of the synthetic images", **_POSITIVE})
    momentum: float = field(
        default=0.5,
        metadata={"help": "SGD momentum of the synthetic images", "min": 0, "max": 1, "max_exclusive": True},
    )
    lr_net: float = field(
        default=0.01, metadata={"help": "SGD learning rate of the network in the inner loop", **_POSITIVE}
    )
    batch_real: int = field(
        default=256,
        metadata={
            "help": "real images per class per outer step (the default is capped at the smallest class)",
            "min": 1,
            "max": CLASS_SIZE,
        },
    )
    batch_train: int = field(
        default=256, metadata={"help": "synthetic images per network update in the inner loop", "min": 1}
    )
    init: Literal["real", "noise"] = field(
        default="noise",
        metadata={
            "help": "initialization: real (random real images) or noise (standard normal)",
            "choices": ("real", "noise"),
        },
    )
    dsa_strategy: str = field(
        default="none", metadata={"help": "Siamese DSA strategy string ('none': DC, no augmentation)"}
    )

    def __post_init__(self) -> None:
        DSA(self.dsa_strategy)  # raises a UsageError naming the bad op


#: Only what differs between the two papers' commands (see the README for the sources).
PRESETS: dict[str, dict[str, Any]] = {
    # DC: `python main.py --dataset CIFAR10 --model ConvNet --ipc 10` (readme.md:20), argparse
    # defaults: --init noise (main.py:28), --dsa_strategy None (main.py:29).
    "dc": {"init": "noise", "dsa_strategy": "none"},
    # DSA: `--init real --method DSA --dsa_strategy color_crop_cutout_flip_scale_rotate` (readme.md:110).
    "dsa": {"init": "real", "dsa_strategy": DEFAULT_STRATEGY},
}


def _has_batch_norm(model: nn.Module) -> bool:
    return any(isinstance(m, BATCH_NORM_LAYERS) for m in model.modules())


class GradientMatching(Method):
    """DC / DSA: per-class gradient matching on networks trained on the synthetic set."""

    name: ClassVar[str] = "dc"
    version: ClassVar[str] = "0.1.0"
    plugin_api: ClassVar[str] = "1.0"
    Config: ClassVar[type] = DCConfig
    presets: ClassVar[dict[str, dict[str, Any]]] = PRESETS
    default_preset: ClassVar[str | None] = "dc"
    # The matching decomposes over classes; the network update reads the whole synthetic set,
    # which class-parallel ranks exchange before every inner loop (``_whole_set``).
    partitionable: ClassVar[bool] = True
    smoke_config: ClassVar[dict[str, Any]] = {"batch_real": 8, "outer_loop": 2, "inner_loop": 1}

    def resolve_config(self, dataset: DatasetInfo, ipc: int) -> DCConfig:
        cfg: DCConfig = self.config
        outer, inner = get_loops(ipc)
        return dataclasses.replace(
            cfg,
            outer_loop=cfg.outer_loop if cfg.outer_loop is not None else outer,
            inner_loop=cfg.inner_loop if cfg.inner_loop is not None else inner,
        )

    def default_iterations(self, dataset: DatasetInfo, ipc: int) -> int:
        return 1000  # --Iteration (main.py:23)

    def distill(self, ctx: DistillContext) -> SyntheticSet:
        cfg: DCConfig = self.config
        assert cfg.outer_loop is not None and cfg.inner_loop is not None  # resolved by core
        classes = list(ctx.classes)
        syn = initial_images(ctx, cfg.init).requires_grad_(True)
        optimizer = torch.optim.SGD([syn], lr=cfg.lr_img, momentum=cfg.momentum)  # main.py:100
        labels = torch.tensor(classes, device=ctx.device).repeat_interleave(ctx.ipc)
        dsa = DSA(cfg.dsa_strategy)

        outer_loop = cfg.outer_loop

        def step(iteration: int) -> dict[str, float]:
            net = ctx.make_backbone(ctx.seed_for(iteration, None, "net"))
            net.train()
            net_optimizer = torch.optim.SGD(net.parameters(), lr=cfg.lr_net)  # main.py:150, no momentum
            batch_norm = _has_batch_norm(net)
            total = 0.0
            for outer in range(outer_loop):
                if batch_norm:
                    self._freeze_batch_norm(ctx, net, iteration, outer)
                optimizer.zero_grad(set_to_none=True)
                total += self._match_step(ctx, net, syn, dsa, iteration, outer)
                optimizer.step()
                if outer == outer_loop - 1:
                    break  # main.py:206: no network update after the last image update
                images, image_labels = _whole_set(ctx, syn.detach(), labels)
                self._train_network(ctx, net, net_optimizer, images, image_labels, dsa, iteration, outer)
            return {"loss": total / (len(classes) * outer_loop)}

        run_iterations(ctx, {"images": syn}, optimizer, step)
        return SyntheticSet(images=syn.detach(), labels=labels.cpu(), pixel_space="normalized")

    def _freeze_batch_norm(self, ctx: DistillContext, net: nn.Module, iteration: int, outer: int) -> None:
        """main.py:163-174: running statistics from 16 real images of every class (all the
        dataset's classes, so class-parallel ranks agree), then batch norm in eval mode."""
        all_classes = list(range(ctx.dataset.num_classes))
        generators = [ctx.generator(iteration, c, f"bn/{outer}") for c in all_classes]
        real = ctx.data.sample(all_classes, BN_IMAGES_PER_CLASS, generators)
        net.train()
        with torch.no_grad():
            net(real)
        for module in net.modules():
            if isinstance(module, BATCH_NORM_LAYERS):
                module.eval()

    def _match_step(
        self, ctx: DistillContext, net: nn.Module, syn: torch.Tensor, dsa: DSA, iteration: int, outer: int
    ) -> float:
        """Accumulate into ``syn.grad`` the gradient of the summed per-class distances; return their sum."""
        cfg: DCConfig = self.config
        classes = list(ctx.classes)
        k = len(classes)
        params = dict(net.named_parameters())
        names = [n for n, p in params.items() if needs_parameter(p.shape, cfg.dis_metric)]
        real = ctx.data.sample(classes, cfg.batch_real, [ctx.generator(iteration, c, f"real/{outer}") for c in classes])
        aug: AugParams | None = None
        if not dsa.identity:  # one parameter set per class, shared by its real and synthetic images
            aug = AugParams.cat([dsa.sample(1, ctx.generator(iteration, c, f"dsa/{outer}")) for c in classes])
            real = dsa.apply(real, aug, torch.arange(k).repeat_interleave(cfg.batch_real))

        # Real gradients, class by class (main.py:190-193), only of the weights the distance reads.
        weights = [params[n] for n in names]
        per_class = []
        for c, batch in zip(classes, real.split(cfg.batch_real), strict=True):
            target = torch.full((batch.shape[0],), c, dtype=torch.long, device=batch.device)
            per_class.append(torch.autograd.grad(F.cross_entropy(net(batch), target), weights))
        real_grads = [torch.stack([g[i] for g in per_class]) for i in range(len(names))]
        del per_class, real

        # Synthetic gradients of all classes in one vmapped pass (per chunk of classes), kept
        # differentiable in the images; the per-class distances sum, so chunks backward apart.
        fixed = {n: p.detach() for n, p in params.items()}
        buffers = dict(net.named_buffers())

        def class_loss(w: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            out = functional_call(net, ({**fixed, **w}, buffers), (x,))
            return F.cross_entropy(out, y)

        per_pass = max(1, SYN_IMAGES_PER_PASS // ctx.ipc)
        shape = syn.shape[1:]
        total = 0.0
        for start in range(0, k, per_pass):
            stop = min(k, start + per_pass)
            rows = syn[start * ctx.ipc : stop * ctx.ipc]
            if aug is not None:
                chunk_aug = aug.index(torch.arange(start, stop))
                rows = dsa.apply(rows, chunk_aug, torch.arange(stop - start).repeat_interleave(ctx.ipc))
            targets = torch.tensor(classes[start:stop], device=syn.device).repeat_interleave(ctx.ipc)
            syn_grads = vmap(grad(class_loss), in_dims=(None, 0, 0))(
                {n: fixed[n] for n in names},
                rows.reshape(stop - start, ctx.ipc, *shape),
                targets.reshape(stop - start, ctx.ipc),
            )
            distance = match_distance(
                [syn_grads[n] for n in names], [g[start:stop] for g in real_grads], cfg.dis_metric
            )
            distance.backward()
            total += distance.item()
        return total

    def _train_network(
        self,
        ctx: DistillContext,
        net: nn.Module,
        optimizer: torch.optim.Optimizer,
        images: torch.Tensor,
        labels: torch.Tensor,
        dsa: DSA,
        iteration: int,
        outer: int,
    ) -> None:
        """``inner_loop`` epochs of SGD on the synthetic set (main.py:210-215, utils.py:297-333),
        shuffled batches of ``batch_train``; under DSA each batch is augmented per image."""
        cfg: DCConfig = self.config
        order = ctx.generator(iteration, None, f"shuffle/{outer}")
        augment = ctx.generator(iteration, None, f"train-dsa/{outer}")
        n = images.shape[0]
        net.train()
        for _ in range(cfg.inner_loop or 0):
            # One batch holding the whole set: the mean gradient does not depend on the order.
            batches: Sequence[torch.Tensor | None] = (
                [None] if n <= cfg.batch_train else torch.randperm(n, generator=order).split(cfg.batch_train)
            )
            for idx in batches:
                x = images if idx is None else images[idx.to(images.device)]
                y = labels if idx is None else labels[idx.to(labels.device)]
                if not dsa.identity:
                    x = dsa(x, augment)
                loss = F.cross_entropy(net(x), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()


def _whole_set(ctx: DistillContext, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The synthetic images of every class, class-major: this process's own, or, in a
    class-parallel run, every rank's gathered, so each rank trains the same network the
    one-process run trains (the network update is the only step that mixes classes)."""
    if ctx.world_size == 1 or not (dist.is_available() and dist.is_initialized()):
        return images, labels
    parts: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(parts, (images.cpu(), labels.cpu()))
    all_images = torch.cat([p[0] for p in parts])
    all_labels = torch.cat([p[1] for p in parts])
    order = torch.argsort(all_labels, stable=True)
    return all_images[order].to(images.device), all_labels[order].to(labels.device)
