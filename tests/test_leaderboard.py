"""``condensekit.leaderboard`` on a real registry: sets distilled with ``random`` and ``dm`` on
the embedded cifar10-mini (dm: one iteration), evaluation reports recorded through the
registry's API (real ``EvalReport`` objects with a real protocol's parameters), so that every
grouping rule is exercised without hours of training. The CLI test trains for real."""

from __future__ import annotations

import csv
import io
import json
import struct
from pathlib import Path
from typing import Any

import pytest

from condensekit import leaderboard as lb
from condensekit.distill import distill
from condensekit.errors import UsageError
from condensekit.evaluation import ArchResult, EvalReport, get_protocol
from condensekit.registry import Registry

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def record(reg: Registry, ref: str, accuracies: dict[str, list[float]], protocol: str = "dc", **overrides: Any) -> int:
    """Store an evaluation of ``ref`` as ``evaluate`` would report it (per-arch run accuracies)."""
    meta = reg.show(ref)["metadata"]
    recipe = get_protocol(protocol).with_overrides(**overrides)
    runs = len(next(iter(accuracies.values())))
    params = {
        **recipe.as_dict(),
        "overrides": overrides,
        "archs": list(accuracies),
        "runs": runs,
        "dataset": meta["dataset"],
        "resolution": meta["resolution"],
    }
    results = [ArchResult(arch, accs, list(range(len(accs))), 2.0 * len(accs)) for arch, accs in accuracies.items()]
    return reg.record_eval(ref, EvalReport(protocol, params, results, "cpu").as_dict())


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """random at IPC 1 (two versions) and 2, dm at IPC 1; evaluations in five groups."""
    root = tmp_path_factory.mktemp("leaderboard") / "registry"
    with Registry(root) as reg:
        refs = {
            "random1": distill("random", "cifar10-mini", 1, registry=reg, device="cpu", seed=0).version.ref,
            "random1b": distill("random", "cifar10-mini", 1, registry=reg, device="cpu", seed=1).version.ref,
            "random2": distill("random", "cifar10-mini", 2, registry=reg, device="cpu").version.ref,
            "dm1": distill("dm", "cifar10-mini", 1, registry=reg, device="cpu", iterations=1).version.ref,
        }
        ids = {
            "random1_dc": record(reg, refs["random1"], {"convnet": [20.0, 21.0]}),
            "random1_epochs": record(reg, refs["random1"], {"convnet": [15.0]}, epochs=20),
            "random1_idc": record(reg, refs["random1"], {"convnet": [25.0, 27.0, 26.0]}, "idc"),
            "random1b_three": record(reg, refs["random1b"], {"convnet": [18.0, 19.0, 20.0]}),
            "random1b_one": record(reg, refs["random1b"], {"convnet": [30.0]}),  # newer, fewer runs
            "random1b_newest": record(reg, refs["random1b"], {"convnet": [21.0, 22.0, 23.0]}),
            "random2_dc": record(reg, refs["random2"], {"convnet": [28.0, 30.0]}),
            "random2_cross": record(reg, refs["random2"], {"convnet": [26.0, 28.0], "convnet-nonorm": [20.0, 22.0]}),
            "dm1_dc": record(reg, refs["dm1"], {"convnet": [24.0, 26.0]}),
        }
        board = lb.leaderboard(reg)
        shown = {key: reg.show(ref) for key, ref in refs.items()}
    return {"root": root, "refs": refs, "ids": ids, "board": board, "shown": shown}


def _rows(board: list[lb.Entry]) -> list[tuple[str | None, int | None, str | None, str, str]]:
    return [(e.group.dataset, e.group.ipc, e.group.protocol, ",".join(e.group.archs), e.ref) for e in board]


def test_one_entry_per_set_version_and_group_in_group_order(stored) -> None:
    refs = stored["refs"]
    assert _rows(stored["board"]) == [
        ("cifar10-mini", 1, "dc", "convnet", refs["dm1"]),
        ("cifar10-mini", 1, "dc", "convnet", refs["random1b"]),
        ("cifar10-mini", 1, "dc", "convnet", refs["random1"]),
        ("cifar10-mini", 1, "dc:epochs=20", "convnet", refs["random1"]),
        ("cifar10-mini", 1, "idc", "convnet", refs["random1"]),
        ("cifar10-mini", 2, "dc", "convnet", refs["random2"]),
        ("cifar10-mini", 2, "dc", "convnet,convnet-nonorm", refs["random2"]),
    ]


def test_entries_are_ranked_by_mean_within_their_group(stored) -> None:
    ipc1_dc = [e for e in stored["board"] if e.group.ipc == 1 and e.group.protocol == "dc"]
    assert [(e.rank, e.mean) for e in ipc1_dc] == [(1, 25.0), (2, 22.0), (3, 20.5)]
    assert all(e.rank == 1 for e in stored["board"] if e not in ipc1_dc)


