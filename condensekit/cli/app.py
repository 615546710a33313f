"""The ``condensekit`` command: wiring of the command modules and error handling.

Every expected failure is a ``CondensekitError`` carrying its exit status; it is printed as
one red line on stderr (``--debug`` adds the traceback). Click usage errors exit 2 with one
line too, Ctrl-C exits 130.
"""

from __future__ import annotations

import logging
import sys
import traceback

import click
import typer

from condensekit import __version__
from condensekit.cli import console, state
from condensekit.cli.distill import DistillGroup
from condensekit.cli.doctor import doctor_command
from condensekit.cli.listing import list_command
from condensekit.errors import CondensekitError, ExitStatus

app = typer.Typer(
    name="condensekit",
    help="Dataset condensation from the command line: distill, evaluate and keep synthetic sets.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        console.stdout.print(f"condensekit {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def root(
    version: bool | None = typer.Option(
        None, "--version", callback=_version, is_eager=True, help="show the version and exit"
    ),
    debug: bool = typer.Option(False, "--debug", help="show tracebacks and debug logs"),
) -> None:
    state.debug = debug
    _configure_logging(debug)


def _configure_logging(debug: bool) -> None:
    from rich.logging import RichHandler

    handler = RichHandler(console=console.stderr, show_time=False, show_path=False, markup=False)
    logger = logging.getLogger("condensekit")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG if debug else logging.INFO)
    logger.propagate = False


app.command("list")(list_command)
app.command("doctor")(doctor_command)


def _register_command_modules() -> None:
    from condensekit.cli import evaluate, experts, registry, runs

    for module in (registry, evaluate, experts, runs):
        module.register(app)


_register_command_modules()


def build_cli() -> typer.core.TyperGroup:
    """The click group behind the command (Typer commands plus the lazy ``distill`` group)."""
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)  # an app with several commands is a group
    # DistillGroup is a click.Group; recent Typer builds its tree on a vendored copy of click
    # (typer._click) whose Command it is not a subclass of, and dispatches to it by duck typing.
    distill = DistillGroup(name="distill", help="Distill a synthetic set with a method (see condensekit list methods).")
    group.add_command(distill, "distill")  # type: ignore[arg-type]
    return group


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script; exits with an ``ExitStatus``."""
    sys.exit(run(argv))


def run(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    state.argv = args
    state.debug = "--debug" in args
    cli = build_cli()
    try:
        result = cli.main(args=args, prog_name="condensekit", standalone_mode=False)
        return int(result) if isinstance(result, int) else ExitStatus.SUCCESS
    except click.exceptions.Exit as exc:
        if exc.exit_code == ExitStatus.INTERRUPTED:  # Typer turns Ctrl-C into a silent Exit(130)
            console.error_line(
                "interrupted; nothing partial was recorded (rerun with --resume to continue a distillation)"
            )
        return exc.exit_code
    except (click.exceptions.Abort, typer.Abort):
        console.error_line("aborted")
        return ExitStatus.ERROR
    except KeyboardInterrupt:
        console.error_line("interrupted; nothing partial was recorded (rerun with --resume to continue a distillation)")
        return ExitStatus.INTERRUPTED
    except click.exceptions.UsageError as exc:
        hint = f" (see {exc.ctx.command_path} --help)" if exc.ctx is not None else ""
        console.error_line(f"{exc.format_message()}{hint}")
        return ExitStatus.USAGE
    except click.exceptions.ClickException as exc:
        console.error_line(exc.format_message())
        return exc.exit_code
    except CondensekitError as exc:
        if state.debug:
            traceback.print_exc()
        console.error_line(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return exc.exit_status
    except Exception as exc:  # noqa: BLE001 -- an unexpected failure: one line, traceback on request
        if state.debug:
            traceback.print_exc()
        first = str(exc).splitlines()[0] if str(exc) else ""
        console.error_line(f"unexpected {type(exc).__name__}: {first} (rerun with --debug for the traceback)")
        return ExitStatus.ERROR
