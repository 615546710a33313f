"""Registry commands: show, export, import, push, rm, tag and ``registry check``.

Thin wrappers over :class:`condensekit.registry.Registry` and
:mod:`condensekit.registry.exchange`, and :mod:`condensekit.sharing` (Hugging Face layout,
peers' files, push): parse options, call the API, render the result.
Errors are CondensekitError subclasses, turned into one red line by the app's handler.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from condensekit.cli import console
from condensekit.cli.completion import complete_sets
from condensekit.errors import CondensekitError, RegistryError, UsageError
from condensekit.evaluation.report import runs_per_arch
from condensekit.paths import REGISTRY_ENV

if TYPE_CHECKING:
    from condensekit.registry import Registry
    from condensekit.synthetic import SyntheticSet

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
        counts = runs_per_arch(ev.get("result", {}))
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


@dataclass(frozen=True)
class _ExportJob:
    """One export: the set, the target, and what the kinds of export may need."""

    synset: SyntheticSet
    path: Path
    overwrite: bool
    per_class: int | None
    evaluations: Callable[[], list[dict[str, Any]]]


def _check_grid(path: Path, overwrite: bool) -> None:
    from condensekit.registry import exchange

    exchange.grid_format(path)


def _check_pt(path: Path, overwrite: bool) -> None:
    from condensekit.registry import exchange

    exchange.check_pt_target(path, overwrite)


def _check_folder(path: Path, overwrite: bool) -> None:
    from condensekit.registry import exchange

    exchange.check_folder_target(path, overwrite)


def _check_hf(path: Path, overwrite: bool) -> None:
    from condensekit.sharing import hf

    hf.check_hf_target(path, overwrite)


def _write_grid(job: _ExportJob) -> dict[str, Any]:
    from condensekit.registry import exchange

    written = exchange.export_grid(job.synset, job.path, per_class=job.per_class)
    if written.capped:
        console.notify(
            f"showing {written.shown} of {written.available} images per class (--per-class all for every one)"
        )
    return {"path": str(written.path), "format": written.format, "per_class": written.shown}


def _write_pt(job: _ExportJob) -> dict[str, Any]:
    from condensekit.registry import exchange

    return {"path": str(exchange.export_pt(job.synset, job.path, overwrite=job.overwrite))}


def _write_folder(job: _ExportJob) -> dict[str, Any]:
    from condensekit.registry import exchange

    return {"path": str(exchange.export_folder(job.synset, job.path, overwrite=job.overwrite))}


def _write_hf(job: _ExportJob) -> dict[str, Any]:
    from condensekit.sharing import hf

    written = hf.export_hf(job.synset, job.path, job.evaluations(), overwrite=job.overwrite)
    return {"path": str(written.path), "format": "hf", "files": written.files, "configs": written.configs}


#: Export kinds: the option, the target check (run before the set is read) and the writer.
_EXPORTS: dict[str, tuple[str, Callable[[Path, bool], None], Callable[[_ExportJob], dict[str, Any]]]] = {
    "grid": ("--grid FILE", _check_grid, _write_grid),
    "pt": ("--pt DIR", _check_pt, _write_pt),
    "folder": ("--folder DIR", _check_folder, _write_folder),
    "hf": ("--hf DIR", _check_hf, _write_hf),
}


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
    hf: Annotated[
        Path | None,
        typer.Option(
            "--hf",
            metavar="DIR",
            help="Write a Hugging Face dataset (float32 Parquet + dataset card) into a new or empty folder; "
            "needs pip install 'condensekit\\[hf]'.",
        ),
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", help="Replace a previous export in the --folder, --pt or --hf target."),
    ] = False,
    registry: RegistryOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Export a set as an image grid (PNG, JPEG, WebP), DC/MTT-style .pt tensors, an ImageFolder
    or a Hugging Face dataset.

    Nothing is written until the export is complete, and an existing --folder, --pt or --hf
    export is only replaced with --overwrite."""
    from condensekit.registry import exchange

    targets = {"grid": grid, "pt": pt, "folder": folder, "hf": hf}
    chosen = [(kind, path) for kind, path in targets.items() if path is not None]
    if len(chosen) != 1:
        options = [option for option, _, _ in _EXPORTS.values()]
        raise UsageError(f"export needs exactly one of {', '.join(options[:-1])} or {options[-1]}")
    kind, path = chosen[0]
    if per_class is not None and kind != "grid":
        raise UsageError("--per-class applies to the image grid only; use it with --grid FILE")
    # Every check on the target before the set is read: a refusal costs nothing.
    cap = exchange.parse_per_class(per_class)
    _, check_target, write = _EXPORTS[kind]
    check_target(path, overwrite)
    reg = _registry(registry)
    synset = reg.load(ref)
    ref_text = synset.metadata["ref"]
    job = _ExportJob(synset, path, overwrite, cap, lambda: reg.evals(ref_text))
    report: dict[str, Any] = {"ref": ref_text, "kind": kind, **write(job)}
    _report(
        report,
        f"Exported {ref_text} to {report['path']}" + (f" ({report['format']})" if "format" in report else ""),
        as_json,
    )


