"""``condensekit distill METHOD ...``: one sub-command per installed method.

The group lists methods from entry-point metadata and imports a method only when its
command runs (or its ``--help`` is asked for); the method's config dataclass fields become
options with their defaults and help text.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import types
import typing
from typing import TYPE_CHECKING, Any

import click
from click.shell_completion import CompletionItem

from condensekit import plugins
from condensekit.cli import console
from condensekit.errors import PluginError, UsageError
from condensekit.plugins import RESERVED_CONFIG_NAMES

if TYPE_CHECKING:
    from condensekit.methods.base import Method  # imports torch: only for annotations here

#: Options every method gets; each name must be in plugins.RESERVED_CONFIG_NAMES, so that a
#: config field with one of these names is refused when the plugin loads (a test checks it).
COMMON_OPTIONS: list[click.Option] = [
    # --data and --ipc are required unless a recipe (--config, --from) gives them: checked by recipes.expand.
    click.Option(
        ["--data", "data"],
        default=None,
        help="dataset name (see condensekit list datasets) [required unless a recipe gives it]",
    ),
    click.Option(
        ["--ipc"], type=int, default=None, help="synthetic images per class [required unless a recipe gives it]"
    ),
    click.Option(
        ["--backbone"],
        default=None,
        help="backbone name, or timm:NAME (default: the method's or dataset's)",
    ),
    click.Option(["--iterations"], type=int, default=None, help="distillation iterations (default: the method's)"),
    click.Option(["--seed"], type=int, default=0, show_default=True, help="random seed"),
    click.Option(["--device"], default="auto", show_default=True, help="auto, cpu, cuda or cuda:N"),
    click.Option(["--name"], default=None, help="registry name (default: <method>-<dataset>-ipc<k>)"),
    click.Option(["--res", "resolution"], type=int, default=None, help="image resolution (default: the dataset's)"),
    click.Option(["--data-root"], default=None, envvar="CONDENSEKIT_DATA", help="dataset root folder"),
    click.Option(["--registry"], default=None, envvar="CONDENSEKIT_REGISTRY", help="registry root folder"),
    click.Option(["--resume"], is_flag=True, default=False, help="continue an interrupted run of the same command"),
    click.Option(
        ["--checkpoint-every"], type=int, default=None, help="checkpoint every N iterations (default 100; 0: never)"
    ),
    click.Option(["--experts"], default=None, help="experts reference for methods that use experts"),
    click.Option(
        ["--teacher"],
        default=None,
        help="the trained classifier of methods that distill with one (rded, sre2l): experts NAME[:vN] "
        "(its first network), or timm:NAME=FILE",
    ),
    click.Option(["--teacher-weights"], default=None, metavar="FILE", help="weights of --teacher timm:NAME"),
    click.Option(
        ["--dtype"],
        type=click.Choice(["float32", "float16"]),
        default="float32",
        show_default=True,
        help="storage dtype of the images",
    ),
    click.Option(
        ["--compile"],
        is_flag=True,
        default=False,
        help="torch.compile the backbone (faster long runs; needs a C++ compiler on CPU)",
    ),
    click.Option(
        ["--nproc"],
        type=int,
        default=1,
        show_default=True,
        help="distill classes on N local processes (torchrun --standalone)",
    ),
    click.Option(
        ["--config", "recipe_file"],
        default=None,
        metavar="FILE",
        help="take options from a TOML recipe; flags given here override it (see docs/cli.md)",
    ),
    click.Option(
        ["--from", "from_ref"],
        default=None,
        metavar="REF",
        help="rerun a stored set from the recipe kept in it; flags given here override it",
    ),
    click.Option(
        ["--set", "sweep"],
        multiple=True,
        metavar="KEY=V1,V2",
        help="sweep: one run per value, each saved as its own set; several --set: every combination",
    ),
    click.Option(
        ["--dry-run"],
        is_flag=True,
        default=False,
        help="print the resolved plan (config, backbone, experts, run key, output name) and stop",
    ),
    click.Option(["--json", "as_json"], is_flag=True, default=False, help="print the result as JSON on stdout"),
    click.Option(["--quiet", "-q"], is_flag=True, default=False, help="no progress or notices on stderr (errors only)"),
]


def _unwrap_optional(tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _click_type(tp: Any) -> Any:
    tp = _unwrap_optional(tp)
    if typing.get_origin(tp) is typing.Literal:
        return click.Choice([str(v) for v in typing.get_args(tp)])
    return {int: int, float: float, str: str}.get(tp, str)


def config_options(method_cls: type[Method]) -> list[click.Option]:
    """One option per config field: ``--field-name``, default None so presets still apply.

    The help shows the default the option would take, and the range the field declares. A
    None default ("chosen from the dataset and IPC") is shown as what it means, which the
    field's help text says, never as a value such as "auto" that the option would refuse;
    declared ``choices`` become a choice type, as a ``Literal`` does."""
    from condensekit.methods.base import CHOICES, describe_range  # the method (torch) is loaded already

    hints = typing.get_type_hints(method_cls.Config)
    defaults = method_cls.make_config()
    options = []
    for f in dataclasses.fields(method_cls.Config):
        if f.name in RESERVED_CONFIG_NAMES:
            raise PluginError(
                f"method {method_cls.name!r} config field {f.name!r} collides with a core option; rename it"
            )
        flag = "--" + f.name.replace("_", "-")
        current = getattr(defaults, f.name)
        help_text = f.metadata.get("help", "")
        notes = []
        if current is not None:
            notes.append(f"default: {current}")
        elif "default" not in help_text.lower():  # the help text does not say what None means
            notes.append("default: chosen from the dataset and IPC")
        limits = describe_range(f)
        if limits:
            notes.append(limits)
        help_text = f"{help_text} [{'; '.join(notes)}]".strip() if notes else help_text
        tp = _unwrap_optional(hints[f.name])
        if tp is bool:
            options.append(click.Option([f"{flag}/--no-{flag[2:]}", f.name], default=None, help=help_text))
            continue
        click_type = _click_type(tp)
        choices = f.metadata.get(CHOICES)
        if choices is not None and click_type is str and all(isinstance(c, str) for c in choices):
            click_type = click.Choice(list(choices))
        options.append(click.Option([flag, f.name], type=click_type, default=None, help=help_text))
    return options


class DistillGroup(click.Group):
    """Lazily built sub-commands, one per entry point of ``condensekit.methods``.

    Only the method whose command runs is imported: ``distill --help`` lists methods from
    entry-point metadata and the plugin validation cache, so a broken method shows up as
    "(broken: reason)" there and fails only its own command (exit 3, one line).
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return plugins.names("method")

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # click's default asks every sub-command for its short help, which would import every
        # method plugin here, and let one broken plugin fail ``distill --help``.
        rows = [
            (info.name, f"({info.status})" if info.broken else info.description) for info in plugins.discover("method")
        ]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def shell_complete(self, ctx: click.Context, incomplete: str) -> list[CompletionItem]:
        # click's default builds every matching sub-command for its short help: completing
        # ``distill d`` imported each method plugin (and torch). Names and descriptions come
        # from entry-point metadata and the validation cache instead, as in ``distill --help``.
        methods = [
            CompletionItem(info.name, help=f"({info.status})" if info.broken else info.description)
            for info in plugins.discover("method")
            if info.name.startswith(incomplete)
        ]
        return [*methods, *click.Command.shell_complete(self, ctx, incomplete)]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in plugins.names("method"):
            return None
        try:
            cls, info = plugins.load_method(name)
        except PluginError as exc:
            if not ctx.resilient_parsing:
                raise
            # Shell completion resolves the command whose options it completes: a stub
            # rather than a failing completion.
            return click.Command(name, short_help=f"(broken: {exc})")
        params: list[click.Parameter] = [*COMMON_OPTIONS]
        if cls.presets:
            params.append(
                click.Option(
                    ["--preset"],
                    type=click.Choice(list(cls.presets)),
                    default=None,
                    help=f"named configuration [default: {cls.default_preset or 'none'}]",
                )
            )
        params.extend(config_options(cls))
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        return click.Command(
            name,
            params=params,
            callback=lambda **kwargs: run_distill(cls, kwargs),
            help=f"{doc} ({info.distribution} {info.distribution_version})",
            short_help=doc,
        )

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # ``distill --config FILE`` and ``distill --from REF`` name no method: the recipe
        # does, so its command is put in front and parses every option as usual.
        if args and args[0].startswith("-") and not ctx.resilient_parsing:
            method = _recipe_method(args)
            if method is not None:
                args = [method, *args]
        return super().parse_args(ctx, args)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0] if args else ""
        if name and not name.startswith("-") and name not in plugins.names("method"):
            raise PluginError(f"unknown method {name!r}: {plugins.suggest(name, plugins.names('method'))}")
        return super().resolve_command(ctx, args)


