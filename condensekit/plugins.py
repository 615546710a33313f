"""Plugin discovery through the standard library's ``importlib.metadata`` entry points.

Three groups: ``condensekit.methods``, ``condensekit.datasets``, ``condensekit.backbones``.
condensekit registers its own built-ins through the same groups in its ``pyproject.toml``,
so built-ins and third-party plugins take one code path (as simonw/llm does).

Every loaded plugin is validated (:func:`validate_method`, :func:`validate_dataset`,
:func:`validate_backbone`), so a plugin that breaks the contract fails at load with a
one-line reason instead of a traceback deep inside a run.

Listing reads entry-point metadata and inspects the target module's source with ``ast``
to find the class and its one-line description, so ``condensekit list`` imports no plugin
module. Whether a plugin imports and validates is taken from a small cache (see
:func:`discover`); a missing or stale entry is validated in a child process, and the
result is stored. A broken plugin is reported with a one-line reason and never breaks the
CLI: only the plugin a command uses is imported into the command's process.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import importlib.machinery
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

from condensekit.errors import PluginError

GROUPS: dict[str, str] = {
    "method": "condensekit.methods",
    "dataset": "condensekit.datasets",
    "backbone": "condensekit.backbones",
}

#: The method plugin API this core implements: a plugin declaring another major version,
#: or a newer minor version, is refused with a clear error.
PLUGIN_API: tuple[int, int] = (1, 2)

#: Parameter names of the options every ``condensekit distill METHOD`` command has. A method
#: config field with one of these names would shadow a core option, so it is a plugin error.
#: Kept here, not in the CLI, because load-time validation needs it and the library does not
#: import click; ``condensekit.cli.distill`` builds its options to match (a test checks it).
RESERVED_CONFIG_NAMES: frozenset[str] = frozenset(
    {
        "data",
        "ipc",
        "backbone",
        "iterations",
        "seed",
        "device",
        "name",
        "resolution",
        "data_root",
        "registry",
        "resume",
        "checkpoint_every",
        "experts",
        "teacher",
        "teacher_weights",
        "dtype",
        "compile",
        "nproc",
        "dry_run",
        "as_json",
        "quiet",
        "preset",
        # Recipes (condensekit.recipes): the --config, --from and --set options, and the recipe
        # keys a config field would collide with: ``method``, the [config] and [sweep] tables,
        # and ``res`` (the key and flag of ``resolution``).
        "recipe_file",
        "from_ref",
        "sweep",
        "config",
        "set",
        "method",
        "res",
    }
)

#: The validation cache, under the cache dir (``$CONDENSEKIT_CACHE``).
STATUS_CACHE_FILE = "plugin-status.json"
_STATUS_CACHE_FORMAT = 1

#: Seconds one validation child process may take before the plugin it is importing is
#: reported as hanging (importing torch on a cold disk alone can take tens of seconds).
VALIDATION_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class PluginInfo:
    """What ``list`` shows of one entry point, found without importing it."""

    name: str
    kind: str
    value: str
    distribution: str
    distribution_version: str
    description: str
    status: str  # "ok" or "broken: <reason>"

    @property
    def broken(self) -> bool:
        return self.status != "ok"

    def as_dict(self) -> dict[str, str]:
        return {
            "name": self.name,
            "kind": self.kind,
            "distribution": self.distribution,
            "version": self.distribution_version,
            "description": self.description,
            "status": self.status,
            "entry_point": self.value,
        }


def _entry_points(kind: str) -> list[EntryPoint]:
    if kind not in GROUPS:
        raise PluginError(f"unknown plugin kind {kind!r}; choose one of {', '.join(GROUPS)}")
    seen: dict[str, EntryPoint] = {}
    for ep in entry_points(group=GROUPS[kind]):
        # The same distribution can appear twice on sys.path (editable + build dir); keep the first.
        seen.setdefault(ep.name, ep)
    return sorted(seen.values(), key=lambda ep: ep.name)


def _find_spec_without_import(module: str) -> importlib.machinery.ModuleSpec | None:
    """Locate ``a.b.c`` by walking package paths: unlike ``importlib.util.find_spec``, no
    parent package's ``__init__`` runs, so a plugin package that imports torch at the top
    does not slow down ``condensekit list``."""
    parts = module.split(".")
    spec = importlib.util.find_spec(parts[0])  # a top-level name is located, not executed
    for depth in range(1, len(parts)):
        if spec is None or not spec.submodule_search_locations:
            return None
        spec = importlib.machinery.PathFinder.find_spec(
            ".".join(parts[: depth + 1]), list(spec.submodule_search_locations)
        )
    return spec


@dataclass(frozen=True)
class _Static:
    """What the metadata and the module's source say about one entry point."""

    description: str
    status: str  # "ok" (locatable; not yet imported) or "broken: <reason>"
    origin: str | None  # the target module's file, part of the validation cache key


