"""``condensekit experts train``: train experts on a dataset and keep them in the registry.

Listing experts is ``condensekit list experts``; methods that need experts (DANCE) find the
latest matching ones in the registry, or train them, on their own.
"""

from __future__ import annotations

import typer

from condensekit.cli import console
from condensekit.cli.completion import complete_backbones, complete_datasets
from condensekit.cli.evaluate import parallel_runs


def train_command(
    data: str = typer.Option(
        ..., "--data", help="dataset name (see condensekit list datasets)", autocompletion=complete_datasets
    ),
    backbone: str | None = typer.Option(
        None,
        "--backbone",
        help="backbone name or timm:NAME (default: the dataset's)",
        autocompletion=complete_backbones,
    ),
    num: int = typer.Option(5, "--num", help="number of experts"),
    epochs: int = typer.Option(60, "--epochs", help="training epochs per expert (DANCE: 60, 80 at 128 px)"),
    seed: int = typer.Option(0, "--seed", help="random seed (initial weights, batches, augmentation)"),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N"),
    batch: int | None = typer.Option(None, "--batch", help="batch size (default: 64, 128 at 128 px and above)"),
    resolution: int | None = typer.Option(None, "--res", help="image resolution (default: the dataset's)"),
    data_root: str | None = typer.Option(None, "--data-root", envvar="CONDENSEKIT_DATA", help="dataset root folder"),
    registry: str | None = typer.Option(None, "--registry", envvar="CONDENSEKIT_REGISTRY", help="registry root folder"),
    name: str | None = typer.Option(None, "--name", help="registry name (default: <dataset>-<backbone>)"),
    sequential: bool = typer.Option(
        False, "--sequential", help="train the experts one after another (the reference path; default on the CPU)"
    ),
    max_parallel_runs: int | None = typer.Option(
        None,
        "--max-parallel-runs",
        min=1,
        help="train at most N experts together as one batched ensemble (default: as many as fit on a GPU, 1 on a CPU)",
    ),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON on stdout"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress or notices on stderr (errors only)"),
) -> None:
    """Train experts (networks trained on the real data, initial weights kept) and save them."""
    from condensekit.experts import train_for_dataset
    from condensekit.registry import Registry

    store = Registry(registry)
    console.set_quiet(quiet)
    with console.progress_reporter(quiet=as_json) as reporter:
        started = False

        def progress(done: int, total: int, **metrics: float) -> None:
            nonlocal started
            if not started:
                reporter.task("experts", "experts x epochs", total)
                started = True
            reporter.update("experts", done, **metrics)

        experts = train_for_dataset(
            data,
            backbone=backbone,
            num=num,
            epochs=epochs,
            seed=seed,
            device=device,
            resolution=resolution,
            data_root=data_root,
            batch=batch,
            progress=progress,
            notify=console.notify,
            max_parallel_runs=parallel_runs(sequential, max_parallel_runs),
        )
    version = store.save_experts(experts, name=name)
    accuracies = experts.metadata.get("test_accuracy", [])
    if as_json:
        console.print_json(
            {
                "ref": version.ref,
                "path": str(version.path),
                "dataset": experts.dataset,
                "backbone": experts.backbone,
                "resolution": experts.resolution,
                "num": len(experts),
                "epochs": experts.metadata.get("epochs"),
                "test_accuracy": accuracies,
                "wall_time_s": experts.metadata.get("wall_time_s"),
            }
        )
        return
    console.stdout.print(
        f"saved [bold]{version.ref}[/bold] ({len(experts)} {experts.backbone} experts on {experts.dataset}, "
        f"{experts.metadata.get('wall_time_s', 0):.1f} s)"
    )
    for k, acc in enumerate(accuracies):
        shown = "no test split" if acc is None else f"{acc:.2f}%"
        console.stdout.print(f"  expert {k}: test accuracy {shown}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add the ``experts`` command group to the main application."""
    experts_app = typer.Typer(
        name="experts",
        help="Train experts: networks trained on the real data that methods such as DANCE use.",
        no_args_is_help=True,
    )
    experts_app.command("train")(train_command)
    app.add_typer(experts_app, name="experts")
