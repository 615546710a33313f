"""``condensekit leaderboard`` on a registry built by the command itself: ``random`` and ``dm``
sets distilled and evaluated for real (1-2 runs x 1-2 epochs) on a real CIFAR-10 subset (20
training and 10 test images per class) placed in a temporary data root."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from condensekit.cli.app import run
from condensekit.errors import ExitStatus
from condensekit.leaderboard import group_of
from condensekit.registry import Registry

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def small_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root whose CIFAR-10 is real: 20 training and 10 test images per class."""
    source = Path(os.environ.get("CONDENSEKIT_DATA", "/nonexistent")) / "cifar10-npz"
    if not (source / "test.npz").is_file():
        pytest.skip(f"{source} is missing; set CONDENSEKIT_DATA to the shared data root")
    root = tmp_path_factory.mktemp("data")
    (root / "cifar10-npz").mkdir()
    for split, per_class in (("train", 20), ("test", 10)):
        with np.load(source / f"{split}.npz") as f:
            x, y = f["x"], f["y"]
        idx = np.concatenate([np.flatnonzero(y == c)[:per_class] for c in range(10)])
        np.savez(root / "cifar10-npz" / f"{split}.npz", x=x[idx], y=y[idx])
    return root


def _ok(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    code = run(args)
    out, err = capsys.readouterr()
    assert code == ExitStatus.SUCCESS, err
    return out


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory, small_root: Path) -> dict[str, Any]:
    """Four sets, six evaluations in three groups; random1b has a 2-run and a newer 1-run one."""
    registry = tmp_path_factory.mktemp("board") / "registry"
    common = ["--registry", str(registry), "--data-root", str(small_root), "--device", "cpu"]
    refs: dict[str, str] = {}
    for key, argv in {
        "random1": ["random", "--ipc", "1"],
        "random1b": ["random", "--ipc", "1", "--seed", "1"],
        "random2": ["random", "--ipc", "2"],
        "dm1": ["dm", "--ipc", "1", "--iterations", "1"],
    }.items():
        code = run(["distill", *argv, "--data", "cifar10", "--quiet", *common])
        assert code == ExitStatus.SUCCESS
        with Registry(registry) as reg:
            refs[key] = reg.resolve(None).ref  # the newest version written
    for key, extra in (
        ("random1", ["--epochs", "1"]),
        ("random1", ["--epochs", "2"]),
        ("random1b", ["--epochs", "1", "--runs", "2"]),
        ("random1b", ["--epochs", "1"]),
        ("random2", ["--epochs", "1"]),
        ("dm1", ["--epochs", "1"]),
    ):
        assert run(["eval", refs[key], "--runs", "1", *extra, "--quiet", "--json", *common]) == ExitStatus.SUCCESS
    return {"registry": registry, "refs": refs, "args": ["--registry", str(registry)]}


def test_csv_has_one_row_per_set_version_and_never_mixes_groups(board, capsys) -> None:
    rows = list(csv.DictReader(io.StringIO(_ok(["leaderboard", "--format", "csv", *board["args"]], capsys))))
    refs = board["refs"]
    groups = [(r["dataset"], r["resolution"], r["ipc"], r["protocol"], r["archs"]) for r in rows]
    assert sorted({(g[2], g[3]) for g in groups}) == [("1", "dc:epochs=1"), ("1", "dc:epochs=2"), ("2", "dc:epochs=1")]
    at_ipc1 = {r["ref"] for r in rows if (r["ipc"], r["protocol"]) == ("1", "dc:epochs=1")}
    assert at_ipc1 == {refs["random1"], refs["random1b"], refs["dm1"]}
    keys = [(*g, r["ref"]) for g, r in zip(groups, rows, strict=True)]
    assert len(keys) == len(set(keys)) == 5  # 3 sets at IPC 1 dc:epochs=1, random1 at epochs=2, random2
    with Registry(board["registry"]) as reg:
        for row, group in zip(rows, groups, strict=True):  # each row is in the group of the eval it shows
            shown = reg.show(row["ref"])
            (ev,) = [ev for ev in shown["evals"] if ev["id"] == int(row["eval_id"])]
            stored = group_of(shown["metadata"], ev)
            assert group == (stored.dataset, str(stored.resolution), str(stored.ipc), stored.protocol, "convnet")
    (b,) = [r for r in rows if r["ref"] == refs["random1b"]]
    assert (b["runs"], b["evaluations"]) == ("2", "2")  # the 2-run evaluation, not the newer 1-run one


