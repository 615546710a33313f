"""RDED on real CIFAR-10 images (the embedded cifar10-mini, 16 px): selection, stitching,
randomness, soft labels. The plugin contract is checked by condensekit's conformance suite
(tests/test_conformance.py), which runs the kit over every installed method, this one included."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from condensekit.api import UsageError, make_context, make_teacher
from condensekit_rded.method import (
    RDED,
    pad_to,
    random_resized_crops,
    select_crops,
    stitch,
)

#: A quarter of the compute of 32 px, same code paths.
RES = 16


class MeanTeacher(nn.Module):
    """A classifier whose loss is known: class 0's logit is the mean pixel value (normalized
    space), every other class's is its negative. For class 0 the brightest crop has the lowest
    cross-entropy."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        sign = -torch.ones(num_classes)
        sign[0] = 1.0
        self.register_buffer("sign", sign)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(1, 2, 3)).unsqueeze(1) * self.sign * 10


@pytest.fixture(scope="module")
def untrained_teacher():
    return make_teacher("cifar10-mini", resolution=RES, seed=0)


@pytest.fixture(scope="module")
def mean_teacher(untrained_teacher):
    return dataclasses.replace(untrained_teacher, model=MeanTeacher().eval(), source="mean teacher")


def _method(ctx, **overrides) -> RDED:
    return RDED.configured(ctx.dataset, ctx.ipc, **overrides)


def _run(teacher, ipc=2, classes=None, seed=0, **overrides):
    ctx = make_context(ipc=ipc, resolution=RES, classes=classes, seed=seed, teacher=teacher)
    return _method(ctx, **overrides).distill(ctx), ctx


def _mean_loss(x: torch.Tensor) -> torch.Tensor:
    """Class-0 cross-entropy of MeanTeacher on (N, C, h, w) crops padded to RES."""
    logits = MeanTeacher()(pad_to(x, RES))
    return F.cross_entropy(logits, torch.zeros(x.shape[0], dtype=torch.long), reduction="none")


# -- the pieces -----------------------------------------------------------------------------


def test_random_resized_crops_follow_the_generator() -> None:
    images = torch.rand(3, 3, 16, 16)
    a = random_resized_crops(images, 4, 8, (0.08, 1.0), torch.Generator().manual_seed(1))
    b = random_resized_crops(images, 4, 8, (0.08, 1.0), torch.Generator().manual_seed(1))
    c = random_resized_crops(images, 4, 8, (0.08, 1.0), torch.Generator().manual_seed(2))
    assert a.shape == (3, 4, 3, 8, 8)
    assert torch.equal(a, b) and not torch.equal(a, c)
    # The full-image crop, resized with antialias, is what torchvision's resize gives.
    whole = random_resized_crops(images, 1, 8, (1.0, 1.0), torch.Generator().manual_seed(0))
    expected = F.interpolate(images, size=(8, 8), mode="bilinear", align_corners=False, antialias=True)
    assert torch.allclose(whole[:, 0], expected)


def test_select_crops_keeps_the_best_crop_per_image_then_the_best_images() -> None:
    losses = torch.tensor([[3.0, 1.0, 2.0], [0.5, 4.0, 0.75], [2.0, 2.0, 9.0], [5.0, 6.0, 0.125]])
    chosen, values = select_crops(losses, 3)
    assert chosen.tolist() == [[3, 2], [1, 0], [0, 1]]
    assert values.tolist() == [0.125, 0.5, 1.0]
    # Ties: the earlier crop of an image (image 2), the earlier of two images.
    chosen, _ = select_crops(torch.tensor([[2.0, 2.0], [1.0, 3.0], [2.0, 5.0]]), 3)
    assert chosen.tolist() == [[1, 0], [0, 0], [2, 0]]


def test_pad_centres_the_crop_in_zeros() -> None:
    out = pad_to(torch.ones(1, 1, 3, 3), 8)
    assert out.shape == (1, 1, 8, 8)
    assert out[0, 0, 2:5, 2:5].eq(1).all() and out.sum() == 9


@pytest.mark.parametrize(("resolution", "cells"), [(16, [8, 8]), (9, [5, 4])])
def test_stitch_puts_the_kth_block_of_ipc_crops_at_position_k(resolution: int, cells: list[int]) -> None:
    ipc, factor = 3, 2
    side = resolution // factor
    patches = torch.arange(ipc * factor**2, dtype=torch.float).view(-1, 1, 1, 1).expand(-1, 2, side, side)
    out = stitch(patches, ipc, factor, resolution)
    assert out.shape == (ipc, 2, resolution, resolution)
    starts = [0, cells[0]]
    for i in range(ipc):
        for r in range(factor):
            for q in range(factor):
                cell = out[i, :, starts[r] : starts[r] + cells[r], starts[q] : starts[q] + cells[q]]
                assert cell.eq((r * factor + q) * ipc + i).all()


# -- resolved config -----------------------------------------------------------------------


