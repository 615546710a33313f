"""The ``condensekit`` command: wiring of the command modules and error handling.

Every expected failure is a ``CondensekitError`` carrying its exit status; it is printed as
one red line on stderr (``--debug`` adds the traceback). Click usage errors, from click or
from Typer's copy of it, exit 2 with click's usage text; Ctrl-C exits 130 with one line.
"""

from __future__ import annotations

import importlib
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
    from condensekit.cli import evaluate, experts, leaderboard, registry, runs

    for module in (registry, evaluate, leaderboard, experts, runs):
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
    """Run the command line ``argv`` and return its exit status (the table in docs/cli.md).

    Every way a command can end is mapped here, in one place: click's usage errors (exit 2,
    with click's "Usage:" line, "Try ... --help" hint and error line), Ctrl-C (exit 130, one
    line), a ``CondensekitError`` (its ``exit_status``, one line) and anything else (a bug:
    exit 1, one line; ``--debug`` adds the traceback)."""
    args = list(sys.argv[1:] if argv is None else argv)
    state.argv = args
    state.debug = "--debug" in args
    try:
        cli = build_cli()
        result = cli.main(args=args, prog_name="condensekit", standalone_mode=False)
        if result == ExitStatus.INTERRUPTED:  # Typer turns Ctrl-C into a silent Exit(130), returned
            console.error_line(NOTHING_KEPT)
        return int(result) if isinstance(result, int) else ExitStatus.SUCCESS
    except KeyboardInterrupt:
        console.error_line(NOTHING_KEPT)
        return ExitStatus.INTERRUPTED
    except _EXIT as exc:
        code = int(getattr(exc, "exit_code", ExitStatus.ERROR))
        if code == ExitStatus.INTERRUPTED:
            console.error_line(NOTHING_KEPT)
        return code
    except _ABORT as exc:
        # click turns Ctrl-C (and end of input) at a prompt into Abort.
        if isinstance(exc.__context__, KeyboardInterrupt):
            console.error_line(NOTHING_KEPT)
            return ExitStatus.INTERRUPTED
        console.error_line("aborted")
        return ExitStatus.ERROR
    except _USAGE_ERROR as exc:
        _show_usage_error(exc)
        return ExitStatus.USAGE
    except _CLICK_EXCEPTION as exc:
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        console.error_line(message)
        return int(getattr(exc, "exit_code", ExitStatus.ERROR))
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


#: The line of a Ctrl-C that no command explained (a distillation says what it kept itself).
NOTHING_KEPT = "interrupted; nothing partial was recorded"


def _click_classes(name: str) -> tuple[type[BaseException], ...]:
    """click's exception class ``name`` together with Typer's copy of it.

    Typer >= 0.29 builds its commands on a vendored click (``typer._click``): the usage
    errors of Typer commands are not ``click.exceptions.UsageError``, while the ``distill``
    group, built on click itself, raises click's. Typer's copies are found through its public
    exceptions (``typer.Exit``, ``typer.Abort``, ``typer.BadParameter`` and their bases) and,
    when it exists, the private ``typer._click.exceptions``; an older Typer on click itself
    simply adds nothing."""
    found: list[type[BaseException]] = [getattr(click.exceptions, name)]
    candidates: list[type] = [cls for public in (typer.Exit, typer.Abort, typer.BadParameter) for cls in public.__mro__]
    try:
        vendored = importlib.import_module("typer._click.exceptions")
    except ImportError:
        vendored = None
    if vendored is not None and isinstance(getattr(vendored, name, None), type):
        candidates.append(getattr(vendored, name))
    for cls in candidates:
        if cls.__name__ == name and issubclass(cls, BaseException) and cls not in found:
            found.append(cls)
    return tuple(found)


_EXIT = _click_classes("Exit")
_ABORT = _click_classes("Abort")
_USAGE_ERROR = _click_classes("UsageError")
_CLICK_EXCEPTION = _click_classes("ClickException")


def _show_usage_error(exc: BaseException) -> None:
    """Print a usage error as click does in standalone mode: the command's usage line, the
    "Try '... --help' for help." hint, then "Error: ..." (or the help, when a group was
    called without a command), all on stderr."""
    show = getattr(exc, "show", None)
    message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
    if not message.strip() and getattr(exc, "ctx", None) is not None:
        return  # a group called without a command: Typer printed its help while raising
    if callable(show):
        show(file=sys.stderr)
    else:  # not expected from any click: keep the one-line form
        console.error_line(str(exc))
