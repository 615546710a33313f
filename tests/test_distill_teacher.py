"""Methods that distill with a teacher (plugin API 1.2): ``--teacher`` is required, loaded and
checked before any work, handed over as ``ctx.teacher``, recorded in the set, and the set's
``kd`` evaluation uses it. A real plugin distribution found through its entry point."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from condensekit.backbones import create_backbone
from condensekit.data import RealData, dataset_info, load_dataset
from condensekit.distill import DistillRequest, distill, plan
from condensekit.errors import PluginError, UsageError
from condensekit.evaluation.teacher import recorded_teacher, teacher_for, teacher_spec
from condensekit.experts import Experts, train_experts
from condensekit.registry import Registry

MINI = "cifar10-mini"

TEACHERLY = '''
from dataclasses import dataclass, field

import torch

from condensekit.api import Method, SyntheticSet, UsageError

SEEN = []


@dataclass
class TeacherlyConfig:
    soft: bool = field(default=True, metadata={"help": "return the teacher's probabilities"})
    bad_soft: bool = field(default=False, metadata={"help": "return soft labels that do not sum to 1"})
    refuse: str = field(default="", metadata={"help": "refuse teachers of this backbone"})


class Teacherly(Method):
    """The first real images, with the teacher's soft labels."""

    name = "teacherly"
    version = "0.1.0"
    plugin_api = "1.2"
    Config = TeacherlyConfig
    needs_teacher = True
    teacher_backbone = "convnet-bn"
    partitionable = True

    def default_iterations(self, dataset, ipc):
        return 0

    def check_teacher(self, teacher):
        if teacher.backbone == self.config.refuse:
            raise UsageError(f"teacherly cannot use a {teacher.backbone} teacher; train another")

    def distill(self, ctx):
        SEEN.append(ctx.teacher)
        images = torch.cat([ctx.data.first(c, ctx.ipc) for c in ctx.classes])
        labels = torch.tensor(list(ctx.classes)).repeat_interleave(ctx.ipc)
        soft = None
        if self.config.soft:
            with torch.no_grad():
                soft = torch.softmax(ctx.teacher.model(images), dim=1)
            if self.config.bad_soft:
                soft = soft * 2
        return SyntheticSet(images=images, labels=labels, soft_labels=soft, pixel_space="normalized")
