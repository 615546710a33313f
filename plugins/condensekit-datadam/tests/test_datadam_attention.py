"""The attention map and the attention-matching loss, on explicit tensors."""

from __future__ import annotations

import pytest
import torch

from condensekit_datadam.attention import attention_distance, attention_loss, attention_map


def _features(b: int = 6, c: int = 8, h: int = 5, w: int = 7, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, c, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("power", [1.0, 4.0])
def test_attention_map_has_one_unit_norm_row_per_sample(power: float) -> None:
    rows = attention_map(_features(), power)
    assert rows.shape == (6, 5 * 7)
    torch.testing.assert_close(rows.norm(dim=1), torch.ones(6))


def test_attention_map_is_normalized_channel_sum_of_powered_magnitudes() -> None:
    feature = _features()
    expected = (feature.abs() ** 3).sum(dim=1).flatten(1)
    expected = expected / expected.norm(dim=1, keepdim=True)
    torch.testing.assert_close(attention_map(feature, 3.0), expected)


def test_attention_map_ignores_activation_scale() -> None:
    feature = _features()
    torch.testing.assert_close(attention_map(7.5 * feature, 4.0), attention_map(feature, 4.0))


def test_higher_power_concentrates_attention_on_strong_locations() -> None:
    feature = _features().relu()
    assert (attention_map(feature, 4.0).amax(dim=1) > attention_map(feature, 1.0).amax(dim=1)).all()


def test_attention_map_of_low_precision_features_is_float32() -> None:
    rows = attention_map(_features().to(torch.bfloat16), 4.0)
    assert rows.dtype == torch.float32
    torch.testing.assert_close(rows.norm(dim=1), torch.ones(6))


def test_attention_map_rejects_flat_features() -> None:
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        attention_map(torch.randn(4, 16), 1.0)


def test_attention_loss_sums_squared_distances_of_class_mean_maps_over_layers() -> None:
    classes, n_real, n_syn = 3, 4, 2
    real = [_features(classes * n_real, 8, 6, 6, seed=1), _features(classes * n_real, 8, 3, 3, seed=2)]
    syn = [_features(classes * n_syn, 8, 6, 6, seed=3), _features(classes * n_syn, 8, 3, 3, seed=4)]
    expected = torch.zeros(())
    for r, s in zip(real, syn, strict=True):
        ar, as_ = attention_map(r, 4.0), attention_map(s, 4.0)
        for c in range(classes):
            mean_r = ar[c * n_real : (c + 1) * n_real].mean(0)
            mean_s = as_[c * n_syn : (c + 1) * n_syn].mean(0)
            expected = expected + ((mean_r - mean_s) ** 2).sum()
    torch.testing.assert_close(attention_loss(real, syn, classes, 4.0), expected)


def test_attention_loss_is_zero_when_class_means_agree() -> None:
    per_class = _features(2, 8, 4, 4)
    real = per_class.repeat_interleave(5, dim=0)  # 5 copies of each class's map
    syn = per_class.repeat_interleave(2, dim=0)
    assert attention_loss([real], [syn], 2, 1.0).item() == pytest.approx(0.0, abs=1e-10)


def test_distance_to_reduced_real_class_means_equals_the_full_loss() -> None:
    # The method reduces real maps to class means right away; the loss must not change.
    classes = 4
    real, syn = _features(classes * 8, 8, 4, 4, seed=5), _features(classes * 2, 8, 4, 4, seed=6)
    real_means = attention_map(real, 4.0).reshape(classes, 8, -1).mean(1)
    torch.testing.assert_close(
        attention_distance([real_means], [attention_map(syn, 4.0)], classes),
        attention_loss([real], [syn], classes, 4.0),
    )


def test_attention_distance_needs_matching_layer_counts() -> None:
    rows = attention_map(_features(), 1.0)
    with pytest.raises(ValueError, match="layers"):
        attention_distance([rows, rows], [rows], 3)
