"""Experts: training recipe, snapshots, matching checks, estimate, CLI and registry round trip."""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import pytest
import torch

from condensekit.backbones import create_backbone
from condensekit.data import dataset_info, load_dataset
from condensekit.data.base import RealData
from condensekit.errors import UsageError
from condensekit.experts import (
    Experts,
    estimate_expert_seconds,
    expert_protocol,
    plan_experts,
    recipe_hash,
    stored_recipe_hash,
    train_experts,
)
from condensekit.methods.base import ExpertsRequest
from condensekit.registry import Registry

DATASET = "cifar10-mini"
#: The real CIFAR-10 subset at 16 px and batch 16: one epoch trains experts well above chance
#: in a fraction of the 32 px / batch 64 cost (same code paths).
RES, BATCH = 16, 16


@pytest.fixture(scope="module")
def mini() -> tuple:
    return load_dataset(DATASET, "train", RES), load_dataset(DATASET, "test", RES)


@pytest.fixture(scope="module")
def small(mini: tuple) -> RealData:
    """20 real images per class: for checks that need training to run, not to learn much."""
    train, _ = mini
    keep = torch.cat([torch.arange(train.class_slice(c).start, train.class_slice(c).start + 20) for c in range(10)])
    return RealData(train.info, train.images[keep], train.labels[keep])


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, str, Experts, Path]:
    """``condensekit experts train`` once for the module: 1 expert, 1 epoch, saved and reloaded."""
    from condensekit.cli.app import run
    from condensekit.registry import Registry

    root = tmp_path_factory.mktemp("registry")
    capture = io.StringIO()
    with contextlib.redirect_stdout(capture):
        code = run(
            [
                "experts",
                "train",
                "--data",
                DATASET,
                "--res",
                str(RES),
                "--batch",
                str(BATCH),
                "--num",
                "1",
                "--epochs",
                "1",
                "--device",
                "cpu",
                "--seed",
                "3",
                "--registry",
                str(root),
                "--json",
            ]
        )
    found = Registry(root).experts_versions(DATASET, "convnet", RES)
    assert code == 0 and len(found) == 1, capture.getvalue()
    return code, capture.getvalue(), Registry(root).load_experts(found[0][0].ref), root


def _states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_cli_reports_the_saved_ref_and_each_experts_accuracy(cli_run: tuple) -> None:
    _, out, experts, _ = cli_run
    report = json.loads(out)
    assert report["ref"] == experts.metadata["ref"]
    assert report["num"] == 1 and report["backbone"] == "convnet" and report["resolution"] == RES
    assert report["test_accuracy"] == experts.metadata["test_accuracy"]


def test_list_experts_shows_epochs_and_mean_test_accuracy(cli_run: tuple) -> None:
    from condensekit.cli.app import run

    _, _, experts, root = cli_run
    capture = io.StringIO()
    with contextlib.redirect_stdout(capture):
        assert run(["list", "experts", "--json", "--registry", str(root)]) == 0
    (row,) = json.loads(capture.getvalue())
    assert row["epochs"] == 1
    assert row["test_accuracy"] == pytest.approx(experts.metadata["test_accuracy"][0], abs=0.01)


def test_training_changes_the_expert(cli_run: tuple) -> None:
    _, _, experts, _ = cli_run
    assert len(experts) == 1
    assert not _states_equal(experts.initial[0], experts.trained[0])


def test_expert_beats_chance_on_the_test_split(cli_run: tuple) -> None:
    _, _, experts, _ = cli_run
    accuracies = experts.metadata["test_accuracy"]
    assert len(accuracies) == 1
    # Chance is 10% (1,000 test images: one standard deviation is ~1 point).
    assert accuracies[0] > 15, accuracies


def test_initial_state_is_a_fresh_backbone_with_the_recorded_seed(cli_run: tuple) -> None:
    _, _, experts, _ = cli_run
    info = dataset_info(DATASET, RES)
    fresh = create_backbone(
        experts.backbone,
        channels=info.channels,
        num_classes=info.num_classes,
        resolution=info.resolution,
        seed=experts.metadata["init_seeds"][0],
    )
    assert _states_equal(fresh.state_dict(), experts.initial[0])


