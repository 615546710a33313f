"""Ordered schema migrations of the registry index (the simonw/llm ``migrations.py`` pattern).

Each migration is a function decorated with :func:`migration`, applied once in definition
order; applied names are recorded in the ``_migrations`` table. Never edit a released
migration: append a new one.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Callable

Migration = Callable[[sqlite3.Connection], None]
MIGRATIONS: list[Migration] = []


def migration(fn: Migration) -> Migration:
    MIGRATIONS.append(fn)
    return fn


def migrate(conn: sqlite3.Connection) -> list[str]:
    """Apply pending migrations in one write transaction; return the names applied.

    ``BEGIN IMMEDIATE`` makes concurrent first opens wait for each other instead of both
    creating the schema."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied TEXT NOT NULL)")
        done = {row[0] for row in conn.execute("SELECT name FROM _migrations")}
        applied = []
        for fn in MIGRATIONS:
            if fn.__name__ in done:
                continue
            fn(conn)
            now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
            conn.execute("INSERT INTO _migrations (name, applied) VALUES (?, ?)", (fn.__name__, now))
            applied.append(fn.__name__)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return applied


@migration
def m001_initial(conn: sqlite3.Connection) -> None:
    _run(
        conn,
        """
    CREATE TABLE names (
        kind TEXT NOT NULL CHECK (kind IN ('set', 'experts')),
        name TEXT NOT NULL,
        last_version INTEGER NOT NULL DEFAULT 0,  -- versions are never reused
        created TEXT NOT NULL,
        PRIMARY KEY (kind, name)
    );
    CREATE TABLE versions (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        path TEXT NOT NULL,          -- relative to the registry root, '/'-separated
        sha256 TEXT NOT NULL,
        created TEXT NOT NULL,
        method TEXT,
        dataset TEXT,
        ipc INTEGER,
        backbone TEXT,
        resolution INTEGER,
        size INTEGER,                -- images in a set, experts in an experts artifact
        metadata TEXT NOT NULL,      -- JSON object
        UNIQUE (kind, name, version),
        FOREIGN KEY (kind, name) REFERENCES names (kind, name)
    );
    CREATE INDEX versions_experts ON versions (kind, dataset, backbone, resolution);
    CREATE TABLE aliases (
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        alias TEXT NOT NULL,
        version_id INTEGER NOT NULL REFERENCES versions (id) ON DELETE CASCADE,
        created TEXT NOT NULL,
        PRIMARY KEY (kind, name, alias)
    );
    CREATE TABLE evals (
        id INTEGER PRIMARY KEY,
        version_id INTEGER NOT NULL REFERENCES versions (id) ON DELETE CASCADE,
        protocol TEXT,
        created TEXT NOT NULL,
        result TEXT NOT NULL         -- the evaluation report, JSON
    );
    CREATE TABLE eval_scores (
        eval_id INTEGER NOT NULL REFERENCES evals (id) ON DELETE CASCADE,
        arch TEXT NOT NULL,
        mean REAL NOT NULL,
        std REAL,
        PRIMARY KEY (eval_id, arch)
    );
    """,
    )


def _run(conn: sqlite3.Connection, script: str) -> None:
    # ``executescript`` would COMMIT the open transaction; run statements one by one instead.
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)
