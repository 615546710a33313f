"""DD-Ranking's scores on a real registry: the random baseline made when missing, the five
evaluations stored as ordinary results, the scores record, nothing run twice, and inputs
refused before anything is written. Budget: 2 runs x 1 epoch on 10 real CIFAR-10 images per
set, tested on 100 real test images (the tiny data root of conftest.py)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from condensekit.data import dataset_info, load_dataset
from condensekit.errors import UsageError
from condensekit.evaluation.scores import EVALUATIONS, ScoresRequest, compute_scores, normalized
from condensekit.registry import Registry
from condensekit.synthetic import SyntheticSet

RUNS = 2


def cifar_set(data_root: Path, offset: int = 10) -> SyntheticSet:
    """One real CIFAR-10 training image per class (the ``offset``-th) as a stored set of ``dm``."""
    train = load_dataset("cifar10", "train", data_root=data_root)
    idx = torch.tensor([train.class_slice(c).start + offset for c in range(10)])
    info = dataset_info("cifar10")
    meta = {**info.as_metadata(), "method": "dm", "ipc": 1, "config": {}}
    return SyntheticSet(train.as_float(train.images[idx]), train.labels[idx], metadata=meta)


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory, cifar_experts, tiny_cifar_root: Path) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("registry")
    with Registry(root) as reg:
        reg.save_experts(cifar_experts)
        reg.save(cifar_set(tiny_cifar_root), "scored")
    notices: list[str] = []
    request = ScoresRequest(
        ref="scored", runs=RUNS, epochs=1, device="cpu", registry=str(root), data_root=str(tiny_cifar_root)
    )
    result = compute_scores(request, notify=notices.append)
    return {"root": root, "request": request, "result": result, "notices": notices}


def test_a_missing_random_baseline_of_the_sets_ipc_is_made_and_stored(scored) -> None:
    with Registry(scored["root"]) as reg:
        (row,) = [r for r in reg.list_sets() if r["method"] == "random"]
        meta = reg.show(f"{row['name']}:v{row['latest']}")["metadata"]
    assert (row["name"], row["dataset"], meta["ipc"], meta["resolution"]) == ("random-cifar10-ipc1", "cifar10", 1, 32)
    assert scored["result"].record["params"]["random_ref"] == f"{row['name']}:v{row['latest']}"
    assert any(n.startswith("no random baseline of cifar10 at IPC 1 yet") for n in scored["notices"])


def test_the_evaluations_are_stored_as_results_and_the_scores_as_a_record_of_their_own(scored) -> None:
    record = scored["result"].record
    with Registry(scored["root"]) as reg:
        shown = reg.show("scored")
        random_evals = reg.evals(record["params"]["random_ref"])
    assert sorted(scored["result"].ran) == sorted(EVALUATIONS)
    assert len(shown["evals"]) == 3 and len(random_evals) == 2 and {e["protocol"] for e in shown["evals"]} == {"kd"}
    (stored,) = shown["scores"]  # listed apart from the accuracies, indexing none
    assert stored["id"] == scored["result"].record_id and stored["scores"] == {}
    ids = {e["id"] for e in shown["evals"]} | {e["id"] for e in random_evals}
    assert {ev["eval_id"] for ev in record["evaluations"].values()} == ids


def test_the_scores_follow_dd_rankings_definitions_run_by_run(scored) -> None:
    record = scored["result"].record
    acc = {name: [a / 100 for a in ev["accuracies"]] for name, ev in record["evaluations"].items()}
    full = record["params"]["full_acc"] / 100
    for k in range(RUNS):
        hlr = full - acc["set_hard"][k]
        ior = acc["set_kd"][k] - acc["random_kd"][k]
        no_aug = acc["set_kd_no_aug"][k] - acc["random_kd_no_aug"][k]
        scores = record["scores"]
        assert scores["hard_label_recovery"]["runs"][k] == pytest.approx(100 * hlr)
        assert scores["improvement_over_random"]["runs"][k] == pytest.approx(100 * ior)
        assert scores["label_robust_score"]["runs"][k] == pytest.approx(normalized(0.5 * ior - 0.5 * hlr))
        assert scores["augmentation_robust_score"]["runs"][k] == pytest.approx(normalized(0.5 * ior + 0.5 * no_aug))


def test_stored_scores_carry_no_float_noise(scored) -> None:
    for summary in scored["result"].record["scores"].values():
        for value in [summary["mean"], summary["std"], *summary["runs"]]:
            assert len(repr(value).lstrip("-").replace(".", "").lstrip("0")) <= 10  # e.g. not 25.330000000000002


def test_scores_are_normalized_from_minus_one_one_onto_zero_one() -> None:
    assert normalized(-1.0) == pytest.approx(0.0) and normalized(1.0) == pytest.approx(1.0)
    assert normalized(0.0) == pytest.approx((1 - math.exp(-1)) / (math.e - math.exp(-1)))


def test_the_full_set_accuracy_is_the_teacher_experts_recorded_one(scored, cifar_experts) -> None:
    params = scored["result"].record["params"]
    assert params["full_acc"] == pytest.approx(cifar_experts.metadata["test_accuracy"][0])
    assert params["full_acc_source"].startswith("experts cifar10-convnet:v1")


def test_asking_again_runs_nothing_and_stores_nothing_new(scored) -> None:
    again = compute_scores(scored["request"])
    assert again.ran == [] and again.reused and again.record_id == scored["result"].record_id
    with Registry(scored["root"]) as reg:
        assert len(reg.score_records("scored")) == 1 and len(reg.evals("scored")) == 3


def _fresh(root: Path, mini_experts, synset) -> None:
    with Registry(root) as reg:
        reg.save_experts(mini_experts)
        reg.save(synset, "s")


def _nothing_but_the_inputs(root: Path) -> None:
    with Registry(root) as reg:
        assert [r["name"] for r in reg.list_sets()] == ["s"] and reg.evals("s") == [] and reg.score_records("s") == []


def test_a_teacher_of_another_dataset_is_refused_before_anything_is_written(
    registry_root: Path, mini_experts, tiny_cifar_root: Path
) -> None:
    _fresh(registry_root, mini_experts, cifar_set(tiny_cifar_root))
    request = ScoresRequest(
        ref="s",
        teacher="cifar10-mini-convnet",
        full_acc=50.0,
        runs=1,
        epochs=1,
        device="cpu",
        registry=str(registry_root),
    )
    with pytest.raises(UsageError, match="dataset cifar10-mini, not cifar10"):
        compute_scores(request)
    _nothing_but_the_inputs(registry_root)


def test_without_a_full_set_accuracy_for_the_arch_nothing_is_run(
    registry_root: Path, cifar_experts, tiny_cifar_root: Path
) -> None:
    _fresh(registry_root, cifar_experts, cifar_set(tiny_cifar_root))
    request = ScoresRequest(ref="s", arch="convnetd4", runs=1, epochs=1, device="cpu", registry=str(registry_root))
    with pytest.raises(UsageError, match="pass --full-acc PERCENT"):
        compute_scores(request)
    _nothing_but_the_inputs(registry_root)


@pytest.mark.parametrize(("field", "value"), [("full_acc", 0.0), ("full_acc", 101.0), ("lrs_weight", 1.5)])
def test_out_of_range_inputs_are_usage_errors(registry_root: Path, field: str, value: float) -> None:
    with pytest.raises(UsageError):
        compute_scores(ScoresRequest(ref="s", registry=str(registry_root), **{field: value}))
