"""The training loop and the test pass, on real CIFAR-10 images (the embedded mini split)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from condensekit.backbones import create_backbone
from condensekit.data import load_dataset
from condensekit.evaluation import PROTOCOLS
from condensekit.evaluation.train import top1_accuracy, train_runs

DEVICE = torch.device("cpu")


@pytest.fixture(scope="module")
def real_train() -> tuple[torch.Tensor, torch.Tensor]:
    """The first real image of each class, normalized (10 images)."""
    data = load_dataset("cifar10-mini", "train")
    idx = torch.tensor([data.class_slice(c).start for c in range(10)])
    return data.as_float(data.images[idx]), data.labels[idx]


def _make_model(seed: int) -> nn.Module:
    return create_backbone("convnet", channels=3, num_classes=10, resolution=32, seed=seed)


def _state(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.state_dict().values()])


def test_same_seed_reproduces_training_exactly(real_train) -> None:
    images, labels = real_train
    proto = PROTOCOLS["dc"].with_overrides(epochs=2, batch=5)
    a, b, c = train_runs(_make_model, [11, 11, 12], images, labels, None, proto, DEVICE)
    assert torch.equal(_state(a), _state(b))
    assert not torch.equal(_state(a), _state(c))
    assert not torch.equal(_state(a), _state(_make_model(11)))  # it did train


def test_progress_reports_every_epoch_of_every_run(real_train) -> None:
    images, labels = real_train
    calls: list[tuple[int, int]] = []
    proto = PROTOCOLS["dc"].with_overrides(epochs=2, batch=10, dsa=False)
    train_runs(_make_model, [1, 2], images, labels, None, proto, DEVICE, lambda run, ep: calls.append((run, ep)))
    assert calls == [(0, 1), (0, 2), (1, 1), (1, 2)]


def test_soft_labels_are_the_training_targets(real_train) -> None:
    images, labels = real_train
    # Soft targets that put 90% on the NEXT class: a model fitting them predicts label + 1.
    shifted = (labels + 1) % 10
    soft = F.one_hot(shifted, 10).float() * 0.9 + 0.01
    proto = PROTOCOLS["dc"].with_overrides(epochs=15, batch=10, lr=0.05, dsa=False)
    before = _make_model(3)
    (model,) = train_runs(_make_model, [3], images, labels, soft, proto, DEVICE)
    with torch.no_grad():
        loss_before = F.cross_entropy(before(images), soft)
        logits = model(images)
    assert F.cross_entropy(logits, soft) < loss_before
    assert (logits.argmax(1) == shifted).float().mean() > 0.5


def test_idc_protocol_with_cutmix_trains(real_train) -> None:
    images, labels = real_train
    proto = PROTOCOLS["idc"].with_overrides(epochs=2, batch=5)
    (model,) = train_runs(_make_model, [5], images, labels, None, proto, DEVICE)
    state = _state(model)
    assert torch.isfinite(state).all() and not torch.equal(state, _state(_make_model(5)))


class _ConstantClass(nn.Module):
    """Predicts class ``k`` for every image."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.one_hot(torch.full((x.shape[0],), self.k), 10).float()


def test_accuracy_is_counted_over_the_whole_split() -> None:
    test = load_dataset("cifar10-mini", "test")
    counts = torch.bincount(test.labels, minlength=10).tolist()
    accs = top1_accuracy([_ConstantClass(0), _ConstantClass(3)], test, DEVICE, batch=300)
    assert accs == pytest.approx([100.0 * counts[0] / len(test), 100.0 * counts[3] / len(test)])
