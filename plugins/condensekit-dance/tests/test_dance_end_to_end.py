"""DANCE through condensekit itself: entry point, experts from the registry, conformance."""

from __future__ import annotations

import pytest

from condensekit.distill import DistillRequest, distill, plan
from condensekit.errors import UsageError
from condensekit.experts import Experts
from condensekit.registry import Registry


def test_distill_uses_the_newest_stored_experts_when_no_recipe_is_named(tmp_path, mini_experts) -> None:
    registry = Registry(tmp_path / "registry")
    saved = registry.save_experts(mini_experts)
    notes: list[str] = []
    result = distill(
        "dance",
        "cifar10-mini",
        1,
        iterations=1,
        resolution=16,
        device="cpu",
        registry=registry,
        config={"batch_real": 16},
        notify=notes.append,
    )
    assert any(n.startswith(f"using experts {saved.ref} (2 x 1 epochs") for n in notes), notes
    meta = result.synset.metadata
    assert meta["experts"] == saved.ref and meta["method"] == "dance"
    assert meta["distribution"] == "condensekit-dance" and meta["config"]["factor"] == 2
    assert result.synset.pixel_space == "unit" and result.synset.factor == 2
    assert tuple(result.synset.images.shape) == (10, 3, 16, 16)


def test_experts_of_another_recipe_are_not_reused(tmp_path, mini_experts) -> None:
    # The stored experts were trained with batch 16; the plan asks for the official batch.
    registry = Registry(tmp_path / "registry")
    registry.save_experts(mini_experts)
    request = DistillRequest(
        "dance",
        "cifar10-mini",
        1,
        iterations=1,
        resolution=16,
        device="cpu",
        registry=str(registry.root),
        config={"num_experts": 2, "expert_epochs": 1},
    )
    experts = plan(request).experts
    assert experts is not None and experts.train and (experts.num, experts.epochs) == (2, 1)
    assert experts.reason.startswith("no stored experts with the requested recipe")


def test_experts_of_another_dataset_are_refused_in_one_line(tmp_path, mini_experts) -> None:
    registry = Registry(tmp_path / "registry")
    other = Experts(
        dataset="cifar10",
        backbone=mini_experts.backbone,
        resolution=mini_experts.resolution,
        initial=mini_experts.initial,
        trained=mini_experts.trained,
    )
    saved = registry.save_experts(other, name="wrong-data")
    with pytest.raises(UsageError) as err:
        distill(
            "dance",
            "cifar10-mini",
            1,
            iterations=1,
            resolution=16,
            device="cpu",
            registry=registry,
            experts=saved.ref,
            config={"num_experts": 2, "batch_real": 16},
        )
    assert "\n" not in str(err.value) and "dataset cifar10, not cifar10-mini" in str(err.value)
