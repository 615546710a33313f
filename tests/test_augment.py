"""DSA: parameter sampling, Siamese application, each op's DC semantics."""

from __future__ import annotations

import pytest
import torch

from condensekit.augment import (
    DEFAULT_STRATEGY,
    DSA,
    GEOMETRIC,
    OPS,
    VALUES,
    AugParams,
    DSAConfig,
    random_resized_crop_box,
)
from condensekit.errors import UsageError


def _images(n: int = 6, c: int = 3, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, c, size, size, generator=torch.Generator().manual_seed(seed))


def _fixed(op: str, n: int, u: float = 0.25) -> AugParams:
    """``n`` sets applying only ``op``, every random value equal to ``u``."""
    active = torch.zeros(n, len(OPS), dtype=torch.bool)
    active[:, OPS.index(op)] = True
    return AugParams(active, torch.full((n, len(VALUES)), u))


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("op", OPS)
def test_each_op_changes_the_image_and_keeps_its_shape(op: str) -> None:
    x = _images()
    out = DSA(op).apply(x, _fixed(op, len(x)))
    assert out.shape == x.shape
    assert not torch.allclose(out, x)


@pytest.mark.parametrize("op", OPS)
def test_gradient_reaches_the_images_through_each_op(op: str) -> None:
    x = _images().requires_grad_(True)
    DSA(op).apply(x, _fixed(op, len(x))).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_gradient_reaches_images_through_random_full_strategy() -> None:
    x = _images(16).requires_grad_(True)
    dsa = DSA()
    dsa.apply(x, dsa.sample(16, _gen(1))).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_flip_mirrors_horizontally_below_probability() -> None:
    x = _images()
    assert torch.equal(DSA("flip").apply(x, _fixed("flip", 6, 0.25)), x.flip(3))
    assert torch.equal(DSA("flip").apply(x, _fixed("flip", 6, 0.75)), x)


def test_color_follows_brightness_saturation_contrast_formulas() -> None:
    x = _images()
    u = 0.25
    cfg = DSAConfig()
    expected = x + (u - 0.5) * cfg.brightness
    mean = expected.mean(1, keepdim=True)
    expected = (expected - mean) * (u * cfg.saturation) + mean
    mean = expected.mean((1, 2, 3), keepdim=True)
    expected = (expected - mean) * (u + cfg.contrast) + mean
    torch.testing.assert_close(DSA("color").apply(x, _fixed("color", 6, u)), expected)


def test_crop_is_an_integer_translation_with_zero_fill() -> None:
    x = _images(2, size=16)
    # u = 0.25 over [-2, 2] (round(0.125 * 16) = 2) -> floor(0.25 * 5) - 2 = -1 on both axes.
    out = DSA("crop").apply(x, _fixed("crop", 2, 0.25))
    expected = torch.zeros_like(x)
    expected[:, :, 1:, 1:] = x[:, :, :-1, :-1]
    assert torch.equal(out, expected)


def test_cutout_zeroes_one_half_side_square() -> None:
    x = torch.ones(2, 3, 16, 16)
    # u = 0.5 -> centre 8 of [0, 16]; the 8x8 square spans rows/cols 4..11.
    out = DSA("cutout").apply(x, _fixed("cutout", 2, 0.5))
    expected = torch.ones_like(x)
    expected[:, :, 4:12, 4:12] = 0
    assert torch.equal(out, expected)


def test_rotation_keeps_the_centre_pixel_and_scale_one_is_identity() -> None:
    x = _images(2, size=15)
    out = DSA("rotate").apply(x, _fixed("rotate", 2, 0.9))
    torch.testing.assert_close(out[:, :, 7, 7], x[:, :, 7, 7])
    assert not torch.allclose(out, x)
    # scale u such that s = 1: u = (1 - 1/r) / (r - 1/r)
    r = DSAConfig().ratio_scale
    unit = (1 - 1 / r) / (r - 1 / r)
    torch.testing.assert_close(DSA("scale").apply(x, _fixed("scale", 2, unit)), x, atol=1e-5, rtol=0)


@pytest.mark.parametrize("strategy", ["", "none", "None"])
def test_empty_strategy_is_the_identity(strategy: str) -> None:
    x = _images()
    dsa = DSA(strategy)
    assert dsa.identity
    assert torch.equal(dsa(x, _gen(0)), x)
    assert torch.equal(dsa.apply(x, dsa.sample(6, _gen(0))), x)


def test_same_generator_seed_draws_the_same_parameters() -> None:
    dsa = DSA()
    a, b, c = dsa.sample(32, _gen(7)), dsa.sample(32, _gen(7)), dsa.sample(32, _gen(8))
    assert torch.equal(a.active, b.active) and torch.equal(a.values, b.values)
    assert not torch.equal(a.values, c.values)


