"""``condensekit eval`` and ``condensekit compare``: evaluate stored sets, compare results."""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from condensekit.cli import console
from condensekit.cli.completion import complete_archs, complete_sets
from condensekit.evaluation.protocols import PROTOCOLS
from condensekit.precision import PRECISIONS

if TYPE_CHECKING:
    from rich.console import JustifyMethod

    from condensekit.evaluation.scores import ScoresRequest

#: The registered protocol names as a choice (built from the registry, not listed here).
ProtocolName = Enum("ProtocolName", {name: name for name in PROTOCOLS}, type=str)  # type: ignore[misc]
#: The precisions of ``condensekit.runtime.PRECISIONS`` as a choice.
Precision = Enum("Precision", {name: name for name in PRECISIONS}, type=str)  # type: ignore[misc]


def eval_command(
    ref: str | None = typer.Argument(
        None, help="set reference NAME[:vN|:ALIAS] (default: the latest set)", autocompletion=complete_sets
    ),
    arch: str = typer.Option(
        "default",
        "--arch",
        help="comma-separated backbones, e.g. convnet,timm:resnet18 ('default': the dataset's default backbone)",
        autocompletion=complete_archs,
    ),
    runs: int = typer.Option(5, "--runs", help="networks trained per architecture"),
    protocol: ProtocolName | None = typer.Option(
        None,
        "--protocol",
        help="training recipe (default dc: DC/DSA/DM; idc: IDC/DANCE; kd: a teacher relabels every view, RDED)",
    ),
    epochs: int | None = typer.Option(None, "--epochs", help="training epochs (default: the protocol's)"),
    lr: float | None = typer.Option(None, "--lr", help="learning rate (default: the protocol's)"),
    batch: int | None = typer.Option(None, "--batch", help="batch size (default: the protocol's)"),
    dsa: bool | None = typer.Option(None, "--dsa/--no-dsa", help="DSA augmentation (default: the protocol's)"),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N"),
    seed: int = typer.Option(0, "--seed", help="evaluation seed (each run's seed derives from it)"),
    precision: Precision = typer.Option(
        "fp32", "--precision", help="autocast dtype of training and testing (fp16: CUDA only; see docs/evaluation.md)"
    ),
    sequential: bool = typer.Option(
        False, "--sequential", help="train the runs one after another (the reference path; default on the CPU)"
    ),
    max_parallel_runs: int | None = typer.Option(
        None,
        "--max-parallel-runs",
        min=1,
        help="train at most N runs together as one batched ensemble (default: as many as fit on a GPU; 1 on the CPU)",
    ),
    teacher: str | None = typer.Option(
        None,
        "--teacher",
        help="kd's teacher: experts NAME[:vN] (its first network), or timm:NAME=FILE "
        "(default: the teacher the set was made with, else the newest experts of its dataset and resolution)",
    ),
    teacher_weights: str | None = typer.Option(
        None, "--teacher-weights", metavar="FILE", help="weights of --teacher timm:NAME"
    ),
    scores: bool = typer.Option(
        False,
        "--scores",
        help="DD-Ranking's scores (HLR, IOR, LRS, ARS) in the kd family: runs the evaluations not stored yet, "
        "making the random baseline of the set's IPC if missing",
    ),
    full_acc: float | None = typer.Option(
        None,
        "--full-acc",
        help="with --scores: test accuracy (%) of --arch trained on the whole real training set "
        "(default: the teacher experts' recorded one, when they are that architecture)",
    ),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON on stdout"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress on stderr (errors only)"),
    registry: str | None = typer.Option(None, "--registry", envvar="CONDENSEKIT_REGISTRY", help="registry root folder"),
    data_root: str | None = typer.Option(None, "--data-root", envvar="CONDENSEKIT_DATA", help="dataset root folder"),
) -> None:
    """Train fresh networks on a stored set and test them on the real test split.

    The report is recorded in the registry only once every run has finished.
    """
    from condensekit.errors import UsageError
    from condensekit.evaluation import evaluate, get_protocol
    from condensekit.evaluation.teacher import recorded_teacher, teacher_for, teacher_spec
    from condensekit.registry import Registry
    from condensekit.runtime import precision_note, select_device

    console.set_quiet(quiet)
    teacher = teacher_spec(teacher, teacher_weights)
    note = precision_note(select_device(device), precision.value)
    if note is not None:
        console.notify(note)
    if scores:
        given = {
            "--protocol": protocol is not None and protocol.value != "kd",
            "--lr": lr is not None,
            "--batch": batch is not None,
            "--dsa/--no-dsa": dsa is not None,
        }
        extra = [flag for flag, value in given.items() if value]
        if extra:
            raise UsageError(f"--scores evaluates in the kd family with its own variants; drop {', '.join(extra)}")
        from condensekit.evaluation.scores import ScoresRequest

        request = ScoresRequest(
            ref=ref,
            arch=arch,
            runs=runs,
            seed=seed,
            epochs=epochs,
            device=device,
            precision=precision.value,
            teacher=teacher,
            full_acc=full_acc,
            max_parallel_runs=parallel_runs(sequential, max_parallel_runs),
            registry=registry,
            data_root=data_root,
        )
        _print_scores(request, as_json)
        return
    if full_acc is not None:
        raise UsageError("--full-acc is an input of --scores; add --scores or drop it")
    chosen = get_protocol(protocol.value if protocol is not None else "dc")
    with Registry(registry) as reg:
        version = reg.resolve(ref)
        synset = reg.load(version.ref)
        if teacher is not None and not chosen.relabels:
            raise UsageError(f"--teacher is for protocols whose teacher relabels every view (kd), not {chosen.name}")
        kd_teacher = teacher_for(teacher, synset, reg) if chosen.relabels else None
    if kd_teacher is not None and teacher is None:
        why = "the set's own" if recorded_teacher(synset.metadata) else "the newest experts of the set's dataset"
        console.notify(f"teacher: {kd_teacher.source}, {why} (--teacher REF)")
    with console.progress_reporter(quiet=as_json) as reporter:
        started = False

        def on_progress(event: Any) -> None:
            nonlocal started
            if not started:  # one bar for every architecture, run and epoch
                started = True
                reporter.task("eval", f"{version.ref} runs x epochs", event.total)
            if event.phase == "train":
                reporter.update("eval", event.done)

        report = evaluate(
            synset,
            archs=arch,
            runs=runs,
            protocol=chosen,
            epochs=epochs,
            lr=lr,
            batch=batch,
            dsa=dsa,
            device=device,
            seed=seed,
            data_root=data_root,
            progress=on_progress,
            precision=precision.value,
            max_parallel_runs=parallel_runs(sequential, max_parallel_runs),
            teacher=kd_teacher,
        )
    result = report.as_dict()
    with Registry(registry) as reg:  # only now: an interrupted evaluation records nothing
        eval_id = reg.record_eval(version.ref, result)
    if as_json:
        console.print_json({"ref": version.ref, "eval_id": eval_id, **result})
        return
    p = report.params
    title = (
        f"{version.ref}: protocol {report.protocol} ({p['epochs']} epochs, batch {p['batch']}, "
        f"lr {p['lr']:g}, dsa {'on' if p['dsa'] else 'off'}) on {p['dataset']} test ({p['test_images']} images)"
    )
    if p.get("relabel") == "teacher":
        title += f"; teacher {p['teacher']['source']} relabels every view"
    elif p.get("relabel"):
        title += f"; every view relabelled by {p['relabel']} (teacher {p['teacher']['source']})"
    table = Table(title=title, title_justify="left")
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("arch", "left"),
        ("runs", "right"),
        ("accuracy (%)", "right"),
        ("wall time", "right"),
    )
    for column, justify in columns:
        table.add_column(column, justify=justify)
    for r in report.rows():  # one row per architecture, then their mean (>= 2)
        table.add_row(r.arch, str(len(r.accuracies)), f"{r.mean:.2f} ± {r.std:.2f}", f"{r.wall_time_s:.1f} s")
    console.stdout.print(table)


