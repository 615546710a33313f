"""Saving into a registry the disk refuses: one line, exit 5, nothing half-written.

Real processes and real limits: a file size limit (``ulimit -f``: RLIMIT_FSIZE, with SIGXFSZ
ignored so the write fails with EFBIG as on a quota) and a registry folder another user owns.
Before, HDF5 writing straight to disk left h5py objects whose finalizers printed "Exception
ignored" tracebacks, and the process could end in a segmentation fault.
"""

from __future__ import annotations

import ctypes
import os
import pwd
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from condensekit.errors import ExitStatus, RegistryError
from condensekit.registry import Registry
from condensekit.synthetic import SyntheticSet

Factory = Callable[..., SyntheticSet]

LIMIT = 1 << 20  # bytes a process under `ulimit -f` may write per file
NOISE = ("Exception ignored", "Traceback", "Segmentation fault", "unexpected")  # none of it on stderr


def _file_size_limit() -> None:
    """preexec_fn: ``ulimit -f`` for the child; SIGXFSZ ignored, so writes fail with EFBIG."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))


def _condensekit(*args: str, preexec_fn: Callable[[], None], env: dict[str, str] | None = None) -> tuple[int, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "condensekit", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        preexec_fn=preexec_fn,
        env={**os.environ, **(env or {})},
    )
    return proc.returncode, proc.stderr


def _assert_one_clean_line(code: int, err: str) -> str:
    assert code == ExitStatus.REGISTRY == 5, err
    assert not any(noise in err for noise in NOISE), err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot "), err
    return lines[0]


def _state(root: Path) -> tuple[list[dict[str, object]], list[str]]:
    """What a failed save must leave as it was: the index's sets and every file on disk."""
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and "index.sqlite" not in p.name)
    with Registry(root) as reg:
        return reg.list_sets(), files


@pytest.fixture
def big_set_file(tmp_path: Path, synset_factory: Factory) -> Path:
    """A 5 MB set file (noise does not compress) to import: five times the size limit."""
    saved = Registry(tmp_path / "source").save(synset_factory(ipc=50), name="big")
    assert saved.path.stat().st_size > 4 * LIMIT
    return saved.path


def test_a_file_size_limit_fails_the_save_with_one_line(
    tmp_path: Path, big_set_file: Path, synset_factory: Factory
) -> None:
    root = tmp_path / "registry"
    Registry(root).save(synset_factory(ipc=1), name="small")
    before = _state(root)

    code, err = _condensekit(
        "import", str(big_set_file), "--name", "big", "--registry", str(root), preexec_fn=_file_size_limit
    )

    line = _assert_one_clean_line(code, err)
    assert "file size limit" in line and "nothing was saved" in line
    assert _state(root) == before  # no file under sets/, no index row, no temp file
    assert list((root / "tmp").iterdir()) == []
    with Registry(root) as reg:
        assert reg.check() == []


