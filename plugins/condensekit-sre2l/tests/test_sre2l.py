"""SRe2L recovery on real data (cifar10-mini at 16 px): the BatchNorm loss, the loop. The plugin
contract is checked by condensekit's conformance suite (tests/test_conformance.py), which runs
the kit over every installed method, this one included."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from condensekit.api import UsageError, make_context, make_teacher
from condensekit_sre2l.method import BNStatistics, SRe2L, augment, batchnorm_layers, cosine_lr


def _method(ctx, **overrides):
    return SRe2L.configured(ctx.dataset, ctx.ipc, **overrides)


def _context(teacher, **kwargs):
    return make_context(teacher=teacher, resolution=teacher.resolution, **kwargs)


# -- the BatchNorm statistics loss ---------------------------------------------------------


def test_bn_loss_is_zero_at_the_running_statistics_and_positive_elsewhere(teacher) -> None:
    ctx = make_context(ipc=1, iterations=1, resolution=teacher.resolution)
    x = torch.cat([ctx.data.first(c, 3) for c in range(10)])
    model = teacher.model
    layers = batchnorm_layers(model)
    saved = [(m.running_mean.clone(), m.running_var.clone()) for m in layers]
    try:
        # Set each layer's running statistics to the biased statistics of x's batch at its
        # input, in order (a layer's input depends only on the layers before it).
        for layer in layers:
            seen: dict[str, torch.Tensor] = {}

            def keep(module: torch.nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
                seen["x"] = inp[0].detach()  # noqa: B023 -- used before the next layer's hook

            handle = layer.register_forward_hook(keep)
            with torch.no_grad():
                model(x)
            handle.remove()
            layer.running_mean.copy_(seen["x"].mean(dim=(0, 2, 3)))
            layer.running_var.copy_(seen["x"].var(dim=(0, 2, 3), unbiased=False))
        stats = BNStatistics(layers, first_multiplier=10.0)
        with torch.no_grad(), stats.hooked():
            model(x)
            at_running = float(stats.loss())
            model(torch.randn_like(x))
            elsewhere = float(stats.loss())
        assert at_running == pytest.approx(0.0, abs=1e-3)
        assert elsewhere > 1.0
    finally:
        for layer, (mean, var) in zip(layers, saved, strict=True):
            layer.running_mean.copy_(mean)
            layer.running_var.copy_(var)


def test_hooks_are_removed_after_recovery(teacher) -> None:
    layers = batchnorm_layers(teacher.model)
    assert layers and all(not m._forward_hooks for m in layers)
    stats = BNStatistics(layers)
    with stats.hooked():
        assert all(len(m._forward_hooks) == 1 for m in layers)
    assert all(not m._forward_hooks for m in layers)


# -- augmentation and schedule -------------------------------------------------------------


def test_augmentation_is_seeded_and_keeps_the_shape() -> None:
    x = torch.randn(4, 3, 32, 32)
    a = augment(x, 4, True, 0.08, torch.Generator().manual_seed(1))
    b = augment(x, 4, True, 0.08, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and torch.equal(a, b)
    assert cosine_lr(0.25, 0, 100) == pytest.approx(0.25) and cosine_lr(0.25, 50, 100) == pytest.approx(0.125)


# -- the teacher -----------------------------------------------------------------------------


def test_a_teacher_without_batchnorm_is_refused(teacher) -> None:
    plain = make_teacher("cifar10-mini", backbone="convnet", epochs=0, seed=0, resolution=teacher.resolution)
    with pytest.raises(UsageError, match=r"BatchNorm.*--backbone convnet-bn"):
        SRe2L().check_teacher(plain)
    SRe2L().check_teacher(teacher)  # a BatchNorm teacher is accepted


def test_the_teacher_is_left_untouched(teacher) -> None:
    before = {k: v.clone() for k, v in teacher.model.state_dict().items()}
    ctx = _context(teacher, ipc=1, iterations=2, classes=[0, 1, 2])
    _method(ctx).distill(ctx)
    after = teacher.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not teacher.model.training


# -- recovery --------------------------------------------------------------------------------


def test_recovery_lowers_the_total_loss(teacher) -> None:
    losses: list[float] = []
    ctx = _context(
        teacher, ipc=1, iterations=16, classes=[0, 1, 2, 3], progress=lambda i, **m: losses.append(m["loss"])
    )
    synset = _method(ctx).distill(ctx)
    assert len(losses) == 16
    assert sum(losses[-3:]) / 3 < 0.8 * sum(losses[:3]) / 3
    # the images stay the normalized images of [0, 1] pixels
    unit = ctx.dataset.denormalize(synset.images)
    assert synset.pixel_space == "normalized"
    assert unit.min() >= -1e-5 and unit.max() <= 1 + 1e-5


def test_same_seed_same_set_and_soft_labels(teacher) -> None:
    def run(seed: int):
        ctx = _context(teacher, ipc=1, iterations=2, classes=[0, 1, 2], seed=seed)
        return _method(ctx, crop=True).distill(ctx)

    a, b, c = run(0), run(0), run(1)
    assert torch.equal(a.images, b.images) and torch.equal(a.soft_labels, b.soft_labels)
    assert not torch.equal(a.images, c.images)
    soft = a.soft_labels
    assert soft.shape == (3, 10) and (soft >= 0).all()
    assert torch.allclose(soft.sum(dim=1), torch.ones(3), atol=1e-6)
    assert torch.equal(a.labels, torch.tensor([0, 1, 2]))


def test_progress_reports_each_iteration_once_across_batches(teacher) -> None:
    seen: list[int] = []
    # 2 IPC x 2 chunks of classes = 4 batches of 3 steps: 3 reports, the last one 3.
    ctx = _context(teacher, ipc=2, iterations=3, classes=[0, 1, 2, 3], progress=lambda i, **m: seen.append(i))
    synset = _method(ctx, batch_classes=2).distill(ctx)
    assert seen == [1, 2, 3]
    assert torch.equal(synset.labels, torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]))


def test_resume_after_a_batch_gives_the_uninterrupted_set(teacher, tmp_path: Path) -> None:
    def context(resume: bool, progress=None):
        return _context(
            teacher,
            ipc=2,
            iterations=2,
            classes=[0, 1],
            checkpoint_dir=tmp_path,
            checkpoint_every=1,
            resume=resume,
            progress=progress,
        )

    full = _method(context(False)).distill(context(False))

    class Stop(Exception):
        pass

    def stop_late(iteration: int, **metrics: float) -> None:
        if iteration == 2:  # after the first batch (reported 1) was checkpointed
            raise Stop

    ctx = context(False, stop_late)
    with pytest.raises(Stop):
        _method(ctx).distill(ctx)
    resumed_ctx = context(True)
    assert resumed_ctx.checkpoint.load()[0] == 1
    resumed = _method(resumed_ctx).distill(resumed_ctx)
    assert torch.equal(resumed.images, full.images)
