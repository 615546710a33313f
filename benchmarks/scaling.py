"""Time per distillation iteration with 1 and 2 processes (class-parallel, torchrun + gloo).

    python benchmarks/scaling.py [--method dm] [--ipc 10] [--iterations 8] [--data cifar10]

Each configuration runs in fresh processes; the time per iteration is the wall time of the
run's iterations (from the stored wall time, the slowest rank) divided by their number,
after subtracting a 1-iteration run of the same configuration (start-up, data loading,
process-group set-up).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def run(nproc: int, method: str, data: str, ipc: int, iterations: int, threads: int, extra: list[str]) -> float:
    from condensekit.registry import Registry

    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "distill",
            method,
            "--data",
            data,
            "--ipc",
            str(ipc),
            "--iterations",
            str(iterations),
            "--registry",
            tmp,
            "--device",
            "cpu",
            "--checkpoint-every",
            "0",
            *extra,
        ]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        if nproc == 1:
            command = [sys.executable, "-m", "condensekit", *args]
        else:
            from condensekit.distributed import torchrun_command

            command = torchrun_command(nproc, args)
        out = subprocess.run(command, check=False, capture_output=True, text=True, env=env)
        if out.returncode != 0:
            raise SystemExit(out.stderr[-2000:])
        synset = Registry(Path(tmp)).load(Registry(Path(tmp)).list_sets()[0]["name"])
        return float(synset.metadata["wall_time_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="dm")
    parser.add_argument("--data", default="cifar10")
    parser.add_argument("--ipc", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=8)
    parser.add_argument("--extra", default="--batch-real 256", help="extra distill options")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    extra = args.extra.split()
    results = {}
    # One process may use every core; with two, each gets its share of the cores.
    for nproc in (1, 2):
        threads = max(1, cores // nproc)
        full = run(nproc, args.method, args.data, args.ipc, args.iterations, threads, extra)
        one = run(nproc, args.method, args.data, args.ipc, 1, threads, extra)
        per_iteration = (full - one) / (args.iterations - 1)
        results[nproc] = per_iteration
        print(
            f"{nproc} process(es) x {threads} thread(s): {per_iteration:.3f} s/iteration "
            f"({args.method}, {args.data}, ipc {args.ipc}, {extra})",
            flush=True,
        )
    print(f"speed-up with 2 processes: {results[1] / results[2]:.2f}x on {cores} cores")
    print(json.dumps({"method": args.method, "ipc": args.ipc, "s_per_iteration": results, "cores": cores}))


if __name__ == "__main__":
    main()
