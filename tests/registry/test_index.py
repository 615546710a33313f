"""The SQLite index: migrations, journal mode on local vs network file systems."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from condensekit.errors import UsageError
from condensekit.registry.index import Index, filesystem_type, wal_allowed
from condensekit.registry.migrations import MIGRATIONS

MOUNTS = """\
overlay / overlay rw,relatime 0 0
proc /proc proc rw,nosuid 0 0
server:/export /mnt/shared nfs4 rw,vers=4.2 0 0
/dev/sda1 /mnt/shared/local ext4 rw 0 0
lustre@o2ib:/fs /scratch lustre rw 0 0
sshfs#me@host: /mnt/my\\040drive fuse.sshfs rw 0 0
"""


@pytest.fixture
def mounts(tmp_path: Path) -> Path:
    path = tmp_path / "mounts"
    path.write_text(MOUNTS)
    return path


def test_migrations_are_recorded_and_applied_once(tmp_path: Path) -> None:
    Index(tmp_path / "reg").close()
    index = Index(tmp_path / "reg")  # reopening applies nothing new
    applied = [r["name"] for r in index.rows("SELECT name FROM _migrations")]
    assert applied == [fn.__name__ for fn in MIGRATIONS] and applied[0] == "m001_initial"
    tables = {r["name"] for r in index.rows("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"names", "versions", "aliases", "evals", "eval_scores"} <= tables
    assert index.conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 30000
    index.close()


@pytest.mark.parametrize(
    ("path", "fstype"),
    [
        ("/home/me/registry", "overlay"),
        ("/mnt/shared/registry", "nfs4"),
        ("/mnt/shared/local/registry", "ext4"),  # the longest mount point wins
        ("/mnt/sharedx", "overlay"),  # a prefix of the name is not a parent folder
        ("/scratch/u/registry", "lustre"),
        ("/mnt/my drive/reg", "fuse.sshfs"),  # /proc/mounts escapes spaces as \040
    ],
)
def test_filesystem_type_from_mounts(mounts: Path, path: str, fstype: str) -> None:
    assert filesystem_type(Path(path), mounts) == fstype


@pytest.mark.parametrize(
    ("path", "wal"),
    [
        ("/home/me/registry", True),
        ("/mnt/shared/registry", False),
        ("/scratch/registry", False),
        ("/mnt/my drive/reg", False),
        ("/mnt/shared/local/registry", True),
    ],
)
def test_wal_only_on_local_file_systems(mounts: Path, path: str, wal: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONDENSEKIT_SQLITE_WAL", raising=False)
    assert wal_allowed(Path(path), mounts) is wal


def test_unknown_file_system_falls_back_to_the_rollback_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CONDENSEKIT_SQLITE_WAL", raising=False)
    assert wal_allowed(tmp_path, tmp_path / "no-such-mounts-file") is False


def test_environment_overrides_detection(mounts: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONDENSEKIT_SQLITE_WAL", "1")
    assert wal_allowed(Path("/mnt/shared/registry"), mounts) is True
    monkeypatch.setenv("CONDENSEKIT_SQLITE_WAL", "0")
    assert wal_allowed(Path("/home/me/registry"), mounts) is False
    monkeypatch.setenv("CONDENSEKIT_SQLITE_WAL", "yes")
    with pytest.raises(UsageError, match="CONDENSEKIT_SQLITE_WAL must be 0 or 1"):
        wal_allowed(Path("/home"), mounts)


@pytest.mark.parametrize(("flag", "mode"), [("0", "delete"), ("1", "wal")])
def test_journal_mode_applied_to_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flag: str, mode: str
) -> None:
    monkeypatch.setenv("CONDENSEKIT_SQLITE_WAL", flag)
    index = Index(tmp_path / "reg")
    assert index.journal_mode == mode
    index.close()
    with sqlite3.connect(tmp_path / "reg" / "index.sqlite") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_failed_write_transaction_rolls_back(tmp_path: Path) -> None:
    index = Index(tmp_path / "reg")
    with pytest.raises(RuntimeError), index.write():
        index.insert_version("set", "a", 1, "sets/a/v1.h5", "0" * 64, {})
        raise RuntimeError("crash before commit")
    assert index.versions("set") == [] and index.next_version("set", "a") == 1
    index.close()
