"""Seconds per distillation iteration, peak memory, achieved GFLOP/s and the distance to the
fp32 FLOP floor for dm, datadam and dance on CIFAR-10 shapes (32 px, ConvNet-3) at IPC
1/10/50, each in a fresh process.

    python benchmarks/speed.py [--methods dm,datadam,dance] [--ipcs 1,10,50] [--iterations 6]

Settings are the official ones: real batch 256/class (DM), 64/class (DataDAM), 128/class with
factor 2 (DANCE). The first iteration is warm-up; the median of the rest is reported.
Peak memory is the process's peak RSS on CPU (it includes the dataset, ~150 MB for CIFAR-10)
and torch's peak allocation on CUDA. The floor is an iteration's FLOPs (counted by
``torch.utils.flop_counter``) over the peak fp32 rate this machine sustains (``flops.py``:
a large matmul and ConvNet-3's main convolution, timed once in this process before the
methods run); ``x floor`` is the measured time over it (1.0 would be every FLOP at peak).
Speed claims against the official code use ``shared/anchors/side_by_side.sh``, which runs
``--one`` here next to the released loops.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

OFFICIAL_SETTINGS = {
    "dm": {"batch_real": 256},
    "datadam": {"batch_real": 64},
    "dance": {"batch_real": 128, "factor": 2, "num_experts": 2},
}


def _fake_experts(ctx, num: int = 2):
    """Experts with real shapes; their weights do not change the cost of an iteration."""
    from condensekit.experts import Experts

    states = [ctx.make_backbone(1000 + k).state_dict() for k in range(2 * num)]
    cpu = [{k: v.detach().cpu() for k, v in s.items()} for s in states]
    return Experts(
        ctx.dataset.name, ctx.backbone_name, ctx.dataset.resolution, cpu[:num], cpu[num:], metadata={"ref": "benchmark"}
    )


def measure(method: str, ipc: int, iterations: int, config: dict, compile: bool) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from condensekit import plugins, runtime
    from condensekit.testing import make_context

    runtime.reuse_freed_memory()  # as distill/eval/experts do (CONDENSEKIT_MALLOC=system: off)

    stamps: list[float] = []
    cls, _ = plugins.load_method(method)
    from condensekit.data import dataset_info

    instance = cls.configured(dataset_info("cifar10"), ipc, **config)
    backbone = instance.preferred_backbone(dataset_info("cifar10"))  # e.g. DataDAM official: convnet-bn
    ctx = make_context(
        "cifar10",
        ipc=ipc,
        iterations=iterations,
        device="cuda" if torch.cuda.is_available() else "cpu",
        backbone=backbone,
        progress=lambda iteration, **metrics: stamps.append(time.perf_counter()),
        compile=compile,
    )
    request = instance.experts_request(ctx.dataset)
    if request is not None:
        ctx.experts = _fake_experts(ctx, request.num or 5)
    start = time.perf_counter()
    instance.distill(ctx)
    times = [b - a for a, b in zip([start, *stamps[:-1]], stamps, strict=True)][1:]
    # One more iteration under the FLOP counter (it slows execution, so it is not timed).
    ctx.iterations = 1
    from condensekit.distill import backbone_factory

    ctx.make_backbone = backbone_factory(ctx.backbone_name, ctx.dataset, ctx.device, compile=False)
    counter = FlopCounterMode(display=False)
    with counter:
        instance.distill(ctx)
    per_iteration = statistics.median(times)
    flops = counter.get_total_flops()
    if torch.cuda.is_available():
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "method": method,
        "ipc": ipc,
        "s_per_iteration": per_iteration,
        "iterations_timed": len(times),
        "peak_mb": peak,
        "gflop_per_iteration": flops / 1e9,
        "gflops": flops / 1e9 / per_iteration,
        "threads": torch.get_num_threads(),
        "config": config,
        "compile": compile,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="dm,datadam,dance")
    parser.add_argument("--ipcs", default="1,10,50")
    parser.add_argument("--iterations", type=int, default=6)
    parser.add_argument("--set", action="append", default=[], help="extra config KEY=VALUE for every method")
    parser.add_argument("--compile", action="store_true", help="torch.compile the backbone (as distill --compile)")
    parser.add_argument("--one", nargs=2, metavar=("METHOD", "IPC"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    extra = {}
    for item in args.set:
        key, value = item.split("=", 1)
        extra[key] = json.loads(value) if value[:1] in "0123456789-[{tf" and value not in ("t",) else value
    if args.one:
        method, ipc = args.one[0], int(args.one[1])
        print(
            json.dumps(
                measure(method, ipc, args.iterations, {**OFFICIAL_SETTINGS.get(method, {}), **extra}, args.compile)
            )
        )
        return
    import torch
    from flops import peak_gflops  # benchmarks/flops.py: this script's folder is on sys.path

    from condensekit.runtime import select_device

    device = select_device("auto")
    peak = peak_gflops(device)
    print(f"fp32 peak {peak:.0f} GFLOP/s on {device}, {torch.get_num_threads()} threads", flush=True)
    rows = []
    for method in args.methods.split(","):
        for ipc in [int(i) for i in args.ipcs.split(",")]:
            command = [sys.executable, __file__, "--one", method, str(ipc), "--iterations", str(args.iterations)]
            command += [f"--set={s}" for s in args.set] + (["--compile"] if args.compile else [])
            out = subprocess.run(command, check=False, capture_output=True, text=True, env=os.environ)
            if out.returncode != 0:
                print(f"{method} ipc {ipc}: failed: {out.stderr.strip().splitlines()[-1]}", file=sys.stderr)
                continue
            row = json.loads(out.stdout.strip().splitlines()[-1])
            row["peak_gflops"] = peak
            row["floor_s"] = row["gflop_per_iteration"] / peak
            row["x_floor"] = row["s_per_iteration"] / row["floor_s"]
            rows.append(row)
            print(
                f"{row['method']:8s} ipc {row['ipc']:3d}  {row['s_per_iteration']:7.3f} s/it  "
                f"peak {row['peak_mb']:7.0f} MB  {row['gflop_per_iteration']:7.1f} GFLOP/it  "
                f"{row['gflops']:6.1f} GFLOP/s  floor {row['floor_s']:6.3f} s ({row['x_floor']:4.2f}x)  "
                f"(threads {row['threads']}, compile {row['compile']}, {row['config']})",
                flush=True,
            )
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