def _print_scores(request: ScoresRequest, as_json: bool) -> None:
    """``eval --scores``: compute DD-Ranking's scores and print them, as tables or JSON."""
    from condensekit.evaluation.scores import compute_scores

    with console.progress_reporter(quiet=as_json) as reporter:
        bars: set[str] = set()

        def on_progress(name: str, event: Any) -> None:
            if name not in bars:
                bars.add(name)
                reporter.task(name, f"{name} runs x epochs", event.total)
            if event.phase == "train":
                reporter.update(name, event.done)

        result = compute_scores(request, notify=console.notify, progress=on_progress)
    if as_json:
        console.print_json(result.as_dict())
        return
    record = result.record
    p = record["params"]
    title = (
        f"{result.ref}: DD-Ranking scores in the kd family ({p['arch']}, {p['runs']} runs x {p['epochs']} epochs; "
        f"teacher {p['teacher']['source']}; random baseline {p['random_ref']}; full-set accuracy "
        f"{p['full_acc']:.2f} % from {p['full_acc_source']})"
    )
    table = Table(title=title, title_justify="left")
    columns: tuple[tuple[str, JustifyMethod], ...] = (("score", "left"), ("mean ± std", "right"), ("unit", "left"))
    for column, justify in columns:
        table.add_column(column, justify=justify)
    for name, unit in (
        ("hard_label_recovery", "points"),
        ("improvement_over_random", "points"),
        ("improvement_over_random_no_aug", "points"),
        ("label_robust_score", "[0, 1]"),
        ("augmentation_robust_score", "[0, 1]"),
    ):
        score = record["scores"][name]
        digits = 2 if unit == "points" else 4
        table.add_row(name.replace("_", " "), f"{score['mean']:.{digits}f} ± {score['std']:.{digits}f}", unit)
    console.stdout.print(table)
    inputs = Table(title="from these evaluations (accuracy %)", title_justify="left")
    for column in ("evaluation", "ref", "protocol", "accuracy", "eval id", "run now"):
        inputs.add_column(column, overflow="fold")
    for name, ev in record["evaluations"].items():
        ran = "yes" if name in result.ran else "no (stored)"
        inputs.add_row(name, ev["ref"], ev["protocol"], f"{ev['mean']:.2f}", str(ev["eval_id"]), ran)
    console.stdout.print(inputs)


