"""DC / DSA side by side in one run: the official gradient-matching loop (VICO-UoE/
DatasetCondensation ``main.py``, as released) and condensekit's ``dc`` plugin, interleaved cell
by cell (official, ours, official, ours, ...), each side in a fresh process.

    python benchmarks/official/dc_official.py --registry R [--methods DC DSA] [--ipcs 1 10]
           [--iterations 4] [--rounds 1] [--init real] [--batch-real 256]
           [--loops 10,50] [--eval-ipc 10 --eval-runs 3 --eval-epochs 300]

Official side (``--side official``): the mirror (``--mirror``, default
``$MIRROR_ROOT/VICO-UoE+DatasetCondensation/repo``) is extracted with ``git archive HEAD``
into ``$OFFICIAL_BUILD/dc/src`` (default ``~/.cache/condensekit-official``), and ``main.main()``
runs there with ``--num_exp 1 --num_eval 0`` (no evaluation inside the loop) and
``--Iteration N-1`` (its loop runs ``Iteration + 1`` image-learning iterations, main.py:105,
and saves ``res_<method>_CIFAR10_ConvNet_<ipc>ipc.pt`` after the last one, main.py:223-225).
Runtime shims, in memory only (no official file is edited, nothing is copied here):

1. offline CIFAR-10: ``torchvision.datasets.CIFAR10`` becomes a subclass reading
   ``$CONDENSEKIT_DATA/cifar10-npz/{train,test}.npz`` (the official transforms, ToTensor +
   Normalize with DC's mean/std, are unchanged);
2. Siamese DSA on recent torch: the ten ``x[:] = x[0]`` broadcasts of ``utils.py`` raise an
   aliasing error; ``utils`` is loaded from source with ``x[:] = x[0].clone()`` (same values;
   the shared anchors harness and DataDAM's fork do the same);
3. ``scipy`` (imported by ``utils.py`` for DC's evaluation-time rotate augmentation, which
   distillation never calls) is replaced by a stub that raises if called, where it is not
   installed;
4. ``--loops OUTER,INNER`` (a reduced budget) replaces ``utils.get_loops`` as imported by
   ``main.py``; without it the released table is used.

Timing (both sides the same way): iteration ``i`` is the time between the starts of
iterations ``i`` and ``i + 1`` (official: between two calls of ``get_network``, which
``main.py`` calls once per iteration, line 147, the last one ending when ``main()`` returns;
ours: between two progress callbacks, which ``run_iterations`` makes once per iteration).
Iteration 0 is warm-up; the median of the others is reported, with peak RSS.

Ours (``--side ours``): ``condensekit.distill.distill("dc", "cifar10", ipc, preset=dc|dsa,
config={init, batch_real, outer/inner loops}, iterations=N, registry=R)`` in-process, what
``condensekit distill dc --preset ... --init ... --iterations N`` calls.

After the timing, with ``--eval-ipc``, the official set of that IPC (last round, per method)
is imported with ``condensekit import RES --format dc --data cifar10`` and both sets are
evaluated by ``condensekit eval REF --protocol dc --runs R [--epochs E]``, one after the other.
Prints a table and one ``JSON {...}`` line; appends it to ``OUT/results.jsonl``.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
BUILD = Path(os.environ.get("OFFICIAL_BUILD", Path.home() / ".cache" / "condensekit-official")) / "dc"
DEFAULT_MIRROR = Path(os.environ.get("MIRROR_ROOT", "/work/.mirror")) / "VICO-UoE+DatasetCondensation" / "repo"
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
SIAMESE_LINES = 10  # `x[:] = x[0]` broadcasts in utils.py (rand_scale ... rand_cutout)


def load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def npz_dir() -> Path:
    root = os.environ.get("CONDENSEKIT_DATA", str(REPO.parent / "shared" / "data"))
    return Path(root) / "cifar10-npz"


def summary(durations: list[float]) -> dict[str, Any]:
    timed = durations[1:]  # iteration 0: warm-up
    return {
        "per_iteration": [round(d, 3) for d in durations],
        "s_per_iteration": round(statistics.median(timed), 3) if timed else None,
    }


# ----------------------------------------------------------------------------- official side
def extract(mirror: Path) -> tuple[Path, str]:
    """``git archive HEAD`` of the mirror into BUILD/src (again when the mirror's HEAD moved)."""
    commit = subprocess.run(
        ["git", "--git-dir", str(mirror), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    src = BUILD / "src"
    stamp = src / ".official_commit"
    if not stamp.is_file() or stamp.read_text().strip() != commit:
        src.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "--git-dir", str(mirror), "archive", commit], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(src)], input=archive.stdout, check=True)
        stamp.write_text(commit + "\n")
    return src, commit


