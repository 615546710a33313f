"""DD-Ranking's scores of a set (arXiv 2505.13300), from evaluations of the ``kd`` protocol family.

DD-Ranking asks how much of an accuracy is the data and how much the labels and the
augmentation (``ddranking/metrics/soft_label.py`` and ``aug_robust.py`` in
NUS-HPC-AI-Lab/DD-Ranking b8b0966). From five evaluations of one architecture, run ``k`` of
each paired (the same run seeds), with accuracies as fractions:

- hard label recovery ``HLR = acc(full real set, hard labels) - acc(set, hard labels)``;
- improvement over random ``IOR = acc(set, kd) - acc(random, kd)``, where ``random`` holds
  real images drawn at random, as many per class as the set (condensekit's ``random``
  method, made and stored once per dataset, resolution and IPC);
- label-robust score ``LRS = (exp(a) - exp(-1)) / (e - exp(-1))``, ``a = w IOR - (1 - w) HLR``;
- augmentation-robust score ``ARS``, the same normalization of ``b = g (acc(set, kd) -
  acc(random, kd)) + (1 - g) (acc(set, kd no aug) - acc(random, kd no aug))``.

``kd`` is the protocol with the teacher relabelling every view, "no aug" the same without
flip and CutMix, "hard labels" the same recipe on the set's hard labels without
augmentation (DD-Ranking's ``use_aug_for_hard=False``). Each score is the mean and
population std over runs (``np.std``, as DD-Ranking). The evaluations are ordinary stored
results (``kd`` and its variants, e.g. ``kd:cutmix_prob=0.0,dsa=False``): only the missing
ones are run. The scores are stored as a record of their own
(:data:`~condensekit.registry.store.SCORES_KIND`) naming the evaluations they come from.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from condensekit import __version__
from condensekit.errors import UsageError
from condensekit.evaluation.protocols import PROTOCOLS, Protocol
from condensekit.evaluation.report import STD_KIND
from condensekit.evaluation.train import check_max_parallel_runs

if TYPE_CHECKING:
    from condensekit.data.base import DatasetInfo
    from condensekit.evaluation.runner import EvalProgress
    from condensekit.evaluation.teacher import Teacher
    from condensekit.registry import Registry

#: The protocol family the scores are computed in.
FAMILY = "kd"
#: The ``protocol`` of a stored scores record.
SCORES_PROTOCOL = "dd-ranking"
#: The evaluations the scores need: name -> (whose: the set or the random baseline,
#: overrides of the ``kd`` protocol).
EVALUATIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "set_hard": ("set", {"targets": "hard", "dsa": False, "cutmix_prob": 0.0}),
    "set_kd": ("set", {}),
    "random_kd": ("random", {}),
    "set_kd_no_aug": ("set", {"dsa": False, "cutmix_prob": 0.0}),
    "random_kd_no_aug": ("random", {"dsa": False, "cutmix_prob": 0.0}),
}


@dataclass(frozen=True)
class ScoresRequest:
    """What ``condensekit eval REF --scores`` asks for: the set, the student architecture and
    the evaluations' budget; ``full_acc`` (percent) the full real set's hard-label accuracy
    of ``arch`` (else the teacher's experts' recorded test accuracy where they are that
    architecture); ``lrs_weight`` and ``ars_weight`` DD-Ranking's ``w`` and ``g``."""

    ref: str | None = None
    arch: str = "default"
    runs: int = 5
    seed: int = 0
    epochs: int | None = None
    device: str = "auto"
    precision: str = "fp32"
    teacher: str | None = None
    full_acc: float | None = None
    lrs_weight: float = 0.5
    ars_weight: float = 0.5
    max_parallel_runs: int | None = None
    registry: str | None = None
    data_root: str | None = None


@dataclass
class ScoresResult:
    """The stored scores record (``record``, its id) and which evaluations ran for it."""

    ref: str
    record_id: int
    record: dict[str, Any]
    ran: list[str]
    reused: bool

    def as_dict(self) -> dict[str, Any]:
        return {"ref": self.ref, "record_id": self.record_id, "ran": self.ran, "reused": self.reused, **self.record}


