"""The leaderboard: every stored evaluation, grouped so that only comparable accuracies meet.

A :class:`Group` is what two accuracies must share to be compared: the dataset at one
resolution, the images per class, the protocol *as run* and the architectures trained. A
protocol run with overridden parameters (``eval --epochs 20``) is a protocol of its own,
labelled ``dc:epochs=20``, never mixed with the plain ``dc``; a mean over several
architectures is not a ConvNet accuracy, so the architecture list is part of the group too.
``condensekit compare`` refuses, without ``--mixed``, sets whose groups differ in any field
but the architectures (it shows each architecture in a column of its own):
:func:`mixed_fields` is that check.

A leaderboard has one :class:`Entry` per set version and group. When a set version has
several evaluations in one group, the one shown is :data:`PICK_RULE`: the most runs, then
the newest. Entries are ranked by mean accuracy within their group.

Text renderings (csv, md, json) are here, in :data:`FORMATS`; :func:`plot` draws the
accuracy against IPC and against distillation wall time with matplotlib, an optional
dependency (``pip install 'condensekit[plot]'``).
"""

from __future__ import annotations

import csv
import io
import json
import os
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from condensekit.errors import UsageError
from condensekit.evaluation.report import EvalReport, runs_per_arch

if TYPE_CHECKING:
    from condensekit.registry import Registry

#: The fields of a group, in the order a leaderboard sorts and prints them.
GROUP_FIELDS = ("dataset", "resolution", "ipc", "protocol", "teacher", "archs")
#: The fields ``compare`` refuses to mix: all but the architectures, which it shows side by side.
COMPARED_FIELDS = ("dataset", "resolution", "ipc", "protocol", "teacher")
#: Which evaluation stands for a set version that has several in one group.
PICK_RULE = "the evaluation with the most runs, then the newest"
#: What ``pip`` installs for :func:`plot`.
PLOT_INSTALL = "pip install 'condensekit[plot]'"


def protocol_label(protocol: str, overrides: Mapping[str, Any] | None) -> str:
    """``dc`` as preset, ``dc:epochs=20`` (keys sorted, joined by commas) with overrides."""
    if not overrides:
        return protocol
    return protocol + ":" + ",".join(f"{key}={_override_value(value)}" for key, value in sorted(overrides.items()))