def test_generator_stream_does_not_depend_on_the_strategy() -> None:
    after = []
    for strategy, mode in [(DEFAULT_STRATEGY, "dsa"), ("crop", "dsa"), ("none", "dsa"), ("color_crop", "idc")]:
        g = _gen(3)
        DSA(strategy, mode).sample(10, g)
        after.append(torch.rand(1, generator=g).item())
    assert len(set(after)) == 1


def test_same_params_give_identical_outputs_on_two_batches() -> None:
    dsa = DSA()
    x = _images(32)
    params = dsa.sample(32, _gen(4))
    assert torch.equal(dsa.apply(x, params), dsa.apply(x.clone(), params))


def test_siamese_groups_give_real_and_synthetic_images_the_same_transform() -> None:
    dsa = DSA()
    classes, n_real, ipc = 4, 5, 2
    real = _images(classes * n_real, seed=1)
    # Synthetic image j of class c is a copy of the first real image of class c.
    syn = real.view(classes, n_real, *real.shape[1:])[:, :1].expand(-1, ipc, -1, -1, -1).reshape(-1, *real.shape[1:])
    params = AugParams.cat([dsa.sample(1, _gen(100 + c)) for c in range(classes)])
    out_real = dsa.apply(real, params, torch.arange(classes).repeat_interleave(n_real))
    out_syn = dsa.apply(syn, params, torch.arange(classes).repeat_interleave(ipc))
    first_real = out_real.view(classes, n_real, *real.shape[1:])[:, 0]
    for j in range(ipc):
        assert torch.equal(out_syn.view(classes, ipc, *real.shape[1:])[:, j], first_real)


def test_groups_select_the_parameter_set_of_each_image() -> None:
    dsa = DSA()
    x = _images(8)
    params = dsa.sample(3, _gen(5))
    groups = torch.tensor([2, 0, 1, 1, 2, 0, 0, 2])
    batched = dsa.apply(x, params, groups)
    for i, g in enumerate(groups.tolist()):
        one = dsa.apply(x[i : i + 1], AugParams(params.active[g : g + 1], params.values[g : g + 1]))
        torch.testing.assert_close(batched[i : i + 1], one)


def test_params_count_must_match_images_without_groups() -> None:
    dsa = DSA()
    with pytest.raises(ValueError, match="pass groups"):
        dsa.apply(_images(4), dsa.sample(3, _gen(0)))


def test_cat_concatenates_sets_in_order() -> None:
    dsa = DSA()
    a, b = dsa.sample(2, _gen(1)), dsa.sample(3, _gen(2))
    both = AugParams.cat([a, b])
    assert len(both) == 5
    assert torch.equal(both.values[2:], b.values) and torch.equal(both.active[:2], a.active)


def test_dsa_mode_applies_exactly_one_op_family_per_set() -> None:
    params = DSA().sample(600, _gen(0))
    assert (params.active.sum(1) == 1).all()
    counts = params.active.sum(0)
    assert (counts > 60).all()  # each of the 6 families is chosen about 100 times


def test_idc_mode_always_applies_flip_and_color_and_one_geometric_op() -> None:
    params = DSA("color_crop_flip_scale_rotate", mode="idc").sample(300, _gen(0))
    active = {op: params.active[:, OPS.index(op)] for op in OPS}
    assert active["color"].all() and active["flip"].all()
    assert not active["cutout"].any()
    geometric = torch.stack([active[op] for op in GEOMETRIC], 1)
    assert (geometric.sum(1) == 1).all() and (geometric.sum(0) > 50).all()


def test_idc_mode_applies_cutout_when_listed() -> None:
    params = DSA("color_crop_cutout", mode="idc").sample(50, _gen(0))
    for op in ("color", "crop", "cutout"):
        assert params.active[:, OPS.index(op)].all()


def test_call_shares_one_op_family_across_the_batch_with_per_image_values() -> None:
    dsa = DSA()
    g = _gen(9)
    params = dsa.sample(64, g, share_op=True)
    assert (params.active == params.active[0]).all()
    assert params.values[:, VALUES.index("crop_x")].unique().numel() == 64
    x = _images(64)
    assert torch.equal(dsa(x, _gen(9)), dsa.apply(x, params))


def test_unknown_op_or_mode_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown DSA op"):
        DSA("color_blur")
    with pytest.raises(UsageError, match="unknown DSA mode"):
        DSA(mode="both")


def test_random_resized_crop_box_is_a_square_within_the_image_and_the_scale() -> None:
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        top, left, h, w = random_resized_crop_box(32, 32, (0.08, 1.0), (1.0, 1.0), g)
        assert h == w and 0 < h <= 32
        assert 0 <= top <= 32 - h and 0 <= left <= 32 - w
        assert 0.08 * 1024 - 2 * 32 <= h * w <= 1024


def test_random_resized_crop_box_falls_back_to_the_central_crop() -> None:
    # A 4x16 image cannot hold a square of 90% of its area: ten tries fail, the centre is used.
    g = torch.Generator().manual_seed(0)
    assert random_resized_crop_box(4, 16, (0.9, 1.0), (1.0, 1.0), g) == (0, 6, 4, 4)
