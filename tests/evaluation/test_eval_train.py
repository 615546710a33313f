"""The training loop and the test pass, on real CIFAR-10 images (the embedded mini split)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from condensekit.backbones import create_backbone
from condensekit.data import load_dataset
from condensekit.errors import UsageError
from condensekit.evaluation import PROTOCOLS
from condensekit.evaluation.train import (
    TensorBatches,
    _epochs,
    _optimizer,
    _Run,
    can_train_together,
    free_memory,
    kd_loss,
    relabel_batches,
    runs_per_wave,
    top1_accuracy,
    train_models,
    train_runs,
    training_bytes,
)

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
    proto = PROTOCOLS["idc"].with_overrides(epochs=2, batch=10, dsa=False)
    train_runs(_make_model, [1, 2], images, labels, None, proto, DEVICE, lambda run, ep: calls.append((run, ep)))
    assert calls == [(0, 1), (0, 2), (1, 1), (1, 2)]


def test_dc_trains_one_epoch_more_than_its_epochs_as_evaluate_synset(real_train) -> None:
    images, labels = real_train
    calls: list[tuple[int, int]] = []
    proto = PROTOCOLS["dc"].with_overrides(epochs=2, batch=10, dsa=False)
    train_runs(_make_model, [1], images, labels, None, proto, DEVICE, lambda run, ep: calls.append((run, ep)))
    assert calls == [(0, 1), (0, 2), (0, 3)]  # DC: for ep in range(Epoch + 1)


@pytest.mark.parametrize(("protocol", "fresh"), [("dc", [0, 7]), ("idc", [0])])
def test_momentum_restarts_where_dc_builds_a_new_optimizer(protocol: str, fresh: list[int]) -> None:
    # DC, Epoch = 10: lr_schedule = [6], so a new SGD starts at epoch 7 (0-based); IDC keeps it.
    proto = PROTOCOLS[protocol].with_overrides(epochs=10)
    weight = torch.zeros(3, requires_grad=True)
    optimizer = torch.optim.SGD([weight], lr=proto.lr, momentum=proto.momentum)
    empty, rates = [], []
    for epoch in _epochs(proto, optimizer):
        if not optimizer.state:  # no momentum buffer: a fresh optimizer's first step
            empty.append(epoch)
        rates.append(optimizer.param_groups[0]["lr"])
        weight.grad = torch.ones(3)
        optimizer.step()
    assert empty == fresh
    assert rates == [proto.lr_at(e) for e in range(proto.trained_epochs)]


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


# --- the batched ensemble ----------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["dc", "idc"])  # per-sample DSA; DSA + CutMix
def test_ensemble_trains_the_networks_sequential_training_gives(real_train, protocol: str) -> None:
    images, labels = real_train
    proto = PROTOCOLS[protocol].with_overrides(epochs=2, batch=4)  # 3 batches per epoch, the last partial
    alone = train_runs(_make_model, [21, 22], images, labels, None, proto, DEVICE, parallel=1)
    together = train_runs(_make_model, [21, 22], images, labels, None, proto, DEVICE, parallel=2)
    for a, b in zip(alone, together, strict=True):
        torch.testing.assert_close(_state(b), _state(a), atol=1e-5, rtol=1e-4)


def test_runs_beyond_the_wave_size_train_in_further_waves(real_train) -> None:
    images, labels = real_train
    proto = PROTOCOLS["idc"].with_overrides(epochs=1, batch=10)
    calls: list[tuple[int, int]] = []
    waves = train_runs(
        _make_model, [1, 2, 3], images, labels, None, proto, DEVICE, lambda run, ep: calls.append((run, ep)), parallel=2
    )
    alone = train_runs(_make_model, [1, 2, 3], images, labels, None, proto, DEVICE, parallel=1)
    assert calls == [(0, 1), (1, 1), (2, 1)]
    for a, b in zip(alone, waves, strict=True):
        torch.testing.assert_close(_state(b), _state(a), atol=1e-5, rtol=1e-4)


def test_each_runs_last_report_sees_its_trained_weights(real_train) -> None:
    images, labels = real_train
    proto = PROTOCOLS["idc"].with_overrides(epochs=2, batch=4)
    models = [_make_model(s) for s in (1, 2)]
    seen: dict[int, torch.Tensor] = {}

    def on_epoch(run: int, epoch: int, loss: torch.Tensor) -> None:
        assert torch.isfinite(loss) and loss.dim() == 0
        if epoch == proto.trained_epochs:
            seen[run] = _state(models[run]).clone()

    train_models(models, [1, 2], TensorBatches(images, labels), proto, DEVICE, on_epoch, parallel=2)
    assert set(seen) == {0, 1}
    for run, model in enumerate(models):
        assert torch.equal(seen[run], _state(model)) and not torch.equal(seen[run], _state(_make_model(run + 1)))


def test_models_with_buffers_train_one_after_another() -> None:
    bn = create_backbone("convnet-bn", channels=3, num_classes=10, resolution=32, seed=0)
    assert not can_train_together(bn)
    assert can_train_together(_make_model(0))


def test_wave_size_on_the_cpu_is_one_unless_asked(real_train) -> None:
    images, _ = real_train
    proto = PROTOCOLS["dc"]
    assert runs_per_wave(_make_model(0), images, proto, DEVICE, runs=5) == 1
    assert runs_per_wave(_make_model(0), images, proto, DEVICE, runs=5, max_parallel=3) == 3
    assert runs_per_wave(_make_model(0), images, proto, DEVICE, runs=2, max_parallel=3) == 2


def test_wave_size_is_bounded_by_free_memory(real_train) -> None:
    images, _ = real_train
    per_run = training_bytes(_make_model(0), images, 256, DEVICE)
    # ConvNet-3 on 32 px at batch 256: activations dominate, about 1-3 GB per run.
    assert 5e8 < per_run < 5e9
    assert runs_per_wave(_make_model(0), images, PROTOCOLS["dc"], DEVICE, runs=1000, max_parallel=1000) <= max(
        1, int(0.8 * free_memory(DEVICE) // per_run)
    )


def test_zero_parallel_runs_is_a_usage_error(real_train) -> None:
    images, labels = real_train
    with pytest.raises(UsageError, match="--max-parallel-runs must be >= 1"):
        train_runs(_make_model, [1], images, labels, None, PROTOCOLS["dc"], DEVICE, parallel=0)


def test_stacked_test_pass_equals_one_model_at_a_time() -> None:
    test = load_dataset("cifar10-mini", "test")
    models = [_make_model(s) for s in (1, 2, 3)]
    one_by_one = top1_accuracy(models, test, DEVICE)
    stacked = top1_accuracy(models, test, DEVICE, batched=True)
    assert stacked == one_by_one


# --- the kd protocol: a teacher relabels every augmented view -------------------------------


def _mini_teacher(mini_experts) -> nn.Module:
    teacher = _make_model(0)
    teacher.load_state_dict(mini_experts.trained[0])
    return teacher.eval()


def test_kd_ensemble_trains_the_networks_sequential_training_gives(real_train, mini_experts) -> None:
    images, labels = real_train
    teacher = _mini_teacher(mini_experts)
    proto = PROTOCOLS["kd"].with_overrides(epochs=2, batch=4)  # AdamW, flip + CutMix, KL at T = 20

    def relabel(views: torch.Tensor, _labels: torch.Tensor) -> torch.Tensor:
        return teacher(views)

    alone = train_runs(_make_model, [21, 22], images, labels, None, proto, DEVICE, parallel=1, relabel=relabel)
    together = train_runs(_make_model, [21, 22], images, labels, None, proto, DEVICE, parallel=2, relabel=relabel)
    test = load_dataset("cifar10-mini", "test")
    x = test.as_float(test.images[:200])
    for a, b in zip(alone, together, strict=True):
        # AdamW divides by the root of each weight's squared gradients: where those are tiny, float
        # summation order moves a weight by up to ~1e-4 (measured), not the network's outputs.
        torch.testing.assert_close(_state(b), _state(a), atol=1e-3, rtol=1e-3)
        with torch.no_grad():
            torch.testing.assert_close(b(x), a(x), atol=1e-3, rtol=1e-3)
        assert not torch.equal(_state(a), _state(_make_model(21)))


def test_kd_teacher_sees_exactly_each_augmented_batch_without_gradients(real_train, mini_experts) -> None:
    images, labels = real_train
    teacher = _mini_teacher(mini_experts)
    proto = PROTOCOLS["kd"].with_overrides(epochs=1, batch=5)
    seen: list[tuple[torch.Tensor, torch.Tensor, bool]] = []

    def relabel(views: torch.Tensor, view_labels: torch.Tensor) -> torch.Tensor:
        seen.append((views.clone(), view_labels.clone(), torch.is_grad_enabled()))
        return teacher(views)

    train_runs(_make_model, [7], images, labels, None, proto, DEVICE, relabel=relabel)
    replay, source = _Run(7, proto), TensorBatches(images, labels)  # run 7's own streams, drawn again
    replay.shuffle(source)
    expected = [replay.batch(source, start) for start in (0, 5)]
    assert len(seen) == 2
    for (views, view_labels, grad), batch in zip(seen, expected, strict=True):
        assert torch.equal(views, batch.x) and torch.equal(view_labels, batch.y) and not grad
        assert not torch.equal(views, images[replay.order[: len(views)]])  # flipped and CutMix-ed, not raw


def test_kd_targets_are_the_teachers_logits_on_the_view_and_the_loss_is_rdeds_kl(real_train, mini_experts) -> None:
    images, labels = real_train
    teacher = _mini_teacher(mini_experts)
    proto = PROTOCOLS["kd"].with_overrides(epochs=1, batch=10)
    run, source = _Run(3, proto), TensorBatches(images, labels)
    run.shuffle(source)
    batch = run.batch(source, 0)
    relabel_batches([batch], lambda views, _labels: teacher(views))
    with torch.no_grad():
        assert batch.teacher is not None and torch.equal(batch.teacher, teacher(batch.x))
    student = _make_model(5)(batch.x)
    t = proto.temperature
    kl = nn.KLDivLoss(reduction="batchmean")
    rded = kl(F.log_softmax(student / t, dim=1), F.softmax(teacher(batch.x) / t, dim=1))
    torch.testing.assert_close(batch.loss(student), rded)
    assert torch.allclose(kd_loss(student, batch.teacher, t), rded)


def test_kd_decays_only_conv_and_linear_weights_as_rdeds_get_parameters() -> None:
    model = _make_model(0)
    optimizer = _optimizer(list(model.named_parameters()), PROTOCOLS["kd"])
    decayed, kept = optimizer.param_groups
    names = {id(p): n for n, p in model.named_parameters()}
    assert isinstance(optimizer, torch.optim.AdamW) and (decayed["weight_decay"], kept["weight_decay"]) == (0.01, 0.0)
    assert {names[id(p)] for p in decayed["params"]} == {n for n, p in model.named_parameters() if p.dim() > 1}
    stacked = {n: p.detach()[None].repeat(2, *[1] * p.dim()) for n, p in model.named_parameters()}  # 2 runs
    groups = _optimizer(list(stacked.items()), PROTOCOLS["kd"], run_dims=1).param_groups
    assert [len(g["params"]) for g in groups] == [len(decayed["params"]), len(kept["params"])]
