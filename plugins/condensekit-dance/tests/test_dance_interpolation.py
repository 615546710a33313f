"""The middle encoder: interpolation between an expert's initial and trained weights."""

from __future__ import annotations

import pytest
import torch

from condensekit.errors import UsageError
from condensekit.testing import make_context
from condensekit_dance.method import ExpertBank


def _assert_state(model: torch.nn.Module, expected: dict) -> None:
    state = model.state_dict()
    assert state.keys() == expected.keys()
    for key, value in state.items():
        assert torch.equal(value.cpu(), expected[key]), key


def test_coefficient_zero_is_the_trained_expert_bitwise(mini_experts) -> None:
    bank = ExpertBank(make_context(resolution=16, ipc=1, experts=mini_experts), 2)
    bank.use(1, 0.0)
    _assert_state(bank.middle, mini_experts.trained[1])
    _assert_state(bank.trained, mini_experts.trained[1])


def test_coefficient_one_is_the_initial_network_bitwise(mini_experts) -> None:
    bank = ExpertBank(make_context(resolution=16, ipc=1, experts=mini_experts), 2)
    bank.use(0, 1.0)
    _assert_state(bank.middle, mini_experts.initial[0])
    _assert_state(bank.trained, mini_experts.trained[0])  # calibration always uses the trained expert


def test_coefficient_weights_the_initial_network(mini_experts) -> None:
    bank = ExpertBank(make_context(resolution=16, ipc=1, experts=mini_experts), 2)
    bank.use(1, 0.25)
    for key, value in bank.middle.state_dict().items():
        expected = 0.25 * mini_experts.initial[1][key] + 0.75 * mini_experts.trained[1][key]
        torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-6)
    assert not any(p.requires_grad for p in bank.middle.parameters())
    assert not any(p.requires_grad for p in bank.trained.parameters())


def test_switching_experts_rewrites_both_networks(mini_experts) -> None:
    bank = ExpertBank(make_context(resolution=16, ipc=1, experts=mini_experts), 2)
    bank.use(0, 0.0)
    bank.use(1, 0.0)
    _assert_state(bank.middle, mini_experts.trained[1])
    _assert_state(bank.trained, mini_experts.trained[1])


def test_experts_of_another_backbone_are_refused_in_one_line(mini_experts) -> None:
    ctx = make_context(resolution=16, ipc=1, backbone="convnet-bn", experts=mini_experts)
    with pytest.raises(UsageError) as err:
        ExpertBank(ctx, 2)
    assert "\n" not in str(err.value) and "convnet-bn" in str(err.value)


def test_too_few_experts_are_refused(mini_experts) -> None:
    with pytest.raises(UsageError, match="asks for 5 experts but only 2"):
        ExpertBank(make_context(resolution=16, ipc=1, experts=mini_experts), 5)


def test_missing_experts_are_refused() -> None:
    with pytest.raises(UsageError, match="needs trained experts"):
        ExpertBank(make_context(resolution=16, ipc=1), 1)
