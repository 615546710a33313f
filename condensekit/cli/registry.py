"""Registry commands: show, export, import, rm, tag and ``registry check``.

Thin wrappers over :class:`condensekit.registry.Registry` and
:mod:`condensekit.registry.exchange`: parse options, call the API, render the result.
Errors are CondensekitError subclasses, turned into one red line by the app's handler.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from condensekit.cli import console
from condensekit.cli.completion import complete_sets
from condensekit.errors import CondensekitError, RegistryError, UsageError
from condensekit.paths import REGISTRY_ENV

if TYPE_CHECKING:
    from condensekit.registry import Registry

RegistryOpt = Annotated[
    Path | None,
    typer.Option("--registry", envvar=REGISTRY_ENV, show_envvar=True, help="Registry root (default: ./registry)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON to stdout.")]
RefArg = Annotated[
    str, typer.Argument(help="A set: NAME, NAME:vN, NAME:latest or NAME:ALIAS.", autocompletion=complete_sets)
]


def _registry(root: Path | None) -> Registry:
    from condensekit.registry import Registry  # keeps `condensekit --help` free of torch

    return Registry(root)


def _say(message: str) -> None:
    console.stdout.print(message, highlight=False, markup=False)


def _report(data: dict[str, Any], message: str, as_json: bool) -> None:
    """What a command did: ``data`` as JSON for scripts, or ``message`` for people."""
    if as_json:
        console.print_json(data)
    else:
        _say(message)


def show(
    ref: RefArg,
    registry: RegistryOpt = None,
    as_json: JsonOpt = False,
    recipe: Annotated[
        bool, typer.Option("--recipe", help="Print the recipe that makes this set again (TOML for distill --config).")
    ] = False,
) -> None:
    """Show a set version: provenance, metadata and evaluation results."""
    if recipe:
        if as_json:
            raise UsageError("--recipe prints TOML and --json prints JSON; give one of them")
        from condensekit import recipes

        # Raw text on stdout: a file made with `show --recipe > r.toml` is what distill reads.
        sys.stdout.write(recipes.dump_recipe(recipes.stored_recipe(ref, registry)))
        sys.stdout.flush()
        return
    info = _registry(registry).show(ref)
    _add_run_counts(info["evals"])
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


def _add_run_counts(evals: list[dict[str, Any]]) -> None:
    """Put ``runs`` (networks trained) beside each score's mean and std, from the stored
    report's per-run accuracies: a mean of 1 run and a mean of 5 do not weigh the same, and
    the table and ``--json`` should both say which one it is. None when the report does not
    list its runs (a report recorded by hand through the API)."""
    for ev in evals:
        results = ev.get("result", {}).get("results", [])
        counts = {
            str(r["arch"]): len(r["accuracies"])
            for r in results
            if isinstance(r, dict) and "arch" in r and isinstance(r.get("accuracies"), list)
        }
        for arch, score in ev["scores"].items():
            score["runs"] = counts.get(arch)


def _evals_table(evals: list[dict[str, Any]]) -> Table:
    table = Table(title="evaluations", title_justify="left")
    for column in ("id", "protocol", "arch", "accuracy (%)", "runs", "created"):
        table.add_column(column)
    for ev in evals:
        for arch, score in ev["scores"].items():
            std = "" if score["std"] is None else f" ± {score['std']:.2f}"
            runs = "?" if score.get("runs") is None else str(score["runs"])
            table.add_row(str(ev["id"]), str(ev["protocol"]), arch, f"{score['mean']:.2f}{std}", runs, ev["created"])
    return table


def export(
    ref: RefArg,
    grid: Annotated[
        Path | None,
        typer.Option(
            "--grid",
            "--png",
            metavar="FILE",
            help="Write an image grid (one row per class); the format follows the extension: "
            ".png, .jpg/.jpeg or .webp. --png is the former name of this option.",
        ),
    ] = None,
    per_class: Annotated[
        str | None,
        typer.Option(
            "--per-class",
            metavar="N|all",
            # The default is exchange.GRID_PER_CLASS, written out: importing exchange here
            # would load torch for `condensekit --help`.
            help="Images per class in the grid (default 10; 'all' for every one).",
        ),
    ] = None,
    pt: Annotated[Path | None, typer.Option("--pt", help="Write images.pt + labels.pt to this folder.")] = None,
    folder: Annotated[
        Path | None, typer.Option("--folder", help="Write an ImageFolder of PNGs into a new or empty folder.")
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", help="Replace a previous export in the --folder or --pt target."),
    ] = False,
    registry: RegistryOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Export a set as an image grid (PNG, JPEG, WebP), DC/MTT-style .pt tensors, or an ImageFolder.

    Nothing is written until the export is complete, and an existing --folder or --pt
    export is only replaced with --overwrite."""
    from condensekit.registry import exchange

    targets = {"grid": grid, "pt": pt, "folder": folder}
    chosen = [(kind, path) for kind, path in targets.items() if path is not None]
    if len(chosen) != 1:
        raise UsageError("export needs exactly one of --grid FILE, --pt DIR or --folder DIR")
    kind, path = chosen[0]
    if per_class is not None and kind != "grid":
        raise UsageError("--per-class applies to the image grid only; use it with --grid FILE")
    # Every check on the target before the set is read: a refusal costs nothing.
    cap = exchange.parse_per_class(per_class)
    if kind == "grid":
        exchange.grid_format(path)
    elif kind == "pt":
        exchange.check_pt_target(path, overwrite)
    else:
        exchange.check_folder_target(path, overwrite)
    synset = _registry(registry).load(ref)
    ref_text = synset.metadata["ref"]
    report: dict[str, Any] = {"ref": ref_text, "kind": kind}
    if kind == "grid":
        written = exchange.export_grid(synset, path, per_class=cap)
        report.update(path=str(written.path), format=written.format, per_class=written.shown)
        if written.capped:
            console.notify(
                f"showing {written.shown} of {written.available} images per class (--per-class all for every one)"
            )
    elif kind == "pt":
        report["path"] = str(exchange.export_pt(synset, path, overwrite=overwrite))
    else:
        report["path"] = str(exchange.export_folder(synset, path, overwrite=overwrite))
    _report(
        report,
        f"Exported {ref_text} to {report['path']}" + (f" ({report['format']})" if "format" in report else ""),
        as_json,
    )


