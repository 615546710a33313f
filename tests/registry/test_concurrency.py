"""Real processes: concurrent writers and a writer killed mid-save."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import torch

from condensekit.registry import Registry
from condensekit.synthetic import SyntheticSet

Factory = Callable[..., SyntheticSet]

WRITER = textwrap.dedent("""
    import sys, time, torch
    from pathlib import Path
    from condensekit.registry import Registry
    from condensekit.synthetic import SyntheticSet
    root, start, count, n = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    meta = {"method": "dm", "dataset": "cifar10", "num_classes": 10, "ipc": n // 10,
            "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "class_names": [str(i) for i in range(10)]}
    synset = SyntheticSet(images=torch.randn(n, 3, 32, 32), labels=torch.arange(10).repeat_interleave(n // 10),
                          metadata=meta)
    registry = Registry(root)
    while not start.exists():  # start both writers together
        time.sleep(0.005)
    for _ in range(count):
        print(registry.save(synset, name="race").ref, flush=True)
""")


def _writer(root: Path, start: Path, count: int, n: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(root), str(start), str(count), str(n)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_concurrent_writers_get_distinct_versions(tmp_path: Path) -> None:
    root, start = tmp_path / "registry", tmp_path / "go"
    procs = [_writer(root, start, 4, 20) for _ in range(2)]
    time.sleep(0.2)
    start.touch()
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outputs]
    refs = [ref for out, _ in outputs for ref in out.split()]
    assert sorted(refs) == sorted(f"race:v{v}" for v in range(1, 9))
    with sqlite3.connect(root / "index.sqlite") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    reg = Registry(root)
    assert reg.list_sets()[0]["versions"] == list(range(1, 9))
    assert all(len(reg.load(f"race:v{v}")) == 20 for v in range(1, 9))
    assert reg.check() == []


def test_writer_killed_mid_write_leaves_a_consistent_registry(tmp_path: Path, synset_factory: Factory) -> None:
    root, start = tmp_path / "registry", tmp_path / "go"
    reg = Registry(root)
    before = synset_factory(ipc=1)
    reg.save(before, name="race")
    start.touch()
    proc = _writer(root, start, 1, 4000)  # 49 MB of float32: compressing it takes ~3 s
    deadline = time.monotonic() + 60
    while not list((root / "tmp").glob("*.partial")):
        assert proc.poll() is None and time.monotonic() < deadline, "the writer never started writing"
        time.sleep(0.01)
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert reg.list_sets()[0]["versions"] == [1]  # no half entry
    assert torch.equal(reg.load("race").images, before.images)
    [problem] = reg.check()
    assert "leftover temp file" in problem
    reg.check(fix=True)
    assert reg.check() == [] and list((root / "tmp").iterdir()) == []
    assert reg.save(synset_factory(ipc=1), name="race").version == 2


def test_ctrl_c_mid_write_leaves_nothing_behind(tmp_path: Path) -> None:
    root, start = tmp_path / "registry", tmp_path / "go"
    start.touch()
    proc = _writer(root, start, 1, 4000)
    deadline = time.monotonic() + 60
    while not (root / "tmp").is_dir() or not list((root / "tmp").glob("*.partial")):
        assert proc.poll() is None and time.monotonic() < deadline, "the writer never started writing"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "KeyboardInterrupt" in err
    assert list((root / "tmp").iterdir()) == []  # the temp file was removed on the way out
    assert Registry(root).list_sets() == [] and Registry(root).check() == []
