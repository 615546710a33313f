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

from condensekit import plugins
from condensekit.errors import PluginError
from condensekit.plugins import RESERVED_CONFIG_NAMES

if TYPE_CHECKING:
    from condensekit.methods.base import Method  # imports torch: only for annotations here

#: Options every method gets; each name must be in plugins.RESERVED_CONFIG_NAMES, so that a
#: config field with one of these names is refused when the plugin loads (a test checks it).
COMMON_OPTIONS: list[click.Option] = [
    click.Option(["--data", "data"], required=True, help="dataset name (see condensekit list datasets)"),
    click.Option(["--ipc"], type=int, required=True, help="synthetic images per class"),
    click.Option(["--backbone"], default=None, help="backbone name, or timm:NAME (default: the method's or dataset's)"),
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
        ["--dry-run"],
        is_flag=True,
        default=False,
        help="print the resolved plan (config, backbone, experts, run key, output name) and stop",
    ),
    click.Option(["--json", "as_json"], is_flag=True, default=False, help="print the result as JSON on stdout"),
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
    """One option per config field: ``--field-name``, default None so presets still apply."""
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
        shown = "auto" if current is None else current
        help_text = f"{help_text} [default: {shown}]".strip()
        tp = _unwrap_optional(hints[f.name])
        if tp is bool:
            options.append(click.Option([f"{flag}/--no-{flag[2:]}", f.name], default=None, help=help_text))
        else:
            options.append(click.Option([flag, f.name], type=_click_type(tp), default=None, help=help_text))
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

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in plugins.names("method"):
            return None
        try:
            cls, info = plugins.load_method(name)
        except PluginError as exc:
            if not ctx.resilient_parsing:
                raise
            # Shell completion asks every sub-command for its short help: show this one as
            # broken rather than failing completion for all the others.
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

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0] if args else ""
        if name and not name.startswith("-") and name not in plugins.names("method"):
            raise PluginError(f"unknown method {name!r}: {plugins.suggest(name, plugins.names('method'))}")
        return super().resolve_command(ctx, args)


def run_distill(method_cls: type[Method], kwargs: dict[str, Any]) -> None:
    """Build the request from the options, plan it, then run and record it (or print the plan)."""
    from condensekit import distributed
    from condensekit.cli import console, state
    from condensekit.distill import DistillRequest, plan, record, run

    common = {opt.name: kwargs.pop(opt.name) for opt in COMMON_OPTIONS}
    as_json, dry_run = common.pop("as_json"), common.pop("dry_run")
    request = DistillRequest(
        method=method_cls.name,
        preset=kwargs.pop("preset", None),
        command=tuple(state.argv),
        config={k: v for k, v in kwargs.items() if v is not None},
        **common,
    )
    planned = plan(request)  # validates everything before any work, on one process or many
    if dry_run:
        _print_plan(planned.as_dict(), as_json, console)
        return
    if request.nproc > 1 and distributed.current() is None:
        _relaunch(request.nproc)
        return
    rank0 = planned.rank == 0
    if rank0:
        console.notify(
            f"distilling {planned.plugin.name} on {planned.dataset.name} ({planned.dataset.resolution}px), "
            f"ipc {planned.ipc}, {planned.iterations} iterations, backbone {planned.backbone}"
        )
    with console.progress_reporter(enabled=rank0) as reporter:
        reporter.task("distill", planned.plugin.name, planned.iterations)
        result = run(
            planned,
            progress=lambda iteration, **metrics: reporter.update("distill", iteration, **metrics),
            notify=console.notify if rank0 else (lambda message: None),
        )
    version = record(result)
    if version is None:
        return
    meta = result.synset.metadata
    summary = {
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
    if as_json:
        console.print_json(summary)
    else:
        console.stdout.print(
            f"saved [bold]{summary['ref']}[/bold] ({summary['images']} images, "
            f"{summary['iterations']} iterations, {summary['wall_time_s']:.1f} s)"
        )


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