def test_metadata_records_the_official_recipe(cli_run: tuple) -> None:
    _, _, experts, _ = cli_run
    meta = experts.metadata
    assert (experts.dataset, experts.backbone, experts.resolution) == (DATASET, "convnet", RES)
    assert meta["epochs"] == 1 and meta["num"] == 1 and meta["seed"] == 3
    recipe = meta["recipe"]
    assert (recipe["lr"], recipe["momentum"], recipe["weight_decay"]) == (0.01, 0.9, 5e-4)
    assert (recipe["batch"], recipe["gamma"], recipe["cutmix_prob"]) == (BATCH, 0.2, 0.5)
    assert (recipe["dsa_strategy"], recipe["dsa_mode"]) == ("color_crop", "idc")
    assert meta["wall_time_s"] > 0


@pytest.fixture(scope="module")
def two_small(small: RealData) -> tuple[Experts, list]:
    calls: list = []
    experts = train_experts(
        small,
        backbone="convnet",
        num=2,
        epochs=2,
        seed=0,
        device="cpu",
        batch=50,
        progress=lambda done, total, **metrics: calls.append((done, total, metrics)),
    )
    return experts, calls


def test_progress_counts_epochs_over_all_experts(two_small: tuple) -> None:
    _, calls = two_small
    assert [(done, total) for done, total, _ in calls] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert [(m["expert"], m["epoch"]) for _, _, m in calls] == [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert all(m["loss"] > 0 and "test_accuracy" not in m for _, _, m in calls)


def test_each_expert_starts_from_its_own_recorded_initialization(two_small: tuple) -> None:
    experts, _ = two_small
    info = dataset_info(DATASET, RES)
    seeds = experts.metadata["init_seeds"]
    assert seeds[0] != seeds[1]
    for k in range(2):
        fresh = create_backbone(
            "convnet", channels=info.channels, num_classes=info.num_classes, resolution=info.resolution, seed=seeds[k]
        )
        assert _states_equal(fresh.state_dict(), experts.initial[k])
        assert not _states_equal(experts.initial[k], experts.trained[k])
    assert not _states_equal(experts.initial[0], experts.initial[1])


def test_same_seed_gives_identical_experts(small: RealData) -> None:
    a = train_experts(small, backbone="convnet", num=1, epochs=1, seed=11, device="cpu", batch=50)
    b = train_experts(small, backbone="convnet", num=1, epochs=1, seed=11, device="cpu", batch=50)
    assert _states_equal(a.trained[0], b.trained[0])
    assert a.metadata["test_accuracy"] == [None]  # no test split given


# --- experts trained together (evaluation's batched ensemble) ---------------------------


def _train_two(data: RealData, parallel: int, backbone: str = "convnet", test: RealData | None = None) -> Experts:
    """2 experts x 1 epoch of 4 batches (the last partial: CutMix and DSA on every batch)."""
    return train_experts(
        data, backbone=backbone, num=2, epochs=1, seed=5, device="cpu", test=test, batch=60, max_parallel_runs=parallel
    )


@pytest.fixture(scope="module")
def together(small: RealData, mini: tuple) -> Experts:
    return _train_two(small, 2, test=mini[1])


def test_experts_trained_together_equal_experts_trained_in_turn(small: RealData, together: Experts) -> None:
    alone = _train_two(small, 1)
    assert (together.metadata["runs_per_wave"], alone.metadata["runs_per_wave"]) == (2, 1)
    for k in range(2):
        assert _states_equal(together.initial[k], alone.initial[k])
        for name, weight in alone.trained[k].items():
            torch.testing.assert_close(together.trained[k][name], weight, atol=1e-5, rtol=1e-4)


def test_experts_trained_together_record_the_test_accuracy_of_their_trained_weights(
    together: Experts, mini: tuple
) -> None:
    from condensekit.evaluation.train import top1_accuracy

    info = dataset_info(DATASET, RES)
    for k in range(2):
        model = create_backbone("convnet", channels=info.channels, num_classes=info.num_classes, resolution=RES, seed=0)
        model.load_state_dict(together.trained[k])
        assert together.metadata["test_accuracy"][k] == top1_accuracy([model], mini[1], torch.device("cpu"))[0]


def test_batch_norm_experts_train_in_turn_even_when_asked_to_train_together(small: RealData) -> None:
    experts = _train_two(small, 2, backbone="convnet-bn")
    assert experts.metadata["runs_per_wave"] == 1
    assert not _states_equal(experts.initial[1], experts.trained[1])


def test_zero_parallel_experts_is_a_usage_error(small: RealData) -> None:
    with pytest.raises(UsageError, match="--max-parallel-runs must be >= 1"):
        _train_two(small, 0)


def _cli_train_two(root: Path, *flags: str) -> Experts:
    """``experts train`` of 2 experts x 1 epoch at 8 px (the whole mini split, 4 batches)."""
    from condensekit.cli.app import run

    args = ["experts", "train", "--data", DATASET, "--res", "8", "--batch", "500", "--num", "2"]
    args += ["--epochs", "1", "--device", "cpu", "--registry", str(root), "--json", *flags]
    with contextlib.redirect_stdout(io.StringIO()):
        assert run(args) == 0
    ((version, _),) = Registry(root).experts_versions(DATASET, "convnet", 8)
    return Registry(root).load_experts(version.ref)


def test_cli_max_parallel_runs_trains_experts_together(tmp_path: Path) -> None:
    assert _cli_train_two(tmp_path, "--max-parallel-runs", "2").metadata["runs_per_wave"] == 2


def test_cli_sequential_trains_experts_in_turn(tmp_path: Path) -> None:
    assert _cli_train_two(tmp_path, "--sequential", "--max-parallel-runs", "2").metadata["runs_per_wave"] == 1


def test_cli_refuses_zero_parallel_experts(registry_root, capsys: pytest.CaptureFixture) -> None:
    from condensekit.cli.app import run

    code = run(["experts", "train", "--data", DATASET, "--max-parallel-runs", "0", "--device", "cpu"])
    assert code == 2 and "--max-parallel-runs" in capsys.readouterr().err


def test_recipe_milestones_and_batch_follow_the_official_code() -> None:
    assert expert_protocol(32, 60).milestone_epochs() == [40, 50]
    assert expert_protocol(128, 80).milestone_epochs() == [53, 66]
    assert expert_protocol(32, 60).batch == 64
    assert expert_protocol(128, 80).batch == 128


def test_estimate_is_positive_and_scales_with_work(mini: tuple) -> None:
    train, _ = mini
    one = estimate_expert_seconds(train, "convnet", 1, 1, "cpu", batch=BATCH)
    assert math.isfinite(one) and one > 0
    # 60 epochs of 5 experts is 300 times the work of one epoch of one expert.
    many = estimate_expert_seconds(train, "convnet", 60, 5, "cpu", batch=BATCH)
    assert 30 * one < many < 3000 * one


def _experts(dataset: str = DATASET, backbone: str = "convnet", resolution: int = 32, num: int = 2) -> Experts:
    # Real (untrained) ConvNet weights: the check reads only the artifact's identity.
    info = dataset_info(dataset)
    model = create_backbone(
        backbone, channels=info.channels, num_classes=info.num_classes, resolution=resolution, seed=0
    )
    states = [model.state_dict() for _ in range(num)]
    return Experts(
        dataset=dataset,
        backbone=backbone,
        resolution=resolution,
        initial=states,
        trained=states,
        metadata={"ref": "cifar10-mini-convnet:v1"},
    )


def _explicit(tmp_path: Path, experts: Experts, num: int | None = None) -> object:
    """Plan ``--experts REF`` for a cifar10-mini run of ``num`` experts on ConvNet."""
    registry = Registry(tmp_path)
    ref = registry.save_experts(experts, name="cifar10-mini-convnet").ref
    return plan_experts(ExpertsRequest(num=num), dataset_info(DATASET), "convnet", 0, registry, explicit_ref=ref)


def test_matching_experts_pass_the_check(tmp_path: Path) -> None:
    planned = _explicit(tmp_path, _experts(), num=2)
    assert planned.ref == "cifar10-mini-convnet:v1" and not planned.train  # type: ignore[attr-defined]


def test_experts_of_another_dataset_are_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as err:
        _explicit(tmp_path, _experts(dataset="cifar10"))
    message = str(err.value)
    assert "\n" not in message
    assert "dataset cifar10, not cifar10-mini" in message and "cifar10-mini-convnet:v1" in message


def test_experts_of_another_backbone_are_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as err:
        _explicit(tmp_path, _experts(backbone="convnet-bn"))
    assert "\n" not in str(err.value)
    assert "backbone convnet-bn, not convnet" in str(err.value)


def test_too_few_experts_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="hold 2 experts but 5 are needed"):
        _explicit(tmp_path, _experts(num=2), num=5)


