"""``condensekit eval`` and ``condensekit compare`` on a real registry and real CIFAR-10 images.

Budgets are tiny (10 images, 2 epochs, 1 run) and the test split is a real 100-image subset
of CIFAR-10's placed in a temporary data root: these tests check the command, not accuracy.
Commands run in this process (``run``, what the console script calls); only the interrupt
needs a real process (tests/cli/test_exit_codes.py checks the real process's exit codes).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from condensekit.cli.app import run
from condensekit.data import dataset_info
from condensekit.errors import ExitStatus
from condensekit.registry import Registry
from condensekit.synthetic import SyntheticSet

FAST = ["--runs", "1", "--epochs", "2", "--device", "cpu"]


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root with a real, class-balanced 100-image CIFAR-10 test split."""
    source = Path(os.environ.get("CONDENSEKIT_DATA", "/nonexistent")) / "cifar10-npz" / "test.npz"
    if not source.is_file():
        pytest.skip(f"{source} is missing; set CONDENSEKIT_DATA to the shared data root")
    with np.load(source) as f:
        x, y = f["x"], f["y"]
    idx = np.concatenate([np.flatnonzero(y == c)[:10] for c in range(10)])
    root = tmp_path_factory.mktemp("data")
    (root / "cifar10-npz").mkdir()
    np.savez(root / "cifar10-npz" / "test.npz", x=x[idx], y=y[idx])
    return root


def _save_set(registry_root: Path, name: str, offset: int, ipc: int = 1, method: str = "random") -> str:
    """Real CIFAR-10 test images (``ipc`` per class, from ``offset``) as a stored set of ``method``."""
    with np.load(Path(os.environ["CONDENSEKIT_DATA"]) / "cifar10-npz" / "test.npz") as f:
        x, y = f["x"], f["y"]
    idx = np.concatenate([np.flatnonzero(y == c)[500 + offset : 500 + offset + ipc] for c in range(10)])
    info = dataset_info("cifar10")
    images = info.normalize(torch.from_numpy(x[idx]).permute(0, 3, 1, 2).float() / 255)
    synset = SyntheticSet(
        images, torch.from_numpy(y[idx]).long(), metadata={**info.as_metadata(), "method": method, "ipc": ipc}
    )
    with Registry(registry_root) as reg:
        return reg.save(synset, name).ref


def test_eval_json_prints_and_records_the_report(registry_root, cifar_root, capsys) -> None:
    ref = _save_set(registry_root, "cli-a", 0)
    code = run(["eval", ref, *FAST, "--json", "--data-root", str(cifar_root)])
    out = capsys.readouterr().out
    assert code == ExitStatus.SUCCESS
    report = json.loads(out)
    assert report["ref"] == ref and report["protocol"] == "dc"
    assert report["params"]["epochs"] == 2 and report["params"]["test_images"] == 100
    (result,) = report["results"]
    assert result["arch"] == "convnet" and 0.0 <= result["mean"] <= 100.0
    with Registry(registry_root) as reg:
        (stored,) = reg.evals(ref)
    assert stored["id"] == report["eval_id"] and stored["protocol"] == "dc"
    assert stored["scores"]["convnet"]["mean"] == pytest.approx(result["mean"])


def test_eval_without_ref_takes_the_latest_set_and_prints_a_table(registry_root, cifar_root, capsys) -> None:
    _save_set(registry_root, "cli-b", 1)
    code = run(["eval", *FAST, "--protocol", "idc", "--no-dsa", "--data-root", str(cifar_root)])
    out = capsys.readouterr().out
    assert code == ExitStatus.SUCCESS
    assert "cli-b:v1" in out and "protocol idc" in out and "dsa off" in out
    assert "convnet" in out and "±" in out
    with Registry(registry_root) as reg:
        (stored,) = reg.evals("cli-b:v1")
    assert stored["result"]["params"]["cutmix_prob"] == 0.5 and stored["result"]["params"]["dsa"] is False


