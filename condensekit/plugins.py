"""Plugin discovery through the standard library's ``importlib.metadata`` entry points.

Three groups: ``condensekit.methods``, ``condensekit.datasets``, ``condensekit.backbones``.
condensekit registers its own built-ins through the same groups in its ``pyproject.toml``,
so built-ins and third-party plugins take one code path (as simonw/llm does).

Listing reads entry-point metadata only and inspects the target module's source with
``ast`` to find the class and its one-line description, so ``condensekit list`` imports no
plugin module; only the plugin a command uses is imported. A plugin that fails to import is
reported as broken with a one-line reason and never breaks the CLI.
"""

from __future__ import annotations

import ast
import importlib.machinery
import importlib.util
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from condensekit.errors import PluginError

GROUPS: dict[str, str] = {
    "method": "condensekit.methods",
    "dataset": "condensekit.datasets",
    "backbone": "condensekit.backbones",
}

#: The method plugin API this core implements: a plugin declaring another major version,
#: or a newer minor version, is refused with a clear error.
PLUGIN_API: tuple[int, int] = (1, 0)


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


def _static_description(ep: EntryPoint) -> tuple[str, str]:
    """Return (description, status) by reading the target module's source, not importing it."""
    try:
        spec = _find_spec_without_import(ep.module)
    except (ImportError, ValueError) as exc:
        return "", f"broken: cannot locate module {ep.module!r} ({exc})"
    if spec is None:
        return "", f"broken: module {ep.module!r} is not installed"
    origin = spec.origin
    if not origin or not origin.endswith(".py"):
        return "", "ok"  # compiled or namespace module: nothing to read, import will tell
    try:
        with open(origin, encoding="utf-8") as fh:
            tree = ast.parse(fh.read(), filename=origin)
    except (OSError, SyntaxError) as exc:
        return "", f"broken: cannot read {origin}: {exc.__class__.__name__}: {exc}"
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
            return (doc or "").strip().splitlines()[0] if doc else "", "ok"
    return "", f"broken: module {ep.module!r} has no attribute {attr!r}"


def discover(kind: str) -> list[PluginInfo]:
    """Every installed plugin of one kind, from entry-point metadata (no plugin import)."""
    infos = []
    for ep in _entry_points(kind):
        dist = ep.dist
        description, status = _static_description(ep)
        infos.append(
            PluginInfo(
                name=ep.name,
                kind=kind,
                value=ep.value,
                distribution=dist.metadata["Name"] if dist is not None else "?",
                distribution_version=dist.version if dist is not None else "?",
                description=description,
                status=status,
            )
        )
    return infos


def names(kind: str) -> list[str]:
    return [ep.name for ep in _entry_points(kind)]


def _closest(name: str, candidates: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, candidates, n=3)
    if close:
        return f"did you mean {', '.join(close)}?"
    return f"available: {', '.join(candidates) or 'none installed'}"


def load(kind: str, name: str) -> tuple[Any, PluginInfo]:
    """Import and return the object behind one entry point, with its listing info."""
    eps = {ep.name: ep for ep in _entry_points(kind)}
    if name not in eps:
        raise PluginError(f"unknown {kind} {name!r}: {_closest(name, sorted(eps))}")
    ep = eps[name]
    dist = ep.dist
    info = PluginInfo(
        name=name,
        kind=kind,
        value=ep.value,
        distribution=dist.metadata["Name"] if dist is not None else "?",
        distribution_version=dist.version if dist is not None else "?",
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
    return obj, info


def check_import(kind: str, name: str) -> str:
    """Import one plugin and return its status ("ok" or "broken: reason")."""
    try:
        obj, _ = load(kind, name)
        if kind == "method":
            check_method_api(obj, name)
    except PluginError as exc:
        return f"broken: {exc}"
    return "ok"


def check_method_api(method_cls: Any, name: str) -> None:
    """Refuse a method class whose declared plugin API this core does not implement."""
    declared = getattr(method_cls, "plugin_api", None)
    if not isinstance(declared, str):
        raise PluginError(
            f"method {name!r} declares no plugin_api string; it must set plugin_api = "
            f'"{PLUGIN_API[0]}.{PLUGIN_API[1]}"'
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


def load_method(name: str) -> tuple[Any, PluginInfo]:
    """Load a method plugin class by its entry-point name and check its API version."""
    from condensekit.methods.base import Method

    cls, info = load("method", name)
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise PluginError(
            f"method plugin {name!r} ({info.value}) is not a condensekit.methods.Method subclass"
        )
    check_method_api(cls, name)
    return cls, info
