"""Exit statuses and the exception hierarchy.

Every error a user can cause or meet is a :class:`CondensekitError` subclass carrying the
exit status the CLI returns for it, so the CLI layer maps exceptions to exit codes in one
place (modelled on httpie's ``ExitStatus``). Messages are one line: the problem and the fix.
"""

from __future__ import annotations

import enum


class ExitStatus(enum.IntEnum):
    """Process exit codes of the ``condensekit`` command (the table in docs/cli.md).

    One code per kind of failure, so a script can tell a typo in a dataset name from a
    backbone that cannot run from a corrupted registry without parsing the message."""

    SUCCESS = 0
    ERROR = 1  # runtime failure (a bug, or an error no other status describes)
    USAGE = 2  # bad command line: unknown option, bad value, missing argument
    PLUGIN = 3  # unknown, broken or incompatible plugin
    DATASET = 4  # dataset cannot be resolved or loaded
    REGISTRY = 5  # unknown reference, invalid or corrupted registry content
    BACKBONE = 6  # backbone unknown, or cannot provide what the method needs
    INTERRUPTED = 130  # Ctrl-C


class CondensekitError(Exception):
    """Base class: an expected failure with a one-line, user-facing message."""

    exit_status: ExitStatus = ExitStatus.ERROR


class UsageError(CondensekitError):
    """Bad input from the user (a value out of range, conflicting options)."""

    exit_status = ExitStatus.USAGE


class PluginError(CondensekitError):
    """A plugin is unknown, fails to import, or implements an incompatible API."""

    exit_status = ExitStatus.PLUGIN


class DatasetError(CondensekitError):
    """A dataset is unknown, missing on disk, or cannot be decoded."""

    exit_status = ExitStatus.DATASET


class BackboneError(CondensekitError):
    """A backbone is unknown or cannot provide what a method needs."""

    exit_status = ExitStatus.BACKBONE


class RegistryError(CondensekitError):
    """A registry reference is unknown, or registry content is invalid or corrupted."""

    exit_status = ExitStatus.REGISTRY


class InterruptError(CondensekitError):
    """Ctrl-C stopped the work; the message says what was kept and how to continue.

    Raised instead of a bare ``KeyboardInterrupt`` where the code knows more than "nothing
    partial was recorded" (a distillation knows its last checkpoint and its ``--resume``
    command), so a user or a script learns whether the time spent is lost."""

    exit_status = ExitStatus.INTERRUPTED