def test_compare_shows_the_latest_score_per_protocol_side_by_side(registry_root, cifar_root, capsys) -> None:
    a, b = _save_set(registry_root, "cmp-a", 2), _save_set(registry_root, "cmp-b", 3)
    for ref in (a, a, b):
        assert run(["eval", ref, *FAST, "--json", "--data-root", str(cifar_root)]) == ExitStatus.SUCCESS
    reports = [json.loads(chunk) for chunk in _json_chunks(capsys.readouterr().out)]
    assert run(["compare", a, b, "--json"]) == ExitStatus.SUCCESS
    rows = json.loads(capsys.readouterr().out)
    assert [r["ref"] for r in rows] == [a, b]
    # --epochs overrides the preset: such results are labelled "dc:epochs=2", apart from real "dc" ones.
    assert rows[0]["scores"]["dc:epochs=2"]["convnet"]["eval_id"] == reports[1]["eval_id"]  # the later of two
    assert rows[1]["scores"]["dc:epochs=2"]["convnet"]["mean"] == pytest.approx(reports[2]["results"][0]["mean"])
    assert rows[0]["method"] == "random" and rows[0]["dataset"] == "cifar10" and rows[0]["ipc"] == 1
    assert run(["compare", a, b]) == ExitStatus.SUCCESS
    table = capsys.readouterr().out
    assert a in table and b in table and "convnet (dc:epochs=2)" in table


def test_eval_of_an_unknown_ref_is_a_registry_error(registry_root, capsys) -> None:
    _save_set(registry_root, "known", 4)
    code = run(["eval", "unknown-set", *FAST])
    err = capsys.readouterr().err.strip()
    assert code == ExitStatus.REGISTRY and len(err.splitlines()) == 1


def test_interrupted_eval_records_nothing(registry_root, cifar_root) -> None:
    ref = _save_set(registry_root, "interrupted", 5)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "condensekit",
            "eval",
            ref,
            "--runs",
            "1",
            "--epochs",
            "400",
            "--device",
            "cpu",
            "--data-root",
            str(cifar_root),
        ],
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "CONDENSEKIT_REGISTRY": str(registry_root)},
    )
    watchdog = threading.Timer(240, proc.kill)  # never hang the suite
    watchdog.start()
    try:
        for line in proc.stderr:  # plain progress lines, since stderr is not a terminal
            if "/401" in line:  # dc --epochs 400 trains 401 epochs (DC's evaluate_synset loop)
                break
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        watchdog.cancel()
        proc.kill()
    assert proc.returncode == ExitStatus.INTERRUPTED, err
    assert out == ""  # no report printed
    with Registry(registry_root) as reg:
        assert reg.evals(ref) == []


def _json_chunks(text: str) -> list[str]:
    """Split concatenated pretty-printed JSON documents."""
    decoder, chunks, pos = json.JSONDecoder(), [], 0
    text = text.strip()
    while pos < len(text):
        _, end = decoder.raw_decode(text, pos)
        chunks.append(text[pos:end])
        pos = end
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return chunks


def test_eval_records_precision_wave_size_and_device(registry_root, cifar_root, capsys) -> None:
    ref = _save_set(registry_root, "cli-precision", 4)
    args = ["eval", ref, "--runs", "2", "--epochs", "1", "--device", "cpu", "--json", "--data-root", str(cifar_root)]
    assert run([*args, "--precision", "bf16", "--max-parallel-runs", "2"]) == ExitStatus.SUCCESS
    report = json.loads(capsys.readouterr().out)
    assert report["params"]["precision"] == "bf16"
    assert report["params"]["runs_per_wave"] == {"convnet": 2}
    assert report["device"] == "cpu"


def test_sequential_trains_one_run_at_a_time(registry_root, cifar_root, capsys) -> None:
    ref = _save_set(registry_root, "cli-sequential", 5)
    args = ["eval", ref, "--runs", "2", "--epochs", "1", "--device", "cpu", "--json", "--data-root", str(cifar_root)]
    assert run([*args, "--sequential", "--max-parallel-runs", "2"]) == ExitStatus.SUCCESS
    assert json.loads(capsys.readouterr().out)["params"]["runs_per_wave"] == {"convnet": 1}


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--precision", "fp16"], "needs a CUDA device"),
        (["--precision", "fp8"], "fp8"),
        (["--max-parallel-runs", "0"], "--max-parallel-runs"),
    ],
)
def test_bad_precision_or_parallel_runs_is_a_one_line_usage_error(registry_root, option, message, capsys) -> None:
    ref = _save_set(registry_root, "cli-bad", 6)
    code = run(["eval", ref, "--device", "cpu", *option])
    err = capsys.readouterr().err
    assert code == ExitStatus.USAGE, err
    assert message in err and "Traceback" not in err
    with Registry(registry_root) as reg:
        assert reg.evals(ref) == []


