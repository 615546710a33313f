"""The result of an evaluation, as stored in the registry (plain data, no torch)."""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from condensekit import __version__

#: Mean and std over runs: the population std (ddof 0), as ``np.std`` in the DC code.
STD_KIND = "population"
#: The ``arch`` of the row that averages over architectures (see :meth:`EvalReport.mean_over_archs`).
MEAN_ROW = "mean over archs"


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

    def mean_over_archs(self) -> ArchResult | None:
        """The cross-architecture result: None unless there are >= 2 architectures.

        Run ``k`` of the mean is the average over architectures of each one's run ``k``, so
        its mean is the mean of the architectures' means and its std is over runs, as every
        other row's. Its wall time is the whole evaluation's. None as well when the
        architectures have different run counts (never from ``evaluate``, which trains the
        same number for each): the runs would not pair up."""
        if len(self.results) < 2 or len({len(r.accuracies) for r in self.results}) != 1:
            return None
        per_run = [statistics.fmean(accs) for accs in zip(*(r.accuracies for r in self.results), strict=True)]
        return ArchResult(MEAN_ROW, per_run, [], sum(r.wall_time_s for r in self.results))

    def rows(self) -> list[ArchResult]:
        """What a report shows: one row per architecture, then the mean over architectures
        as its own row when there are >= 2."""
        mean = self.mean_over_archs()
        return [*self.results, *([] if mean is None else [mean])]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready; ``results`` is the list the registry indexes (arch, mean, std), one
        entry per architecture; ``mean_over_archs`` is the cross-architecture row (None with
        one architecture), kept apart so that no architecture is called "mean"."""
        mean = self.mean_over_archs()
        return {
            "protocol": self.protocol,
            "params": self.params,
            "results": [r.as_dict() for r in self.results],
            "mean_over_archs": None if mean is None else mean.as_dict(),
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


def runs_per_arch(result: Mapping[str, Any]) -> dict[str, int]:
    """Runs trained per architecture in a stored report (``EvalReport.as_dict()``), counted
    from its per-run accuracies; an architecture whose runs are not listed (a report
    recorded by hand through the registry's API) is left out."""
    results = result.get("results", [])
    return {
        str(r["arch"]): len(r["accuracies"])
        for r in results
        if isinstance(r, dict) and "arch" in r and isinstance(r.get("accuracies"), list)
    }