def import_(
    path: Annotated[Path, typer.Argument(help="A condensekit .h5 file, or a folder/images.pt with labels.pt.")],
    name: Annotated[str, typer.Option("--name", help="Name to store the set under.")],
    data: Annotated[str | None, typer.Option("--data", help="Dataset of .pt tensors (e.g. cifar10).")] = None,
    registry: RegistryOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Import a set from a condensekit HDF5 file or an images.pt/labels.pt pair."""
    from condensekit.registry.exchange import import_set

    saved = import_set(path, name, _registry(registry), dataset=data)
    _report(
        {"ref": saved.ref, "path": str(saved.path), "source": str(path)}, f"Imported {path} as {saved.ref}", as_json
    )


def rm(
    ref: RefArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    registry: RegistryOpt = None,
    as_json: JsonOpt = False,
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
    _report({"removed": target.ref, "path": str(target.path)}, f"Removed {target.ref}", as_json)


def tag(
    ref: RefArg,
    alias: Annotated[str, typer.Argument(help="Alias to point at this version (moved if it exists).")],
    registry: RegistryOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Point ALIAS of a set at the version REF resolves to."""
    target = _registry(registry).tag(ref, alias)
    _report({"alias": f"{target.name}:{alias}", "ref": target.ref}, f"{target.name}:{alias} -> {target.ref}", as_json)


def check(
    fix: Annotated[
        bool, typer.Option("--fix", help="Remove leftover and orphan files, dangling rows and unreadable checkpoints.")
    ] = False,
    registry: RegistryOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Verify the registry: leftover writes, orphan files, missing files, sha256 of every file, run folders."""
    reg = _registry(registry)
    problems = reg.check(fix=fix)
    remaining = reg.check() if fix and problems else problems
    if as_json:
        console.print_json({"root": str(reg.root), "problems": problems, "fixed": fix, "remaining": remaining})
    else:
        for problem in problems:
            _say(problem)
    if remaining:
        hint = "" if fix else "; run `condensekit registry check --fix` to clean up what can be"
        raise RegistryError(f"{len(remaining)} problem(s) in the registry at {reg.root}{hint}")
    if not as_json:
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