def test_progress_is_quiet_under_json(registry_root, cifar_root, capsys) -> None:
    ref = _save_set(registry_root, "cli-quiet", 7)
    code = run(["eval", ref, *FAST, "--json", "--data-root", str(cifar_root)])
    captured = capsys.readouterr()
    assert code == ExitStatus.SUCCESS, captured.err
    assert "runs x epochs" not in captured.err and json.loads(captured.out)["ref"] == ref


def test_compare_refuses_sets_of_different_ipcs_unless_mixed(registry_root, capsys) -> None:
    one, two = _save_set(registry_root, "cmp-ipc1", 8), _save_set(registry_root, "cmp-ipc2", 9, ipc=2)
    assert run(["compare", one, two]) == ExitStatus.USAGE
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "differ in ipc (1 vs 2)" in err and "--mixed" in err
    assert run(["compare", one, two, "--mixed", "--json"]) == ExitStatus.SUCCESS
    assert [row["ipc"] for row in json.loads(capsys.readouterr().out)] == [1, 2]


def test_compare_refuses_mixed_protocols_unless_one_is_picked_or_mixed(registry_root, cifar_root, capsys) -> None:
    a, b = _save_set(registry_root, "cmp-dc", 10), _save_set(registry_root, "cmp-idc", 11)
    data = ["--data-root", str(cifar_root), "--quiet", "--json"]
    assert run(["eval", a, *FAST, *data]) == ExitStatus.SUCCESS
    assert run(["eval", b, *FAST, "--protocol", "idc", *data]) == ExitStatus.SUCCESS
    capsys.readouterr()
    assert run(["compare", a, b]) == ExitStatus.USAGE
    err = capsys.readouterr().err
    assert "differ in protocol (dc:epochs=2 vs idc:epochs=2)" in err and "--protocol NAME" in err
    assert run(["compare", a, b, "--protocol", "idc:epochs=2", "--json"]) == ExitStatus.SUCCESS
    rows = json.loads(capsys.readouterr().out)
    assert [list(row["scores"]) for row in rows] == [[], ["idc:epochs=2"]]
    assert run(["compare", a, b, "--mixed", "--json"]) == ExitStatus.SUCCESS
    rows = json.loads(capsys.readouterr().out)
    assert [list(row["scores"]) for row in rows] == [["dc:epochs=2"], ["idc:epochs=2"]]


def test_cross_architecture_eval_shows_a_row_per_arch_and_their_mean(registry_root, cifar_root, capsys) -> None:
    ref = _save_set(registry_root, "cross-arch", 12)
    args = ["eval", ref, "--arch", "convnet,convnet-nonorm", "--runs", "2", "--epochs", "1", "--device", "cpu"]
    assert run([*args, "--quiet", "--data-root", str(cifar_root)]) == ExitStatus.SUCCESS
    table = capsys.readouterr().out
    lines = [line for line in table.splitlines() if "convnet" in line or "mean over archs" in line]
    assert [line.split()[1] for line in lines] == ["convnet", "convnet-nonorm", "mean"]
    with Registry(registry_root) as reg:
        (stored,) = reg.evals(ref)
    assert set(stored["scores"]) == {"convnet", "convnet-nonorm"}  # per-arch results; the mean is not an arch
    mean = stored["result"]["mean_over_archs"]
    assert mean["mean"] == pytest.approx(
        (stored["scores"]["convnet"]["mean"] + stored["scores"]["convnet-nonorm"]["mean"]) / 2
    )
    assert len(mean["accuracies"]) == 2


@pytest.mark.parametrize("arch", ["convnetd6", "timm:inception_v3"])
def test_an_arch_that_cannot_take_the_resolution_fails_before_training_and_records_nothing(
    registry_root, cifar_root, arch, capsys, monkeypatch
) -> None:
    ref = _save_set(registry_root, "unsuitable", 13)
    monkeypatch.setenv("CONDENSEKIT_DATA", str(cifar_root))
    code = run(["eval", ref, "--arch", f"convnet,{arch}", *FAST])
    out, err = capsys.readouterr()
    assert code == ExitStatus.USAGE, err
    (line,) = err.strip().splitlines()
    assert f"--arch {arch} cannot take this set's 3x32x32 images" in line and "drop it from --arch" in line
    assert "runs x epochs" not in err and out == ""  # no training started
    with Registry(registry_root) as reg:
        assert reg.evals(ref) == []


