"""The kd protocol's teacher: which one, refused when it does not fit the set, and a method
plugin's relabel hook (a real plugin distribution found through its entry point)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from condensekit.backbones import create_backbone
from condensekit.data import dataset_info, load_dataset
from condensekit.errors import PluginError, UsageError
from condensekit.evaluation import evaluate
from condensekit.evaluation.teacher import Teacher, load_teacher, relabel_for, teacher_for
from condensekit.registry import Registry

MINI = "cifar10-mini"
MINI_INFO = dataset_info(MINI)


def test_without_teacher_the_newest_experts_of_the_dataset_teach(registry_root: Path, mini_experts) -> None:
    with Registry(registry_root) as reg:
        reg.save_experts(mini_experts, name="older")
        newest = reg.save_experts(mini_experts, name="newer")
        teacher = load_teacher(None, dataset=MINI_INFO, registry=reg)
    assert teacher.ref == newest.ref and teacher.dataset == MINI and teacher.backbone == "convnet"
    assert teacher.test_accuracy == pytest.approx(mini_experts.metadata["test_accuracy"][0])


def test_the_teacher_is_the_first_expert_frozen_in_eval_mode(registry_root: Path, mini_experts) -> None:
    with Registry(registry_root) as reg:
        version = reg.save_experts(mini_experts)
        teacher = load_teacher(version.ref, dataset=MINI_INFO, registry=reg)
    expected = mini_experts.trained[0]
    assert all(torch.equal(teacher.model.state_dict()[k], v) for k, v in expected.items())
    assert not teacher.model.training and not any(p.requires_grad for p in teacher.model.parameters())


def test_no_experts_of_the_dataset_says_how_to_train_them(registry_root: Path) -> None:
    with Registry(registry_root) as reg, pytest.raises(UsageError) as caught:
        load_teacher(None, dataset=MINI_INFO, registry=reg)
    assert "condensekit experts train --data cifar10-mini" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_experts_of_another_dataset_are_refused(registry_root: Path, mini_experts) -> None:
    with Registry(registry_root) as reg:
        version = reg.save_experts(mini_experts)
        with pytest.raises(UsageError, match=r"dataset cifar10-mini, not cifar10\b"):
            load_teacher(version.ref, dataset=dataset_info("cifar10"), registry=reg)


def test_experts_of_another_resolution_are_refused(registry_root: Path, mini_experts) -> None:
    with Registry(registry_root) as reg:
        version = reg.save_experts(mini_experts)
        with pytest.raises(UsageError, match="resolution 32px, not 16px"):
            load_teacher(version.ref, dataset=dataset_info(MINI, 16), registry=reg)


def test_a_teacher_of_another_class_count_is_refused_before_training(tmp_path: Path, mini_set) -> None:
    path = tmp_path / "teacher.pt"
    net = create_backbone("timm:resnet18", channels=3, num_classes=100, resolution=32, seed=0)
    torch.save(net.state_dict(), path)
    teacher = load_teacher(f"timm:resnet18={path}", dataset=dataset_info("cifar100"), registry=None)
    with pytest.raises(UsageError, match="100 classes, not 10"):
        evaluate(mini_set(), runs=1, protocol="kd", epochs=1, device="cpu", teacher=teacher)


def test_a_timm_teacher_reads_its_weights_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "teacher.pt"
    net = create_backbone("timm:resnet18", channels=3, num_classes=10, resolution=32, seed=0)
    torch.save(net.model.state_dict(), path)  # the plain timm model's keys
    teacher = load_teacher(f"timm:resnet18={path}", dataset=MINI_INFO, registry=None)
    x = torch.randn(2, 3, 32, 32)
    net.eval()
    assert torch.allclose(teacher.model(x), net(x)) and teacher.dataset is None and teacher.num_classes == 10


def test_a_timm_teacher_without_weights_here_says_how_to_give_them() -> None:
    with pytest.raises(UsageError) as caught:
        load_teacher("timm:resnet18", dataset=MINI_INFO, registry=None)
    message = str(caught.value)
    assert "timm:resnet18=FILE" in message and "never downloaded" in message and "\n" not in message


def test_kd_without_a_teacher_is_a_usage_error(mini_set) -> None:
    with pytest.raises(UsageError, match="relabels every view with a teacher"):
        evaluate(mini_set(), runs=1, protocol="kd", epochs=1, device="cpu")


def _teacher(mini_experts) -> Teacher:
    model = create_backbone("convnet", channels=3, num_classes=10, resolution=32)
    model.load_state_dict(mini_experts.trained[0])
    return Teacher(model.eval(), "test teacher", "t", MINI, 32, 10, "convnet")


def test_sets_of_methods_without_a_hook_are_relabelled_by_the_teacher(mini_experts) -> None:
    teacher = _teacher(mini_experts)
    relabel, source = relabel_for({"method": "dm"}, teacher)
    x = load_dataset(MINI, "test").as_float(load_dataset(MINI, "test").images[:4])
    with torch.no_grad():  # the teacher's logits, from its inference copy (BatchNorm folded)
        out = relabel(x, torch.zeros(4, dtype=torch.long))
        assert source == "teacher" and torch.allclose(out, teacher.model(x), atol=1e-5)


def test_a_method_not_installed_here_leaves_relabelling_to_the_teacher(mini_experts) -> None:
    _relabel, source = relabel_for({"method": "no-such-method"}, _teacher(mini_experts))
    assert source.startswith("teacher (method no-such-method cannot be loaded here")


RELABELLER = '''
from dataclasses import dataclass, field

import torch

from condensekit.api import Method, SyntheticSet

CALLS = []


@dataclass
class RelabellerConfig:
    scale: float = field(default=1.0, metadata={"help": "factor on the teacher's logits", "min": 0})
    keep: int = field(default=0, metadata={"help": "classes kept in the logits (0: all)", "min": 0})


class Relabeller(Method):
    """The first real images; relabels its sets' views with the teacher's logits times scale."""

    name = "relabeller"
    version = "0.1.0"
    plugin_api = "1.1"
    Config = RelabellerConfig

    def default_iterations(self, dataset, ipc):
        return 0

    def distill(self, ctx):
        images = torch.cat([ctx.data.first(c, ctx.ipc) for c in ctx.classes])
        labels = torch.tensor(list(ctx.classes)).repeat_interleave(ctx.ipc)
        return SyntheticSet(images=images, labels=labels, pixel_space="normalized")

    def relabel(self, views, labels, teacher):
        CALLS.append((views.clone(), labels.clone(), torch.is_grad_enabled()))
        logits = teacher(views) * self.config.scale
        return logits[:, : self.config.keep] if self.config.keep else logits
'''


@pytest.fixture
def relabeller(install_method):
    """An installed method distribution (dist-info with its entry point) that ships a relabel hook."""
    module = install_method("relabeller", "Relabeller", RELABELLER)
    module.CALLS.clear()
    return module


def test_a_method_hook_relabels_with_the_config_its_set_was_made_with(relabeller, mini_experts) -> None:
    teacher = _teacher(mini_experts)
    relabel, source = relabel_for({"method": "relabeller", "config": {"scale": 3.0}}, teacher)
    x = torch.randn(4, 3, 32, 32)
    labels = torch.arange(4)
    with torch.no_grad():
        out = relabel(x, labels)
    assert source.startswith("relabeller.relabel")
    assert torch.allclose(out, teacher.model(x) * 3.0, atol=1e-4)
    ((views, seen_labels, _grad),) = relabeller.CALLS
    assert torch.equal(views, x) and torch.equal(seen_labels, labels)


def test_kd_calls_the_hook_on_every_step_without_gradients(relabeller, mini_experts, mini_set) -> None:
    synset = mini_set(ipc=2, method="relabeller")
    synset.metadata["config"] = {"scale": 2.0}
    report = evaluate(synset, runs=1, protocol="kd", epochs=1, device="cpu", teacher=_teacher(mini_experts))
    assert report.params["relabel"].startswith("relabeller.relabel")
    assert len(relabeller.CALLS) == 2  # 20 images, kd's batch of 10 at IPC 2: two steps
    for views, labels, grad in relabeller.CALLS:
        assert views.shape == (10, 3, 32, 32) and labels.shape == (10,) and not grad


def test_a_hook_returning_the_wrong_shape_is_a_plugin_error(relabeller, mini_experts) -> None:
    relabel, _ = relabel_for({"method": "relabeller", "config": {"keep": 3}}, _teacher(mini_experts))
    with pytest.raises(PluginError, match=r"relabel returned \(2, 3\), not logits of shape \(2, 10\)"):
        relabel(torch.randn(2, 3, 32, 32), torch.arange(2))


def test_teacher_for_a_set_uses_its_dataset_and_resolution(registry_root: Path, mini_experts, mini_set) -> None:
    with Registry(registry_root) as reg:
        reg.save_experts(mini_experts)
        teacher = teacher_for(None, mini_set(), reg)
    assert (teacher.dataset, teacher.resolution) == (MINI, 32)
