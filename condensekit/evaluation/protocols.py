"""Evaluation protocols: how a fresh network is trained on a synthetic set before testing.

Numbers in this field move by several points with the recipe (epochs, augmentation, CutMix,
schedule), so a protocol is a named, complete recipe and is stored with every result.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from condensekit.errors import UsageError


@dataclass(frozen=True)
class Protocol:
    """A complete training recipe for evaluating a synthetic set.

    ``milestones`` are fractions of ``epochs``: after ``floor(m * epochs)`` epochs the learning
    rate is multiplied by ``gamma``. ``reset_momentum`` clears SGD's momentum buffers at each
    milestone (DC rebuilds its optimizer there; IDC's MultiStepLR keeps them).
    """

    name: str
    epochs: int
    batch: int
    lr: float
    momentum: float = 0.9
    weight_decay: float = 5e-4
    milestones: tuple[float, ...] = (0.5,)
    gamma: float = 0.1
    reset_momentum: bool = False
    dsa: bool = True
    dsa_strategy: str = "color_crop_cutout_flip_scale_rotate"
    dsa_mode: str = "dsa"
    cutmix_prob: float = 0.0
    cutmix_beta: float = 1.0
    no_flip_datasets: tuple[str, ...] = ()  # datasets whose DSA drops 'flip' (digits)
    description: str = ""

    def milestone_epochs(self) -> list[int]:
        """Epoch counts after which the learning rate decays."""
        # The epsilon keeps 2/3 * 1500 at 1000 despite float rounding (IDC: 2 * E // 3).
        return [int(m * self.epochs + 1e-9) for m in self.milestones]

    def lr_at(self, epoch: int) -> float:
        """Learning rate of epoch ``epoch`` (0-based)."""
        decays = sum(1 for m in self.milestone_epochs() if epoch >= m)
        return self.lr * self.gamma**decays

    def with_overrides(self, **overrides: Any) -> Protocol:
        """A copy with the non-None ``overrides`` applied, validated."""
        values = {k: v for k, v in overrides.items() if v is not None}
        unknown = set(values) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise UsageError(f"unknown protocol parameter(s) {', '.join(sorted(unknown))}")
        protocol = dataclasses.replace(self, **values)
        for name in ("epochs", "batch"):
            if getattr(protocol, name) < 1:
                raise UsageError(f"--{name} must be >= 1, got {getattr(protocol, name)}")
        if protocol.lr <= 0:
            raise UsageError(f"--lr must be > 0, got {protocol.lr}")
        return protocol

    def for_dataset(self, dataset: str) -> Protocol:
        """The protocol as applied to ``dataset`` (IDC drops flips for digit datasets)."""
        if dataset not in self.no_flip_datasets:
            return self
        kept = [op for op in self.dsa_strategy.split("_") if op != "flip"]
        return dataclasses.replace(self, dsa_strategy="_".join(kept) or "none")

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["milestones"] = list(self.milestones)
        out["no_flip_datasets"] = list(self.no_flip_datasets)
        out["milestone_epochs"] = self.milestone_epochs()
        return out


PROTOCOLS: dict[str, Protocol] = {
    "dc": Protocol(
        name="dc",
        epochs=1000,
        batch=256,
        lr=0.01,
        milestones=(0.5,),
        gamma=0.1,
        reset_momentum=True,
        dsa_strategy="color_crop_cutout_flip_scale_rotate",
        dsa_mode="dsa",
        description="DC/DSA/DM evaluate_synset: SGD 0.01, x0.1 at half, per-sample DSA",
    ),
    "idc": Protocol(
        name="idc",
        epochs=1500,
        batch=64,
        lr=0.01,
        milestones=(2 / 3, 5 / 6),
        gamma=0.2,
        reset_momentum=False,
        dsa_strategy="color_crop_flip_scale_rotate",
        dsa_mode="idc",
        cutmix_prob=0.5,
        cutmix_beta=1.0,
        no_flip_datasets=("mnist", "svhn"),
        description="IDC/DANCE: batch 64, x0.2 at 2/3 and 5/6, IDC DiffAug + CutMix p=0.5",
    ),
}


def get_protocol(name: str) -> Protocol:
    """The registered protocol ``name``."""
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise UsageError(f"unknown protocol {name!r}; choose one of {', '.join(PROTOCOLS)}") from None