def _raw_options(args: list[str], names: tuple[str, ...]) -> dict[str, str]:
    """The values of ``names`` in raw arguments (``--opt VALUE`` or ``--opt=VALUE``), read
    before click parses them: the group needs the recipe's method to pick the command."""
    found: dict[str, str] = {}
    i = 0
    while i < len(args) and args[i] != "--":
        name, eq, value = args[i].partition("=")
        if name in names:
            if eq:
                found[name] = value
            elif i + 1 < len(args):
                found[name] = args[i + 1]
                i += 1
        i += 1
    return found


def _recipe_method(args: list[str]) -> str | None:
    """The method named by ``--config FILE`` or ``--from REF`` (None when neither is given)."""
    raw = _raw_options(args, ("--config", "--from", "--registry"))
    if "--config" not in raw and "--from" not in raw:
        return None
    recipe = _read_recipe(raw.get("--config"), raw.get("--from"), raw.get("--registry"))
    if recipe.method is None:
        path = raw["--config"]
        raise UsageError(
            f'recipe {path} names no method; add method = "dm" (say) to it, or give the method first: '
            f"condensekit distill METHOD --config {path}"
        )
    return str(recipe.method)


def run_distill(method_cls: type[Method], kwargs: dict[str, Any]) -> None:
    """Build the requests (flags over a recipe, sweeps expanded), plan every one before any
    work, then run and record them one after another (or print the plans)."""
    from condensekit import recipes
    from condensekit.cli import state
    from condensekit.distill import plan
    from condensekit.paths import registry_root

    ctx = click.get_current_context()
    source = {name: ctx.get_parameter_source(name) for name in kwargs}
    as_json, dry_run = kwargs.pop("as_json"), kwargs.pop("dry_run")
    console.set_quiet(kwargs.pop("quiet"))
    recipe_file, from_ref, sets = kwargs.pop("recipe_file"), kwargs.pop("from_ref"), kwargs.pop("sweep")
    # Only what the command line gives overrides the recipe; an environment variable
    # (CONDENSEKIT_DATA, CONDENSEKIT_REGISTRY) is a default below it.
    given = {k: v for k, v in kwargs.items() if source[k] is click.core.ParameterSource.COMMANDLINE}
    ambient = {k: v for k, v in kwargs.items() if source[k] is click.core.ParameterSource.ENVIRONMENT}
    if kwargs.get("registry") is None:  # the command saves where the README says: ./registry
        ambient["registry"] = str(registry_root())
    recipe = _read_recipe(recipe_file, from_ref, kwargs.get("registry"))
    runs = recipes.expand(method_cls, recipe, given, sets, ambient, tuple(state.argv))
    sweep = bool(runs[0].values)
    if sweep and any(item.request.nproc > 1 for item in runs):
        raise UsageError(
            f"--nproc runs one distillation under torchrun, not a sweep of {len(runs)}; drop --nproc, "
            f"or run each point on its own"
        )
    planned = [plan(item.request) for item in runs]  # every check before any work, on every run
    if dry_run:
        if sweep:
            _print_sweep_plans(runs, [p.as_dict() for p in planned], as_json)
        else:
            _print_plan(planned[0].as_dict(), as_json, console)
        return
    if not sweep:
        summary = _distill(planned[0])
        if summary is not None:
            _print_summary(summary, as_json)
        return
    _run_sweep(runs, as_json)