def shim_cifar10() -> None:
    """Shim 1: the official ``datasets.CIFAR10(root, train, download=True, transform)`` offline."""
    import numpy as np
    import torchvision
    from torchvision.datasets import CIFAR10
    from torchvision.datasets.vision import VisionDataset

    arrays = npz_dir()

    class NpzCIFAR10(CIFAR10):  # type: ignore[misc]
        def __init__(self, root: str, train: bool = True, transform: Any = None, **_: Any) -> None:
            VisionDataset.__init__(self, root, transform=transform)
            self.train = train
            z = np.load(arrays / ("train.npz" if train else "test.npz"))
            self.data = np.ascontiguousarray(z["x"])  # uint8 NHWC, as torchvision keeps it
            self.targets = z["y"].astype(np.int64).tolist()
            self.classes = list(CIFAR10_CLASSES)
            self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

    torchvision.datasets.CIFAR10 = NpzCIFAR10


def shim_scipy() -> bool:
    """Shim 3: a stub ``scipy.ndimage.interpolation`` where scipy is absent."""
    try:
        import scipy.ndimage.interpolation  # noqa: F401
    except ImportError:

        def rotate(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("scipy stub: DC's evaluation-time rotate augmentation is not part of distillation")

        for name in ("scipy", "scipy.ndimage", "scipy.ndimage.interpolation"):
            sys.modules[name] = types.ModuleType(name)
        sys.modules["scipy.ndimage.interpolation"].rotate = rotate  # type: ignore[attr-defined]
        return True
    return False


def load_official(src: Path) -> tuple[Any, Any]:
    """``utils`` from source with shim 2, then ``main`` (which imports from it)."""
    sys.path.insert(0, str(src))
    path = src / "utils.py"
    text = path.read_text()
    fixed, count = re.subn(r"(\b\w+)\[:\] = \1\[0\](?=\r?$)", r"\1[:] = \1[0].clone()", text, flags=re.M)
    if count != SIAMESE_LINES:
        raise RuntimeError(f"expected {SIAMESE_LINES} Siamese broadcast lines in {path}, found {count}")
    utils = types.ModuleType("utils")
    utils.__file__ = str(path)
    sys.modules["utils"] = utils
    exec(compile(fixed, str(path), "exec"), utils.__dict__)
    spec = importlib.util.spec_from_file_location("dc_main", src / "main.py")
    assert spec is not None and spec.loader is not None
    main = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(main)
    return utils, main


def official_once(opts: argparse.Namespace) -> None:
    src, commit = extract(Path(opts.mirror))
    shim_cifar10()
    stubbed_scipy = shim_scipy()
    _, main = load_official(src)
    if opts.loops:
        outer, inner = (int(v) for v in opts.loops.split(","))
        main.get_loops = lambda ipc: (outer, inner)  # shim 4: the stated reduced budget
    work = BUILD / "work" / f"{opts.method}-ipc{opts.ipc}"
    work.mkdir(parents=True, exist_ok=True)
    os.chdir(work)
    stamps: list[float] = []
    get_network = main.get_network

    def ticking_get_network(*args: Any, **kwargs: Any) -> Any:
        stamps.append(time.perf_counter())
        return get_network(*args, **kwargs)

    main.get_network = ticking_get_network
    sys.argv = [
        "main.py",
        "--method", opts.method,
        "--dataset", "CIFAR10",
        "--model", "ConvNet",
        "--ipc", str(opts.ipc),
        "--num_exp", "1",
        "--num_eval", "0",
        "--Iteration", str(opts.iterations - 1),
        "--init", opts.init,
        "--batch_real", str(opts.batch_real),
        "--data_path", str(work / "data"),
        "--save_path", str(work / "result"),
    ]  # fmt: skip
    if opts.method == "DSA":
        sys.argv += ["--dsa_strategy", "color_crop_cutout_flip_scale_rotate"]
    load = load_average()

    started = time.perf_counter()
    main.main()
    ended = time.perf_counter()
    durations = [b - a for a, b in zip(stamps, [*stamps[1:], ended], strict=True)]
    res = work / "result" / f"res_{opts.method}_CIFAR10_ConvNet_{opts.ipc}ipc.pt"
    emit(
        "official",
        opts,
        len(stamps),
        durations,
        ended - started,
        load,
        str(res),
        commit=commit,
        scipy_stub=stubbed_scipy,
    )


def emit(
    side: str,
    opts: argparse.Namespace,
    iterations: int,
    durations: list[float],
    seconds: float,
    load: str,
    synthetic_set: str | None,
    **extra: Any,
) -> None:
    """One side's result as the ``JSON`` line the interleaving parent reads."""
    import torch

    record = {
        "side": side,
        "method": opts.method,
        "ipc": opts.ipc,
        "iterations": iterations,
        **summary(durations),
        "seconds": round(seconds, 2),
        "peak_rss_mb": round(peak_rss_mb()),
        "set": synthetic_set,
        **extra,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "load_before": load,
        "load_after": load_average(),
    }
    print("JSON " + json.dumps(record), flush=True)


# ----------------------------------------------------------------------------- ours
def ours_once(opts: argparse.Namespace) -> None:

    from condensekit.distill import distill

    config: dict[str, Any] = {"init": opts.init, "batch_real": opts.batch_real}
    if opts.loops:
        outer, inner = (int(v) for v in opts.loops.split(","))
        config.update(outer_loop=outer, inner_loop=inner)
    stamps: list[float] = []
    load = load_average()
    started = time.perf_counter()
    result = distill(
        "dc",
        "cifar10",
        opts.ipc,
        registry=opts.registry,
        progress=lambda iteration, **metrics: stamps.append(time.perf_counter()),
        preset=opts.method.lower(),
        config=config,
        iterations=opts.iterations,
        device="cpu",
        name=f"{opts.prefix}-{opts.method.lower()}-ipc{opts.ipc}-ours",
    )
    ended = time.perf_counter()
    durations = [b - a for a, b in itertools.pairwise(stamps)]
    # progress marks iteration ends: iteration 0 has no start mark (warm-up anyway; -1: unknown)
    ref = result.version.ref if result.version is not None else None
    emit("ours", opts, len(stamps), [-1.0, *durations], ended - started, load, ref)


# ----------------------------------------------------------------------------- orchestration
def side(opts: argparse.Namespace, which: str, method: str, ipc: int) -> dict[str, Any]:
    command = [
        sys.executable, str(Path(__file__).resolve()), "--side", which,
        "--method", method, "--ipc", str(ipc), "--iterations", str(opts.iterations),
        "--init", opts.init, "--batch-real", str(opts.batch_real), "--mirror", str(opts.mirror),
        "--registry", str(opts.registry), "--prefix", opts.prefix,
    ]  # fmt: skip
    if opts.loops:
        command += ["--loops", opts.loops]
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line[5:] for line in proc.stdout.splitlines() if line.startswith("JSON ")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"{which} {method} ipc {ipc} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    row: dict[str, Any] = json.loads(lines[-1])
    print(f"  {which:8s} {method} ipc {ipc}: {row['s_per_iteration']} s/it {row['per_iteration']}", flush=True)
    return row


def condensekit(*args: str) -> str:
    cli = str(Path(sys.executable).with_name("condensekit"))
    proc = subprocess.run([cli, *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"condensekit {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return proc.stdout


def evaluate(opts: argparse.Namespace, ref: str) -> dict[str, Any]:
    args = ["eval", ref, "--protocol", "dc", "--runs", str(opts.eval_runs), "--registry", str(opts.registry)]
    args += ["--device", "cpu", "--json"]
    if opts.eval_epochs:
        args += ["--epochs", str(opts.eval_epochs)]
    started = time.perf_counter()
    out = condensekit(*args)
    payload = json.loads(out[out.index("{") :])
    return {"ref": ref, "seconds": round(time.perf_counter() - started, 1), "result": payload}


def cell(rows: list[dict[str, Any]], which: str, method: str, ipc: int) -> list[dict[str, Any]]:
    return [r for r in rows if r["side"] == which and (r["method"], r["ipc"]) == (method, ipc)]


def orchestrate(opts: argparse.Namespace) -> None:
    out_dir = Path(opts.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    print(f"load {load_average()}; {opts.iterations} iterations per run, loops {opts.loops or 'get_loops'}", flush=True)
    for _ in range(opts.rounds):
        for method in opts.methods:
            for ipc in opts.ipcs:
                rows.append(side(opts, "official", method, ipc))
                rows.append(side(opts, "ours", method, ipc))
    table = []
    print("\nmethod ipc  official s/it  ours s/it  ratio  peak RSS MB official/ours")
    for method in opts.methods:
        for ipc in opts.ipcs:
            off, our = cell(rows, "official", method, ipc), cell(rows, "ours", method, ipc)
            t = {
                "method": method,
                "ipc": ipc,
                "official_s_it": statistics.median(r["s_per_iteration"] for r in off),
                "ours_s_it": statistics.median(r["s_per_iteration"] for r in our),
                "official_rss_mb": max(r["peak_rss_mb"] for r in off),
                "ours_rss_mb": max(r["peak_rss_mb"] for r in our),
            }
            t["ratio"] = round(t["ours_s_it"] / t["official_s_it"], 3)
            table.append(t)
            print(
                f"{method:6s} {ipc:3d}  {t['official_s_it']:13.2f}  {t['ours_s_it']:9.2f}  {t['ratio']:5.2f}  "
                f"{t['official_rss_mb']}/{t['ours_rss_mb']}"
            )
    evals = []
    if opts.eval_ipc:
        registry = ["--registry", str(opts.registry)]
        for method in opts.methods:
            official_set = cell(rows, "official", method, opts.eval_ipc)[-1]["set"]
            ours_set = cell(rows, "ours", method, opts.eval_ipc)[-1]["set"]
            name = f"{opts.prefix}-{method.lower()}-ipc{opts.eval_ipc}-official"
            condensekit("import", official_set, "--format", "dc", "--data", "cifar10", "--name", name, *registry)
            for ref in (name, ours_set):
                evals.append({"method": method, **evaluate(opts, ref)})
                print(f"  eval {ref}: {json.dumps(evals[-1]['result'])[:400]}", flush=True)
    record = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "load_after": load_average(),
        "args": vars(opts),
        "rows": rows,
        "table": table,
        "evals": evals,
    }
    line = json.dumps(record, default=str)
    print("JSON " + line)
    with open(out_dir / "results.jsonl", "a") as f:
        f.write(line + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--side", choices=("official", "ours"), help="one run in this process (internal)")
    parser.add_argument("--method", default="DC", choices=("DC", "DSA"))
    parser.add_argument("--methods", nargs="+", default=["DC"], choices=("DC", "DSA"))
    parser.add_argument("--ipc", type=int, default=10)
    parser.add_argument("--ipcs", nargs="+", type=int, default=[1, 10])
    parser.add_argument("--iterations", type=int, default=4, help="image-learning iterations per run (>= 2)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--init", default="real", choices=("real", "noise"))
    parser.add_argument("--batch-real", type=int, default=256)
    parser.add_argument("--loops", default="", help="OUTER,INNER for every IPC (reduced budget); default get_loops")
    parser.add_argument("--mirror", default=str(DEFAULT_MIRROR))
    parser.add_argument("--registry", default=os.environ.get("CONDENSEKIT_REGISTRY", str(BUILD / "registry")))
    parser.add_argument("--prefix", default="sbs")
    parser.add_argument("--out", default=str(BUILD / "results"))
    parser.add_argument("--eval-ipc", type=int, default=0, help="import and evaluate the sets of this IPC")
    parser.add_argument("--eval-runs", type=int, default=3)
    parser.add_argument("--eval-epochs", type=int, default=0, help="0: the protocol's default (300)")
    opts = parser.parse_args()
    if opts.iterations < 2:
        parser.error("--iterations must be >= 2 (iteration 0 is warm-up)")
    if opts.side == "official":
        official_once(opts)
    elif opts.side == "ours":
        ours_once(opts)
    else:
        orchestrate(opts)


if __name__ == "__main__":
    main()
