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

    ``epochs`` is the number a recipe's users quote (DC's ``epoch_eval_train``, IDC's
    ``epochs``); a network trains :attr:`trained_epochs` ``= epochs + extra_epochs`` of them.
    ``milestones`` are fractions of ``epochs``: after ``floor(m * epochs) + milestone_offset``
    trained epochs the learning rate is multiplied by ``gamma``. ``reset_momentum`` clears
    SGD's momentum buffers at each milestone (DC rebuilds its optimizer there; IDC's
    MultiStepLR keeps them).

    DC's ``evaluate_synset`` for ``epoch_eval_train = E`` runs ``for ep in range(E + 1)`` and
    decays (with a new optimizer) after epoch ``ep == E // 2 + 1``: E + 1 epochs, the first
    E // 2 + 2 at the full rate, hence ``extra_epochs=1`` and ``milestone_offset=2`` for ``dc``
    (E = 300: 301 epochs, 152 at 0.01 and 149 at 0.001). IDC trains exactly ``epochs`` and
    decays after ``floor(m * epochs)``: both 0.
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
    extra_epochs: int = 0  # trained beyond ``epochs`` (DC: 1)
    milestone_offset: int = 0  # added to every milestone epoch (DC: 2)
    dsa: bool = True
    dsa_strategy: str = "color_crop_cutout_flip_scale_rotate"
    dsa_mode: str = "dsa"
    cutmix_prob: float = 0.0
    cutmix_beta: float = 1.0
    no_flip_datasets: tuple[str, ...] = ()  # datasets whose DSA drops 'flip' (digits)
    description: str = ""

    @property
    def trained_epochs(self) -> int:
        """How many epochs a network actually trains."""
        return self.epochs + self.extra_epochs

    def milestone_epochs(self) -> list[int]:
        """Trained-epoch counts after which the learning rate decays."""
        # The epsilon keeps 2/3 * 1500 at 1000 despite float rounding (IDC: 2 * E // 3).
        return [int(m * self.epochs + 1e-9) + self.milestone_offset for m in self.milestones]

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
        for name in ("extra_epochs", "milestone_offset"):
            if getattr(protocol, name) < 0:
                raise UsageError(f"protocol {name} must be >= 0, got {getattr(protocol, name)}")
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
        """The recipe as recorded with results, with its ``milestone_epochs``.

        ``extra_epochs`` and ``milestone_offset`` are left out where both are 0, so a recipe
        recorded before they existed reads, and hashes (stored experts' ``recipe_hash``), the
        same."""
        out = dataclasses.asdict(self)
        out["milestones"] = list(self.milestones)
        out["no_flip_datasets"] = list(self.no_flip_datasets)
        out["milestone_epochs"] = self.milestone_epochs()
        if not (self.extra_epochs or self.milestone_offset):
            del out["extra_epochs"], out["milestone_offset"]
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
        extra_epochs=1,
        milestone_offset=2,
        dsa_strategy="color_crop_cutout_flip_scale_rotate",
        dsa_mode="dsa",
        description="DC/DSA/DM evaluate_synset: E + 1 epochs, SGD 0.01, x0.1 after E // 2 + 2, per-sample DSA",
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