def _read_recipe(recipe_file: str | None, from_ref: str | None, registry: str | None) -> Any:
    """The recipe of --config FILE or --from REF (None without either)."""
    from condensekit import recipes

    if recipe_file is not None and from_ref is not None:
        raise UsageError("--config and --from are both given; use one (flags given with it override it)")
    if recipe_file is not None:
        return recipes.load_recipe(recipe_file)
    if from_ref is not None:
        return recipes.stored_recipe(from_ref, registry)
    return None


def _distill(planned: Any) -> dict[str, Any] | None:
    """Run and record one planned distillation (relaunched under torchrun for --nproc); its
    summary, or None when nothing was saved here (no registry, or not rank 0)."""
    from condensekit import distributed
    from condensekit.distill import record, run

    request = planned.request
    if request.nproc > 1 and distributed.current() is None:
        _relaunch(request.nproc)
        return None
    rank0 = planned.rank == 0
    if rank0:
        console.notify(
            f"distilling {planned.plugin.name} on {planned.dataset.name} ({planned.dataset.resolution}px), "
            f"ipc {planned.ipc}, {planned.iterations} iterations, backbone {planned.backbone}"
        )
        if planned.teacher is not None:
            console.notify(f"teacher: {planned.teacher.source}")
    with console.progress_reporter(enabled=rank0) as reporter:
        started: set[str] = set()  # each bar appears when its phase starts, with its own ETA

        def on_experts(done: int, total: int, **metrics: float) -> None:
            if "experts" not in started:
                started.add("experts")
                reporter.task("experts", "training experts (experts x epochs)", total)
            reporter.update("experts", done, **metrics)

        def on_iteration(iteration: int, **metrics: float) -> None:
            if "distill" not in started:
                started.add("distill")
                reporter.task("distill", planned.plugin.name, planned.iterations)
            reporter.update("distill", iteration, **metrics)

        result = run(
            planned,
            progress=on_iteration,
            notify=console.notify if rank0 else (lambda message: None),
            experts_progress=on_experts,
        )
    version = record(result)
    if version is None:
        return None
    meta = result.synset.metadata
    return {
        "ref": version.ref,
        "path": str(version.path),
        "method": meta["method"],
        "dataset": meta["dataset"],
        "ipc": meta["ipc"],
        "images": len(result.synset),
        "iterations": meta["iterations"],
        "experts": meta["experts"],
        "wall_time_s": meta["wall_time_s"],
    }


