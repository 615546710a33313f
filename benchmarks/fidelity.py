"""Distill with several methods at one budget and evaluate all sets with one protocol.

    python benchmarks/fidelity.py --methods random,dm,datadam --data cifar10 --ipc 10 \
        --iterations 200 --epochs 300 --runs 3 [--set datadam.preset=paper] [--registry DIR]

Prints, per method: the distillation wall time and the test accuracy (mean ± std over runs)
of ConvNets trained on the set (the `dc` protocol with the given epochs), and a JSON summary.
Sets and results are kept in the registry (default: a folder under benchmarks/out/).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch


def parse_sets(items: list[str]) -> dict[str, dict]:
    """``method.key=value`` options (values parsed as JSON when they parse)."""
    out: dict[str, dict] = {}
    for item in items:
        target, value = item.split("=", 1)
        method, key = target.split(".", 1)
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        out.setdefault(method, {})[key] = parsed
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="random,dm")
    parser.add_argument("--data", default="cifar10")
    parser.add_argument("--ipc", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--protocol", default="dc")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], help="METHOD.KEY=VALUE config override")
    parser.add_argument("--registry", default=str(Path(__file__).parent / "out" / "registry"))
    args = parser.parse_args()

    from condensekit.distill import distill
    from condensekit.evaluation import evaluate
    from condensekit.registry import Registry

    registry = Registry(args.registry)
    overrides = parse_sets(args.set)
    summary = []
    print(
        f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, cuda {torch.cuda.is_available()}",
        flush=True,
    )
    for method in args.methods.split(","):
        config = dict(overrides.get(method, {}))
        preset = config.pop("preset", None)
        started = time.perf_counter()
        result = distill(
            method,
            args.data,
            args.ipc,
            iterations=args.iterations,
            seed=args.seed,
            preset=preset,
            config=config,
            registry=registry,
            name=f"bench-{method}-{args.data}-ipc{args.ipc}",
            checkpoint_every=0,
        )
        distill_s = time.perf_counter() - started
        report = evaluate(result.synset, runs=args.runs, epochs=args.epochs, protocol=args.protocol, seed=args.seed)
        registry.record_eval(result.version.ref, report.as_dict())
        arch = report.results[0]
        row = {
            "method": method,
            "ref": result.version.ref,
            "preset": result.synset.metadata.get("preset"),
            "iterations": args.iterations,
            "distill_s": round(distill_s, 1),
            "arch": arch.arch,
            "accuracies": arch.accuracies,
            "mean": arch.mean,
            "std": arch.std,
            "eval_s": round(arch.wall_time_s, 1),
            "config": result.synset.metadata["config"],
        }
        summary.append(row)
        print(
            f"{method:8s} {args.data} ipc {args.ipc}: {arch.mean:.2f} ± {arch.std:.2f} % "
            f"({args.runs} runs x {args.epochs} epochs, {arch.arch}); distill {distill_s:.0f} s "
            f"for {args.iterations} iterations; eval {arch.wall_time_s:.0f} s",
            flush=True,
        )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
