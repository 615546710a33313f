"""RDED side by side in one run: the official synthesis (``rded_official.py``, LINs-lab/RDED
as released) and condensekit's ``rded`` plugin, interleaved (official, ours, official, ours,
...), same teacher, same dataset, same IPC, each side in a fresh process.

    python benchmarks/official/rded_side_by_side.py --teacher REF --registry R [--rounds 2]
           [--ipc 10] [--out DIR] [--name-prefix sbs-rded] [--config KEY=VALUE ...]
           [--eval-runs 3 --eval-epochs 300]

Ours is ``condensekit.distill.distill("rded", "cifar10", ipc, teacher=REF, registry=R,
name=<prefix>-ours)`` called in-process (the library call ``condensekit distill rded`` makes);
its time is the whole call (plan, dataset load, teacher load, method, registry write), and the
method's own loop time (``metadata["wall_time_s"]``) is reported beside it. The official time is
the whole ``synthesize.main.main(args)`` call (teacher load, ImageFolder scan and PNG decoding,
crops, scoring, JPEG writing). ``--config`` passes method config overrides to ours (e.g. to
match the official script's factor 1 / num_crop 5 / mipc 300 if the plugin's defaults differ).

After the rounds the official set of the last round is imported with
``condensekit import OUT --format rded --data cifar10 --name <prefix>-official`` so that both
sets can be evaluated by ``condensekit eval REF --protocol kd --teacher REF``; with
``--eval-runs`` the two evaluations run here, one after the other.

Prints a table and one line ``JSON {...}`` with every figure; appends it to ``OUT/results.jsonl``.
Absolute times depend on the machine's load (the 1/5/15-min load average is recorded with each
timing): compare ratios taken in one run.
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
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
OFFICIAL = HERE / "rded_official.py"


def load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def condensekit_cli() -> str:
    return str(Path(sys.executable).with_name("condensekit"))


# ----------------------------------------------------------------------------- ours, one run
def ours_once(opts) -> None:
    """One distillation in this (fresh) process; prints one JSON line."""
    config = dict(parse_config(opts.config))
    import torch

    from condensekit.distill import distill  # imported before the clock, as the official side's modules

    load_before = load_average()
    started = time.perf_counter()

    result = distill(
        "rded",
        "cifar10",
        opts.ipc,
        registry=opts.registry,
        name=f"{opts.name_prefix}-ours",
        teacher=opts.teacher,
        data_root=opts.data_root,
        config=config or None,
        seed=opts.seed,
    )
    seconds = time.perf_counter() - started
    meta = result.synset.metadata
    images = int(result.synset.images.shape[0])
    print(
        json.dumps(
            {
                "side": "ours",
                "seconds": round(seconds, 2),
                "s_per_image": round(seconds / images, 4),
                "method_wall_s": meta.get("wall_time_s"),
                "method_s_per_image": round(float(meta["wall_time_s"]) / images, 4)
                if meta.get("wall_time_s") is not None
                else None,
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "ref": None if result.version is None else result.version.ref,
                "images": images,
                "config": meta.get("config"),
                "method_version": meta.get("method_version"),
                "git_commit": meta.get("git_commit"),
                "teacher": (meta.get("teacher") or {}).get("ref"),
                "torch_threads": torch.get_num_threads(),
                "load_before": load_before,
                "load_after": load_average(),
            }
        ),
        flush=True,
    )


def parse_config(items: list[str]) -> list[tuple[str, object]]:
    pairs = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            sys.exit(f"--config {item}: expected KEY=VALUE")
        try:
            parsed: object = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        pairs.append((key.replace("-", "_"), parsed))
    return pairs


# ----------------------------------------------------------------------------- driver
def last_json(stdout: str, side: str) -> dict | None:
    for line in reversed(stdout.splitlines()):
        if line.startswith("{") and f'"side": "{side}"' in line:
            return json.loads(line)
    return None


def run_side(cmd: list[str], side: str, log: Path) -> dict | None:
    with log.open("a") as err:
        err.write(f"\n$ {' '.join(cmd)}\n")
        err.flush()
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, text=True, check=False)
    found = last_json(proc.stdout, side)
    if proc.returncode != 0 or found is None:
        print(f"{side}: exit {proc.returncode}, see {log}", file=sys.stderr)
    return found


def evaluate(ref: str, opts, log: Path) -> dict | None:
    cmd = [condensekit_cli(), "eval", ref, "--protocol", "kd", "--teacher", opts.teacher]
    cmd += ["--runs", str(opts.eval_runs), "--registry", opts.registry, "--json", "--quiet"]
    cmd += ["--epochs", str(opts.eval_epochs)] if opts.eval_epochs else []
    load_before = load_average()
    started = time.perf_counter()
    with log.open("a") as err:
        err.write(f"\n$ {' '.join(cmd)}\n")
        err.flush()
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, text=True, check=False)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        print(f"eval {ref}: exit {proc.returncode}, see {log}", file=sys.stderr)
        return None
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        report = {"stdout": proc.stdout[-2000:]}
    return {
        "ref": ref,
        "seconds": round(seconds, 1),
        "load_before": load_before,
        "load_after": load_average(),
        "report": report,
    }


def accuracy_summary(report: dict) -> str:
    """mean ± std over runs per architecture, as ``condensekit eval --json`` reports them (its
    ``std_kind`` says which std: population over the runs)."""
    parts = []
    for row in report.get("results") or []:
        accs = row.get("accuracies") or []
        parts.append(
            f"{row.get('arch')}: {row.get('mean'):.2f} ± {row.get('std'):.2f} ({len(accs)} runs, "
            f"{report.get('std_kind', '?')} std; runs {accs})"
        )
    return "; ".join(parts) or "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", required=True, help="condensekit experts ref (cifar10 convnet-bn)")
    parser.add_argument("--registry", required=True)
    parser.add_argument("--ipc", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0, help="ours: distillation seed")
    parser.add_argument("--name-prefix", default="sbs-rded")
    parser.add_argument("--out", default=os.path.join(os.path.expanduser("~"), ".cache", "condensekit-official", "sbs"))
    parser.add_argument("--data-root", default=os.environ.get("CONDENSEKIT_DATA"))
    parser.add_argument("--config", action="append", default=[], metavar="KEY=VALUE", help="ours: config override")
    parser.add_argument("--no-import", action="store_true", help="do not import the official set")
    parser.add_argument("--eval-runs", type=int, default=0, help="evaluate both sets (kd) with this many runs")
    parser.add_argument("--eval-epochs", type=int, default=None)
    parser.add_argument("--ours-once", action="store_true", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.ours_once:
        ours_once(opts)
        return

    out = Path(opts.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    log = out / "side_by_side.log"
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    # set-up, untimed: official tree, PNG cache, teacher conversion (+ logit check)
    prep = subprocess.run(
        [sys.executable, str(OFFICIAL), "--teacher", opts.teacher, "--registry", opts.registry, "--prepare-only"],
        capture_output=True,
        text=True,
        check=False,
    )
    prepared = next((json.loads(x[9:]) for x in prep.stderr.splitlines() if x.startswith("PREPARED ")), None)
    if prep.returncode != 0 or prepared is None:
        sys.exit(f"official set-up failed (exit {prep.returncode}):\n{prep.stderr[-3000:]}")
    teacher = prepared["teacher"]
    print(
        f"teacher {teacher['ref']} -> official ConvNet: max |logit diff| {teacher['max_abs_logit_diff']:.2e}; "
        f"test acc {teacher['test_accuracy']} (ImageNet mean/std is what official RDED feeds it)"
    )

    rounds = []
    for r in range(1, opts.rounds + 1):
        off_dir = out / f"official-r{r}"
        official = run_side(
            [sys.executable, str(OFFICIAL), "--run-only", "--ipc", str(opts.ipc), "--out", str(off_dir)],
            "official",
            log,
        )
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--ours-once",
            "--teacher",
            opts.teacher,
            "--registry",
            opts.registry,
            "--ipc",
            str(opts.ipc),
            "--seed",
            str(opts.seed),
            "--name-prefix",
            opts.name_prefix,
        ]
        cmd += ["--data-root", opts.data_root] if opts.data_root else []
        for item in opts.config:
            cmd += ["--config", item]
        ours = run_side(cmd, "ours", log)
        rounds.append({"round": r, "official": official, "ours": ours})
        o = f"{official['s_per_image']:.4f}" if official else "failed"
        c = f"{ours['s_per_image']:.4f}" if ours else "failed"
        print(f"round {r}: official {o} s/image, ours {c} s/image", flush=True)

    def med(side: str, key: str) -> float | None:
        vals = [x[side][key] for x in rounds if x[side] and x[side].get(key) is not None]
        return round(statistics.median(vals), 4) if vals else None

    summary = {
        "official_s_per_image": med("official", "s_per_image"),
        "ours_s_per_image": med("ours", "s_per_image"),
        "ours_method_s_per_image": med("ours", "method_s_per_image"),
        "official_peak_rss_mb": med("official", "peak_rss_mb"),
        "ours_peak_rss_mb": med("ours", "peak_rss_mb"),
    }
    if summary["official_s_per_image"] and summary["ours_s_per_image"]:
        summary["ratio_ours_over_official"] = round(summary["ours_s_per_image"] / summary["official_s_per_image"], 3)

    print(f"\nRDED CIFAR-10 IPC {opts.ipc}, teacher {opts.teacher}, {opts.rounds} interleaved rounds, {stamp}")
    print(
        f"{'round':>5} | {'official s/img':>14} | {'ours s/img':>10} | {'ours loop s/img':>15} | "
        f"{'ratio':>6} | {'RSS MB off/ours':>15} | load (1/5/15, official; ours)"
    )
    for x in rounds:
        o, c = x["official"] or {}, x["ours"] or {}
        ratio = f"{c['s_per_image'] / o['s_per_image']:.3f}" if o and c else "-"
        print(
            f"{x['round']:>5} | {o.get('s_per_image', '-'):>14} | {c.get('s_per_image', '-'):>10} | "
            f"{c.get('method_s_per_image', '-'):>15} | {ratio:>6} | "
            f"{o.get('peak_rss_mb', '-')}/{c.get('peak_rss_mb', '-'):>6} | "
            f"{o.get('load_before')}; {c.get('load_before')}"
        )
    print(
        f"median | {summary['official_s_per_image']} | {summary['ours_s_per_image']} | "
        f"{summary['ours_method_s_per_image']} | {summary.get('ratio_ours_over_official', '-')}"
    )

    imported = None
    last_off = rounds[-1]["official"]
    if not opts.no_import and last_off:
        cmd = [
            condensekit_cli(),
            "import",
            last_off["out_dir"],
            "--format",
            "rded",
            "--data",
            "cifar10",
            "--registry",
            opts.registry,
            "--name",
            f"{opts.name_prefix}-official",
            "--json",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode == 0:
            imported = json.loads(proc.stdout)
            print(f"imported official set {last_off['out_dir']} as {imported['ref']}")
        else:
            print(f"import failed (exit {proc.returncode}): {proc.stderr.strip()[-1000:]}", file=sys.stderr)
    ours_ref = next((x["ours"]["ref"] for x in reversed(rounds) if x["ours"] and x["ours"].get("ref")), None)
    official_ref = imported["ref"] if imported else None
    epochs = f" --epochs {opts.eval_epochs}" if opts.eval_epochs else ""
    for ref in (official_ref, ours_ref):
        if ref:
            print(
                f"evaluate: condensekit eval {ref} --protocol kd --runs {opts.eval_runs or 3}{epochs} "
                f"--teacher {opts.teacher} --registry {opts.registry}"
            )

    evals = {}
    if opts.eval_runs:
        for side, ref in (("official", official_ref), ("ours", ours_ref)):
            if ref:
                evals[side] = evaluate(ref, opts, log)
                if evals[side]:
                    print(
                        f"kd eval {side} {ref}: {accuracy_summary(evals[side]['report'])}, "
                        f"{evals[side]['seconds']} s (load {evals[side]['load_before']})",
                        flush=True,
                    )

    record = {
        "when": stamp,
        "ipc": opts.ipc,
        "teacher": opts.teacher,
        "teacher_conversion": teacher,
        "official_commit": prepared["commit"],
        "config_overrides": dict(parse_config(opts.config)),
        "rounds": rounds,
        "summary": summary,
        "official_ref": official_ref,
        "ours_ref": ours_ref,
        "evals": evals,
    }
    with (out / "results.jsonl").open("a") as fh:
        fh.write(json.dumps(record) + "\n")
    print("JSON " + json.dumps(record))


if __name__ == "__main__":
    main()