'''


@pytest.fixture
def teacherly(install_method):
    """An installed method distribution (dist-info with its entry point) that needs a teacher."""
    module = install_method("teacherly", "Teacherly", TEACHERLY)
    module.SEEN.clear()
    return module


@pytest.fixture(scope="module")
def mini_teacher_experts() -> Experts:
    """One ConvNet-3 expert of cifar10-mini, 1 epoch on 200 real training images."""
    train = load_dataset(MINI, "train")
    idx = torch.cat([torch.arange(train.class_slice(c).start, train.class_slice(c).start + 20) for c in range(10)])
    subset = RealData(train.info, train.images[idx], train.labels[idx])
    return train_experts(subset, backbone="convnet", num=1, epochs=1, seed=0, device="cpu")


@pytest.fixture
def registry_with_teacher(registry_root: Path, mini_teacher_experts: Experts) -> Registry:
    reg = Registry(registry_root)
    reg.save_experts(mini_teacher_experts, name="mini-teacher")
    return reg


def test_a_teacher_method_without_teacher_names_the_newest_experts(teacherly, registry_with_teacher) -> None:
    request = DistillRequest("teacherly", MINI, 1, registry=str(registry_with_teacher.root))
    with pytest.raises(UsageError) as caught:
        plan(request)
    assert "--teacher mini-teacher:v1" in str(caught.value) and "\n" not in str(caught.value)


def test_a_teacher_method_without_any_experts_says_how_to_train_one(teacherly, registry_root: Path) -> None:
    with pytest.raises(UsageError, match="condensekit experts train --data cifar10-mini --backbone convnet-bn"):
        plan(DistillRequest("teacherly", MINI, 1, registry=str(registry_root)))


def test_a_method_without_teacher_refuses_one(registry_with_teacher) -> None:
    request = DistillRequest("random", MINI, 1, registry=str(registry_with_teacher.root), teacher="mini-teacher")
    with pytest.raises(UsageError, match="distills without a teacher; drop --teacher"):
        plan(request)


def test_a_teacher_of_another_dataset_is_refused_at_plan(teacherly, registry_with_teacher) -> None:
    request = DistillRequest(
        "teacherly", "cifar10", 1, registry=str(registry_with_teacher.root), teacher="mini-teacher"
    )
    with pytest.raises(UsageError, match="dataset cifar10-mini, not cifar10"):
        plan(request)


def test_the_method_check_teacher_hook_refuses_at_plan(teacherly, registry_with_teacher) -> None:
    request = DistillRequest(
        "teacherly",
        MINI,
        1,
        registry=str(registry_with_teacher.root),
        teacher="mini-teacher",
        config={"refuse": "convnet"},
    )
    with pytest.raises(UsageError, match="cannot use a convnet teacher"):
        plan(request)


def test_the_experts_prefix_names_the_same_teacher(teacherly, registry_with_teacher) -> None:
    planned = plan(
        DistillRequest("teacherly", MINI, 1, registry=str(registry_with_teacher.root), teacher="experts:mini-teacher")
    )
    assert planned.teacher is not None and planned.teacher.spec == "mini-teacher:v1"


def test_the_teacher_reaches_the_method_frozen_and_is_recorded(teacherly, registry_with_teacher) -> None:
    result = distill("teacherly", MINI, 1, registry=registry_with_teacher, teacher="mini-teacher", device="cpu")
    (seen,) = teacherly.SEEN
    assert not seen.model.training and not any(p.requires_grad for p in seen.model.parameters())
    stored = registry_with_teacher.show(result.version.ref)["metadata"]
    assert recorded_teacher(stored) == "mini-teacher:v1"
    assert stored["teacher"]["backbone"] == "convnet"


def test_kd_evaluation_takes_the_teacher_the_set_records(
    teacherly, registry_with_teacher, mini_teacher_experts
) -> None:
    result = distill("teacherly", MINI, 1, registry=registry_with_teacher, teacher="mini-teacher", device="cpu")
    registry_with_teacher.save_experts(mini_teacher_experts, name="zz-newer")  # the newest, not the set's
    synset = registry_with_teacher.load(result.version.ref)
    assert teacher_for(None, synset, registry_with_teacher).ref == "mini-teacher:v1"
    assert teacher_for("zz-newer", synset, registry_with_teacher).ref == "zz-newer:v1"


def test_the_teacher_is_part_of_the_run_key(teacherly, registry_with_teacher, tmp_path: Path) -> None:
    weights = tmp_path / "resnet.pt"
    net = create_backbone("timm:resnet18", channels=3, num_classes=10, resolution=32, seed=0)
    torch.save(net.model.state_dict(), weights)
    root = str(registry_with_teacher.root)
    one = plan(DistillRequest("teacherly", MINI, 1, registry=root, teacher="mini-teacher"))
    other = plan(
        DistillRequest("teacherly", MINI, 1, registry=root, teacher="timm:resnet18", teacher_weights=str(weights))
    )
    assert other.teacher is not None and other.teacher.backbone == "timm:resnet18"
    assert one.run_key != other.run_key


def test_soft_labels_that_are_not_probabilities_are_a_plugin_error(teacherly, registry_with_teacher) -> None:
    with pytest.raises(PluginError, match="rows do not sum to 1"):
        distill("teacherly", MINI, 1, registry=registry_with_teacher, teacher="mini-teacher", config={"bad_soft": True})
    assert registry_with_teacher.list_sets() == []


def test_teacher_weights_fold_into_a_timm_spec() -> None:
    assert teacher_spec("timm:resnet18", "w.pt") == "timm:resnet18=w.pt"
    assert teacher_spec("mini-teacher", None) == "mini-teacher"


def test_teacher_weights_without_a_bare_timm_teacher_are_refused() -> None:
    with pytest.raises(UsageError, match="--teacher-weights goes with --teacher timm:NAME"):
        teacher_spec("mini-teacher", "w.pt")
    with pytest.raises(UsageError, match="--teacher-weights goes with --teacher timm:NAME"):
        teacher_spec("timm:resnet18=a.pt", "w.pt")


def test_the_plan_shows_the_teacher(teacherly, registry_with_teacher) -> None:
    planned = plan(
        DistillRequest("teacherly", MINI, 1, registry=str(registry_with_teacher.root), teacher="mini-teacher")
    )
    shown = planned.as_dict()["teacher"]
    assert shown["spec"] == "mini-teacher:v1" and shown["dataset"] == MINI and "model" not in shown
    assert dataset_info(MINI).num_classes == shown["num_classes"]


def test_the_cli_without_teacher_is_one_line_exit_2_and_saves_nothing(
    teacherly, registry_with_teacher, capsys: pytest.CaptureFixture
) -> None:
    from condensekit.cli.app import run

    code = run(["distill", "teacherly", "--data", MINI, "--ipc", "1", "--registry", str(registry_with_teacher.root)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--teacher mini-teacher:v1" in err and len(err.splitlines()) == 1
    assert registry_with_teacher.list_sets() == []


def test_the_cli_teacher_flag_reaches_the_set(teacherly, registry_with_teacher, capsys: pytest.CaptureFixture) -> None:
    from condensekit.cli.app import run

    root = str(registry_with_teacher.root)
    code = run(["distill", "teacherly", "--data", MINI, "--ipc", "1", "--registry", root, "--teacher", "mini-teacher"])
    assert code == 0, capsys.readouterr().err
    (row,) = registry_with_teacher.list_sets()
    assert recorded_teacher(registry_with_teacher.show(row["name"])["metadata"]) == "mini-teacher:v1"