def _print_summary(summary: dict[str, Any], as_json: bool) -> None:
    if as_json:
        console.print_json(summary)
    else:
        console.stdout.print(
            f"saved [bold]{summary['ref']}[/bold] ({summary['images']} images, "
            f"{summary['iterations']} iterations, {summary['wall_time_s']:.1f} s)"
        )


def _run_sweep(runs: list[Any], as_json: bool) -> None:
    """Run a sweep's points one after another, then print one row per run. A failing run
    stops the sweep: the rows so far and the failed one are printed, the notice names the
    completed refs, and the run's error propagates (so the command exits with its code)."""
    from condensekit.distill import plan

    rows: list[dict[str, Any]] = []
    total = len(runs)
    for number, item in enumerate(runs, 1):
        console.notify(f"run {number}/{total}: {item.label()}")
        try:
            # Planned again: an earlier run of the sweep may have stored experts this one reuses.
            summary = _distill(plan(item.request))
        except BaseException as exc:
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            failed = {"run": number, "values": dict(item.values), "ref": None, "error": message}
            _print_sweep(runs, [*rows, failed], as_json)
            done = ", ".join(str(row["ref"]) for row in rows) or "none"
            console.notify(
                f"run {number}/{total} ({item.label()}) failed; completed: {done}; not started: {total - number} run(s)"
            )
            raise
        rows.append({"run": number, "values": dict(item.values), **(summary or {"ref": None, "wall_time_s": None})})
    _print_sweep(runs, rows, as_json)


def _print_sweep(runs: list[Any], rows: list[dict[str, Any]], as_json: bool) -> None:
    """The sweep's summary: one row per run (swept values, ref, wall time), or the list as JSON."""
    from rich.table import Table
    from rich.text import Text

    from condensekit.recipes import format_value

    if as_json:
        console.print_json(rows)
        return
    keys = list(runs[0].values)
    table = Table(title=f"sweep: {len(rows)} of {len(runs)} run(s)", title_justify="left")
    for column in ("run", *keys, "ref", "wall time (s)"):
        table.add_column(column)
    for row in rows:
        values = [format_value(row["values"][key]) for key in keys]
        ref = row["ref"] or ("failed" if "error" in row else "not saved")
        wall = "-" if row.get("wall_time_s") is None else f"{row['wall_time_s']:.1f}"
        table.add_row(str(row["run"]), *(Text(v) for v in values), Text(ref), wall)
    console.stdout.print(table)


def _print_sweep_plans(runs: list[Any], plans: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        numbered = enumerate(zip(runs, plans, strict=True), 1)
        console.print_json([{"run": n, "values": dict(item.values), **p} for n, (item, p) in numbered])
        return
    for number, (item, described) in enumerate(zip(runs, plans, strict=True), 1):
        if number > 1:
            console.stdout.print()
        console.stdout.print(f"run {number}/{len(runs)}: {item.label()}", highlight=False, markup=False)
        _print_plan(described, False, console)


def _print_plan(described: dict[str, Any], as_json: bool, console: Any) -> None:
    if as_json:
        console.print_json(described)
        return
    for key, value in described.items():
        shown = value if not isinstance(value, (dict, list)) else json.dumps(value)
        console.stdout.print(f"{key}: {shown}", highlight=False, markup=False)


def _relaunch(nproc: int) -> None:
    """Re-run this command on ``nproc`` local processes under torchrun."""
    from condensekit import distributed
    from condensekit.cli import console, state

    args = list(state.argv)
    for i, arg in enumerate(args):
        if arg == "--nproc":
            del args[i : i + 2]
            break
        if arg.startswith("--nproc="):
            del args[i]
            break
    command = distributed.torchrun_command(nproc, args)
    console.notify(f"running on {nproc} processes: {' '.join(command[2:])}")
    code = subprocess.call(command)
    if code:
        raise click.exceptions.Exit(code)