def import_(
    source: Annotated[
        str,
        typer.Argument(
            metavar="SOURCE",
            help="A file or folder (a condensekit .h5 set, images.pt/labels.pt, a Hugging Face dataset "
            "folder, or a peer's files), or hf:OWNER/NAME\\[@REVISION] for a Hub dataset repository.",
        ),
    ],
    name: Annotated[
        str | None,
        typer.Option("--name", help="Name to store the set under (default: from the input, e.g. dc-cifar10-ipc10)."),
    ] = None,
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            metavar="FORMAT",
            help="auto (detect by content, and say what was found), condensekit, pt, hf, dc, datadam, mtt, "
            "dance or rded (docs/format.md, section 9).",
        ),
    ] = "auto",
    data: Annotated[
        str | None,
        typer.Option("--data", help="Dataset of the set (e.g. cifar10), where the input does not say."),
    ] = None,
    exp: Annotated[
        int | None, typer.Option("--exp", min=0, help="Experiment of a DC/DataDAM res_*.pt file (0-based).")
    ] = None,
    factor: Annotated[
        int | None,
        typer.Option("--factor", min=1, help="DANCE's multi-formation factor, when no args.log beside it says."),
    ] = None,
    soft_labels: Annotated[
        Path | None,
        typer.Option(
            "--soft-labels",
            metavar="FILE",
            help="Soft labels of an ImageFolder (rded): an (N, K) .pt tensor in ImageFolder order, or a labels.json.",
        ),
    ] = None,
    no_zca_check: Annotated[
        bool,
        typer.Option(
            "--no-zca-check",
            help="The images are in the dataset's normalized space: skip the check that refuses ZCA-whitened ones.",
        ),
    ] = False,
    registry: RegistryOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Import a set: condensekit's own files, a Hugging Face dataset, or a peer method's output.

    Everything is read and checked before the registry is written; the set records where it
    came from (show REF lists it under imported_from)."""
    from condensekit.sharing.formats import ImportOptions, import_source

    options = ImportOptions(dataset=data, exp=exp, factor=factor, soft_labels=soft_labels, zca_check=not no_zca_check)
    saved, imported = import_source(source, _registry(registry), name=name, fmt=fmt, options=options)
    origin = imported.synset.metadata["imported_from"]
    if origin["detected"] and not as_json:
        console.notify(f"detected {imported.format}: {imported.found}")
    _report(
        {
            "ref": saved.ref,
            "path": str(saved.path),
            "source": source,
            "format": imported.format,
            "found": imported.found,
            "detected": origin["detected"],
            "facts": imported.facts,
        },
        f"Imported {source} ({imported.format}) as {saved.ref}",
        as_json,
    )


def push(
    ref: RefArg,
    repo_id: Annotated[str, typer.Argument(metavar="REPO_ID", help="Hub dataset repository: OWNER/NAME or NAME.")],
    private: Annotated[bool, typer.Option("--private", help="Create the repository private.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Export and list what would be uploaded; upload nothing.")
    ] = False,
    folder: Annotated[
        Path | None,
        typer.Option("--folder", metavar="DIR", help="Keep the exported layout in this new or empty folder."),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace a previous --hf export in the --folder target.")
    ] = False,
    registry: RegistryOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Upload a set to the Hugging Face Hub as a dataset repository (export --hf, then upload).

    Needs pip install 'condensekit\\[hf]' and a login (`hf auth login` or HF_TOKEN); the
    repository is created if it does not exist."""
    from condensekit.sharing import hf

    # The libraries, the id and the login are checked before the set is read.
    hf.check_push(repo_id, dry_run)
    if folder is not None:
        hf.check_hf_target(folder, overwrite)
    reg = _registry(registry)
    synset = reg.load(ref)
    ref_text = synset.metadata["ref"]
    result = hf.push(
        synset, repo_id, reg.evals(ref_text), private=private, dry_run=dry_run, folder=folder, overwrite=overwrite
    )
    size = f"{len(result.files)} files, {result.bytes / 1e6:.1f} MB"
    kept = f"; the export is in {result.folder}" if result.folder is not None else ""
    message = (
        f"Pushed {ref_text} to {result.url} ({size}){kept}"
        if result.uploaded
        else f"Dry run: would upload {ref_text} to {result.url} ({size}: {', '.join(result.files)}){kept}"
    )
    _report(
        {
            "ref": ref_text,
            "repo_id": result.repo_id,
            "url": result.url,
            "uploaded": result.uploaded,
            "files": result.files,
            "bytes": result.bytes,
            "folder": None if result.folder is None else str(result.folder),
            "commit_url": result.commit_url,
        },
        message,
        as_json,
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
    app.command("push")(push)
    app.command("rm")(rm)
    app.command("tag")(tag)
    sub = typer.Typer(name="registry", help="Registry maintenance.", no_args_is_help=True)
    sub.command("check")(check)
    app.add_typer(sub, name="registry")