def normalized(x: float) -> float:
    """DD-Ranking's map of a weighted accuracy difference in [-1, 1] onto [0, 1]."""
    return (math.exp(x) - math.exp(-1)) / (math.e - math.exp(-1))


def variant(name: str, epochs: int | None = None) -> Protocol:
    """The ``kd`` protocol as evaluation ``name`` of :data:`EVALUATIONS` runs it."""
    return PROTOCOLS[FAMILY].with_overrides(**EVALUATIONS[name][1], epochs=epochs)


def compute_scores(
    request: ScoresRequest,
    *,
    notify: Callable[[str], None] | None = None,
    progress: Callable[[str, EvalProgress], None] | None = None,
) -> ScoresResult:
    """Run the evaluations DD-Ranking's scores need that are not stored yet (making the random
    baseline when it is missing), then compute and store the scores (unless a record of the
    same evaluations is stored already). Every input is checked before any training: the
    numbers, the teacher against the set, the full-set accuracy."""
    from condensekit import runtime
    from condensekit.data import dataset_info
    from condensekit.evaluation.runner import _arch_names
    from condensekit.evaluation.teacher import teacher_for
    from condensekit.precision import check_precision
    from condensekit.registry import Registry

    say = notify or (lambda _message: None)
    _check_request(request)
    protocols = {name: variant(name, request.epochs) for name in EVALUATIONS}
    dev = runtime.select_device(request.device)
    check_precision(request.precision, dev.type)
    with Registry(request.registry) as reg:
        shown = reg.show(request.ref)
        ref, meta = str(shown["ref"]), shown["metadata"]
        dataset = meta.get("dataset")
        if not dataset:
            raise UsageError(f"{ref} has no 'dataset' in its metadata; cannot score it")
        synset = reg.load(ref)
        info = dataset_info(str(dataset), int(synset.images.shape[-1]))
        ipc = int(meta.get("ipc") or max(1, synset.labels.numel() // info.num_classes))
        archs = _arch_names(request.arch, info.default_backbone)
        if len(archs) != 1:
            raise UsageError(f"scores are computed for one architecture; pass one --arch, not {', '.join(archs)}")
        arch = archs[0]
        teacher = teacher_for(request.teacher, synset, reg, device=dev)
        full_acc, full_source = _full_accuracy(request, teacher, arch, info)
        reg.check_writable()
        random_ref = find_random(reg, info, ipc) or _make_random(reg, info, ipc, request, say)
        refs = {"set": ref, "random": random_ref}
        stored = {r: reg.show(r)["evals"] for r in set(refs.values())}

        def matching(name: str) -> dict[str, Any] | None:
            return _matching(stored[refs[EVALUATIONS[name][0]]], protocols[name], arch, request, teacher)

        ran = []
        for name in EVALUATIONS:  # the set may be its own random baseline: check each in turn
            if matching(name) is not None:
                continue
            target = refs[EVALUATIONS[name][0]]
            say(f"evaluating {target} with {_label(protocols[name])} ({request.runs} runs of {arch})")
            _evaluate(reg, target, protocols[name], arch, request, teacher, name, progress)
            stored[target] = reg.show(target)["evals"]
            ran.append(name)
        used = {name: matching(name) for name in EVALUATIONS}
        record = _record(used, refs, arch, request, teacher, full_acc, full_source, info, ipc)
        for existing in reversed(reg.score_records(ref)):
            if _same_scores(existing["result"], record):
                return ScoresResult(ref, int(existing["id"]), existing["result"], ran, reused=True)
        record_id = reg.record_eval(ref, record)
    return ScoresResult(ref, record_id, record, ran, reused=False)


def _check_request(request: ScoresRequest) -> None:
    if request.runs < 1:
        raise UsageError(f"--runs must be >= 1, got {request.runs}")
    check_max_parallel_runs(request.max_parallel_runs)
    if request.full_acc is not None and not 0 < request.full_acc <= 100:
        raise UsageError(f"--full-acc is a test accuracy in percent, in (0, 100]; got {request.full_acc}")
    for name, weight in (("LRS weight", request.lrs_weight), ("ARS weight", request.ars_weight)):
        if not 0 <= weight <= 1:
            raise UsageError(f"the {name} must lie in [0, 1], got {weight}")


def _full_accuracy(request: ScoresRequest, teacher: Teacher, arch: str, info: DatasetInfo) -> tuple[float, str]:
    """The full real set's hard-label test accuracy of ``arch`` (percent) and where it comes
    from: ``--full-acc``, else the teacher's experts when they are ``arch`` networks trained
    on the dataset (their mean recorded test accuracy)."""
    if request.full_acc is not None:
        return float(request.full_acc), "--full-acc"
    if teacher.ref is not None and teacher.backbone == arch and teacher.test_accuracy is not None:
        return teacher.test_accuracy, f"experts {teacher.ref}: mean test accuracy of its {arch} networks"
    raise UsageError(
        f"hard label recovery needs the test accuracy of {arch} trained on the whole of {info.name}; pass "
        f"--full-acc PERCENT, or a --teacher of experts of {arch} with recorded test accuracy"
    )


def find_random(registry: Registry, info: DatasetInfo, ipc: int) -> str | None:
    """The newest stored set of the ``random`` method for ``info``'s dataset, resolution and
    ``ipc``, or None."""
    found: list[tuple[str, str]] = []
    for row in registry.list_sets():
        if row["method"] != "random" or row["dataset"] != info.name:
            continue
        for version in row["versions"]:
            shown = registry.show(f"{row['name']}:v{version}")
            meta = shown["metadata"]
            if meta.get("ipc") == ipc and meta.get("resolution") == info.resolution and not meta.get("factor", 1) > 1:
                found.append((str(shown["created"]), str(shown["ref"])))
    return max(found)[1] if found else None


def _make_random(
    registry: Registry, info: DatasetInfo, ipc: int, request: ScoresRequest, say: Callable[[str], None]
) -> str:
    """Distill (store) the random baseline through the one distill pipeline."""
    from condensekit.data import dataset_info
    from condensekit.distill import distill
    from condensekit.registry.refs import default_name

    native = dataset_info(info.name).resolution == info.resolution
    name = default_name("random", info.name, f"ipc{ipc}", None if native else f"res{info.resolution}")
    say(f"no random baseline of {info.name} at IPC {ipc} yet: making {name} (real images drawn at random)")
    result = distill(
        "random",
        info.name,
        ipc,
        registry=registry,
        resolution=info.resolution,
        data_root=request.data_root,
        device=request.device,
        name=name,
    )
    assert result.version is not None  # saved: a registry was given
    say(f"saved the random baseline as {result.version.ref}")
    return result.version.ref


def _normal(value: Any) -> Any:
    """``value`` as stored JSON reads it back (tuples become lists)."""
    return json.loads(json.dumps(value, default=str))


def _label(protocol: Protocol) -> str:
    from condensekit.leaderboard import protocol_label

    return protocol_label(protocol.name, protocol.overrides_against(PROTOCOLS[protocol.name]))


def _matching(
    evals: list[dict[str, Any]],
    protocol: Protocol,
    arch: str,
    request: ScoresRequest,
    teacher: Teacher,
) -> dict[str, Any] | None:
    """The newest stored evaluation of ``protocol`` with this architecture, run count, seed,
    precision and (where the protocol relabels) teacher, or None."""
    from condensekit.evaluation.report import runs_per_arch

    overrides = _normal(protocol.overrides_against(PROTOCOLS[protocol.name]))
    for ev in evals[::-1]:
        result: dict[str, Any] = ev["result"]
        params: dict[str, Any] = result.get("params", {})
        if (
            ev.get("protocol") != protocol.name
            or params.get("overrides") != overrides
            or runs_per_arch(result).get(arch) != request.runs
            or params.get("seed") != request.seed
            or params.get("precision") != request.precision
        ):
            continue
        if protocol.relabels and (params.get("teacher") or {}).get("identity") != teacher.identity:
            continue
        return ev
    return None


def _evaluate(
    registry: Registry,
    ref: str,
    protocol: Protocol,
    arch: str,
    request: ScoresRequest,
    teacher: Teacher,
    name: str,
    progress: Callable[[str, EvalProgress], None] | None,
) -> None:
    from condensekit.evaluation.runner import evaluate

    report = evaluate(
        registry.load(ref),
        archs=[arch],
        runs=request.runs,
        protocol=protocol,
        device=request.device,
        seed=request.seed,
        data_root=request.data_root,
        progress=None if progress is None else (lambda event: progress(name, event)),
        precision=request.precision,
        max_parallel_runs=request.max_parallel_runs,
        teacher=teacher if protocol.relabels else None,
    )
    registry.record_eval(ref, report.as_dict())


def _record(
    used: Mapping[str, dict[str, Any] | None],
    refs: Mapping[str, str],
    arch: str,
    request: ScoresRequest,
    teacher: Teacher,
    full_acc: float,
    full_source: str,
    info: DatasetInfo,
    ipc: int,
) -> dict[str, Any]:
    """The scores record: the scores and every input they come from."""
    runs: dict[str, list[float]] = {}
    evaluations: dict[str, dict[str, Any]] = {}
    for name, ev in used.items():
        assert ev is not None  # every missing evaluation has just run
        (result,) = [r for r in ev["result"]["results"] if r["arch"] == arch]
        runs[name] = [float(a) / 100 for a in result["accuracies"]]
        evaluations[name] = {
            "ref": refs[EVALUATIONS[name][0]],
            "eval_id": int(ev["id"]),
            "protocol": _label(variant(name, request.epochs)),
            "accuracies": list(result["accuracies"]),
            "mean": float(result["mean"]),
        }
    full = full_acc / 100
    hlr = [full - a for a in runs["set_hard"]]
    ior = [s - r for s, r in zip(runs["set_kd"], runs["random_kd"], strict=True)]
    no_aug = [s - r for s, r in zip(runs["set_kd_no_aug"], runs["random_kd_no_aug"], strict=True)]
    w, g = request.lrs_weight, request.ars_weight
    lrs = [normalized(w * i - (1 - w) * h) for i, h in zip(ior, hlr, strict=True)]
    ars = [normalized(g * a + (1 - g) * n) for a, n in zip(ior, no_aug, strict=True)]
    return {
        "kind": "scores",
        "protocol": SCORES_PROTOCOL,
        "params": {
            "family": FAMILY,
            "dataset": info.name,
            "resolution": info.resolution,
            "ipc": ipc,
            "arch": arch,
            "runs": request.runs,
            "seed": request.seed,
            "epochs": variant("set_kd", request.epochs).epochs,
            "precision": request.precision,
            "teacher": teacher.describe(),
            "full_acc": full_acc,
            "full_acc_source": full_source,
            "random_ref": refs["random"],
            "lrs_weight": w,
            "ars_weight": g,
        },
        "evaluations": evaluations,
        "scores": {
            "hard_label_recovery": _summary(hlr, 100),
            "improvement_over_random": _summary(ior, 100),
            "improvement_over_random_no_aug": _summary(no_aug, 100),
            "label_robust_score": _summary(lrs, 1),
            "augmentation_robust_score": _summary(ars, 1),
        },
        "units": "HLR and IOR in percentage points; LRS and ARS in [0, 1] (accuracies as fractions)",
        "std_kind": STD_KIND,
        "condensekit_version": __version__,
    }


#: Significant digits the scores keep: a difference of two accuracies printed with 17 digits
#: (25.330000000000002) shows float noise, not precision.
SCORE_DIGITS = 10


def _tidy(value: float) -> float:
    return float(f"{value:.{SCORE_DIGITS}g}")


def _summary(values: list[float], scale: float) -> dict[str, Any]:
    scaled = [v * scale for v in values]
    return {
        "mean": _tidy(statistics.fmean(scaled)),
        "std": _tidy(statistics.pstdev(scaled)),
        "runs": [_tidy(v) for v in scaled],
    }


def _same_scores(stored: Mapping[str, Any], record: Mapping[str, Any]) -> bool:
    """Whether a stored scores record comes from the same evaluations, with the same inputs."""
    keys = ("params", "evaluations")
    return all(_normal(stored.get(k)) == _normal(record.get(k)) for k in keys)


__all__ = [
    "EVALUATIONS",
    "FAMILY",
    "ScoresRequest",
    "ScoresResult",
    "compute_scores",
    "find_random",
    "normalized",
    "variant",
]