def compare_command(
    refs: list[str] = typer.Argument(..., help="set references to compare", autocompletion=complete_sets),
    protocol: str | None = typer.Option(
        None,
        "--protocol",
        help="only this protocol, as labelled: dc (the preset alone), dc:epochs=20, ...",
    ),
    mixed: bool = typer.Option(
        False, "--mixed", help="show sets of different datasets, resolutions, IPCs or protocols side by side anyway"
    ),
    as_json: bool = typer.Option(False, "--json", help="print JSON on stdout"),
    registry: str | None = typer.Option(None, "--registry", envvar="CONDENSEKIT_REGISTRY", help="registry root folder"),
) -> None:
    """Side-by-side accuracies of sets from their stored evaluations, one column per protocol and architecture.

    A protocol run with overridden parameters (eval --epochs ...) is its own protocol, e.g. dc:epochs=20.

    Each cell is the evaluation with the most runs of that architecture, then the newest.

    Sets whose datasets, resolutions, IPCs or protocols differ are refused unless --mixed.
    """
    from condensekit.leaderboard import comparison, mean_std
    from condensekit.registry import Registry

    with Registry(registry) as reg:
        rows = comparison([reg.show(ref) for ref in refs], protocol=protocol, mixed=mixed)
    if as_json:
        console.print_json(rows)
        return
    columns: list[tuple[str, str]] = []  # (protocol, arch), in order of appearance
    for row in rows:
        for label, archs in row["scores"].items():
            columns += [(label, a) for a in archs if (label, a) not in columns]
    title = "accuracy (%), mean ± std over runs"
    table = Table(title=title, title_justify="left")
    table.add_column("ref", overflow="fold", min_width=min(40, max(len(row["ref"]) for row in rows)))
    for name in ("method", "dataset", "ipc"):
        table.add_column(name)
    for label, a in columns:
        table.add_column(f"{a} ({label})", justify="right")
    for row in rows:
        cells = []
        for label, a in columns:
            score = row["scores"].get(label, {}).get(a)
            cells.append("-" if score is None else mean_std(score["mean"], score["std"]))
        table.add_row(row["ref"], str(row["method"] or "-"), str(row["dataset"] or "-"), str(row["ipc"] or "-"), *cells)
    console.stdout.print(table)


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)
    app.command("compare")(compare_command)


def parallel_runs(sequential: bool, max_parallel_runs: int | None) -> int | None:
    """``--sequential`` is ``--max-parallel-runs 1``; None leaves the choice to the library."""
    return 1 if sequential else max_parallel_runs