def test_a_file_size_limit_fails_an_experts_save_with_a_registry_error(tmp_path: Path) -> None:
    """torch.save reports a failed write as a RuntimeError; the registry must still say
    RegistryError and leave nothing behind."""
    root = tmp_path / "registry"
    script = textwrap.dedent(f"""
        import torch
        from condensekit.errors import RegistryError
        from condensekit.experts import Experts
        from condensekit.registry import Registry
        state = {{"w": torch.randn(4 * {LIMIT} // 4)}}  # 4 MB of noise per state
        experts = Experts("cifar10", "convnet", 32, [state], [state])
        try:
            Registry({str(root)!r}).save_experts(experts, name="big")
        except RegistryError as exc:
            print("RegistryError:", exc)
    """)
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        preexec_fn=_file_size_limit,
    )
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert proc.stdout.startswith("RegistryError: cannot write to the registry") and "file size limit" in proc.stdout
    with Registry(root) as reg:
        assert reg.list_experts() == [] and reg.check() == []
    assert list((root / "tmp").iterdir()) == [] and not (root / "experts").exists()


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder another user can reach (pytest's tmp_path is private to this user)."""
    path = Path(tempfile.mkdtemp(prefix="condensekit-faults-"))
    path.chmod(0o755)
    yield path
    for sub in path.rglob("*"):  # folders made read-only by a test
        if sub.is_dir():
            sub.chmod(0o755)
    shutil.rmtree(path, ignore_errors=True)


def _as_nobody(home: Path) -> tuple[Callable[[], None], dict[str, str]] | None:
    """preexec_fn and environment that run the child as ``nobody``; None when ``nobody``
    does not exist or cannot run this interpreter (e.g. a Python under /root)."""
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        return None
    home.mkdir()
    os.chown(home, nobody.pw_uid, nobody.pw_gid)

    def drop() -> None:
        os.setgroups([])
        os.setgid(nobody.pw_gid)
        os.setuid(nobody.pw_uid)

    env = {"HOME": str(home), "CONDENSEKIT_CACHE": str(home / "cache")}
    try:
        probe = subprocess.run(
            [sys.executable, "-c", "import condensekit.cli.app"],
            capture_output=True,
            timeout=120,
            check=False,
            preexec_fn=drop,
            env={**os.environ, **env},
        )
    except OSError:  # the interpreter itself is out of nobody's reach
        return None
    return (drop, env) if probe.returncode == 0 else None


def _root_without_overrides() -> Callable[[], None] | None:
    """preexec_fn that keeps root but drops the capabilities that let it ignore permission
    bits (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH), so a folder mode 0555 refuses it like any
    user; None when the kernel does not let this process drop them."""
    libc = ctypes.CDLL(None, use_errno=True)
    pr_capbset_drop, caps = 24, (1, 2)

    def drop() -> None:
        for cap in caps:
            if libc.prctl(pr_capbset_drop, cap, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")

    try:
        probe = subprocess.run(
            [sys.executable, "-c", "pass"], capture_output=True, timeout=60, check=False, preexec_fn=drop
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return drop if probe.returncode == 0 else None


def test_a_registry_the_user_cannot_write_fails_with_one_line(
    shared_dir: Path, big_set_file: Path, synset_factory: Factory
) -> None:
    root = shared_dir / "registry"
    Registry(root).save(synset_factory(ipc=1), name="small")
    source = shared_dir / "big.h5"
    shutil.copyfile(big_set_file, source)
    source.chmod(0o644)
    for path in (root, *root.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    before = _state(root)

    env: dict[str, str] = {}
    as_nobody = _as_nobody(shared_dir / "home") if os.geteuid() == 0 else None
    if as_nobody is not None:
        preexec_fn, env = as_nobody  # root's 0755 registry: nobody may read it, not write it
    else:  # the registry as another user's: nothing in it writable
        for path in (*root.rglob("*"), root):
            path.chmod(0o555 if path.is_dir() else 0o444)
        preexec_fn = (lambda: None) if os.geteuid() != 0 else _root_without_overrides()
        if preexec_fn is None:
            pytest.skip("running as root, 'nobody' cannot run this Python, and root cannot drop CAP_DAC_OVERRIDE")
        if os.geteuid() != 0 and os.access(root, os.W_OK):
            pytest.skip("this user can write to a read-only folder (a capability such as CAP_DAC_OVERRIDE)")

    code, err = _condensekit(
        "import", str(source), "--name", "big", "--registry", str(root), preexec_fn=preexec_fn, env=env
    )

    line = _assert_one_clean_line(code, err)
    assert f"cannot write to the registry at {root}: {root} is not writable by user " in line, line
    assert "pass --registry with a folder you can write to" in line
    for path in (root, *root.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    assert _state(root) == before
    with Registry(root) as reg:
        assert reg.check() == []


def test_check_writable_writes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "not" / "yet"
    Registry(root).check_writable()  # its parents can be created
    assert not (tmp_path / "not").exists()


def test_check_writable_refuses_a_file_in_the_way(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(RegistryError, match=r"is not a folder; pass --registry"):
        Registry(tmp_path / "file").check_writable()
    with pytest.raises(RegistryError, match=r"cannot create the registry at .*: .*file is not a folder"):
        Registry(tmp_path / "file" / "registry").check_writable()


def test_save_checks_the_registry_before_encoding(tmp_path: Path, synset_factory: Factory) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(RegistryError, match="is not a folder"):
        Registry(tmp_path / "file" / "registry").save(synset_factory(ipc=1), name="s")


def test_the_written_file_is_a_normal_hdf5_file(tmp_path: Path, synset_factory: Factory) -> None:
    """The in-memory build writes the same format: h5py reads it back from disk."""
    import h5py

    synset = synset_factory(ipc=2)
    saved = Registry(tmp_path / "registry").save(synset, name="s")
    with h5py.File(saved.path, "r") as f:
        assert f.attrs["format"] == "condensekit-synset" and f["images"].shape == (20, 3, 32, 32)
        assert torch.equal(torch.from_numpy(f["images"][()]), synset.images)
