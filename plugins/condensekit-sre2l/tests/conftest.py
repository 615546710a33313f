"""Shared fixtures of the SRe2L plugin tests: an isolated cache and one BatchNorm teacher."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from condensekit.testing import isolate_environment

SHARED_DATA = Path(__file__).resolve().parents[4] / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def _isolated_environment(tmp_path_factory: pytest.TempPathFactory) -> None:
    isolate_environment(tmp_path_factory.mktemp("cache"), SHARED_DATA)


#: The unit tests run at 16 px: a quarter of the compute of 32 px, same code paths.
RES = 16


@pytest.fixture(scope="session")
def teacher():
    """A ConvNet-BN teacher on cifar10-mini (16 px) whose BatchNorm running statistics are those of 200
    real images (a fresh network, statistics set by one train-mode pass: no optimizer steps, so
    the tests stay fast; the teacher's role is only to have real statistics to match)."""
    from condensekit.api import make_context, make_teacher

    teacher = make_teacher("cifar10-mini", backbone="convnet-bn", epochs=0, seed=0, resolution=RES)
    ctx = make_context(ipc=1, iterations=1, resolution=RES)
    real = torch.cat([ctx.data.first(c, 20) for c in range(10)]).to(ctx.device)
    layers = [m for m in teacher.model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    momenta = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: exactly the statistics of the batch
    teacher.model.train()
    with torch.no_grad():
        teacher.model(real)
    teacher.model.eval()
    for m, momentum in zip(layers, momenta, strict=True):
        m.momentum = momentum
    return teacher
