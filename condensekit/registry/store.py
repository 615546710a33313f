"""The registry: versioned synthetic sets and experts in immutable files, indexed in SQLite.

Layout under the root (``--registry`` > ``$CONDENSEKIT_REGISTRY`` > ``./registry``)::

    sets/<name>/v<N>.h5      one HDF5 file per set version (docs/format.md)
    experts/<name>/v<N>.pt   one torch.save file per experts version
    index.sqlite             names, versions, aliases, evaluations
    tmp/                     files being written
    runs/<run key>/          checkpoints of distillations not saved yet (condensekit.registry.runs)

Write protocol (atomic, safe with concurrent writers): the file is written to
``tmp/<host>.<pid>.<uuid>.partial``, fsynced, and then, inside one ``BEGIN IMMEDIATE``
transaction, the next version is picked, the file renamed to its final path and the row
inserted before the commit. A crash before the rename leaves a temp file, a crash between
rename and commit an unindexed file: :meth:`Registry.check` reports both and removes them
with ``fix=True``; a version number whose file exists is skipped, never overwritten.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import signal
import socket
import sqlite3
import stat
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from condensekit.errors import DatasetError, RegistryError
from condensekit.experts import Experts
from condensekit.paths import registry_root
from condensekit.registry import format as h5format
from condensekit.registry.index import INDEX_FILE, Index
from condensekit.registry.refs import Ref, closest, default_name, parse_ref, validate_alias, validate_name
from condensekit.registry.runs import Removed, RemoveRuns, RunInfo, check_runs, list_runs, remove_runs
from condensekit.synthetic import SyntheticSet

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self from Python 3.11 on

KINDS: dict[str, tuple[str, str]] = {"set": ("sets", ".h5"), "experts": ("experts", ".pt")}
EXPERTS_FORMAT = "condensekit-experts"
EXPERTS_FORMAT_VERSION = 1
_PARTIAL = ".partial"
#: The ``kind`` of a stored record that holds scores computed from other evaluations (DD-Ranking's,
#: :mod:`condensekit.evaluation.scores`), not accuracies: it indexes no accuracy, and ``show``
#: lists it under ``scores`` instead of ``evals``.
SCORES_KIND = "scores"


@dataclass(frozen=True)
class SetVersion:
    """One stored version of a set (``kind="set"``) or of experts (``kind="experts"``)."""

    kind: str
    name: str
    version: int
    path: Path
    sha256: str
    created: str

    @property
    def ref(self) -> str:
        return f"{self.name}:v{self.version}"


class Registry:
    """A registry rooted at ``root`` (default: :func:`condensekit.paths.registry_root`).

    Nothing is created on disk until the first write; reading an absent registry behaves
    as an empty one."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = registry_root(root).absolute()
        self._index: Index | None = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._index is not None:
            self._index.close()
            self._index = None

    def _db(self) -> Index:
        """The index, created on first use."""
        if self._index is None:
            self._index = Index(self.root)
        return self._index

    def _existing_db(self) -> Index | None:
        """The index if the registry has one (None: nothing stored yet; nothing is created)."""
        if self._index is None and (self.root / INDEX_FILE).exists():
            self._index = Index(self.root)
        return self._index

    # --- sets -----------------------------------------------------------------------------

    def save(self, synset: SyntheticSet, name: str | None = None, dtype: str = "float32") -> SetVersion:
        """Store ``synset`` as the next version of ``name`` (default
        ``<method>-<dataset>-ipc<k>``). ``dtype="float16"`` halves the file; the set then
        loads back rounded to float16 precision."""
        meta = synset.metadata
        name = (
            validate_name(name)
            if name
            else default_name(
                meta.get("method", "set"), meta.get("dataset"), None if meta.get("ipc") is None else f"ipc{meta['ipc']}"
            )
        )
        tmp = self._writable_temp_path()
        try:
            with _deferred_interrupt():
                sha, written = h5format.write_set(tmp, synset, dtype)
        except BaseException as exc:
            tmp.unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise write_error(exc, self.root) from None
            raise
        columns = {key: written.get(key) for key in ("method", "dataset", "ipc", "backbone", "resolution")}
        columns["size"] = len(synset)
        index_meta = {**written, "pixel_space": synset.pixel_space, "factor": synset.factor, "stored_dtype": dtype}
        return self._commit(tmp, "set", name, sha, index_meta, columns)

    def load(self, ref: str | None = None) -> SyntheticSet:
        """The set ``ref`` points to, verified against its sha256, with ``name``,
        ``version``, ``ref`` and ``sha256`` added to its metadata."""
        found = self.resolve(ref)
        synset, sha = h5format.read_set(found.path, verify=True)
        if sha != found.sha256:
            raise RegistryError(
                f"{found.ref}: file sha256 differs from the index (the file was replaced); "
                "run `condensekit registry check`"
            )
        synset.metadata.update(name=found.name, version=found.version, ref=found.ref, sha256=sha)
        return synset

    def resolve(self, ref: str | None = None, kind: str = "set") -> SetVersion:
        """``name``, ``name:vN``, ``name:latest`` or ``name:<alias>``; None: the newest
        version written of any name."""
        index = self._existing_db()
        what = "set" if kind == "set" else "experts"
        if index is None:
            raise RegistryError(
                f"no {what} in the registry at {self.root} (it is empty); pass --registry or set CONDENSEKIT_REGISTRY"
            )
        if ref is None:
            row = index.latest(kind)
            if row is None:
                raise RegistryError(f"no {what} in the registry at {self.root}")
            return self._version(row)
        parsed = parse_ref(ref)
        row = self._find(index, kind, parsed)
        return self._version(row)

    def tag(self, ref: str, alias: str, kind: str = "set") -> SetVersion:
        """Point ``alias`` of the referenced name at this version (moving it if it exists)."""
        validate_alias(alias)
        target = self.resolve(ref, kind)
        index = self._db()
        with index.write():
            row = index.version(kind, target.name, target.version)
            if row is None:
                raise RegistryError(f"{target.ref} was removed meanwhile")
            index.set_alias(kind, target.name, alias, row["id"])
        return target

    def remove(self, ref: str, kind: str = "set") -> SetVersion:
        """Delete one version: its index row (with its aliases and evaluations), then its file."""
        target = self.resolve(ref, kind)
        index = self._db()
        with index.write():
            row = index.version(kind, target.name, target.version)
            if row is not None:
                index.delete_version(row["id"])
        _unlink(target.path)
        return target

    def list_sets(self) -> list[dict[str, Any]]:
        """One row per set name: versions, aliases, the latest version's method/dataset/ipc,
        and the best recorded evaluation (over all versions and architectures)."""
        index = self._existing_db()
        if index is None:
            return []
        out = []
        for name in sorted(index.names("set")):
            versions = index.versions("set", name)
            latest = versions[-1]
            best = index.best_score("set", name)
            out.append(
                {
                    "name": name,
                    "versions": [v["version"] for v in versions],
                    "latest": latest["version"],
                    "aliases": index.aliases("set", name),
                    "method": latest["method"],
                    "dataset": latest["dataset"],
                    "ipc": latest["ipc"],
                    "created": latest["created"],
                    "best_accuracy": None if best is None else best["mean"],
                    "best": None if best is None else {"ref": f"{name}:v{best['version']}", **best},
                }
            )
        return out

    def show(self, ref: str | None = None, kind: str = "set") -> dict[str, Any]:
        """Everything known about one version: index facts, file metadata, evaluations."""
        found = self.resolve(ref, kind)
        index = self._db()
        row = index.version(kind, found.name, found.version)
        if row is None:
            raise RegistryError(f"{found.ref} was removed meanwhile")
        aliases = [a for a, v in index.aliases(kind, found.name).items() if v == found.version]
        latest = index.latest(kind, found.name)
        if latest is not None and latest["version"] == found.version:  # None: removed meanwhile
            aliases.insert(0, "latest")
        return {
            "ref": found.ref,
            "kind": kind,
            "name": found.name,
            "version": found.version,
            "path": str(found.path),
            "sha256": found.sha256,
            "created": found.created,
            "aliases": aliases,
            "size": row["size"],
            "metadata": json.loads(row["metadata"]),
            **_split_records(index.evals(row["id"])),
        }

    # --- evaluations ----------------------------------------------------------------------

    def record_eval(self, ref: str, result: dict[str, Any]) -> int:
        """Attach an evaluation report to a set version; returns the evaluation id.

        ``result`` is ``EvalReport.as_dict()``: ``protocol`` and ``results``, a list of
        per-architecture dicts with ``arch``, ``mean`` and ``std``. The whole report is
        stored as JSON; protocol, arch, mean and std also as queryable columns. A record of
        ``kind`` :data:`SCORES_KIND` (scores computed from evaluations) is stored whole and
        indexes no accuracy."""
        target = self.resolve(ref)
        scores = {} if result.get("kind") == SCORES_KIND else _arch_scores(result)
        index = self._db()
        with index.write():
            row = index.version("set", target.name, target.version)
            if row is None:
                raise RegistryError(f"{target.ref} was removed meanwhile")
            return index.insert_eval(row["id"], result.get("protocol"), result, scores)

    def evals(self, ref: str | None = None) -> list[dict[str, Any]]:
        """Evaluations of one set version, oldest first: ``id``, ``protocol``, ``created``,
        ``scores`` (arch -> mean/std) and the full ``result`` (records of scores computed from
        them are :meth:`score_records`)."""
        return self._records(ref)["evals"]

    def score_records(self, ref: str | None = None) -> list[dict[str, Any]]:
        """Records of kind :data:`SCORES_KIND` of one set version, oldest first (``id``,
        ``protocol``, ``created``, ``result``)."""
        return self._records(ref)["scores"]

    def _records(self, ref: str | None) -> dict[str, list[dict[str, Any]]]:
        target = self.resolve(ref)
        index = self._db()
        row = index.version("set", target.name, target.version)
        return _split_records([] if row is None else index.evals(row["id"]))

    # --- experts --------------------------------------------------------------------------

    def save_experts(self, experts: Experts, name: str | None = None) -> SetVersion:
        """Store trained experts (default name ``<dataset>-<backbone>``, with ``-<res>`` when
        the resolution is not the dataset's native one)."""
        name = validate_name(name) if name else _experts_name(experts)
        payload: dict[str, Any] = {
            "format": EXPERTS_FORMAT,
            "format_version": EXPERTS_FORMAT_VERSION,
            "dataset": experts.dataset,
            "backbone": experts.backbone,
            "resolution": int(experts.resolution),
            "initial": [_cpu_state(s) for s in experts.initial],
            "trained": [_cpu_state(s) for s in experts.trained],
            # JSON text keeps arbitrary metadata loadable with weights_only=True.
            "metadata_json": h5format.to_json(experts.metadata),
        }
        tmp = self._writable_temp_path()

        def encode() -> bytes:
            # In memory: torch's zip writer reports a full disk as a RuntimeError; the plain
            # write of these bytes reports it as the OSError it is.
            buffer = io.BytesIO()
            torch.save(payload, buffer)
            return buffer.getvalue()

        try:
            with _deferred_interrupt():
                h5format.write_new_file(tmp, encode)
        except BaseException as exc:
            tmp.unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise write_error(exc, self.root) from None
            raise
        meta = {
            "dataset": experts.dataset,
            "backbone": experts.backbone,
            "resolution": int(experts.resolution),
            "num_experts": len(experts),
            **json.loads(payload["metadata_json"]),
        }
        columns = {
            "dataset": experts.dataset,
            "backbone": experts.backbone,
            "resolution": int(experts.resolution),
            "size": len(experts),
        }
        return self._commit(tmp, "experts", name, _file_sha256(tmp), meta, columns)

    def load_experts(self, ref: str) -> Experts:
        found = self.resolve(ref, kind="experts")
        if _file_sha256(found.path) != found.sha256:
            raise RegistryError(
                f"experts {found.ref} are corrupted (sha256 mismatch); run `condensekit registry check`"
            )
        try:
            payload = torch.load(found.path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 -- torch.load raises many types for a bad pickle
            raise RegistryError(f"cannot read experts {found.ref}: {exc}") from None
        if not isinstance(payload, dict) or payload.get("format") != EXPERTS_FORMAT:
            raise RegistryError(f"{found.path} is not a condensekit experts file")
        metadata = json.loads(payload["metadata_json"])
        metadata.update(name=found.name, version=found.version, ref=found.ref)
        return Experts(
            dataset=payload["dataset"],
            backbone=payload["backbone"],
            resolution=int(payload["resolution"]),
            initial=payload["initial"],
            trained=payload["trained"],
            metadata=metadata,
        )

    def experts_versions(self, dataset: str, backbone: str, resolution: int) -> list[tuple[SetVersion, dict[str, Any]]]:
        """Every experts version for (dataset, backbone, resolution), newest first, with its
        index metadata (recipe, seed, counts): enough to choose one without loading weights."""
        index = self._existing_db()
        if index is None:
            return []
        rows = index.rows(
            "SELECT * FROM versions WHERE kind = 'experts' AND dataset = ? AND backbone = ? "
            "AND resolution = ? ORDER BY id DESC",
            (dataset, backbone, int(resolution)),
        )
        return [(self._version(row), _row_metadata(row)) for row in rows]

    def experts_metadata(self, ref: str) -> tuple[SetVersion, dict[str, Any]]:
        """The version ``ref`` resolves to and its index metadata (no weights are read)."""
        found = self.resolve(ref, kind="experts")
        index = self._existing_db()
        row = None if index is None else index.version("experts", found.name, found.version)
        return found, _row_metadata(row or {})

    def list_experts(self) -> list[dict[str, Any]]:
        index = self._existing_db()
        if index is None:
            return []
        out = []
        for name in sorted(index.names("experts")):
            versions = index.versions("experts", name)
            latest = versions[-1]
            out.append(
                {
                    "name": name,
                    "versions": [v["version"] for v in versions],
                    "latest": latest["version"],
                    "aliases": index.aliases("experts", name),
                    "dataset": latest["dataset"],
                    "backbone": latest["backbone"],
                    "resolution": latest["resolution"],
                    "experts": latest["size"],
                    **_experts_recipe(latest),
                    "created": latest["created"],
                }
            )
        return out

    # --- run folders ----------------------------------------------------------------------

    def runs(self) -> list[RunInfo]:
        """The run folders under ``runs/`` (distillations not saved yet: running, interrupted
        or abandoned), most recently written first; see :mod:`condensekit.registry.runs`."""
        return list_runs(self.root)

    def remove_runs(self, request: RemoveRuns, now: float | None = None) -> Removed:
        """Remove the run folders ``request`` selects; nothing is removed when it names an
        unknown key (RegistryError) or a bad age (UsageError)."""
        return remove_runs(self.root, request, now)

    # --- writability ----------------------------------------------------------------------

    def check_writable(self) -> None:
        """Raise a one-line :class:`RegistryError` unless this process can add versions here.

        Cheap and writes nothing (``stat``/``access`` calls only), so a command can call it
        before hours of work whose result it would fail to save: the root must be a folder
        this user can write, or, while it does not exist yet, the nearest existing folder
        above it (where it will be created); so must ``tmp/``, ``sets/``, ``experts/``,
        ``runs/`` and ``index.sqlite`` (with SQLite's journal files) where they exist. The
        write itself still reports what this cannot foresee (a disk filling up meanwhile, a
        file size limit)."""
        root = self.root
        if root.exists() and not root.is_dir():
            raise RegistryError(f"the registry at {root} is not a folder; pass --registry with a folder")
        if not root.exists():
            parent = root.parent
            while not parent.exists() and parent != parent.parent:
                parent = parent.parent
            if not parent.is_dir():
                raise RegistryError(
                    f"cannot create the registry at {root}: {parent} is not a folder; pass --registry with a folder"
                )
            if not _can_write(parent, folder=True):
                raise RegistryError(
                    f"cannot create the registry at {root}: {_why_not_writable(parent)}; "
                    "pass --registry with a folder you can write to, or fix the permissions"
                )
            return
        entries = [(root, True)] + [(root / sub, True) for sub in ("tmp", "sets", "experts", "runs")]
        entries += [(root / f"{INDEX_FILE}{suffix}", False) for suffix in ("", "-wal", "-shm", "-journal")]
        for path, folder in entries:
            if path.exists() and not _can_write(path, folder):
                raise RegistryError(
                    f"cannot write to the registry at {root}: {_why_not_writable(path)}; "
                    "pass --registry with a folder you can write to, or fix the permissions"
                )

    # --- integrity ------------------------------------------------------------------------

    def check(self, fix: bool = False) -> list[str]:
        """Problems found: leftover temp files, files the index does not know, index rows
        whose file is missing, files whose sha256 differs from the index, and run folders
        with an unreadable checkpoint or the temp file of an interrupted checkpoint save.
        ``fix=True`` removes all but corrupted files, which are only reported (they may be
        the only copy: restore them or ``condensekit rm`` them)."""
        problems: list[str] = []
        done = " (removed)" if fix else ""
        for tmp in sorted((self.root / "tmp").glob(f"*{_PARTIAL}")):
            if not _writer_alive(tmp):
                problems.append(f"leftover temp file {self._rel(tmp)} from an interrupted write{done}")
                if fix:
                    _unlink(tmp)
        problems.extend(check_runs(self.root, fix=fix))
        index = self._existing_db()
        if index is None:
            return problems
        # Under the write lock no writer is between its rename and its commit.
        with index.write():
            indexed = index.all_paths()
            for folder, suffix in KINDS.values():
                for path in sorted((self.root / folder).glob(f"*/v*{suffix}")):
                    if self._rel(path) not in indexed:
                        problems.append(f"orphan file {self._rel(path)} (not in the index){done}")
                        if fix:
                            _unlink(path)
            for rel, row in indexed.items():
                if not (self.root / rel).exists():
                    problems.append(
                        f"{row['name']}:v{row['version']} ({row['kind']}): file {rel} "
                        f"is missing{' (index row deleted)' if fix else ''}"
                    )
                    if fix:
                        index.delete_version(row["id"])
        for rel, row in indexed.items():
            path = self.root / rel
            if not path.exists():
                continue
            try:
                actual = h5format.file_content_sha256(path) if row["kind"] == "set" else _file_sha256(path)
            except RegistryError as exc:
                actual = f"unreadable: {exc}"
            if actual != row["sha256"]:
                problems.append(
                    f"{row['name']}:v{row['version']} ({row['kind']}): {rel} is corrupted "
                    "(sha256 mismatch); restore it or remove it with `condensekit rm`"
                )
        return problems

    # --- internals ------------------------------------------------------------------------

    def _temp_path(self) -> Path:
        tmp_dir = self.root / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        return tmp_dir / f"{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex}{_PARTIAL}"

    def _writable_temp_path(self) -> Path:
        """A temp file name for a new version, after :meth:`check_writable` (so a registry
        this process cannot write fails before the set is encoded, with one line)."""
        self.check_writable()
        try:
            return self._temp_path()
        except OSError as exc:  # e.g. the folder changed since the check
            raise write_error(exc, self.root) from None

    def _commit(
        self, tmp: Path, kind: str, name: str, sha: str, metadata: dict[str, Any], columns: dict[str, Any]
    ) -> SetVersion:
        folder, suffix = KINDS[kind]
        final, renamed = tmp, False
        index = self._db()
        try:
            os.chmod(tmp, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
            with index.write():
                version = index.next_version(kind, name)
                # A file without a row is an orphan of a crash: skip its number, keep the file.
                while (self.root / folder / name / f"v{version}{suffix}").exists():
                    version += 1
                final = self.root / folder / name / f"v{version}{suffix}"
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, final)
                renamed = True
                h5format.fsync_path(final.parent)
                index.insert_version(kind, name, version, self._rel(final), sha, metadata, **columns)
        except BaseException as exc:
            # No half entry: drop the file unless the commit went through before the error.
            if not renamed:
                _unlink(tmp)
            elif index.version(kind, name, version) is None:
                _unlink(final)
            if isinstance(exc, (OSError, sqlite3.DatabaseError)):  # e.g. "database or disk is full"
                raise write_error(exc, self.root) from None
            raise
        return self.resolve(f"{name}:v{version}", kind)

    def _find(self, index: Index, kind: str, ref: Ref) -> dict[str, Any]:
        what = "set" if kind == "set" else "experts"
        if ref.version is not None:
            row = index.version(kind, ref.name, ref.version)
        elif ref.is_latest:
            row = index.latest(kind, ref.name)
        else:
            row = index.aliased(kind, ref.name, ref.alias or "")
        if row is not None:
            return row
        versions = index.versions(kind, ref.name)
        if not versions:
            other = "experts" if kind == "set" else "set"
            if index.versions(other, ref.name):  # the right name of the other kind of artifact
                named, wanted, listing = (
                    ("experts", "a set", "experts") if other == "experts" else ("a set", "experts", "sets")
                )
                raise RegistryError(f"{ref.name!r} names {named}, not {wanted}; see condensekit list {listing}")
            raise RegistryError(f"unknown {what} {ref.name!r}; {closest(ref.name, index.names(kind), what)}")
        if ref.version is not None:
            have = ", ".join(f"v{v['version']}" for v in versions)
            raise RegistryError(f"{what} {ref.name!r} has no version v{ref.version} (versions: {have})")
        aliases = ", ".join(["latest", *index.aliases(kind, ref.name)])
        raise RegistryError(f"{what} {ref.name!r} has no alias {ref.alias!r} (aliases: {aliases})")

    def _version(self, row: dict[str, Any]) -> SetVersion:
        return SetVersion(
            kind=row["kind"],
            name=row["name"],
            version=int(row["version"]),
            path=self.root / row["path"],
            sha256=row["sha256"],
            created=row["created"],
        )

    def _rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()


def _row_metadata(row: dict[str, Any]) -> dict[str, Any]:
    try:
        meta = json.loads(row.get("metadata") or "{}")
    except ValueError:
        return {}
    return meta if isinstance(meta, dict) else {}


def _experts_recipe(row: dict[str, Any]) -> dict[str, Any]:
    """Epochs and mean test accuracy (in %, as recorded) of an experts version, from its index metadata."""
    meta = _row_metadata(row)
    scores = [a for a in meta.get("test_accuracy") or [] if isinstance(a, (int, float))]
    return {"epochs": meta.get("epochs"), "test_accuracy": round(sum(scores) / len(scores), 2) if scores else None}


def _split_records(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Stored records as ``evals`` (accuracies) and ``scores`` (records of :data:`SCORES_KIND`)."""
    scores = [r for r in records if r.get("result", {}).get("kind") == SCORES_KIND]
    return {"evals": [r for r in records if r not in scores], "scores": scores}


def _arch_scores(result: dict[str, Any]) -> dict[str, tuple[float, float | None]]:
    """Per-architecture (mean, std) of an evaluation report (``EvalReport.as_dict()``)."""
    rows = result.get("results")
    if (
        not isinstance(rows, list)
        or not rows
        or not all(isinstance(r, dict) and "arch" in r and "mean" in r for r in rows)
    ):
        raise RegistryError(
            "invalid evaluation result: expected 'results', a list of "
            "{'arch', 'mean', 'std'} as EvalReport.as_dict() gives"
        )
    return {str(r["arch"]): (float(r["mean"]), None if r.get("std") is None else float(r["std"])) for r in rows}


def _experts_name(experts: Experts) -> str:
    from condensekit.data import dataset_info

    try:
        native = dataset_info(experts.dataset).resolution
    except DatasetError:
        native = None
    suffix = None if native == experts.resolution else str(experts.resolution)
    return default_name(experts.dataset, experts.backbone, suffix)


def _cpu_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in state.items()}


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _writer_alive(tmp: Path) -> bool:
    """Whether the temp file's writer (``<host>.<pid>.<uuid>.partial``) still runs here."""
    parts = tmp.name[: -len(_PARTIAL)].rsplit(".", 2)
    if len(parts) != 3 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return False
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def _deferred_interrupt() -> Iterator[None]:
    """Hold a Ctrl-C that arrives during the block and deliver it right after.

    h5py runs Python code in weakref callbacks, where a KeyboardInterrupt is printed and
    discarded, so an interrupt mid-write would otherwise be lost and the save completed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            signal.raise_signal(signal.SIGINT)  # the previous handler decides (usually: raise)


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _can_write(path: Path, folder: bool) -> bool:
    """Whether this process may create files in ``folder`` ``path`` (write and search), or
    write file ``path``; ``access`` also says no on a read-only file system, even to root."""
    return os.access(path, os.W_OK | os.X_OK if folder else os.W_OK)


def _why_not_writable(path: Path) -> str:
    """Why :func:`_can_write` said no, for the error line."""
    try:
        if os.statvfs(path).f_flag & os.ST_RDONLY:
            return f"{path} is on a read-only file system"
    except (OSError, AttributeError):  # AttributeError: no statvfs (Windows)
        pass
    if not (path.is_dir() or path.is_file()):
        return f"{path} is neither a folder nor a file"
    return f"{path} is not writable by {_user()} (permission denied)"


def _user() -> str:
    """This process's user name, for messages (the uid when it has no name)."""
    uid = os.geteuid() if hasattr(os, "geteuid") else None
    try:
        import pwd

        return f"user {pwd.getpwuid(uid).pw_name}" if uid is not None else "this user"
    except (ImportError, KeyError):
        return "this user" if uid is None else f"uid {uid}"


def write_error(exc: OSError | sqlite3.DatabaseError, root: Path, outcome: str = "nothing was saved") -> RegistryError:
    """The one-line error of a failed registry write: the problem, what to do about it, and
    what became of the write (``outcome``)."""
    code = getattr(exc, "errno", None)
    where = f" ({exc.filename})" if isinstance(exc, OSError) and exc.filename else ""
    if code == errno.ENOSPC or "disk is full" in str(exc):
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else "no space left on the device"
        reason = f"{detail}; free some space (`condensekit runs rm --older-than 7d` drops old checkpoints)"
    elif code == errno.EFBIG:
        reason = (
            "the file is larger than this process may write (file size limit, `ulimit -f`)"
            "; raise the limit (`ulimit -f unlimited`) or save elsewhere"
        )
    elif code in (errno.EACCES, errno.EPERM):
        reason = f"permission denied{where}; pass --registry with a folder you can write to, or fix the permissions"
    elif code == errno.EROFS:
        reason = f"read-only file system{where}; pass --registry with a writable folder"
    else:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
    return RegistryError(f"cannot write to the registry at {root}: {reason}; {outcome}")