def test_factor_follows_the_resolution_and_mipc_must_cover_the_stitched_crops() -> None:
    ctx = make_context(ipc=2, resolution=RES)
    assert _method(ctx).config.factor == 1
    tiny = dataclasses.replace(ctx.dataset, resolution=64)  # Tiny ImageNet's scripts: factor 1
    assert RDED.configured(tiny, 2).config.factor == 1
    big = dataclasses.replace(ctx.dataset, resolution=128)  # ImageNette's scripts: factor 2
    assert RDED.configured(big, 2).config.factor == 2
    assert RDED.configured(big, 2, factor=1).config.factor == 1
    counted = dataclasses.replace(ctx.dataset, class_sizes=(200,) * 10)  # as core's plan counts them
    assert RDED.configured(counted, 2).config.mipc == 200  # 300 capped at 200 images per class
    with pytest.raises(UsageError, match="--mipc must be <= 200"):
        RDED.configured(counted, 2, mipc=300)
    with pytest.raises(UsageError, match="--mipc 7"):
        RDED.configured(ctx.dataset, 2, factor=2, mipc=7)
    with pytest.raises(UsageError, match="--scale-min"):
        RDED.configured(ctx.dataset, 2, scale_min=0.9, scale_max=0.5)
    assert RDED().default_iterations(ctx.dataset, 10) == 1


def test_distill_without_a_teacher_is_a_usage_error() -> None:
    ctx = make_context(ipc=2, resolution=RES, classes=[0])
    with pytest.raises(UsageError, match="--teacher"):
        _method(ctx, mipc=8).distill(ctx)


# -- distillation on real images ------------------------------------------------------------


def test_selection_keeps_the_lowest_loss_crops_of_real_images(mean_teacher) -> None:
    mipc, num_crop, ipc = 20, 3, 4
    synset, ctx = _run(mean_teacher, ipc=ipc, classes=[0], mipc=mipc, num_crop=num_crop)
    # Every crop the run could choose from, drawn again from the same streams.
    images = ctx.data.random(0, mipc, ctx.generator(0, 0, "images"), space="unit")
    crops = random_resized_crops(images, num_crop, RES, (0.08, 1.0), ctx.generator(0, 0, "crops"))
    crops = ctx.dataset.normalize(crops.flatten(0, 1))
    losses = _mean_loss(crops).view(mipc, num_crop)
    best = losses.min(dim=1).values.sort().values[:ipc]
    assert torch.allclose(_mean_loss(synset.images), best, atol=1e-5)
    # The stored images are those crops exactly, each its image's lowest-loss crop.
    for stored in synset.images:
        match = (crops - stored).abs().flatten(1).amax(1).argmin()
        assert torch.equal(crops[match], stored)
        image, crop = divmod(int(match), num_crop)
        assert crop == int(losses[image].argmin())
    assert synset.labels.tolist() == [0] * ipc
    assert synset.pixel_space == "normalized" and synset.factor == 1


def test_factor_two_stitches_crops_in_loss_order(mean_teacher) -> None:
    ipc = 3
    synset, _ = _run(mean_teacher, ipc=ipc, classes=[0], factor=2, mipc=30, num_crop=2)
    half = RES // 2
    # Patch k of image i is crop k * ipc + i of the loss order: losses rise along that order.
    patches = torch.stack(
        [
            synset.images[i, :, r * half : (r + 1) * half, q * half : (q + 1) * half]
            for r in range(2)
            for q in range(2)
            for i in range(ipc)
        ]
    )
    losses = _mean_loss(patches)
    assert (losses[1:] >= losses[:-1] - 1e-6).all(), losses
    assert synset.images.shape == (ipc, 3, RES, RES)


def test_same_seed_same_set_and_another_seed_another(untrained_teacher) -> None:
    a, _ = _run(untrained_teacher, classes=[0, 1], mipc=12, num_crop=2)
    b, _ = _run(untrained_teacher, classes=[0, 1], mipc=12, num_crop=2)
    c, _ = _run(untrained_teacher, classes=[0, 1], mipc=12, num_crop=2, seed=1)
    assert torch.equal(a.images, b.images) and torch.equal(a.soft_labels, b.soft_labels)
    assert not torch.equal(a.images, c.images)


def test_a_class_is_the_same_whichever_classes_a_process_gets(untrained_teacher) -> None:
    together, _ = _run(untrained_teacher, classes=[0, 3, 7], mipc=12, num_crop=2)
    alone, _ = _run(untrained_teacher, classes=[3], mipc=12, num_crop=2)
    pair, _ = _run(untrained_teacher, classes=[7, 0], mipc=12, num_crop=2)
    assert torch.equal(together.images[2:4], alone.images)
    assert torch.equal(together.images[4:6], pair.images[0:2])
    assert torch.equal(together.images[0:2], pair.images[2:4])
    assert pair.labels.tolist() == [7, 7, 0, 0]


def test_soft_labels_are_the_teachers_probabilities_of_the_stored_images(untrained_teacher) -> None:
    synset, _ = _run(untrained_teacher, classes=[0, 1, 2], mipc=12, num_crop=2)
    soft = synset.soft_labels
    assert soft is not None and soft.shape == (6, 10) and soft.dtype == torch.float32
    assert (soft >= 0).all()
    assert torch.allclose(soft.sum(1), torch.ones(6), atol=1e-6)
    with torch.no_grad():
        expected = F.softmax(untrained_teacher.model(synset.images), dim=1)
    assert torch.allclose(soft, expected, atol=1e-6)


def test_progress_is_reported_once_per_class(untrained_teacher) -> None:
    seen: list[tuple[int, dict[str, float]]] = []
    ctx = make_context(
        ipc=1, resolution=RES, classes=[4, 5], teacher=untrained_teacher, progress=lambda i, **m: seen.append((i, m))
    )
    _method(ctx, mipc=6, num_crop=2).distill(ctx)
    assert [i for i, _ in seen] == [1, 1]
    assert [m["classes_done"] for _, m in seen] == [1.0, 2.0]
    assert all(m["loss"] >= 0 for _, m in seen)
