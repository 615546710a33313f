"""Consoles, progress and error rendering shared by the commands.

Data (tables, JSON) goes to stdout; progress, notices and errors go to stderr. Animations
only when stderr is a terminal; rich honours ``NO_COLOR`` and ``TERM=dumb``.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

stdout = Console(soft_wrap=True)
stderr = Console(stderr=True, soft_wrap=True)


def print_json(data: Any) -> None:
    """Plain JSON on stdout (no rich markup, so it is valid whatever the terminal)."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


#: Set by ``--quiet``: no notices and no progress on stderr (errors are still printed).
_quiet = False


def set_quiet(quiet: bool) -> None:
    global _quiet  # noqa: PLW0603 - one process, one command: its --quiet holds for all of it
    _quiet = quiet


def notify(message: str) -> None:
    if not _quiet:
        stderr.print(message, style="cyan", highlight=False)


def error_line(message: str) -> None:
    stderr.print(f"error: {message}", style="bold red", highlight=False, markup=False)


def _format_metrics(metrics: dict[str, float]) -> str:
    return " ".join(f"{k} {v:.4g}" for k, v in metrics.items())


class ProgressReporter:
    """A progress bar with metrics and ETA on a terminal; sparse plain lines elsewhere."""

    def __init__(self, progress: Progress | None, quiet: bool = False) -> None:
        self._progress = progress
        self._quiet = quiet
        self._tasks: dict[str, Any] = {}
        self._last_line = 0.0

    def task(self, key: str, description: str, total: int) -> None:
        if self._progress is not None:
            self._tasks[key] = self._progress.add_task(description, total=total, metrics="")
        else:
            self._tasks[key] = (description, total)

    def update(self, key: str, completed: int, **metrics: float) -> None:
        if self._progress is not None:
            self._progress.update(self._tasks[key], completed=completed, metrics=_format_metrics(metrics))
            return
        if self._quiet:
            return
        description, total = self._tasks[key]
        now = time.monotonic()
        # Without a terminal, a line every ~10% (or 30 s) keeps CI logs readable.
        step = max(1, total // 10)
        if completed == total or completed % step == 0 or now - self._last_line > 30:
            self._last_line = now
            stderr.print(f"{description}: {completed}/{total} {_format_metrics(metrics)}", highlight=False)


@contextmanager
def progress_reporter(enabled: bool = True, quiet: bool = False) -> Iterator[ProgressReporter]:
    """A bar on a terminal, sparse lines elsewhere; nothing at all when ``quiet`` (``--json``
    output for scripts) or not ``enabled`` (ranks other than 0)."""
    if quiet or _quiet or not enabled:
        yield ProgressReporter(None, quiet=True)
        return
    if not stderr.is_terminal:
        yield ProgressReporter(None)
        return
    progress = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[metrics]}"),
        console=stderr,
        transient=False,
    )
    with progress:
        yield ProgressReporter(progress)
