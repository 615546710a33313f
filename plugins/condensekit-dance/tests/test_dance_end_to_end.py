"""DANCE through condensekit itself: entry point, experts from the registry, conformance."""

from __future__ import annotations

import pytest

from condensekit.distill import distill
from condensekit.errors import UsageError
from condensekit.experts import Experts
from condensekit.registry import Registry


def test_distill_uses_matching_experts_from_the_registry(tmp_path, mini_experts) -> None:
    registry = Registry(tmp_path / "registry")
    saved = registry.save_experts(mini_experts)
    notes: list[str] = []
    result = distill("dance", "cifar10-mini", 1, iterations=1, resolution=16, device="cpu", registry=registry,
                     config={"num_experts": 2, "expert_epochs": 1, "batch_real": 16}, notify=notes.append)
    assert any(f"using experts {saved.ref}" in n for n in notes), notes
    meta = result.synset.metadata
    assert meta["experts"] == saved.ref and meta["method"] == "dance"
    assert meta["distribution"] == "condensekit-dance" and meta["config"]["factor"] == 2
    assert result.synset.pixel_space == "unit" and result.synset.factor == 2
    assert tuple(result.synset.images.shape) == (10, 3, 16, 16)


def test_experts_of_another_recipe_are_not_reused(tmp_path, mini_experts) -> None:
    registry = Registry(tmp_path / "registry")
    saved = registry.save_experts(mini_experts)
    notes: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        # Stop as soon as core announces training, instead of training 60-epoch experts.
        def stop(message: str) -> None:
            notes.append(message)
            if message.startswith("no matching experts"):
                raise KeyboardInterrupt
        distill("dance", "cifar10-mini", 1, iterations=1, resolution=16, device="cpu", registry=registry,
                config={"num_experts": 2, "batch_real": 16}, notify=stop)
    assert notes[0].startswith(f"experts {saved.ref} were trained for 1 epochs, not 60")


def test_experts_of_another_dataset_are_refused_in_one_line(tmp_path, mini_experts) -> None:
    registry = Registry(tmp_path / "registry")
    other = Experts(dataset="cifar10", backbone=mini_experts.backbone, resolution=mini_experts.resolution,
                    initial=mini_experts.initial, trained=mini_experts.trained)
    saved = registry.save_experts(other, name="wrong-data")
    with pytest.raises(UsageError) as err:
        distill("dance", "cifar10-mini", 1, iterations=1, resolution=16, device="cpu", registry=registry,
                experts=saved.ref, config={"num_experts": 2, "batch_real": 16})
    assert "\n" not in str(err.value) and "dataset cifar10, not cifar10-mini" in str(err.value)