def test_cli_refuses_zero_experts(registry_root, capsys: pytest.CaptureFixture) -> None:
    from condensekit.cli.app import run

    code = run(["experts", "train", "--data", DATASET, "--num", "0", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2
    assert "number of experts must be >= 1" in err


# --- planning which experts a run uses ------------------------------------------------


def _stored(registry: Registry, num: int, epochs: int, seed: int = 0) -> str:
    """Experts saved with the metadata ``train_experts`` records (weights are placeholders:
    planning reads only the index)."""
    states = [{"w": torch.zeros(1)} for _ in range(num)]
    recipe = expert_protocol(RES, epochs).as_dict()
    metadata = {"num": num, "epochs": epochs, "seed": seed, "recipe": recipe}
    experts = Experts(DATASET, "convnet", RES, initial=states, trained=states, metadata=metadata)
    return registry.save_experts(experts).ref


def test_recipe_hash_of_old_metadata_equals_the_recorded_one() -> None:
    recipe = expert_protocol(RES, 3).as_dict()
    metadata = {"num": 2, "epochs": 3, "seed": 1, "recipe": recipe}
    assert stored_recipe_hash(metadata, DATASET, RES, "convnet") == recipe_hash(
        DATASET, RES, "convnet", 2, 3, 1, recipe
    )


def test_no_recipe_named_uses_the_newest_stored_experts(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    _stored(registry, num=3, epochs=5)
    newest = _stored(registry, num=2, epochs=1)
    planned = plan_experts(ExpertsRequest(), dataset_info(DATASET, RES), "convnet", 0, registry)
    assert not planned.train and planned.ref == newest
    assert planned.reason.startswith(f"using experts {newest} (2 x 1 epochs, seed 0; newest")


def test_no_recipe_and_nothing_stored_trains_the_default_recipe(tmp_path: Path) -> None:
    planned = plan_experts(
        ExpertsRequest(default_epochs=7), dataset_info(DATASET, RES), "convnet", 4, Registry(tmp_path)
    )
    assert planned.train and (planned.num, planned.epochs, planned.seed) == (5, 7, 4)


def test_a_named_recipe_reuses_only_experts_with_the_same_recipe(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    same = _stored(registry, num=2, epochs=3)
    _stored(registry, num=2, epochs=4)  # newer, another recipe
    planned = plan_experts(ExpertsRequest(num=2, epochs=3), dataset_info(DATASET, RES), "convnet", 0, registry)
    assert planned.ref == same


def test_a_named_recipe_with_another_seed_trains_new_experts(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    _stored(registry, num=2, epochs=3, seed=0)
    planned = plan_experts(ExpertsRequest(num=2, epochs=3), dataset_info(DATASET, RES), "convnet", 1, registry)
    assert planned.train and planned.seed == 1


def test_the_recipe_hash_identifies_stored_and_trained_experts_alike(tmp_path: Path) -> None:
    # A run that trained its experts and its resumed run (which finds them stored) share a key.
    registry = Registry(tmp_path)
    to_train = plan_experts(ExpertsRequest(num=2, epochs=3), dataset_info(DATASET, RES), "convnet", 0, registry)
    _stored(registry, num=2, epochs=3)
    stored = plan_experts(ExpertsRequest(num=2, epochs=3), dataset_info(DATASET, RES), "convnet", 0, registry)
    assert to_train.train and not stored.train and to_train.recipe_hash == stored.recipe_hash


def test_trained_experts_record_their_recipe_hash(two_small: tuple) -> None:
    experts = two_small[0]
    meta = experts.metadata
    assert meta["recipe_hash"] == recipe_hash(
        DATASET, RES, "convnet", meta["num"], meta["epochs"], meta["seed"], meta["recipe"]
    )