def test_the_evaluation_shown_has_the_most_runs_then_is_the_newest(stored) -> None:
    (entry,) = [e for e in stored["board"] if e.ref == stored["refs"]["random1b"]]
    assert entry.eval_id == stored["ids"]["random1b_newest"]  # not the newer 1-run evaluation at 30 %
    assert (entry.runs, entry.evaluations) == (3, 3)


def test_a_protocol_with_overrides_is_a_group_of_its_own(stored) -> None:
    (entry,) = [e for e in stored["board"] if e.group.protocol == "dc:epochs=20"]
    assert entry.eval_id == stored["ids"]["random1_epochs"] and entry.mean == 15.0


def test_protocol_labels_list_sorted_overrides() -> None:
    assert lb.protocol_label("dc", {}) == "dc"
    assert lb.protocol_label("dc", {"lr": 0.05, "epochs": 20, "dsa": False}) == "dc:dsa=off,epochs=20,lr=0.05"


def test_a_cross_architecture_entry_is_the_mean_over_architectures_with_the_std_over_runs(stored) -> None:
    (entry,) = [e for e in stored["board"] if len(e.group.archs) == 2]
    # run 0: (26 + 20) / 2 = 23, run 1: (28 + 22) / 2 = 25
    assert (entry.mean, entry.std, entry.runs) == (24.0, 1.0, 2)
    assert entry.eval_wall_time_s == pytest.approx(8.0)  # both architectures' wall time


def test_budget_columns_come_from_the_sets_metadata(stored) -> None:
    (entry,) = [e for e in stored["board"] if e.ref == stored["refs"]["dm1"]]
    meta = stored["shown"]["dm1"]["metadata"]
    assert (entry.method, entry.iterations) == ("dm", 1)
    assert entry.distill_wall_time_s == meta["wall_time_s"] and entry.distill_wall_time_s > 0
    assert entry.preset is None  # dm has no presets: "-" in the table


def test_a_report_recorded_without_run_accuracies_still_has_its_mean(tmp_path: Path, stored) -> None:
    shown = {**stored["shown"]["dm1"]}
    minimal = {"protocol": "dc", "results": [{"arch": "convnet", "mean": 33.0, "std": None}]}
    shown["evals"] = [
        {
            "id": 1,
            "protocol": "dc",
            "created": "t",
            "scores": {"convnet": {"mean": 33.0, "std": None}},
            "result": minimal,
        }
    ]
    (entry,) = lb.entries([shown])
    assert (entry.mean, entry.std, entry.runs, entry.group.protocol) == (33.0, None, None, "dc")


def test_filters_keep_entries_with_their_rank_in_the_whole_group(stored) -> None:
    board = stored["board"]
    assert [e.ref for e in lb.LeaderboardQuery(method="random", ipc=1, protocol="dc").apply(board)] == [
        stored["refs"]["random1b"],
        stored["refs"]["random1"],
    ]
    assert [e.rank for e in lb.LeaderboardQuery(method="random", ipc=1, protocol="dc").apply(board)] == [2, 3]
    assert {e.group.protocol for e in lb.LeaderboardQuery(protocol="dc").apply(board)} == {"dc"}
    assert lb.LeaderboardQuery(dataset="cifar10").apply(board) == []


def test_unmatched_names_the_values_stored(stored) -> None:
    message = lb.LeaderboardQuery(protocol="kd").unmatched(stored["board"])
    assert message == "no stored evaluation matches --protocol kd (stored: dc, dc:epochs=20, idc)"


def test_an_ipc_below_one_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="--ipc must be >= 1"):
        lb.LeaderboardQuery(ipc=0).check()


def test_csv_has_one_row_per_set_version_and_group_and_never_mixes_groups(stored) -> None:
    rows = list(csv.DictReader(io.StringIO(lb.to_csv(stored["board"]))))
    assert len(rows) == len(stored["board"]) == 7
    keys = [(r["dataset"], r["resolution"], r["ipc"], r["protocol"], r["archs"], r["ref"]) for r in rows]
    assert len(set(keys)) == len(keys)  # one row per set version within a group
    by_ref = {shown["ref"]: shown for shown in stored["shown"].values()}
    for row in rows:  # every row's group is the group of the evaluation it shows
        shown = by_ref[row["ref"]]
        (ev,) = [ev for ev in shown["evals"] if ev["id"] == int(row["eval_id"])]
        group = lb.group_of(shown["metadata"], ev)
        assert (row["dataset"], int(row["resolution"]), int(row["ipc"]), row["protocol"], row["archs"]) == (
            group.dataset,
            group.resolution,
            group.ipc,
            group.protocol,
            ",".join(group.archs),
        )
    assert list(rows[0]) == list(lb.FIELDS)


