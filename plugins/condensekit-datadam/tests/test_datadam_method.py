"""The DataDAM objective and runs on real images (the embedded CIFAR-10 subset), CPU-sized."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import torch

from condensekit.errors import BackboneError
from condensekit.synthetic import SyntheticSet
from condensekit.testing import make_context
from condensekit_datadam.method import DataDAM, DataDAMConfig, Objective

#: A real batch small enough for CPU tests; everything else is the default preset.
SMALL = {"batch_real": 8}


def _config(ctx: Any, **overrides: Any) -> DataDAMConfig:
    method = DataDAM(DataDAM.make_config(**{**SMALL, **overrides}))
    return method.resolve_config(ctx.dataset, ctx.ipc)


def _run(ctx: Any, **overrides: Any) -> SyntheticSet:
    return DataDAM.configured(ctx.dataset, ctx.ipc, **{**SMALL, **overrides}).distill(ctx)


class Stop(Exception):
    """Raised from the progress callback to interrupt a run."""


def test_gradients_reach_only_the_synthetic_images() -> None:
    ctx = make_context(ipc=2, classes=[0, 1, 2])
    objective = Objective(ctx, _config(ctx))
    net = objective.network(0)
    real_attention, real_embedding = objective.real_targets(net, 0, objective.augmentations(0))
    assert not any(t.requires_grad for t in [*real_attention, real_embedding])
    syn = torch.cat([ctx.data.random(c, 2, ctx.generator(0, c, "init")) for c in ctx.classes]).requires_grad_(True)
    loss, sam, mmd = objective.losses(net, syn, 0)
    loss.backward()
    assert net.training
    assert all(not p.requires_grad and p.grad is None for p in net.parameters())
    assert syn.grad is not None and torch.isfinite(syn.grad).all()
    assert (syn.grad.flatten(1).abs().sum(dim=1) > 0).all()  # every synthetic image learns
    assert sam.item() > 0 and mmd.item() > 0


def test_loss_decreases_over_iterations() -> None:
    losses: list[float] = []
    ctx = make_context(
        ipc=2,
        iterations=12,
        classes=[0, 1],
        seed=0,
        progress=lambda iteration, **metrics: losses.append(metrics["loss"]),
    )
    synset = _run(ctx)
    assert len(losses) == 12
    # Each iteration draws a new network and real batch, so single losses are noisy; the
    # means of the first and last three fell to 0.50-0.70 of each other over seeds 0-2.
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < 0.85 * first, f"loss went from {first:.3f} to {last:.3f}"
    assert torch.isfinite(synset.images).all()


def test_result_is_class_major_in_normalized_space() -> None:
    ctx = make_context(ipc=3, iterations=1, classes=[4, 7])
    synset = _run(ctx)
    assert synset.images.shape == (6, 3, 32, 32)
    assert synset.labels.tolist() == [4, 4, 4, 7, 7, 7]
    assert synset.pixel_space == "normalized"
    assert synset.metadata["datadam"]["attention_layers"] == 2  # ConvNet-3: blocks 1 and 2


def test_images_move_away_from_their_real_initialization() -> None:
    ctx = make_context(ipc=2, iterations=2, classes=[0, 1])
    init = torch.cat([ctx.data.random(c, 2, ctx.generator(0, c, "init")) for c in ctx.classes])
    synset = _run(ctx)
    assert (synset.images - init).flatten(1).abs().amax(dim=1).min() > 1e-3


def test_noise_initialization_starts_from_standard_normal_pixels() -> None:
    ctx = make_context(ipc=50, iterations=0, classes=[0])
    images = _run(ctx, init="noise").images
    assert abs(images.mean().item()) < 0.05 and abs(images.std().item() - 1.0) < 0.05


def test_another_seed_gives_another_set() -> None:
    # (The same seed giving the same set: condensekit's conformance suite, tests/test_conformance.py.)
    first = _run(make_context(ipc=1, iterations=1, classes=[0, 1], seed=3))
    other = _run(make_context(ipc=1, iterations=1, classes=[0, 1], seed=4))
    assert not torch.equal(first.images, other.images)


def test_resumed_run_finishes_like_an_uninterrupted_one(tmp_path: Path) -> None:
    common = {"ipc": 1, "iterations": 4, "classes": [0, 1], "checkpoint_every": 2}
    uninterrupted = _run(make_context(**common), batch_real=4)

    def stop_at_three(iteration: int, **metrics: float) -> None:
        if iteration == 3:
            raise Stop

    with pytest.raises(Stop):
        _run(make_context(checkpoint_dir=tmp_path, progress=stop_at_three, **common), batch_real=4)
    seen: list[int] = []
    resumed = _run(
        make_context(
            checkpoint_dir=tmp_path, resume=True, progress=lambda iteration, **metrics: seen.append(iteration), **common
        ),
        batch_real=4,
    )
    assert seen == [3, 4]  # continues after the checkpoint at iteration 2
    assert torch.equal(resumed.images, uninterrupted.images)


def test_a_class_subset_distills_the_same_images_as_the_full_run() -> None:
    # partitionable = True: with per-sample normalization each class's images depend only on
    # that class's terms, so a process holding classes 2 and 3 computes exactly their share.
    full = _run(make_context(ipc=2, iterations=2, classes=[0, 1, 2, 3]))
    part = _run(make_context(ipc=2, iterations=2, classes=[2, 3]))
    torch.testing.assert_close(part.images, full.images[4:], rtol=1e-4, atol=1e-5)


def test_real_targets_in_class_chunks_equal_one_pass_for_instance_norm() -> None:
    ctx = make_context(ipc=1, classes=[0, 1, 2])
    objective = Objective(ctx, _config(ctx))
    assert objective.per_pass == 3
    net, params = objective.network(0), objective.augmentations(0)
    attention, embedding = objective.real_targets(net, 0, params)
    objective.per_pass = 1
    chunked_attention, chunked_embedding = objective.real_targets(net, 0, params)
    for one, chunked in zip(attention, chunked_attention, strict=True):
        torch.testing.assert_close(chunked, one, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(chunked_embedding, embedding, rtol=1e-4, atol=1e-5)


def test_autocast_keeps_the_loss() -> None:
    ctx = make_context(ipc=2, classes=[0, 1])
    syn = torch.cat([ctx.data.random(c, 2, ctx.generator(0, c, "init")) for c in ctx.classes])
    losses = []
    for enabled in (False, True):
        objective = Objective(ctx, _config(ctx, batch_real=4, autocast=enabled))
        losses.append(objective.losses(objective.network(0), syn, 0))
    for plain, fast in zip(*losses, strict=True):
        torch.testing.assert_close(fast, plain, rtol=0.05, atol=0.0)


def test_large_real_batches_are_split_by_class_only_without_batch_norm() -> None:
    # 640 real images of 32 px fit one pass; 700 per class do not.
    instance_ctx = make_context(ipc=1, classes=[0, 1, 2])
    assert Objective(instance_ctx, _config(instance_ctx, batch_real=700)).per_pass == 1
    batch_ctx = make_context(ipc=1, classes=[0, 1, 2], backbone="convnet-bn")
    objective = Objective(batch_ctx, _config(batch_ctx, batch_real=700))
    assert objective.batch_norm and objective.per_pass == 3  # batch statistics span all classes


def test_backbone_without_feature_maps_is_refused_before_any_iteration() -> None:
    import torchvision

    calls: list[int] = []
    ctx = make_context(ipc=1, iterations=3, classes=[0, 1], progress=lambda iteration, **m: calls.append(iteration))
    # A real network from another library, without condensekit's intermediates() view.
    ctx = dataclasses.replace(
        ctx,
        backbone_name="torchvision-resnet18",
        make_backbone=lambda seed: torchvision.models.resnet18(num_classes=10),
    )
    with pytest.raises(BackboneError) as info:
        _run(ctx)
    message = str(info.value)
    assert "\n" not in message and "torchvision-resnet18" in message and "timm:" in message
    assert calls == []


def test_timm_backbone_with_forward_intermediates_distills() -> None:
    losses: list[float] = []
    # timm's tiny test ResNet: the same code path as timm:resnet18 at a fraction of the cost.
    ctx = make_context(
        ipc=1,
        iterations=2,
        classes=[0, 1],
        backbone="timm:test_resnet",
        progress=lambda iteration, **metrics: losses.append(metrics["loss"]),
    )
    synset = _run(ctx)
    facts = synset.metadata["datadam"]
    assert facts["attention_layers"] == 4  # stem and stages 1-3; stage 4 enters through the embedding
    assert facts["batch_norm"] is True
    assert len(losses) == 2 and all(loss > 0 for loss in losses)
    assert torch.isfinite(synset.images).all()