def test_table_is_one_table_per_group_named_after_it(board, capsys) -> None:
    out = _ok(["leaderboard", *board["args"]], capsys)
    assert "cifar10 32 px · IPC 1 · dc:epochs=1 · convnet" in out
    assert "cifar10 32 px · IPC 2 · dc:epochs=1 · convnet" in out
    assert all(ref in out for ref in board["refs"].values())
    assert "1 it, " in out  # dm's budget: one iteration


def test_markdown_and_json_formats(board, capsys) -> None:
    md = _ok(["leaderboard", "--format", "md", *board["args"]], capsys)
    assert md.count("#### ") == 3 and "| # | method | preset | set | accuracy (%) |" in md
    data = json.loads(_ok(["leaderboard", "--json", *board["args"]], capsys))
    assert data == json.loads(_ok(["leaderboard", "--format", "json", *board["args"]], capsys))
    assert len(data) == 5 and {d["method"] for d in data} == {"random", "dm"}


def test_filters_select_entries(board, capsys) -> None:
    args = ["leaderboard", "--json", "--method", "dm", "--ipc", "1", "--protocol", "dc:epochs=1", *board["args"]]
    (only,) = json.loads(_ok(args, capsys))
    assert only["ref"] == board["refs"]["dm1"] and only["iterations"] == 1


def test_a_filter_matching_nothing_says_what_is_stored(board, capsys) -> None:
    code = run(["leaderboard", "--json", "--protocol", "kd", *board["args"]])
    out, err = capsys.readouterr()
    assert code == ExitStatus.SUCCESS and json.loads(out) == []
    assert "--protocol kd (stored: dc:epochs=1, dc:epochs=2)" in err


def test_plot_writes_a_png(board, tmp_path: Path, capsys) -> None:
    target = tmp_path / "board.png"
    _ok(["leaderboard", "--format", "csv", "--plot", str(target), *board["args"]], capsys)
    data = target.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > len(PNG_SIGNATURE)


def test_plot_without_matplotlib_is_one_line_naming_the_extra(board, tmp_path: Path) -> None:
    target = tmp_path / "board.png"
    # matplotlib made unimportable in this process only, as on an install without the extra
    code = "import sys; sys.modules['matplotlib'] = None; from condensekit.cli.app import main; main()"
    result = subprocess.run(
        [sys.executable, "-c", code, "leaderboard", "--plot", str(target), *board["args"]],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == ExitStatus.USAGE
    assert result.stderr.count("\n") == 1 and "pip install 'condensekit[plot]'" in result.stderr
    assert result.stdout == "" and not target.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--plot", "board.nosuch"], "cannot tell the format"),
        (["--ipc", "0"], "--ipc must be >= 1"),
        (["--json", "--format", "csv"], "give one of them"),
    ],
)
def test_bad_options_are_one_line_usage_errors(board, tmp_path: Path, capsys, args: list[str], message: str) -> None:
    code = run(["leaderboard", *[str(tmp_path / a) if a.endswith(".nosuch") else a for a in args], *board["args"]])
    out, err = capsys.readouterr()
    assert code == ExitStatus.USAGE and out == ""
    assert message in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_an_empty_registry_has_an_empty_leaderboard(tmp_path: Path, capsys) -> None:
    code = run(["leaderboard", "--format", "csv", "--registry", str(tmp_path / "none")])
    out, err = capsys.readouterr()
    assert code == ExitStatus.SUCCESS and out.startswith("dataset,resolution,ipc,protocol,teacher,archs,rank,")
    assert len(out.splitlines()) == 1 and "no stored evaluation in this registry" in err