def test_markdown_is_one_github_table_per_group(stored) -> None:
    text = lb.to_markdown(stored["board"])
    headings = [line for line in text.splitlines() if line.startswith("#### ")]
    assert len(headings) == len(lb.by_group(stored["board"])) == 5
    assert headings[0] == "#### cifar10-mini 32 px · IPC 1 · dc · convnet"
    assert "| # | method | preset | set | accuracy (%) | runs | budget | eval |" in text
    assert f"| 1 | dm | - | {stored['refs']['dm1']} | 25.00 ± 1.00 | 2 | 1 it, " in text


def test_json_is_a_list_of_entries(stored) -> None:
    data = json.loads(lb.to_json(stored["board"]))
    assert isinstance(data, list) and len(data) == 7
    assert data[0] == stored["board"][0].as_dict() and data[0]["protocol"] == "dc" and data[0]["mean"] == 25.0


def test_plot_writes_a_png_with_one_row_of_panels_per_group_of_ipcs(stored, tmp_path: Path) -> None:
    target = lb.plot(stored["board"], tmp_path / "board.png")
    data = target.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 0
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    # four curves of IPC: dc/convnet, dc:epochs=20, idc and dc over two architectures
    assert height / width == pytest.approx(4.6 * 4 / 13, rel=0.01)
    assert [p.name for p in tmp_path.iterdir()] == ["board.png"]  # no temporary file left


@pytest.mark.parametrize(
    ("name", "message"), [("board.nosuch", "cannot tell the format"), ("no/dir/b.png", "does not exist")]
)
def test_a_plot_that_cannot_be_written_is_refused_before_drawing(tmp_path: Path, name: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        lb.check_plot_target(tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_nothing_to_plot_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="nothing to plot"):
        lb.plot([], tmp_path / "empty.png")
    assert list(tmp_path.iterdir()) == []


def test_comparison_refuses_sets_of_different_ipcs_and_names_the_field(stored) -> None:
    shown = stored["shown"]
    with pytest.raises(UsageError, match=r"differ in ipc \(1 vs 2\).*--mixed"):
        lb.comparison([shown["dm1"], shown["random2"]])
    rows = lb.comparison([shown["dm1"], shown["random2"]], mixed=True)
    assert [r["ref"] for r in rows] == [stored["refs"]["dm1"], stored["refs"]["random2"]]


def test_comparison_refuses_mixed_protocols_unless_one_is_picked(stored) -> None:
    shown = stored["shown"]
    with pytest.raises(UsageError, match=r"differ in protocol \(dc vs dc:epochs=20 vs idc\); pass --protocol NAME"):
        lb.comparison([shown["dm1"], shown["random1"]])
    rows = lb.comparison([shown["dm1"], shown["random1"]], protocol="dc")
    assert [set(r["scores"]) for r in rows] == [{"dc"}, {"dc"}]


def test_comparison_shows_per_architecture_the_evaluation_with_most_runs_then_newest(stored) -> None:
    (row,) = lb.comparison([stored["shown"]["random1b"]])
    chosen = row["scores"]["dc"]["convnet"]
    assert chosen["eval_id"] == stored["ids"]["random1b_newest"] and chosen["runs"] == 3
    (row,) = lb.comparison([stored["shown"]["random2"]])
    assert set(row["scores"]["dc"]) == {"convnet", "convnet-nonorm"}
    assert row["scores"]["dc"]["convnet"]["eval_id"] == stored["ids"]["random2_cross"]  # same runs, newer


def _kd_eval(teacher: dict[str, Any] | None) -> dict[str, Any]:
    params: dict[str, Any] = {"archs": ["convnet"]}
    if teacher is not None:
        params["teacher"] = teacher
    return {"protocol": "kd", "result": {"params": params}}


def test_kd_results_of_different_teachers_are_different_groups() -> None:
    meta = {"dataset": "cifar10", "resolution": 32, "ipc": 10}
    one = lb.group_of(meta, _kd_eval({"ref": "cifar10-convnet-bn:v1", "identity": "a1"}))
    other = lb.group_of(meta, _kd_eval({"ref": "cifar10-convnet-bn:v2", "identity": "b2"}))
    assert one != other and one.teacher == "cifar10-convnet-bn:v1"
    assert lb.mixed_fields([one, other]) == {"teacher": ["cifar10-convnet-bn:v1", "cifar10-convnet-bn:v2"]}
    assert "(teacher cifar10-convnet-bn:v1)" in one.label


def test_a_weights_file_teacher_is_named_by_backbone_and_hash() -> None:
    group = lb.group_of({"dataset": "cifar10"}, _kd_eval({"backbone": "timm:resnet18", "identity": "0123456789abcdef"}))
    assert group.teacher == "timm:resnet18@0123456789ab"


def test_protocols_without_a_teacher_have_none() -> None:
    assert lb.group_of({"dataset": "cifar10"}, _kd_eval(None)).teacher is None
