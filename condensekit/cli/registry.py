"""Registry commands: show, export, import, rm, tag and ``registry check``.

Thin wrappers over :class:`condensekit.registry.Registry` and
:mod:`condensekit.registry.exchange`: parse options, call the API, render the result.
Errors are CondensekitError subclasses, turned into one red line by the app's handler.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from condensekit.cli import console
from condensekit.errors import CondensekitError, RegistryError, UsageError
from condensekit.paths import REGISTRY_ENV

if TYPE_CHECKING:
    from collections.abc import Callable

    from condensekit.registry import Registry
    from condensekit.synthetic import SyntheticSet

RegistryOpt = Annotated[
    Path | None,
    typer.Option("--registry", envvar=REGISTRY_ENV, show_envvar=True, help="Registry root (default: ./registry)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON to stdout.")]
RefArg = Annotated[str, typer.Argument(help="A set: NAME, NAME:vN, NAME:latest or NAME:ALIAS.")]


def _registry(root: Path | None) -> Registry:
    from condensekit.registry import Registry  # keeps `condensekit --help` free of torch

    return Registry(root)


def _say(message: str) -> None:
    console.stdout.print(message, highlight=False, markup=False)


def show(ref: RefArg, registry: RegistryOpt = None, as_json: JsonOpt = False) -> None:
    """Show a set version: provenance, metadata and evaluation results."""
    info = _registry(registry).show(ref)
    if as_json:
        console.print_json(info)
        return
    meta = info["metadata"]
    table = Table(title=info["ref"], show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    facts = {
        "aliases": ", ".join(info["aliases"]) or "-",
        "images": info["size"],
        "registered": info["created"],
        "path": info["path"],
        "sha256": info["sha256"],
    }
    for key, value in {**facts, **meta}.items():
        if key == "class_names":
            shown = f"{len(value)}: " + ", ".join(value[:10]) + (", ..." if len(value) > 10 else "")
        elif isinstance(value, (dict, list)):
            shown = json.dumps(value)
        else:
            shown = str(value)
        table.add_row(key, Text(shown))  # Text: values are data, never rich markup
    console.stdout.print(table)
    if info["evals"]:
        console.stdout.print(_evals_table(info["evals"]))


def _evals_table(evals: list[dict[str, Any]]) -> Table:
    table = Table(title="evaluations", title_justify="left")
    for column in ("id", "protocol", "arch", "accuracy (%)", "created"):
        table.add_column(column)
    for ev in evals:
        for arch, score in ev["scores"].items():
            std = "" if score["std"] is None else f" ± {score['std']:.2f}"
            table.add_row(str(ev["id"]), str(ev["protocol"]), arch, f"{score['mean']:.2f}{std}", ev["created"])
    return table


def export(
    ref: RefArg,
    png: Annotated[Path | None, typer.Option("--png", help="Write an image grid (one row per class).")] = None,
    pt: Annotated[Path | None, typer.Option("--pt", help="Write images.pt + labels.pt to this folder.")] = None,
    folder: Annotated[Path | None, typer.Option("--folder", help="Write an ImageFolder of PNGs.")] = None,
    registry: RegistryOpt = None,
) -> None:
    """Export a set as a PNG grid, DC/MTT-style .pt tensors, or an ImageFolder."""
    from condensekit.registry import exchange

    targets = {"png": png, "pt": pt, "folder": folder}
    chosen = [(kind, path) for kind, path in targets.items() if path is not None]
    if len(chosen) != 1:
        raise UsageError("export needs exactly one of --png FILE, --pt DIR or --folder DIR")
    kind, path = chosen[0]
    synset = _registry(registry).load(ref)
    writers: dict[str, Callable[[SyntheticSet, Path], Path]] = {
        "png": exchange.export_png,
        "pt": exchange.export_pt,
        "folder": exchange.export_folder,
    }
    writer = writers[kind]
    written = writer(synset, path)
    _say(f"Exported {synset.metadata['ref']} to {written}")


def import_(
    path: Annotated[Path, typer.Argument(help="A condensekit .h5 file, or a folder/images.pt with labels.pt.")],
    name: Annotated[str, typer.Option("--name", help="Name to store the set under.")],
    data: Annotated[str | None, typer.Option("--data", help="Dataset of .pt tensors (e.g. cifar10).")] = None,
    registry: RegistryOpt = None,
) -> None:
    """Import a set from a condensekit HDF5 file or an images.pt/labels.pt pair."""
    from condensekit.registry.exchange import import_set

    saved = import_set(path, name, _registry(registry), dataset=data)
    _say(f"Imported {path} as {saved.ref}")


def rm(
    ref: RefArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    registry: RegistryOpt = None,
) -> None:
    """Remove one set version (its file, aliases and evaluations)."""
    reg = _registry(registry)
    target = reg.resolve(ref)
    if not yes:
        try:
            confirmed = typer.confirm(f"Remove {target.ref} ({target.path})?", default=False)
        except typer.Abort:  # no answer: end of input or Ctrl-C
            confirmed = False
        if not confirmed:
            raise CondensekitError(f"{target.ref} was not removed (answer y, or pass --yes)")
    reg.remove(target.ref)
    _say(f"Removed {target.ref}")


def tag(
    ref: RefArg,
    alias: Annotated[str, typer.Argument(help="Alias to point at this version (moved if it exists).")],
    registry: RegistryOpt = None,
) -> None:
    """Point ALIAS of a set at the version REF resolves to."""
    target = _registry(registry).tag(ref, alias)
    _say(f"{target.name}:{alias} -> {target.ref}")


def check(
    fix: Annotated[
        bool, typer.Option("--fix", help="Remove leftover and orphan files, dangling rows and unreadable checkpoints.")
    ] = False,
    registry: RegistryOpt = None,
) -> None:
    """Verify the registry: leftover writes, orphan files, missing files, sha256 of every file, run folders."""
    reg = _registry(registry)
    problems = reg.check(fix=fix)
    for problem in problems:
        _say(problem)
    remaining = reg.check() if fix and problems else problems
    if remaining:
        hint = "" if fix else "; run `condensekit registry check --fix` to clean up what can be"
        raise RegistryError(f"{len(remaining)} problem(s) in the registry at {reg.root}{hint}")
    _say(f"Registry at {reg.root} is consistent")


def register(app: typer.Typer) -> None:
    """Add the registry commands to ``app`` (and a ``registry`` sub-app with ``check``)."""
    app.command("show")(show)
    app.command("export")(export)
    app.command("import")(import_)
    app.command("rm")(rm)
    app.command("tag")(tag)
    sub = typer.Typer(name="registry", help="Registry maintenance.", no_args_is_help=True)
    sub.command("check")(check)
    app.add_typer(sub, name="registry")
