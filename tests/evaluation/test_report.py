"""``EvalReport``: per-architecture rows, the mean over architectures as a row of its own,
and what a stored report keeps (the per-arch results the registry indexes)."""

from __future__ import annotations

import json

import pytest

from condensekit.evaluation.report import MEAN_ROW, ArchResult, EvalReport, runs_per_arch


def _report(**accuracies: list[float]) -> EvalReport:
    results = [
        ArchResult(arch.replace("_", "-"), accs, list(range(len(accs))), 10.0) for arch, accs in accuracies.items()
    ]
    return EvalReport("dc", {"epochs": 1}, results, "cpu")


def test_one_architecture_has_no_mean_row() -> None:
    report = _report(convnet=[30.0, 32.0])
    assert report.mean_over_archs() is None
    assert [r.arch for r in report.rows()] == ["convnet"]
    assert report.as_dict()["mean_over_archs"] is None


def test_the_mean_row_pairs_run_k_of_every_architecture() -> None:
    report = _report(convnet=[30.0, 32.0], convnet_nonorm=[20.0, 26.0])
    mean = report.mean_over_archs()
    assert mean is not None and mean.arch == MEAN_ROW
    assert mean.accuracies == [25.0, 29.0]  # (30 + 20) / 2 and (32 + 26) / 2
    assert mean.mean == pytest.approx(27.0)  # the mean of the architectures' means (31 and 23)
    assert mean.std == pytest.approx(2.0)  # over runs, as every other row's
    assert mean.wall_time_s == pytest.approx(20.0)  # the whole evaluation


def test_rows_are_every_architecture_then_the_mean() -> None:
    report = _report(convnet=[30.0], convnet_nonorm=[20.0], convnet_bn=[25.0])
    assert [r.arch for r in report.rows()] == ["convnet", "convnet-nonorm", "convnet-bn", MEAN_ROW]


def test_architectures_with_different_run_counts_have_no_mean_row() -> None:
    assert _report(convnet=[30.0, 32.0], convnet_nonorm=[20.0]).mean_over_archs() is None


def test_the_stored_report_keeps_per_arch_results_and_the_mean_apart() -> None:
    report = _report(convnet=[30.0, 32.0], convnet_nonorm=[20.0, 26.0])
    data = json.loads(json.dumps(report.as_dict()))
    assert [r["arch"] for r in data["results"]] == ["convnet", "convnet-nonorm"]
    assert data["mean_over_archs"]["arch"] == MEAN_ROW and data["mean_over_archs"]["mean"] == pytest.approx(27.0)
    assert EvalReport.from_dict(data).as_dict() == report.as_dict()


def test_runs_per_arch_counts_the_listed_runs() -> None:
    stored = _report(convnet=[30.0, 32.0], convnet_nonorm=[20.0, 26.0]).as_dict()
    assert runs_per_arch(stored) == {"convnet": 2, "convnet-nonorm": 2}
    assert runs_per_arch({"results": [{"arch": "convnet", "mean": 30.0, "std": None}]}) == {}