def _override_value(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "/".join(_override_value(v) for v in value)
    return str(value)


@dataclass(frozen=True)
class Group:
    """The results that can be compared: one dataset, resolution, IPC, protocol, teacher (for
    protocols whose teacher relabels every view: a stronger teacher lifts every set it
    teaches) and set of architectures. None where the stored set or evaluation does not say,
    and ``teacher`` None for protocols without one."""

    dataset: str | None
    resolution: int | None
    ipc: int | None
    protocol: str | None
    archs: tuple[str, ...]
    teacher: str | None = None

    @property
    def label(self) -> str:
        res = "?" if self.resolution is None else f"{self.resolution} px"
        ipc = "?" if self.ipc is None else self.ipc
        protocol = self.protocol or "?"
        if self.teacher is not None:
            protocol += f" (teacher {self.teacher})"
        return f"{self.dataset or '?'} {res} · IPC {ipc} · {protocol} · {', '.join(self.archs) or '?'}"

    def sort_key(self) -> tuple[Any, ...]:
        return (
            self.dataset or "",
            self.resolution or 0,
            self.ipc or 0,
            self.protocol or "",
            self.teacher or "",
            len(self.archs),
            self.archs,
        )

    def without_ipc(self) -> Group:
        """The group with its IPC left open: what one curve of accuracy against IPC spans."""
        return Group(self.dataset, self.resolution, None, self.protocol, self.archs, self.teacher)


def group_of(metadata: Mapping[str, Any], evaluation: Mapping[str, Any] | None) -> Group:
    """The group of one stored evaluation of a set (``Registry.show``'s ``metadata`` and one
    of its ``evals``); with ``evaluation`` None, the set's own fields only."""
    params: Mapping[str, Any] = {}
    protocol = None
    archs: tuple[str, ...] = ()
    if evaluation is not None:
        params = evaluation.get("result", {}).get("params", {}) or {}
        protocol = protocol_label(str(evaluation.get("protocol")), params.get("overrides"))
        archs = tuple(sorted(params.get("archs") or evaluation.get("scores", {})))
    dataset = metadata.get("dataset") or params.get("dataset")
    resolution = metadata.get("resolution") or params.get("resolution")
    ipc = metadata.get("ipc")
    return Group(
        None if dataset is None else str(dataset),
        None if resolution is None else int(resolution),
        None if ipc is None else int(ipc),
        protocol,
        archs,
        _teacher_label(params.get("teacher")),
    )


def _teacher_label(teacher: Any) -> str | None:
    """The teacher an evaluation relabelled with, as its reference (an experts ``NAME:vN``) or,
    for a weights file, the backbone and the start of the file's sha256."""
    if not isinstance(teacher, Mapping):
        return None
    if teacher.get("ref"):
        return str(teacher["ref"])
    return f"{teacher.get('backbone', '?')}@{str(teacher.get('identity', '?'))[:12]}"


def mixed_fields(groups: Iterable[Group], fields: Sequence[str] = COMPARED_FIELDS) -> dict[str, list[str]]:
    """The ``fields`` that take more than one value over ``groups`` (None, unknown, is no
    value), each with its values as text: empty when the groups can be compared."""
    seen: dict[str, list[str]] = {name: [] for name in fields}
    for group in groups:
        for name in fields:
            value = getattr(group, name)
            text = ",".join(value) if isinstance(value, tuple) else None if value is None else str(value)
            if text is not None and text not in seen[name]:
                seen[name].append(text)
    return {name: values for name, values in seen.items() if len(values) > 1}


@dataclass(frozen=True)
class LeaderboardQuery:
    """Which entries to show; None shows all. ``protocol`` is a label: ``dc`` is the preset
    alone, ``dc:epochs=20`` that override of it."""

    dataset: str | None = None
    ipc: int | None = None
    protocol: str | None = None
    method: str | None = None

    def check(self) -> None:
        if self.ipc is not None and self.ipc < 1:
            raise UsageError(f"--ipc must be >= 1, got {self.ipc}")

    def keeps(self, entry: Entry) -> bool:
        group = entry.group
        return (
            (self.dataset is None or group.dataset == self.dataset)
            and (self.ipc is None or group.ipc == self.ipc)
            and (self.protocol is None or group.protocol == self.protocol)
            and (self.method is None or entry.method == self.method)
        )

    def apply(self, board: Iterable[Entry]) -> list[Entry]:
        """The entries kept, ranks unchanged: a rank is within the whole group."""
        self.check()
        return [entry for entry in board if self.keeps(entry)]

    def unmatched(self, board: Sequence[Entry]) -> str:
        """Why nothing is kept, for a notice: each filter given, with the values stored."""
        stored: dict[str, set[Any]] = {
            "--data": {e.group.dataset for e in board},
            "--ipc": {e.group.ipc for e in board},
            "--protocol": {e.group.protocol for e in board},
            "--method": {e.method for e in board},
        }
        given: dict[str, Any] = {
            "--data": self.dataset,
            "--ipc": self.ipc,
            "--protocol": self.protocol,
            "--method": self.method,
        }
        parts = [
            f"{flag} {value} (stored: {', '.join(sorted(str(v) for v in stored[flag] if v is not None)) or 'none'})"
            for flag, value in given.items()
            if value is not None
        ]
        return "no stored evaluation matches " + "; ".join(parts)


@dataclass(frozen=True)
class Entry:
    """One set version in one group: its accuracy (mean ± std over runs; for several
    architectures the mean over them, see ``EvalReport.mean_over_archs``), its cost and
    which evaluation it comes from."""

    group: Group
    rank: int
    ref: str
    method: str | None
    preset: str | None
    mean: float
    std: float | None
    runs: int | None
    iterations: int | None
    distill_wall_time_s: float | None
    eval_wall_time_s: float | None
    eval_id: int
    evaluated: str
    evaluations: int  # evaluations of this set version in the group (one is shown)

    def as_dict(self) -> dict[str, Any]:
        """Flat and JSON-ready: the group's fields, then the entry's (:data:`FIELDS`)."""
        return {
            "dataset": self.group.dataset,
            "resolution": self.group.resolution,
            "ipc": self.group.ipc,
            "protocol": self.group.protocol,
            "teacher": self.group.teacher,
            "archs": ",".join(self.group.archs),
            "rank": self.rank,
            "method": self.method,
            "preset": self.preset,
            "ref": self.ref,
            "mean": self.mean,
            "std": self.std,
            "runs": self.runs,
            "iterations": self.iterations,
            "distill_wall_time_s": self.distill_wall_time_s,
            "eval_wall_time_s": self.eval_wall_time_s,
            "eval_id": self.eval_id,
            "evaluated": self.evaluated,
            "evaluations": self.evaluations,
        }

    def cells(self) -> dict[str, str]:
        """The columns people read (the table and Markdown), as text."""
        return {
            "#": str(self.rank),
            "method": self.method or "-",
            "preset": self.preset or "-",
            "set": self.ref,
            "accuracy (%)": mean_std(self.mean, self.std),
            "runs": "?" if self.runs is None else str(self.runs),
            "budget": f"{'?' if self.iterations is None else self.iterations} it, "
            + _duration(self.distill_wall_time_s),
            "eval": _duration(self.eval_wall_time_s),
        }


#: The columns of :meth:`Entry.as_dict`, in order (the CSV header).
FIELDS = (
    *GROUP_FIELDS,
    "rank",
    "method",
    "preset",
    "ref",
    "mean",
    "std",
    "runs",
    "iterations",
    "distill_wall_time_s",
    "eval_wall_time_s",
    "eval_id",
    "evaluated",
    "evaluations",
)


def mean_std(mean: float, std: float | None) -> str:
    """``41.70 ± 0.35``, or the mean alone when the std is unknown."""
    return f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"


def _duration(seconds: float | None) -> str:
    from condensekit.experts import format_duration  # imports torch: not when the CLI only lists formats

    return "?" if seconds is None else format_duration(seconds)


@dataclass(frozen=True)
class _Score:
    mean: float
    std: float | None
    runs: int | None
    wall_time_s: float | None


def _score(evaluation: Mapping[str, Any]) -> _Score:
    """The accuracy an evaluation stands for: its one architecture's, or with several the
    report's mean over architectures. A report recorded by hand through the API may hold
    only the indexed means: then runs and std are unknown where they cannot be read."""
    try:
        report = EvalReport.from_dict(dict(evaluation["result"]))
    except (KeyError, TypeError, ValueError):
        report = None
    if report is not None and report.results:
        row = report.results[0] if len(report.results) == 1 else report.mean_over_archs()
        if row is not None:
            return _Score(row.mean, row.std, len(row.accuracies), row.wall_time_s)
    scores = list(evaluation.get("scores", {}).values())
    if len(scores) == 1:
        return _Score(float(scores[0]["mean"]), scores[0].get("std"), None, None)
    return _Score(sum(float(s["mean"]) for s in scores) / len(scores), None, None, None)


def _picked(evaluations: list[Mapping[str, Any]]) -> tuple[Mapping[str, Any], _Score]:
    """:data:`PICK_RULE` over one set version's evaluations in one group."""
    scored = [(ev, _score(ev)) for ev in evaluations]
    return max(scored, key=lambda pair: (pair[1].runs or 0, str(pair[0].get("created", "")), pair[0].get("id", 0)))


def stored_evaluations(registry: Registry) -> Iterable[dict[str, Any]]:
    """``Registry.show`` of every set version that has at least one evaluation."""
    for row in registry.list_sets():
        for version in row["versions"]:
            shown = registry.show(f"{row['name']}:v{version}")
            if shown["evals"]:
                yield shown


def entries(shown_sets: Iterable[Mapping[str, Any]]) -> list[Entry]:
    """The leaderboard of sets as ``Registry.show`` gives them: one entry per set version
    and group, ranked by mean accuracy within the group, groups in :data:`GROUP_FIELDS` order."""
    by_group: dict[Group, list[tuple[Mapping[str, Any], list[Mapping[str, Any]]]]] = {}
    for shown in shown_sets:
        meta = shown.get("metadata", {})
        per_group: dict[Group, list[Mapping[str, Any]]] = {}
        for ev in shown.get("evals", []):
            per_group.setdefault(group_of(meta, ev), []).append(ev)
        for group, evaluations in per_group.items():
            by_group.setdefault(group, []).append((shown, evaluations))
    out: list[Entry] = []
    for group in sorted(by_group, key=Group.sort_key):
        picked = [(shown, evs, *_picked(evs)) for shown, evs in by_group[group]]
        picked.sort(key=lambda item: (-item[3].mean, item[0]["ref"]))
        for rank, (shown, evs, ev, score) in enumerate(picked, start=1):
            meta = shown.get("metadata", {})
            out.append(
                Entry(
                    group=group,
                    rank=rank,
                    ref=str(shown["ref"]),
                    method=meta.get("method"),
                    preset=meta.get("preset"),
                    mean=score.mean,
                    std=score.std,
                    runs=score.runs,
                    iterations=meta.get("iterations"),
                    distill_wall_time_s=meta.get("wall_time_s"),
                    eval_wall_time_s=score.wall_time_s,
                    eval_id=int(ev.get("id", 0)),
                    evaluated=str(ev.get("created", "")),
                    evaluations=len(evs),
                )
            )
    return out


def leaderboard(registry: Registry) -> list[Entry]:
    """Every stored evaluation in ``registry``, as :func:`entries` (filter with
    :meth:`LeaderboardQuery.apply`)."""
    return entries(stored_evaluations(registry))


# --- compare ----------------------------------------------------------------------------------


def comparison(
    shown_sets: Sequence[Mapping[str, Any]], protocol: str | None = None, mixed: bool = False
) -> list[dict[str, Any]]:
    """``condensekit compare``'s rows, one per set as ``Registry.show`` gives it: its method,
    dataset and IPC, and per protocol label and architecture the evaluation :data:`PICK_RULE`
    chooses among those that trained it (with the eval's id, date and run count).

    ``protocol`` keeps the evaluations with that label (``dc``: the preset alone). Sets whose groups differ in
    a field of :data:`COMPARED_FIELDS` are a one-line :class:`UsageError` naming the fields,
    unless ``mixed``."""
    kept = []
    for shown in shown_sets:
        meta = shown.get("metadata", {})
        labelled = [(group_of(meta, ev), ev) for ev in shown.get("evals", [])]
        if protocol is not None:
            labelled = [(g, ev) for g, ev in labelled if g.protocol == protocol]
        kept.append((shown, labelled))
    groups = [group_of(shown.get("metadata", {}), None) for shown, _ in kept]  # a set without evaluations too
    groups += [group for _, labelled in kept for group, _ in labelled]
    differing = mixed_fields(groups)
    if differing and not mixed:
        what = ", ".join(f"{name} ({' vs '.join(values)})" for name, values in differing.items())
        hint = "--protocol NAME to keep one protocol, or " if "protocol" in differing else ""
        raise UsageError(
            f"the sets' results are not comparable: they differ in {what}; "
            f"pass {hint}--mixed to show them side by side anyway"
        )
    return [_compare_row(shown, labelled) for shown, labelled in kept]


def _compare_row(shown: Mapping[str, Any], labelled: list[tuple[Group, Mapping[str, Any]]]) -> dict[str, Any]:
    meta = shown.get("metadata", {})
    candidates: dict[tuple[str, str], list[tuple[tuple[int, str, int], dict[str, Any]]]] = {}
    for group, ev in labelled:
        runs = runs_per_arch(ev.get("result", {}))
        for arch, score in ev.get("scores", {}).items():
            key = (runs.get(arch) or 0, str(ev.get("created", "")), int(ev.get("id", 0)))
            chosen = {**score, "runs": runs.get(arch), "eval_id": ev.get("id"), "created": ev.get("created")}
            candidates.setdefault((group.protocol or "?", arch), []).append((key, chosen))
    scores: dict[str, dict[str, dict[str, Any]]] = {}
    for (label, arch), found in candidates.items():
        scores.setdefault(label, {})[arch] = max(found, key=lambda pair: pair[0])[1]
    return {
        "ref": shown["ref"],
        "method": meta.get("method"),
        "dataset": meta.get("dataset"),
        "ipc": meta.get("ipc"),
        "scores": scores,
    }


# --- text formats -----------------------------------------------------------------------------


def to_csv(board: Sequence[Entry]) -> str:
    """One row per entry, with every field of :data:`FIELDS` (numbers unformatted)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(FIELDS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(entry.as_dict() for entry in board)
    return buffer.getvalue()


def to_markdown(board: Sequence[Entry]) -> str:
    """A GitHub table per group, under a heading that names the group."""
    blocks = []
    for group, rows in by_group(board).items():
        header = list(rows[0].cells())
        lines = [f"#### {group.label}", "", _md_row(header), _md_row(["---"] * len(header))]
        lines += [_md_row(list(entry.cells().values())) for entry in rows]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + ("\n" if blocks else "")


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def to_json(board: Sequence[Entry]) -> str:
    """A list of :meth:`Entry.as_dict`."""
    return json.dumps([entry.as_dict() for entry in board], indent=2) + "\n"


#: ``--format`` names of the text renderings (the CLI adds its rich ``table``).
FORMATS: dict[str, Callable[[Sequence[Entry]], str]] = {"csv": to_csv, "md": to_markdown, "json": to_json}


def by_group(board: Iterable[Entry]) -> dict[Group, list[Entry]]:
    """Entries per group, in order."""
    out: dict[Group, list[Entry]] = {}
    for entry in board:
        out.setdefault(entry.group, []).append(entry)
    return out


# --- plot -------------------------------------------------------------------------------------


def check_plot_target(path: str | os.PathLike[str]) -> Path:
    """Refuse, before any work, a plot that cannot be written: matplotlib missing, a format
    it does not write, or a folder that does not exist."""
    target = Path(path)
    try:
        import matplotlib
    except ImportError:
        raise UsageError(f"--plot needs matplotlib, which is not installed: {PLOT_INSTALL}") from None
    matplotlib.use("Agg")
    from matplotlib.backend_bases import FigureCanvasBase

    formats = FigureCanvasBase.get_supported_filetypes()
    suffix = target.suffix.lower().lstrip(".")
    if suffix not in formats:
        raise UsageError(f"--plot {target}: cannot tell the format; end the name in one of .{', .'.join(formats)}")
    if not target.parent.is_dir():
        raise UsageError(f"--plot {target}: folder {target.parent} does not exist; create it first")
    return target


def plot(board: Sequence[Entry], path: str | os.PathLike[str]) -> Path:
    """Draw ``board`` into ``path`` (its format follows the extension, e.g. .png).

    One row of two panels per group with its IPC left open (dataset, resolution, protocol,
    architectures): accuracy against IPC, one line per method (its colour) through its best
    set at each IPC; and the same sets' accuracy against their distillation wall time, one
    marker per IPC (a method's sets all take similar times, so lines would be vertical
    strokes there). Error bars are the std over runs. The file is written under a temporary
    name and renamed into place."""
    target = check_plot_target(path)
    if not board:
        raise UsageError("no stored evaluation matches; nothing to plot")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    families: dict[Group, list[Entry]] = {}
    for entry in board:
        families.setdefault(entry.group.without_ipc(), []).append(entry)
    methods = sorted({entry.method or "?" for entry in board})
    cmap = plt.get_cmap("tab10")
    colors = {method: cmap(i % 10) for i, method in enumerate(methods)}
    ipcs = sorted({entry.group.ipc or 0 for entry in board})
    markers = {ipc: _MARKERS[i % len(_MARKERS)] for i, ipc in enumerate(ipcs)}

    fig, axes = plt.subplots(len(families), 2, figsize=(13, 4.6 * len(families)), squeeze=False, layout="constrained")
    for (family, members), (by_ipc, by_time) in zip(families.items(), axes, strict=True):
        shown_methods, shown_ipcs = [], set()
        for method in methods:
            points = _best_per_ipc([e for e in members if (e.method or "?") == method])
            if not points:
                continue
            shown_methods.append(method)
            by_ipc.errorbar(
                [e.group.ipc or 0 for e in points],
                [e.mean for e in points],
                yerr=[e.std or 0.0 for e in points],
                color=colors[method],
                marker="o",
                capsize=3,
                linewidth=1.6,
            )
            for e in points:
                if e.distill_wall_time_s:
                    shown_ipcs.add(e.group.ipc or 0)
                    by_time.errorbar(
                        [e.distill_wall_time_s],
                        [e.mean],
                        yerr=[e.std or 0.0],
                        color=colors[method],
                        marker=markers[e.group.ipc or 0],
                        markersize=8,
                        capsize=3,
                        linestyle="none",
                    )
        family_ipcs = sorted({e.group.ipc for e in members if e.group.ipc})
        by_ipc.set_xscale("log")
        by_ipc.set_xticks(family_ipcs)
        by_ipc.xaxis.set_major_formatter(ScalarFormatter())
        by_ipc.xaxis.set_minor_formatter(NullFormatter())
        if family_ipcs:
            by_ipc.set_xlim(family_ipcs[0] / 1.5, family_ipcs[-1] * 1.5)
        by_ipc.set_xlabel("images per class (IPC, log scale)")
        by_ipc.set_title(f"accuracy vs IPC: {_family_title(family)}", fontsize=10)
        by_time.set_xscale("log")
        by_time.set_xlabel("distillation wall time (s, log scale)")
        by_time.set_title(f"accuracy vs distillation time: {_family_title(family)}", fontsize=10)
        method_keys = [Line2D([], [], color=colors[m], marker="o", label=m) for m in shown_methods]
        ipc_keys = [
            Line2D([], [], color="0.3", marker=markers[i], linestyle="none", label=f"IPC {i}")
            for i in ipcs
            if i in shown_ipcs
        ]
        by_ipc.legend(handles=method_keys, title="method", fontsize=9, loc="best")
        by_time.legend(handles=method_keys + ipc_keys, title="method, IPC", fontsize=9, loc="best")
        for ax in (by_ipc, by_time):
            ax.set_ylabel("test accuracy (%)")
            ax.grid(True, which="major", alpha=0.3)
    fig.suptitle("condensekit leaderboard: each method's best set per IPC; error bars: std over runs", fontsize=12)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.partial{target.suffix}")
    try:
        fig.savefig(tmp, dpi=120)
        os.replace(tmp, target)
    except OSError as exc:
        raise UsageError(f"cannot write --plot {target}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return target


#: Markers of the IPCs in the distillation-time panel, in IPC order.
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def _best_per_ipc(members: Iterable[Entry]) -> list[Entry]:
    """The best-ranked entry per IPC, in IPC order (a group ranks by mean accuracy)."""
    best: dict[int, Entry] = {}
    for entry in members:
        ipc = entry.group.ipc or 0
        if ipc not in best or entry.rank < best[ipc].rank:
            best[ipc] = entry
    return [best[ipc] for ipc in sorted(best)]


def _family_title(family: Group) -> str:
    res = "" if family.resolution is None else f" {family.resolution} px"
    return f"{family.dataset or '?'}{res}, {family.protocol or '?'}, {', '.join(family.archs)}"
