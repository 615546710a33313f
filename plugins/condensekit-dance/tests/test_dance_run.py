"""Short DANCE runs on real data: output set, multi-formation, partitions, batched mode."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from condensekit.synthetic import decode_multiformation, encode_multiformation
from condensekit.testing import make_context
from condensekit_dance.method import DANCE

SMALL = {"batch_real": 16, "num_experts": 2}


def _run(mini_experts, ipc: int = 1, iterations: int = 2, classes=None, progress=None, **config):
    ctx = make_context(
        resolution=16, ipc=ipc, iterations=iterations, experts=mini_experts, classes=classes, progress=progress
    )
    return DANCE.configured(ctx.dataset, ctx.ipc, **{**SMALL, **config}).distill(ctx)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory):
    return tmp_path_factory.mktemp("checkpoints")


@pytest.fixture(scope="module")
def full_run(mini_experts, checkpoints):
    """Two iterations over all classes, checkpointing after each (the last is not saved)."""
    metrics: list = []
    ctx = make_context(
        resolution=16,
        ipc=1,
        iterations=2,
        experts=mini_experts,
        checkpoint_dir=checkpoints,
        checkpoint_every=1,
        progress=lambda it, **m: metrics.append((it, m)),
    )
    synset = DANCE.configured(ctx.dataset, ctx.ipc, **SMALL).distill(ctx)
    return synset, metrics


def test_short_run_returns_a_unit_space_factor_two_set(full_run) -> None:
    synset, _ = full_run
    assert tuple(synset.images.shape) == (10, 3, 16, 16)
    assert synset.pixel_space == "unit" and synset.factor == 2
    assert synset.images.min() >= 0 and synset.images.max() <= 1
    assert torch.equal(synset.labels, torch.arange(10))


def test_decoding_the_output_gives_four_full_size_images_per_stored_image(full_run) -> None:
    synset, _ = full_run
    decoded = synset.decoded()
    assert tuple(decoded.images.shape) == (40, 3, 16, 16)
    assert torch.equal(decoded.labels, torch.arange(10).repeat_interleave(4))
    images, labels, _ = synset.training_tensors()
    assert images.shape == (40, 3, 16, 16) and labels.shape == (40,)


def test_core_decode_tiles_each_image_into_factor_squared_images() -> None:
    images = torch.rand(3, 3, 28, 28)
    decoded = decode_multiformation(images, 2)
    assert tuple(decoded.shape) == (12, 3, 28, 28)
    # Tile 0 of image 1 is the upsampled top-left quadrant of image 1.
    quadrant = torch.nn.functional.interpolate(images[1:2, :, :14, :14], size=(28, 28), mode="bilinear")
    torch.testing.assert_close(decoded[4:5], quadrant)


def test_progress_reports_both_losses_every_iteration(full_run) -> None:
    _, metrics = full_run
    assert [it for it, _ in metrics] == [1, 2]
    for _, m in metrics:
        assert set(m) == {"loss_match", "loss_calib"}
        assert m["loss_match"] > 0 and m["loss_calib"] > 0


def test_mix_init_tiles_the_first_real_images(mini_experts) -> None:
    ctx = make_context(resolution=16, ipc=1, iterations=0, experts=mini_experts)
    synset = DANCE.configured(ctx.dataset, ctx.ipc, **SMALL).distill(ctx)
    expected = encode_multiformation(ctx.data.first(3, 4, space="unit"), 2)
    assert torch.equal(synset.images[3:4], expected)


def test_plain_factor_one_starts_from_the_first_real_images(mini_experts) -> None:
    ctx = make_context(resolution=16, ipc=2, iterations=0, experts=mini_experts)
    synset = DANCE.configured(ctx.dataset, ctx.ipc, factor=1, **SMALL).distill(ctx)
    assert synset.factor == 1
    assert torch.equal(synset.images[2:4], ctx.data.first(1, 2, space="unit"))


def test_iterations_change_the_images(full_run, mini_experts) -> None:
    synset, _ = full_run
    ctx = make_context(resolution=16, ipc=1, iterations=0, experts=mini_experts)
    start = DANCE.configured(ctx.dataset, ctx.ipc, **SMALL).distill(ctx)
    assert not torch.equal(start.images, synset.images)


def test_a_class_partition_reproduces_the_full_run(full_run, mini_experts) -> None:
    synset, _ = full_run
    part = _run(mini_experts, ipc=1, iterations=2, classes=[2, 7])
    assert torch.equal(part.labels, torch.tensor([2, 7]))
    # Bitwise: the per-class draws and the zero-gradient steps for the absent classes make a
    # class's images independent of which other classes share the process.
    assert torch.equal(part.images, synset.images[[2, 7]])


def test_batched_mode_returns_the_same_kind_of_set(mini_experts) -> None:
    metrics: list = []
    synset = _run(mini_experts, ipc=2, iterations=1, batched=True, progress=lambda it, **m: metrics.append(m))
    assert tuple(synset.images.shape) == (20, 3, 16, 16) and synset.factor == 2
    assert synset.images.min() >= 0 and synset.images.max() <= 1
    assert len(metrics) == 1 and metrics[0]["loss_match"] > 0 and metrics[0]["loss_calib"] > 0


def test_config_resolves_the_official_auto_values() -> None:
    from condensekit.data import dataset_info

    method = DANCE()
    cfg = method.resolve_config(dataset_info("cifar10-mini"), 10)
    assert cfg.lr_img == pytest.approx(0.1) and cfg.init == "mix"
    assert method.default_iterations(dataset_info("cifar10-mini"), 10) == 10000
    plain = DANCE(DANCE.make_config(factor=1)).resolve_config(dataset_info("cifar10-mini"), 1)
    assert plain.init == "real" and plain.lr_img == pytest.approx(0.01)


def test_experts_request_names_no_recipe_unless_asked() -> None:
    from condensekit.data import dataset_info

    request = DANCE().experts_request(dataset_info("cifar10-mini"))
    assert (request.num, request.epochs, request.default_epochs) == (None, None, 60)
    high = DANCE().experts_request(dataset_info("imagenette"))
    assert high.default_epochs == 80


def test_a_named_expert_count_or_epochs_is_a_recipe() -> None:
    from condensekit.data import dataset_info

    request = DANCE(DANCE.make_config(num_experts=2, expert_epochs=3)).experts_request(dataset_info("cifar10-mini"))
    assert (request.num, request.epochs) == (2, 3)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"init": "zeros"}, r"^--init must be one of auto, real, mix, noise, got 'zeros'$"),
        ({"factor": 0}, r"^--factor must be >= 1, got 0$"),
        ({"factor": 33}, r"^--factor 33 is larger than the 32px images; use a smaller factor$"),
        ({"lr_img": 0.0}, r"^--lr-img must be > 0, got 0\.0$"),
        ({"momentum": -0.1}, r"^--momentum must be >= 0, got -0\.1$"),
        ({"batch_real": 0}, r"^--batch-real must be >= 1, got 0$"),
        ({"batch_real": 201}, r"^--batch-real must be <= 200, the train images in the smallest class of cifar10-mini"),
        ({"batch_syn_max": 0}, r"^--batch-syn-max must be >= 1, got 0$"),
        ({"iter_calib": -1}, r"^--iter-calib must be >= 0, got -1$"),
        ({"num_experts": 0}, r"^--num-experts must be >= 1, got 0$"),
        ({"expert_epochs": 0}, r"^--expert-epochs must be >= 1, got 0$"),
        ({"aug": "color_blur"}, r"unknown DSA op\(s\) blur"),
    ],
)
def test_bad_options_are_refused_in_one_line_when_the_run_is_planned(overrides: dict, message: str) -> None:
    from condensekit.distill import DistillRequest, plan
    from condensekit.errors import UsageError

    with pytest.raises(UsageError, match=message) as info:
        plan(DistillRequest("dance", "cifar10-mini", 1, config=overrides))  # before any expert or image
    assert "\n" not in str(info.value)


def test_every_numeric_field_declares_its_range_in_metadata() -> None:
    """Core checks what the metadata declares; a numeric field without a range is unchecked."""
    for f in dataclasses.fields(DANCE.Config):
        if f.name in ("aug", "batched"):  # a parsed strategy string and a flag: no range to declare
            continue
        assert {"min", "max", "choices"} & set(f.metadata), f"{f.name} declares no range"


def test_the_official_real_batch_is_capped_at_the_smallest_class() -> None:
    from condensekit.data import dataset_info

    subset = dataclasses.replace(dataset_info("imagenette"), class_sizes=(100,) * 10)  # the shared subset
    assert DANCE.configured(subset, 1).config.batch_real == 100  # the preset's 128, capped and recorded


def test_resuming_from_a_checkpoint_reproduces_the_uninterrupted_run(full_run, mini_experts, checkpoints) -> None:
    synset, _ = full_run
    assert (checkpoints / "checkpoint.pt").is_file()  # written after iteration 1 of 2
    done: list[int] = []
    ctx = make_context(
        resolution=16,
        ipc=1,
        iterations=2,
        experts=mini_experts,
        checkpoint_dir=checkpoints,
        checkpoint_every=1,
        resume=True,
        progress=lambda it, **m: done.append(it),
    )
    resumed = DANCE.configured(ctx.dataset, ctx.ipc, **SMALL).distill(ctx)
    assert done == [2]  # only the second iteration ran again
    assert torch.equal(resumed.images, synset.images)
