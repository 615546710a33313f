"""``condensekit runs``: list and remove the run folders that hold ``--resume`` checkpoints.

Thin wrappers over :class:`condensekit.registry.Registry` and
:mod:`condensekit.registry.runs`: parse options, call the API, render the result.
Errors are CondensekitError subclasses, turned into one red line by the app's handler.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from condensekit.cli import console
from condensekit.cli.registry import JsonOpt, RegistryOpt

if TYPE_CHECKING:
    from condensekit.registry import Registry
    from condensekit.registry.runs import RunInfo

KeysArg = Annotated[
    list[str] | None,
    typer.Argument(help="Run keys to remove (the first column of `condensekit runs`).", show_default=False),
]


def _registry(ctx: typer.Context, root: Path | None) -> Registry:
    """The registry of ``runs --registry X SUBCOMMAND`` too: an explicit group option beats
    the subcommand's default and ``$CONDENSEKIT_REGISTRY``, so ``rm`` never acts elsewhere."""
    from condensekit.registry import Registry  # keeps `condensekit --help` free of torch

    group = _group(ctx)
    if group.get("registry") is not None and not _given(ctx, "registry"):
        root = group["registry"]
    return Registry(root)


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether option ``name`` was on the command line (not a default or an env var)."""
    source = ctx.get_parameter_source(name)  # typer's own click: compare by name
    return source is not None and source.name == "COMMANDLINE"


def _group(ctx: typer.Context) -> dict[str, Any]:
    return ctx.obj if isinstance(ctx.obj, dict) else {}


def _say(message: str) -> None:
    console.stdout.print(message, highlight=False, markup=False)


def _cell(value: object) -> str:
    return "-" if value is None else str(value)


def _describe(run: RunInfo) -> str:
    from condensekit.registry.runs import format_size

    facts = (run.method, run.dataset, None if run.ipc is None else f"ipc{run.ipc}")
    what = " ".join(str(v) for v in facts if v is not None) or ("-" if run.described else "no run.json")
    return f"{run.key} ({what}, {format_size(run.size)})"


def _print_runs(reg: Registry, as_json: bool) -> None:
    from condensekit.registry.runs import format_age, format_size

    runs = reg.runs()
    if as_json:
        console.print_json([run.as_dict() for run in runs])
        return
    if not runs:
        _say(f"No run folders in {reg.root / 'runs'}")
        return
    table = Table(title=Text(f"runs in {reg.root / 'runs'}"), title_justify="left")
    for column in ("key", "method", "dataset", "ipc", "iteration", "age", "size"):
        table.add_column(column, justify="right" if column in ("ipc", "iteration", "age", "size") else "left")
    for run in runs:
        iteration = (
            run.iteration
            if run.iterations is None or not isinstance(run.iteration, int)
            else f"{run.iteration}/{run.iterations}"
        )
        cells = (
            run.key,
            _cell(run.method),
            _cell(run.dataset),
            _cell(run.ipc),
            _cell(iteration),
            format_age(run.age()),
            format_size(run.size),
        )
        table.add_row(*(Text(cell) for cell in cells))  # Text: values are data, never rich markup
    console.stdout.print(table)


def runs_callback(ctx: typer.Context, registry: RegistryOpt = None, as_json: JsonOpt = False) -> None:
    """List run folders (alone, like `runs list`) or remove them: checkpoints kept for --resume."""
    ctx.obj = {"registry": registry if _given(ctx, "registry") else None, "json": as_json}
    if ctx.invoked_subcommand is None:
        _print_runs(_registry(ctx, registry), as_json)


def list_command(ctx: typer.Context, registry: RegistryOpt = None, as_json: JsonOpt = False) -> None:
    """List run folders: distillations interrupted, abandoned or still running, with their last checkpoint."""
    _print_runs(_registry(ctx, registry), as_json or _group(ctx).get("json", False))


def rm_command(
    ctx: typer.Context,
    keys: KeysArg = None,
    older_than: Annotated[
        str | None,
        typer.Option("--older-than", metavar="AGE", help="Remove runs not written for AGE: 90s, 30m, 12h, 7d."),
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Remove every run folder.")] = False,
    registry: RegistryOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Remove run folders (their checkpoints can no longer be resumed) and print the space freed."""
    from condensekit.registry.runs import RemoveRuns, format_size

    reg = _registry(ctx, registry)
    removed = reg.remove_runs(RemoveRuns(keys=tuple(keys or ()), older_than=older_than, all=all_))
    if as_json or _group(ctx).get("json", False):
        console.print_json({"removed": [run.as_dict() for run in removed.runs], "freed": removed.freed})
        return
    for run in removed.runs:
        _say(f"Removed run {_describe(run)}")
    if not removed.runs:
        _say(f"No run folders to remove in {reg.root / 'runs'}")
        return
    _say(f"Freed {format_size(removed.freed)} ({len(removed.runs)} run folder(s))")


def register(app: typer.Typer) -> None:
    """Add the ``runs`` command group (``runs`` alone lists, like ``runs list``)."""
    sub = typer.Typer(
        name="runs",
        help="Run folders: checkpoints of unfinished distillations (--resume).",
        invoke_without_command=True,
        no_args_is_help=False,
    )
    sub.callback()(runs_callback)
    sub.command("list")(list_command)
    sub.command("rm")(rm_command)
    app.add_typer(sub, name="runs")
