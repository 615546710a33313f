"""``condensekit leaderboard``: every stored evaluation, grouped, ranked, and optionally plotted.

A thin wrapper over :mod:`condensekit.leaderboard`: it builds the query, reads the registry
and renders the entries (the rich table here, csv/md/json from the library).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from enum import Enum
from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from condensekit.cli import console
from condensekit.errors import UsageError
from condensekit.leaderboard import (
    FORMATS,
    PICK_RULE,
    Entry,
    LeaderboardQuery,
    by_group,
    check_plot_target,
    leaderboard,
)
from condensekit.leaderboard import plot as draw
from condensekit.paths import REGISTRY_ENV

#: The command's help: what is grouped, and which evaluation a row shows.
HELP = "\n\n".join(
    [
        "Every stored evaluation, grouped by dataset (at one resolution) x IPC x protocol x architectures.",
        "One row per set version and group, ranked by mean accuracy (± the std over runs).",
        "A protocol run with overridden parameters (eval --epochs ...) is a group of its own, e.g. dc:epochs=20.",
        f"A set version with several evaluations in one group shows {PICK_RULE}.",
        "Budget: the set's distillation iterations and wall time (from its metadata); eval: the evaluation's.",
    ]
)
#: The rich table: the default format, for people.
TABLE = "table"
#: ``--format`` choices: the table, then the library's text formats.
FormatName = Enum("FormatName", {name: name for name in (TABLE, *FORMATS)}, type=str)  # type: ignore[misc]


def leaderboard_command(
    fmt: FormatName = typer.Option(TABLE, "--format", "-f", help="table (default), csv, md (GitHub tables) or json"),
    as_json: bool = typer.Option(False, "--json", help="the same as --format json"),
    data: str | None = typer.Option(None, "--data", help="only this dataset"),
    ipc: int | None = typer.Option(None, "--ipc", help="only this many images per class"),
    protocol: str | None = typer.Option(
        None,
        "--protocol",
        help="only this protocol: a name (dc: the preset and its overrides) or a label (dc:epochs=20)",
    ),
    method: str | None = typer.Option(None, "--method", help="only sets made by this method"),
    plot: Path | None = typer.Option(
        None,
        "--plot",
        metavar="FILE.png",
        help="also draw accuracy vs IPC and vs distillation wall time (matplotlib: pip install 'condensekit\\[plot]')",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no notices on stderr (errors only)"),
    registry: Path | None = typer.Option(
        None, "--registry", envvar=REGISTRY_ENV, show_envvar=True, help="Registry root (default: ./registry)."
    ),
) -> None:
    """The leaderboard of the registry (help: :data:`HELP`)."""
    from condensekit.registry import Registry  # imports torch: not for --help

    if as_json and fmt.value not in (TABLE, "json"):
        raise UsageError(f"--json and --format {fmt.value} ask for two formats; give one of them")
    chosen = "json" if as_json else fmt.value
    console.set_quiet(quiet)
    query = LeaderboardQuery(dataset=data, ipc=ipc, protocol=protocol, method=method)
    query.check()
    if plot is not None:
        check_plot_target(plot)  # matplotlib installed, a format it writes, an existing folder
    with Registry(registry) as reg:
        stored = leaderboard(reg)
    board = query.apply(stored)
    if not board:
        console.notify(query.unmatched(stored) if stored else "no stored evaluation in this registry")
    if plot is not None:
        console.notify(f"plot written to {draw(board, plot)}")
    renderers: dict[str, Callable[[Sequence[Entry]], None]] = {
        TABLE: _print_table,
        **{name: _writer(render) for name, render in FORMATS.items()},
    }
    renderers[chosen](board)


def _writer(render: Callable[[Sequence[Entry]], str]) -> Callable[[Sequence[Entry]], None]:
    def write(board: Sequence[Entry]) -> None:
        sys.stdout.write(render(board))
        sys.stdout.flush()

    return write


def _print_table(board: Sequence[Entry]) -> None:
    for group, rows in by_group(board).items():
        table = Table(title=Text(group.label), title_justify="left")
        cells = [entry.cells() for entry in rows]
        for column in cells[0]:
            if column in _NUMERIC:
                table.add_column(column, justify="right", no_wrap=True)
            else:  # a reference is never cut short: it folds
                table.add_column(column, overflow="fold", min_width=min(40, max(len(c[column]) for c in cells)))
        for row in cells:
            table.add_row(*(Text(cell) for cell in row.values()))
        console.stdout.print(table)


_NUMERIC = frozenset({"#", "accuracy (%)", "runs", "budget", "eval"})


def register(app: typer.Typer) -> None:
    app.command("leaderboard", help=HELP)(leaderboard_command)
