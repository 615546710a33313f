"""``condensekit list``: installed plugins, datasets, backbones, sets and experts."""

from __future__ import annotations

from enum import Enum
from typing import Any

import typer
from rich.table import Table

from condensekit import plugins
from condensekit.cli import console


class Kind(str, Enum):
    methods = "methods"
    datasets = "datasets"
    backbones = "backbones"
    sets = "sets"
    experts = "experts"


def _plugin_rows(infos: list[plugins.PluginInfo]) -> list[dict[str, Any]]:
    return [info.as_dict() for info in infos]


def _plugin_table(title: str, rows: list[dict[str, Any]]) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("name", "kind", "distribution", "version", "description", "status"):
        table.add_column(column, overflow="fold")
    for row in rows:
        status = row["status"] if row["status"] == "ok" else f"[red]{row['status']}[/red]"
        table.add_row(row["name"], row["kind"], row["distribution"], row["version"], row["description"], status)
    return table


def _dataset_rows(data_root: str | None) -> list[dict[str, Any]]:
    from condensekit.data import describe_datasets

    return describe_datasets(data_root)


def _dict_table(title: str, rows: list[dict[str, Any]], columns: list[str]) -> Table:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*[_cell(row.get(c)) for c in columns])
    return table


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value)


def list_command(
    kind: Kind | None = typer.Argument(None, help="what to list (default: methods, datasets and backbones)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON on stdout"),
    check: bool = typer.Option(False, "--check", help="validate every plugin again now, ignoring the cached results"),
    timm: str | None = typer.Option(None, "--timm", help="with backbones: also list timm models matching PATTERN"),
    data_root: str | None = typer.Option(None, "--data-root", envvar="CONDENSEKIT_DATA", help="dataset root folder"),
    registry: str | None = typer.Option(None, "--registry", envvar="CONDENSEKIT_REGISTRY", help="registry root folder"),
) -> None:
    """List installed methods, datasets, backbones, or the sets and experts in the registry."""
    kinds = [kind] if kind else [Kind.methods, Kind.datasets, Kind.backbones]
    # Statuses come from the plugin validation cache; stale entries of every listed kind are
    # validated together, in one child process, so this process imports no plugin (nor torch).
    plugin_kinds = [k.value[:-1] for k in kinds if k in (Kind.methods, Kind.datasets, Kind.backbones)]
    found = plugins.discover_all(plugin_kinds, force=check) if plugin_kinds else {}
    output: dict[str, list[dict[str, Any]]] = {}
    for k in kinds:
        if k in (Kind.methods, Kind.backbones):
            output[k.value] = _plugin_rows(found[k.value[:-1]])
        elif k is Kind.datasets:
            output[k.value] = _dataset_rows(data_root)
        else:
            from condensekit.registry import Registry

            reg = Registry(registry)
            output[k.value] = reg.list_sets() if k is Kind.sets else reg.list_experts()
    if timm is not None:
        import timm as timm_lib

        output["timm"] = [{"name": f"timm:{n}"} for n in timm_lib.list_models(timm)]
    if as_json:
        console.print_json(output if kind is None or timm is not None else output[kind.value])
        return
    for key, rows in output.items():
        if key in ("methods", "backbones"):
            console.stdout.print(_plugin_table(key, rows))
            if key == "backbones":
                console.stdout.print(
                    "any timm model also works as [bold]timm:NAME[/bold] "
                    "(list them with --timm PATTERN, e.g. --timm 'resnet*')"
                )
        elif key == "datasets":
            columns = ["name", "resolution", "classes", "channels", "present", "where", "distribution"]
            console.stdout.print(_dict_table("datasets", rows, columns))
        elif key == "sets":
            shown = [{**r, "aliases": _aliases(r)} for r in rows]
            columns = ["name", "versions", "aliases", "method", "dataset", "ipc", "best_accuracy"]
            console.stdout.print(
                _dict_table("sets", shown, [c for c in columns if not shown or c in shown[0]] or columns)
            )
        elif key == "experts":
            shown = [{**r, "aliases": _aliases(r)} for r in rows]
            columns = [
                "name",
                "latest",
                "aliases",
                "dataset",
                "backbone",
                "resolution",
                "experts",
                "epochs",
                "test_accuracy",
                "created",
            ]
            console.stdout.print(_dict_table("experts", shown, [c for c in columns if not shown or c in shown[0]]))
        else:
            console.stdout.print(_dict_table(key, rows, ["name"]))


def _aliases(row: dict[str, Any]) -> str:
    return ", ".join(f"{alias}->v{version}" for alias, version in (row.get("aliases") or {}).items())
