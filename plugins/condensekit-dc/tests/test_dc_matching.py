"""DC's gradient distances on small tensors whose values are worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from condensekit_dc.matching import EPS, match_distance, needs_parameter


def _one_class(*tensors: list) -> list[torch.Tensor]:
    return [torch.tensor([t], dtype=torch.float64) for t in tensors]  # leading class dimension K = 1


def test_ours_sums_one_minus_cosine_over_output_rows_and_ignores_1d_parameters() -> None:
    # weight rows (1, 0)·(1, 0): cos 1 -> 0; (0, 2)·(3, 0): cos 0 -> 1; the bias adds nothing.
    syn = _one_class([[1.0, 0.0], [0.0, 2.0]], [5.0, -1.0])
    real = _one_class([[1.0, 0.0], [3.0, 0.0]], [0.0, 7.0])
    expected = (1 - 1 / (1 + EPS)) + 1.0
    assert match_distance(syn, real, "ours").item() == pytest.approx(expected, abs=1e-12)


def test_ours_reads_a_conv_weight_as_out_channels_by_in_x_h_x_w() -> None:
    # out 2, in 1, 1x2 kernel: row 0 (1, 1) vs (1, -1): cos 0 -> 1; row 1 (2, 0) vs (-4, 0): cos -1 -> 2.
    syn = _one_class([[[[1.0, 1.0]]], [[[2.0, 0.0]]]])
    real = _one_class([[[[1.0, -1.0]]], [[[-4.0, 0.0]]]])
    expected = 1.0 + (1 + 8 / (8 + EPS))
    assert match_distance(syn, real, "ours").item() == pytest.approx(expected, abs=1e-12)


def test_mse_is_the_squared_distance_of_all_parameters_biases_included() -> None:
    syn = _one_class([[1.0, 2.0]], [3.0])
    real = _one_class([[0.0, 0.0]], [1.0])
    assert match_distance(syn, real, "mse").item() == pytest.approx(1 + 4 + 4)


def test_cos_is_one_minus_cosine_of_the_concatenated_gradients() -> None:
    # (1, 0 | 1) vs (0, 1 | 1): dot 1, norms sqrt(2) and sqrt(2) -> 1 - 1/2.
    syn = _one_class([[1.0, 0.0]], [1.0])
    real = _one_class([[0.0, 1.0]], [1.0])
    expected = 1 - 1 / (math.sqrt(2) * math.sqrt(2) + EPS)
    assert match_distance(syn, real, "cos").item() == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("metric", ["ours", "mse", "cos"])
def test_classes_add_up(metric: str) -> None:
    g = torch.Generator().manual_seed(0)
    syn = [torch.randn(3, 4, 2, 3, 3, generator=g), torch.randn(3, 4, generator=g)]
    real = [torch.randn(3, 4, 2, 3, 3, generator=g), torch.randn(3, 4, generator=g)]
    each = sum(match_distance([s[k : k + 1] for s in syn], [r[k : k + 1] for r in real], metric) for k in range(3))
    torch.testing.assert_close(match_distance(syn, real, metric), each)


def test_identical_gradients_are_at_distance_zero() -> None:
    g = [torch.randn(2, 5, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)]
    for metric in ("ours", "cos"):
        assert match_distance(g, g, metric).item() == pytest.approx(0.0, abs=1e-4)  # EPS only
    assert match_distance(g, g, "mse").item() == 0.0


def test_only_ours_skips_1d_parameters() -> None:
    assert not needs_parameter((128,), "ours") and needs_parameter((128, 3, 3, 3), "ours")
    assert needs_parameter((128,), "mse") and needs_parameter((128,), "cos")


def test_unknown_metric_is_a_bug() -> None:
    with pytest.raises(ValueError, match="unknown distance"):
        match_distance([torch.ones(1, 2, 2)], [torch.ones(1, 2, 2)], "l1")
