"""The registry index: one SQLite database (``<root>/index.sqlite``) over the immutable files.

It records names, versions, aliases and evaluation results; everything that changes after a
file is written lives here. Writers serialize on SQLite's own lock (``BEGIN IMMEDIATE``,
with a busy timeout), so no lock file of our own is needed. WAL journaling is used only on
local disks: it relies on shared memory that network file systems do not provide.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from condensekit.errors import RegistryError, UsageError
from condensekit.registry.format import to_json
from condensekit.registry.migrations import migrate

INDEX_FILE = "index.sqlite"
WAL_ENV = "CONDENSEKIT_SQLITE_WAL"
BUSY_TIMEOUT_S = 60.0
NETWORK_FILESYSTEMS = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smb",
        "smb2",
        "smb3",
        "smbfs",
        "lustre",
        "gpfs",
        "ceph",
        "glusterfs",
        "beegfs",
        "9p",
        "afs",
        "ncpfs",
        "davfs",
    }
)


def now() -> str:
    """UTC timestamp with microseconds, so creation order sorts as text."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds")


def filesystem_type(path: Path, mounts: Path = Path("/proc/mounts")) -> str | None:
    """The type of the file system holding ``path`` (Linux ``/proc/mounts``), or None."""
    try:
        table = mounts.read_text()
    except OSError:
        return None
    # Resolve symlinks in the part that exists; the registry folder may not exist yet.
    target = Path(path).absolute()
    tail: list[str] = []
    while not target.exists() and target != target.parent:
        target, tail = target.parent, [target.name, *tail]
    here = str(target.resolve().joinpath(*tail))
    best, fstype = "", None
    for line in table.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[1])
        inside = here == point or here.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, fstype = point, fields[2]
    return fstype


def wal_allowed(root: Path, mounts: Path = Path("/proc/mounts")) -> bool:
    """``$CONDENSEKIT_SQLITE_WAL`` (0/1) if set, else True only on a known local file system."""
    override = os.environ.get(WAL_ENV, "").strip()
    if override:
        if override not in ("0", "1"):
            raise UsageError(f"{WAL_ENV} must be 0 or 1, got {override!r}")
        return override == "1"
    fstype = filesystem_type(root, mounts)
    if fstype is None:
        return False  # unknown: the rollback journal is the safe choice
    return fstype not in NETWORK_FILESYSTEMS and not fstype.startswith("fuse")