# --- the kd protocol and DD-Ranking's scores (teacher: conftest.py's cifar_experts) ---------------


def _kd_registry(registry_root: Path, experts, name: str, offset: int) -> str:
    with Registry(registry_root) as reg:
        reg.save_experts(experts)
    return _save_set(registry_root, name, offset, method="dm")


def test_kd_eval_relabels_with_the_newest_experts_and_records_the_teacher(
    registry_root, cifar_experts, tiny_cifar_root, capsys
) -> None:
    ref = _kd_registry(registry_root, cifar_experts, "kd-a", 14)
    code = run(["eval", ref, "--protocol", "kd", *FAST, "--json", "--data-root", str(tiny_cifar_root)])
    captured = capsys.readouterr()
    assert code == ExitStatus.SUCCESS, captured.err
    report = json.loads(captured.out)
    assert report["protocol"] == "kd" and report["params"]["relabel"] == "teacher"
    assert report["params"]["teacher"]["ref"] == "cifar10-convnet:v1" and report["params"]["temperature"] == 20.0
    assert "teacher: cifar10-convnet:v1 (expert 0 of 1, convnet), the newest experts" in captured.err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--teacher", "cifar10-mini-convnet"], "teacher cifar10-mini-convnet:v1 (experts) does not fit this set"),
        ([], "no experts of cifar10 at 32px to teach the kd protocol; train them with `condensekit experts train"),
    ],
)
def test_kd_with_a_teacher_of_another_dataset_or_none_exits_2_and_records_nothing(
    registry_root, mini_experts, extra, message, capsys
) -> None:
    ref = _kd_registry(registry_root, mini_experts, "kd-b", 15)  # experts of cifar10-mini only
    code = run(["eval", ref, "--protocol", "kd", *FAST, *extra])
    err = capsys.readouterr().err
    assert code == ExitStatus.USAGE, err
    (line,) = err.strip().splitlines()
    assert message in line and "runs x epochs" not in err
    with Registry(registry_root) as reg:
        assert reg.evals(ref) == [] and [r["name"] for r in reg.list_sets()] == ["kd-b"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--protocol", "mtt"], "'mtt' is not one of 'dc', 'idc', 'kd'"),
        (["--teacher", "x"], "--teacher is for protocols whose teacher relabels every view (kd), not dc"),
        (["--full-acc", "80"], "--full-acc is an input of --scores"),
        (
            ["--scores", "--protocol", "dc"],
            "--scores evaluates in the kd family with its own variants; drop --protocol",
        ),
    ],
)
def test_kd_and_scores_usage_errors_exit_2_and_record_nothing(registry_root, args, message, capsys) -> None:
    ref = _save_set(registry_root, "kd-c", 16)
    code = run(["eval", ref, *FAST, *args])
    err = capsys.readouterr().err
    assert code == ExitStatus.USAGE, err
    assert message in err and "Traceback" not in err
    with Registry(registry_root) as reg:
        assert reg.evals(ref) == []


def test_scores_make_the_random_baseline_and_print_dd_rankings_scores(
    registry_root, cifar_experts, tiny_cifar_root, capsys
) -> None:
    ref = _kd_registry(registry_root, cifar_experts, "kd-d", 17)
    args = ["eval", ref, "--scores", "--runs", "1", "--epochs", "1", "--device", "cpu"]
    assert run([*args, "--json", "--data-root", str(tiny_cifar_root)]) == ExitStatus.SUCCESS
    first = json.loads(capsys.readouterr().out)
    assert first["ref"] == ref and first["params"]["random_ref"] == "random-cifar10-ipc1:v1"
    assert set(first["scores"]) >= {"hard_label_recovery", "improvement_over_random", "label_robust_score"}
    assert 0.0 <= first["scores"]["label_robust_score"]["mean"] <= 1.0 and len(first["ran"]) == 5
    assert run([*args, "--data-root", str(tiny_cifar_root)]) == ExitStatus.SUCCESS  # the table, nothing run
    table = capsys.readouterr().out
    assert "augmentation robust score" in table and "no (stored)" in table and "yes" not in table