def _static_description(ep: EntryPoint) -> _Static:
    """Locate the target module and read its source, without importing it."""
    try:
        spec = _find_spec_without_import(ep.module)
    except (ImportError, ValueError) as exc:
        return _Static("", f"broken: cannot locate module {ep.module!r} ({exc})", None)
    if spec is None:
        return _Static("", f"broken: module {ep.module!r} is not installed", None)
    origin = spec.origin if spec.has_location else None
    if not origin or not origin.endswith(".py"):
        return _Static("", "ok", origin)  # compiled or namespace module: nothing to read, import will tell
    try:
        with open(origin, encoding="utf-8") as fh:
            tree = ast.parse(fh.read(), filename=origin)
    except (OSError, SyntaxError) as exc:
        return _Static("", f"broken: cannot read {origin}: {exc.__class__.__name__}: {exc}", origin)
    attr = (ep.attr or "").split(".")[0]
    for node in tree.body:
        names: list[str] = []
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            names = [node.name]
        elif isinstance(node, ast.Assign):
            names = [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names = [node.target.id]
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [alias.asname or alias.name.split(".")[0] for alias in node.names]
        if attr in names:
            doc = ast.get_docstring(node) if isinstance(node, (ast.ClassDef, ast.FunctionDef)) else None
            return _Static((doc or "").strip().splitlines()[0] if doc else "", "ok", origin)
    return _Static("", f"broken: module {ep.module!r} has no attribute {attr!r}", origin)


def _distribution(ep: EntryPoint) -> tuple[str, str]:
    dist = ep.dist
    return (dist.metadata["Name"], dist.version) if dist is not None else ("?", "?")


def discover(kind: str, *, validate: bool = True, force: bool = False) -> list[PluginInfo]:
    """Every installed plugin of one kind, without importing any into this process.

    ``validate``: report whether each plugin imports and passes validation, from the
    validation cache or, for a missing or stale entry, from a child process (see
    :func:`discover_all`); False reports only what metadata shows (a missing module or
    attribute). ``force``: validate every plugin again, ignoring the cache.
    """
    return discover_all([kind], validate=validate, force=force)[kind]


def discover_all(kinds: Iterable[str], *, validate: bool = True, force: bool = False) -> dict[str, list[PluginInfo]]:
    """:func:`discover` for several kinds at once: stale entries share one child process.

    Validation runs out of process so that listing stays light (no plugin module, no torch
    in the listing process) and so that a plugin that kills or hangs the interpreter at
    import (a crashing extension, ``os._exit``, an endless loop) is reported as broken
    instead of taking ``condensekit list`` or ``distill --help`` down with it.
    """
    found = {kind: [(ep, _static_description(ep)) for ep in _entry_points(kind)] for kind in kinds}
    statuses: dict[tuple[str, str], str] = {}
    if validate:
        statuses = _validated_statuses(found, force)
    result: dict[str, list[PluginInfo]] = {}
    for kind, items in found.items():
        result[kind] = []
        for ep, static in items:
            distribution, version = _distribution(ep)
            result[kind].append(
                PluginInfo(
                    name=ep.name,
                    kind=kind,
                    value=ep.value,
                    distribution=distribution,
                    distribution_version=version,
                    description=static.description,
                    status=statuses.get((kind, ep.name), static.status),
                )
            )
    return result


def names(kind: str) -> list[str]:
    return [ep.name for ep in _entry_points(kind)]


def suggest(name: str, candidates: list[str]) -> str:
    """The hint of an "unknown NAME" error: the closest names, else all of them."""
    import difflib

    close = difflib.get_close_matches(name, candidates, n=3)
    if close:
        return f"did you mean {', '.join(close)}?"
    return f"available: {', '.join(candidates) or 'none installed'}"


def load(kind: str, name: str) -> tuple[Any, PluginInfo]:
    """Import, validate and return the object behind one entry point, with its listing info."""
    eps = {ep.name: ep for ep in _entry_points(kind)}
    if name not in eps:
        raise PluginError(f"unknown {kind} {name!r}: {suggest(name, sorted(eps))}")
    ep = eps[name]
    distribution, version = _distribution(ep)
    info = PluginInfo(
        name=name,
        kind=kind,
        value=ep.value,
        distribution=distribution,
        distribution_version=version,
        description="",
        status="ok",
    )
    try:
        obj = ep.load()
    except Exception as exc:  # a plugin may fail in any way; it must not break the CLI
        reason = f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        raise PluginError(
            f"{kind} plugin {name!r} from {info.distribution} {info.distribution_version} "
            f"failed to import ({reason}); reinstall or uninstall {info.distribution}"
        ) from exc
    try:
        _VALIDATORS[kind](obj, name)
    except PluginError:
        raise
    except Exception as exc:  # validation reads plugin attributes, which may run plugin code
        raise PluginError(
            f"{kind} plugin {name!r} from {info.distribution} {info.distribution_version} failed "
            f"validation ({exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
            f"reinstall or uninstall {info.distribution}"
        ) from exc
    return obj, info


def check_import(kind: str, name: str) -> str:
    """Import and validate one plugin in this process; return "ok" or "broken: reason"."""
    try:
        load(kind, name)
    except PluginError as exc:
        return f"broken: {exc}"
    return "ok"


def check_method_api(method_cls: Any, name: str) -> None:
    """Refuse a method class whose declared plugin API this core does not implement."""
    declared = getattr(method_cls, "plugin_api", None)
    if not isinstance(declared, str):
        raise PluginError(
            f'method {name!r} declares no plugin_api string; it must set plugin_api = "{PLUGIN_API[0]}.{PLUGIN_API[1]}"'
        )
    try:
        major, minor = (int(part) for part in declared.split(".")[:2])
    except ValueError:
        raise PluginError(f"method {name!r} declares an invalid plugin_api {declared!r}") from None
    core = f"{PLUGIN_API[0]}.{PLUGIN_API[1]}"
    if major != PLUGIN_API[0] or minor > PLUGIN_API[1]:
        raise PluginError(
            f"method {name!r} needs plugin API {declared} but this condensekit implements {core}; "
            f"install a version of the plugin built for API {PLUGIN_API[0]}.x "
            f"(or upgrade condensekit)"
        )


def _where(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', type(obj).__name__)}"


def _field_names_check(name: str, what: str, values: Any, fields: set[str], config: type) -> None:
    """``values`` must be a dict naming only config fields (a preset, the smoke config)."""
    if not isinstance(values, dict):
        raise PluginError(f"method {name!r} {what} is not a dict of config field values; make it one")
    unknown = sorted(str(key) for key in values if key not in fields)
    if unknown:
        raise PluginError(
            f"method {name!r} {what} sets unknown config field(s) {', '.join(unknown)}; "
            f"use fields of {config.__name__}: {', '.join(sorted(fields)) or 'none'}"
        )


def validate_method(cls: Any, name: str) -> None:
    """Check a method class against the plugin contract; PluginError with a one-line reason.

    Everything checked here would otherwise fail later, mid-command and with a traceback:
    the CLI turns ``Config`` fields into options (so a core option name is taken), the run
    builds the default config and looks the method up again by ``cls.name``.
    """
    from condensekit.methods.base import Method

    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise PluginError(
            f"method plugin {name!r} ({_where(cls)}) is not a subclass of condensekit.api.Method; "
            f"point its entry point at one"
        )
    # The API version first: a plugin written for another API may follow another contract,
    # and "needs plugin API 2.0" is the accurate reason for everything else that follows.
    check_method_api(cls, name)
    declared = getattr(cls, "name", None)
    if not isinstance(declared, str) or not declared:
        raise PluginError(f"method {name!r} ({_where(cls)}) sets no name; set name = {name!r}")
    if declared != name:
        # A run looks the method up again by cls.name: another name would load another plugin.
        raise PluginError(
            f"method {name!r} ({_where(cls)}) sets name = {declared!r}; set name = {name!r}, "
            f"the entry-point name it is installed under"
        )
    version = getattr(cls, "version", None)
    if not isinstance(version, str) or not version:
        raise PluginError(f'method {name!r} sets no version; set version = "0.1.0" (its implementation version)')
    config = getattr(cls, "Config", None)
    if config is None:
        raise PluginError(f"method {name!r} has no Config; set Config to a dataclass of its options")
    if not (isinstance(config, type) and dataclasses.is_dataclass(config)):
        raise PluginError(f"method {name!r} Config ({_where(config)}) is not a dataclass; decorate it with @dataclass")
    fields = {f.name for f in dataclasses.fields(config)}
    taken = sorted(fields & RESERVED_CONFIG_NAMES)
    if taken:
        raise PluginError(f"method {name!r} config field {taken[0]!r} collides with a core option; rename it")
    presets = getattr(cls, "presets", None)
    if not isinstance(presets, dict):
        raise PluginError(f"method {name!r} presets is not a dict of preset name -> config values; make it one")
    for preset, values in presets.items():
        _field_names_check(name, f"preset {preset!r}", values, fields, config)
    default_preset = getattr(cls, "default_preset", None)
    if default_preset is not None and default_preset not in presets:
        raise PluginError(
            f"method {name!r} default_preset {default_preset!r} is not one of its presets "
            f"({', '.join(map(str, presets)) or 'none'}); set it to one of them or None"
        )
    _field_names_check(name, "smoke_config", getattr(cls, "smoke_config", None), fields, config)
    for preset in [None, *presets]:
        try:
            cls.make_config(preset)
        except Exception as exc:  # Config's own __init__/__post_init__ is plugin code
            label = "its default config" if preset is None else f"preset {preset!r}"
            raise PluginError(
                f"method {name!r} cannot build {label} ({exc.__class__.__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}); give every Config field a valid default"
            ) from exc


def validate_dataset(spec: Any, name: str) -> None:
    """A dataset entry point names a :class:`condensekit.data.catalog.DatasetSpec` instance
    (whose own ``__post_init__`` already checked channels against mean and std)."""
    from condensekit.data.catalog import DatasetSpec

    if not isinstance(spec, DatasetSpec):
        raise PluginError(
            f"dataset plugin {name!r} ({_where(spec)}) is not a condensekit.data.DatasetSpec; "
            f"point its entry point at a DatasetSpec instance"
        )


def validate_backbone(factory: Any, name: str) -> None:
    """A backbone entry point names something callable as
    ``factory(channels=, num_classes=, resolution=, **kwargs)`` that returns the network."""
    if not callable(factory):
        raise PluginError(
            f"backbone plugin {name!r} ({_where(factory)}) is not callable; point its entry point "
            f"at a function or class that builds the network"
        )


_VALIDATORS = {"method": validate_method, "dataset": validate_dataset, "backbone": validate_backbone}


def load_method(name: str) -> tuple[Any, PluginInfo]:
    """Load a method plugin class by its entry-point name and validate it."""
    return load("method", name)


# The validation cache --------------------------------------------------------------------


def status_cache_path() -> Path:
    """The validation cache file: ``<cache dir>/plugin-status.json``."""
    from condensekit import paths

    return paths.cache_dir() / STATUS_CACHE_FILE


def _status_key(ep: EntryPoint, origin: str | None) -> dict[str, Any]:
    """What a validation result depends on, as far as can be seen without importing.

    A new release, a reinstall or an edit of the target module, or another condensekit
    version, changes the key. An edit of another module of the plugin (or of an unreleased
    condensekit) does not: ``list --check`` validates again regardless. The interpreter
    prefix keeps two environments sharing one cache dir (with other dependencies) apart.
    """
    from condensekit import __version__

    distribution, version = _distribution(ep)
    mtime_ns = size = None
    if origin:
        try:
            stat = os.stat(origin)
            mtime_ns, size = stat.st_mtime_ns, stat.st_size
        except OSError:
            pass
    return {
        "distribution": distribution,
        "distribution_version": version,
        "entry_point": ep.value,
        "module_file": origin,
        "mtime_ns": mtime_ns,
        "size": size,
        "condensekit": __version__,
        "python": sys.prefix,
    }


def _read_status_cache() -> dict[str, Any]:
    try:
        data = json.loads(status_cache_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # none yet, or unreadable: everything is validated again
    if not isinstance(data, dict) or data.get("format") != _STATUS_CACHE_FORMAT:
        return {}
    entries = data.get("entries")
    return entries if isinstance(entries, dict) else {}


def _write_status_cache(entries: dict[str, Any]) -> None:
    """Replace the file atomically (concurrent listings never read half a file); a cache
    that cannot be written only costs a validation next time, so errors are ignored."""
    path = status_cache_path()
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps({"format": _STATUS_CACHE_FORMAT, "entries": entries}, indent=1), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()


def _validated_statuses(found: dict[str, list[tuple[EntryPoint, _Static]]], force: bool) -> dict[tuple[str, str], str]:
    """Status of every locatable entry point: fresh cache entries as they are, the others
    validated out of process (all in one child) and stored."""
    entries = _read_status_cache()
    statuses: dict[tuple[str, str], str] = {}
    pending: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
    distributions: dict[tuple[str, str], str] = {}
    for kind, items in found.items():
        for ep, static in items:
            if static.status != "ok":
                continue  # metadata already tells why: nothing to import
            slot = f"{GROUPS[kind]}:{ep.name}"
            key = _status_key(ep, static.origin)
            hit = entries.get(slot)
            if not force and isinstance(hit, dict) and hit.get("key") == key and isinstance(hit.get("status"), str):
                statuses[(kind, ep.name)] = hit["status"]
            else:
                pending[(kind, ep.name)] = (slot, key)
                distributions[(kind, ep.name)] = key["distribution"]
    if pending:
        for item, (status, keep) in _validate_out_of_process(list(pending), distributions).items():
            statuses[item] = status
            slot, key = pending[item]
            if keep:
                entries[slot] = {"key": key, "status": status}
            else:
                entries.pop(slot, None)
        _write_status_cache(entries)
    return statuses


_RESULT_PREFIX = "condensekit-plugin-status "

# The child gets the parent's sys.path before importing anything, so it sees the same
# distributions (including ones added to sys.path at run time) and the same condensekit.
_WORKER = (
    "import json, sys\n"
    "request = json.loads(sys.stdin.readline())\n"
    "sys.path[:] = request['path']\n"
    "from condensekit.plugins import _validation_worker\n"
    "_validation_worker(request['plugins'])\n"
)


def _validation_worker(items: list[list[str]]) -> None:
    """Child side: validate each (kind, name), announcing it first, so that the parent knows
    which plugin was being imported if this process dies or hangs."""
    out = sys.stdout
    sys.stdout = sys.stderr  # a plugin printing at import must not garble the results
    for kind, name in items:
        out.write(_RESULT_PREFIX + json.dumps({"start": [kind, name]}) + "\n")
        out.flush()
        status = check_import(kind, name)
        out.write(_RESULT_PREFIX + json.dumps({"done": [kind, name], "status": status}) + "\n")
        out.flush()


def _validate_out_of_process(
    items: list[tuple[str, str]], distributions: dict[tuple[str, str], str]
) -> dict[tuple[str, str], tuple[str, bool]]:
    """Validate plugins in child processes: {(kind, name): (status, worth caching)}.

    A child that dies or hangs is blamed on the plugin it had started and not finished; the
    rest are validated in a fresh child. A hang is not cached (it may be a slow disk).
    """
    results: dict[tuple[str, str], tuple[str, bool]] = {}
    pending = list(items)
    while pending:
        request = json.dumps({"path": sys.path, "plugins": pending}) + "\n"
        timed_out = False
        try:
            proc = subprocess.run(
                [sys.executable, "-c", _WORKER],
                input=request.encode(),
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                timeout=VALIDATION_TIMEOUT_S,
                check=False,
            )
            output, code = proc.stdout, proc.returncode
        except subprocess.TimeoutExpired as exc:
            output, code, timed_out = exc.stdout or b"", None, True
        except OSError:
            output, code = b"", None
        started: tuple[str, str] | None = None
        for line in output.decode("utf-8", "replace").splitlines():
            if not line.startswith(_RESULT_PREFIX):
                continue
            try:
                message = json.loads(line[len(_RESULT_PREFIX) :])
            except ValueError:
                continue
            if "start" in message:
                started = (message["start"][0], message["start"][1])
            elif "done" in message:
                results[(message["done"][0], message["done"][1])] = (str(message["status"]), True)
        remaining = [item for item in pending if item not in results]
        if not remaining:
            break
        if started is None or started in results:
            # The child failed before it imported any plugin (no interpreter, a broken
            # condensekit): no plugin is to blame, so validate in this process instead.
            for kind, name in remaining:
                results[(kind, name)] = (check_import(kind, name), True)
            break
        kind, name = started
        if timed_out:
            reason = f"did not finish importing within {VALIDATION_TIMEOUT_S:.0f} s"
        else:
            reason = f"ended the Python process while importing (exit status {code})"
        distribution = distributions.get(started, "the distribution that provides it")
        results[started] = (
            f"broken: {kind} plugin {name!r} {reason}; reinstall or uninstall {distribution}",
            not timed_out,
        )
        pending = [item for item in remaining if item != started]
    return results