class Index:
    """A connection to the index with the schema migrated; rows come back as dicts."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.path = root / INDEX_FILE
        try:
            self.conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            self.conn.row_factory = sqlite3.Row
            self.conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            self.conn.execute("PRAGMA foreign_keys = ON")
            self._journal_mode("wal" if wal_allowed(root) else "delete")
            migrate(self.conn)
        except sqlite3.DatabaseError as exc:
            raise RegistryError(f"cannot open the registry index {self.path}: {exc}") from None

    def _journal_mode(self, mode: str) -> None:
        if self.journal_mode == mode:
            return  # switching needs an exclusive lock: only ask when it changes something
        # Another process may hold the database: then it keeps its current mode.
        with contextlib.suppress(sqlite3.OperationalError):
            self.conn.execute(f"PRAGMA journal_mode = {mode}")

    @property
    def journal_mode(self) -> str:
        return str(self.conn.execute("PRAGMA journal_mode").fetchone()[0])

    def close(self) -> None:
        self.conn.close()

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; ``BEGIN IMMEDIATE`` takes the write lock up front so
        the reads inside it (e.g. the next version number) cannot be raced."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise RegistryError(
                f"cannot write the registry index {self.path}: {exc} "
                f"(another process held it for {BUSY_TIMEOUT_S:.0f} s)"
            ) from None
        try:
            yield self.conn
            self.conn.execute("COMMIT")
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        return [dict(row) for row in self.conn.execute(sql, params)]

    def row(self, sql: str, params: tuple[Any, ...] = ()) -> dict[str, Any] | None:
        found = self.conn.execute(sql, params).fetchone()
        return None if found is None else dict(found)

    # --- versions -------------------------------------------------------------------------

    def next_version(self, kind: str, name: str) -> int:
        """The next unused version number of ``name`` (call inside :meth:`write`)."""
        found = self.row("SELECT last_version FROM names WHERE kind = ? AND name = ?", (kind, name))
        return 1 + (found["last_version"] if found else 0)

    def insert_version(
        self, kind: str, name: str, version: int, path: str, sha256: str, metadata: dict[str, Any], **columns: Any
    ) -> int:
        """Insert a version row (call inside :meth:`write`); returns its id."""
        created = now()
        self.conn.execute(
            "INSERT INTO names (kind, name, last_version, created) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (kind, name) DO UPDATE SET last_version = max(last_version, excluded.last_version)",
            (kind, name, version, created),
        )
        fields = {
            "kind": kind,
            "name": name,
            "version": version,
            "path": path,
            "sha256": sha256,
            "created": created,
            "metadata": to_json(metadata),
            **columns,
        }
        cursor = self.conn.execute(
            f"INSERT INTO versions ({', '.join(fields)}) VALUES ({', '.join('?' * len(fields))})",
            tuple(fields.values()),
        )
        return _inserted_id(cursor)

    def names(self, kind: str) -> list[str]:
        return [r["name"] for r in self.rows("SELECT DISTINCT name FROM versions WHERE kind = ?", (kind,))]

    def versions(self, kind: str, name: str | None = None) -> list[dict[str, Any]]:
        if name is None:
            return self.rows("SELECT * FROM versions WHERE kind = ? ORDER BY name, version", (kind,))
        return self.rows("SELECT * FROM versions WHERE kind = ? AND name = ? ORDER BY version", (kind, name))

    def version(self, kind: str, name: str, version: int) -> dict[str, Any] | None:
        return self.row("SELECT * FROM versions WHERE kind = ? AND name = ? AND version = ?", (kind, name, version))

    def latest(self, kind: str, name: str | None = None) -> dict[str, Any] | None:
        """The highest version of ``name``, or the most recently written version of any name."""
        if name is None:
            return self.row("SELECT * FROM versions WHERE kind = ? ORDER BY id DESC LIMIT 1", (kind,))
        return self.row(
            "SELECT * FROM versions WHERE kind = ? AND name = ? ORDER BY version DESC LIMIT 1", (kind, name)
        )

    def all_paths(self) -> dict[str, dict[str, Any]]:
        return {r["path"]: r for r in self.rows("SELECT * FROM versions")}

    def delete_version(self, version_id: int) -> None:
        self.conn.execute("DELETE FROM versions WHERE id = ?", (version_id,))

    # --- aliases --------------------------------------------------------------------------

    def aliased(self, kind: str, name: str, alias: str) -> dict[str, Any] | None:
        return self.row(
            "SELECT v.* FROM aliases a JOIN versions v ON v.id = a.version_id "
            "WHERE a.kind = ? AND a.name = ? AND a.alias = ?",
            (kind, name, alias),
        )

    def aliases(self, kind: str, name: str) -> dict[str, int]:
        rows = self.rows(
            "SELECT a.alias, v.version FROM aliases a JOIN versions v ON v.id = a.version_id "
            "WHERE a.kind = ? AND a.name = ? ORDER BY a.alias",
            (kind, name),
        )
        return {r["alias"]: r["version"] for r in rows}

    def set_alias(self, kind: str, name: str, alias: str, version_id: int) -> None:
        self.conn.execute(
            "INSERT INTO aliases (kind, name, alias, version_id, created) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (kind, name, alias) DO UPDATE SET version_id = excluded.version_id, "
            "created = excluded.created",
            (kind, name, alias, version_id, now()),
        )

    # --- evaluations ----------------------------------------------------------------------

    def insert_eval(
        self,
        version_id: int,
        protocol: str | None,
        result: dict[str, Any],
        scores: dict[str, tuple[float, float | None]],
    ) -> int:
        cursor = self.conn.execute(
            "INSERT INTO evals (version_id, protocol, created, result) VALUES (?, ?, ?, ?)",
            (version_id, protocol, now(), to_json(result)),
        )
        eval_id = _inserted_id(cursor)
        self.conn.executemany(
            "INSERT INTO eval_scores (eval_id, arch, mean, std) VALUES (?, ?, ?, ?)",
            [(eval_id, arch, mean, std) for arch, (mean, std) in scores.items()],
        )
        return eval_id

    def evals(self, version_id: int) -> list[dict[str, Any]]:
        out = []
        for row in self.rows("SELECT * FROM evals WHERE version_id = ? ORDER BY id", (version_id,)):
            scores = self.rows("SELECT arch, mean, std FROM eval_scores WHERE eval_id = ? ORDER BY arch", (row["id"],))
            out.append(
                {
                    "id": row["id"],
                    "protocol": row["protocol"],
                    "created": row["created"],
                    "scores": {s["arch"]: {"mean": s["mean"], "std": s["std"]} for s in scores},
                    "result": json.loads(row["result"]),
                }
            )
        return out

    def best_score(self, kind: str, name: str) -> dict[str, Any] | None:
        """The highest mean accuracy recorded for any version of ``name``."""
        return self.row(
            "SELECT v.version, s.arch, s.mean, s.std, e.protocol FROM eval_scores s "
            "JOIN evals e ON e.id = s.eval_id JOIN versions v ON v.id = e.version_id "
            "WHERE v.kind = ? AND v.name = ? ORDER BY s.mean DESC LIMIT 1",
            (kind, name),
        )


def _inserted_id(cursor: sqlite3.Cursor) -> int:
    """The rowid of the row an INSERT just added (sqlite3 types it ``int | None``)."""
    rowid = cursor.lastrowid
    if rowid is None:  # not after a successful INSERT; kept as the TypeError int(None) raised
        raise TypeError("no row was inserted")
    return rowid
