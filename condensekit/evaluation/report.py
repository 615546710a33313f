"""The result of an evaluation, as stored in the registry (plain data, no torch)."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from typing import Any

from condensekit import __version__

#: Mean and std over runs: the population std (ddof 0), as ``np.std`` in the DC code.
STD_KIND = "population"


@dataclass
class ArchResult:
    """Accuracies (percent) of the runs of one architecture, with each run's seed."""

    arch: str
    accuracies: list[float]
    seeds: list[int]
    wall_time_s: float

    @property
    def mean(self) -> float:
        return statistics.fmean(self.accuracies)

    @property
    def std(self) -> float:
        """Population std (ddof 0)."""
        return statistics.pstdev(self.accuracies)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "mean": self.mean, "std": self.std}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArchResult:
        return cls(
            arch=data["arch"],
            accuracies=[float(a) for a in data["accuracies"]],
            seeds=[int(s) for s in data.get("seeds", [])],
            wall_time_s=float(data.get("wall_time_s", 0.0)),
        )


@dataclass
class EvalReport:
    """An evaluation: the protocol name, every effective parameter, and per-arch results."""

    protocol: str
    params: dict[str, Any]
    results: list[ArchResult]
    device: str
    condensekit_version: str = __version__

    def result(self, arch: str) -> ArchResult:
        for r in self.results:
            if r.arch == arch:
                return r
        raise KeyError(f"no result for architecture {arch!r}")

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready; ``results`` is the list the registry indexes (arch, mean, std)."""
        return {
            "protocol": self.protocol,
            "params": self.params,
            "results": [r.as_dict() for r in self.results],
            "device": self.device,
            "condensekit_version": self.condensekit_version,
            "std_kind": STD_KIND,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalReport:
        return cls(
            protocol=data["protocol"],
            params=dict(data.get("params", {})),
            results=[ArchResult.from_dict(r) for r in data["results"]],
            device=data.get("device", ""),
            condensekit_version=data.get("condensekit_version", ""),
        )
