"""``condensekit doctor``: versions, device, paths and plugin health in one screen."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from typing import Any

import typer
from rich.table import Table

from condensekit import paths, plugins
from condensekit.cli import console

PACKAGES = ("condensekit", "torch", "torchvision", "timm", "h5py", "numpy", "typer", "rich")


def gather(data_root: str | None, registry: str | None) -> dict[str, Any]:
    import torch

    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    cuda = torch.cuda.is_available()
    data = paths.data_root(data_root)
    reg = paths.registry_root(registry)
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
        "device": {
            "auto": "cuda" if cuda else "cpu",
            "cuda_available": cuda,
            "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
            "cpu_threads": torch.get_num_threads(),
        },
        "paths": {
            "data_root": str(data),
            "data_root_exists": data.is_dir(),
            "cache_dir": str(paths.cache_dir()),
            "registry": str(reg),
            "registry_exists": reg.is_dir(),
            "HDF5_USE_FILE_LOCKING": os.environ.get("HDF5_USE_FILE_LOCKING"),
        },
        "plugins": {
            kind: [
                {
                    "name": i.name,
                    "distribution": i.distribution,
                    "version": i.distribution_version,
                    "status": i.status if i.broken else plugins.check_import(kind, i.name),
                }
                for i in plugins.discover(kind)
            ]
            for kind in plugins.GROUPS
        },
    }


def doctor_command(
    as_json: bool = typer.Option(False, "--json", help="print JSON on stdout"),
    data_root: str | None = typer.Option(None, "--data-root", envvar="CONDENSEKIT_DATA", help="dataset root folder"),
    registry: str | None = typer.Option(None, "--registry", envvar="CONDENSEKIT_REGISTRY", help="registry root folder"),
) -> None:
    """Show versions, the device, resolved paths and the status of every plugin."""
    report = gather(data_root, registry)
    if as_json:
        console.print_json(report)
        return
    table = Table(show_header=False, title="condensekit doctor", title_justify="left")
    table.add_column("what")
    table.add_column("value", overflow="fold")
    table.add_row("python", f"{report['python']} ({report['platform']})")
    for name, version in report["versions"].items():
        table.add_row(name, version or "[red]not installed[/red]")
    dev = report["device"]
    table.add_row(
        "device (auto)",
        f"{dev['auto']}"
        + (
            f": {', '.join(dev['cuda_devices'])}"
            if dev["cuda_devices"]
            else f" (no CUDA GPU; {dev['cpu_threads']} CPU threads)"
        ),
    )
    p = report["paths"]
    table.add_row("data root", f"{p['data_root']}" + ("" if p["data_root_exists"] else " [yellow](missing)[/yellow]"))
    table.add_row("cache", p["cache_dir"])
    table.add_row("registry", f"{p['registry']}" + ("" if p["registry_exists"] else " (created on first save)"))
    table.add_row("HDF5_USE_FILE_LOCKING", str(p["HDF5_USE_FILE_LOCKING"] or "default (set FALSE on NFS/Lustre)"))
    for kind, rows in report["plugins"].items():
        for row in rows:
            status = row["status"] if row["status"] == "ok" else f"[red]{row['status']}[/red]"
            table.add_row(f"{kind} {row['name']}", f"{row['distribution']} {row['version']}: {status}")
    console.stdout.print(table)
