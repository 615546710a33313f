"""Recipes: a distillation written down as TOML, read back from a stored set, or swept.

A recipe holds what ``condensekit distill METHOD`` takes on its command line, so a run can be
kept in a file, repeated, shared and varied:

.. code-block:: toml

    method = "dm"              # optional when the method is given on the command line
    data = "cifar10"
    ipc = 10
    iterations = 2000

    [config]                   # the method's options (top-level keys work too)
    batch-real = 128

    [sweep]                    # optional: one run per combination of these values
    seed = [0, 1, 2]

A key is the long option's name without ``--`` (``res``, ``checkpoint-every``, ``lr-img``;
``_`` and ``-`` are the same). This module only reads, checks, layers and writes recipes; it
never runs anything: :func:`expand` turns a recipe, the flags given with it and ``--set``
sweeps into the :class:`~condensekit.distill.DistillRequest` of every run, and the caller
plans and runs them. Every problem is a one-line :class:`~condensekit.errors.UsageError`
raised before any work.
"""

from __future__ import annotations

import dataclasses
import itertools
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import tomli_w

from condensekit.distill import DistillRequest
from condensekit.errors import RegistryError, UsageError
from condensekit.evaluation.teacher import recorded_teacher
from condensekit.registry.refs import default_name, validate_name

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover -- Python 3.10
    import tomli as tomllib

if typing.TYPE_CHECKING:
    from condensekit.methods.base import Method

#: The recipe keys of the common options (the ``distill`` flags without ``--``) and the
#: DistillRequest field and type of each. ``method``, ``[config]`` and ``[sweep]`` are the
#: other keys; any other key must be a field of the method's config.
COMMON_KEYS: dict[str, tuple[str, Any]] = {
    "data": ("data", str),
    "ipc": ("ipc", int),
    "backbone": ("backbone", str),
    "iterations": ("iterations", int),
    "seed": ("seed", int),
    "device": ("device", str),
    "name": ("name", str),
    "res": ("resolution", int),
    "data-root": ("data_root", str),
    "registry": ("registry", str),
    "resume": ("resume", bool),
    "checkpoint-every": ("checkpoint_every", int),
    "experts": ("experts", str),
    "teacher": ("teacher", str),
    "teacher-weights": ("teacher_weights", str),
    "dtype": ("dtype", Literal["float32", "float16"]),
    "compile": ("compile", bool),
    "nproc": ("nproc", int),
    "preset": ("preset", str),
}
#: Keys a sweep cannot vary: one sweep is one method, and run names are derived from ``name``.
UNSWEPT_KEYS = ("method", "name")
#: Without ``name``, the default name ``<method>-<dataset>-ipc<k>`` already tells these apart.
IN_DEFAULT_NAME = ("data", "ipc")


@dataclass(frozen=True)
class Recipe:
    """A recipe as read (from a file or a stored set): keys canonical (``-``), common options
    type-checked; config keys are checked by :func:`expand`, once the method is known."""

    source: str  # what the recipe came from, for messages: "recipe.toml", "set dm-...:v1"
    method: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)  # common keys (COMMON_KEYS)
    config: Mapping[str, Any] = field(default_factory=dict)  # method config keys
    sweep: Mapping[str, Sequence[Any]] = field(default_factory=dict)  # key -> values
    comment: str | None = None  # written above the keys by dump_recipe


@dataclass(frozen=True)
class RecipeRun:
    """One run of a recipe: its request and, in a sweep, the swept values (by recipe key)."""

    request: DistillRequest
    values: Mapping[str, Any] = field(default_factory=dict)

    def label(self) -> str:
        """``seed=1 lr-img=0.5``: how messages and tables name the run."""
        return " ".join(f"{key}={format_value(value)}" for key, value in self.values.items())


def canonical_key(key: str) -> str:
    """Recipe keys are spelled like the flags; ``lr_img`` (the config field) means ``lr-img``."""
    return key.strip().replace("_", "-")


def format_value(value: Any) -> str:
    """A value as it is written in TOML (``true``, ``0.5``, ``cpu``), for names and labels."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# --- reading --------------------------------------------------------------------------------


def load_recipe(path: str | Path) -> Recipe:
    """Read and check a recipe file (TOML); the method's config keys are checked by :func:`expand`."""
    where = Path(path)
    try:
        text = where.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"recipe {where} not found; check the path given to --config") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        raise UsageError(f"cannot read recipe {where}: {reason}; give a readable TOML file") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"recipe {where} is not valid TOML: {exc}; fix the file") from None
    return parse_recipe(data, str(where))


def parse_recipe(data: Mapping[str, Any], source: str, comment: str | None = None) -> Recipe:
    """Sort a recipe's keys into method, common options, config and sweep, and check them."""
    method: str | None = None
    options: dict[str, Any] = {}
    config: dict[str, Any] = {}
    sweep: dict[str, list[Any]] = {}
    spelled: dict[str, str] = {}  # canonical key -> how the file spells it (duplicates)

    def claim(key: str, where: str) -> str:
        canonical = canonical_key(key)
        if canonical in spelled:
            raise UsageError(
                f"key {canonical!r} is given twice in {source} ({spelled[canonical]} and {where}); keep one"
            )
        spelled[canonical] = where
        return canonical

    for key, value in data.items():
        canonical = canonical_key(key)
        if canonical == "method":
            if not isinstance(value, str) or not value:
                raise UsageError(f'method in {source} must be a method name, e.g. method = "dm"; fix it')
            method = value
        elif canonical in ("config", "sweep"):
            if not isinstance(value, dict):
                raise UsageError(f"{key} in {source} must be a table, [{canonical}]; fix it")
        elif isinstance(value, dict):
            raise UsageError(f"unknown table [{key}] in {source}; the tables a recipe has are [config] and [sweep]")
        elif canonical in COMMON_KEYS:
            options[claim(key, repr(key))] = _check_type(canonical, value, COMMON_KEYS[canonical][1], source)
        else:  # the method's config, checked once the method is known
            config[claim(key, repr(key))] = value
    for key, value in data.get("config", {}).items():
        canonical = canonical_key(key)
        if canonical in COMMON_KEYS or canonical == "method":
            raise UsageError(f"{key!r} is a common option, not a config key: move it above [config] in {source}")
        config[claim(key, f"[config] {key}")] = value
    for key, values in data.get("sweep", {}).items():
        canonical = canonical_key(key)
        if canonical in UNSWEPT_KEYS:
            raise UsageError(f"{canonical!r} cannot be swept ([sweep] in {source}); give one {canonical}")
        if canonical in sweep:
            raise UsageError(f"key {canonical!r} is given twice in the [sweep] table of {source}; keep one")
        if not isinstance(values, list) or not values:
            raise UsageError(f"[sweep] {key} in {source} must be a non-empty array, e.g. {key} = [0, 1]; fix it")
        if canonical in COMMON_KEYS:
            tp = COMMON_KEYS[canonical][1]
            sweep[canonical] = [_check_type(canonical, v, tp, source) for v in values]
        else:  # the method's config, checked once the method is known
            sweep[canonical] = list(values)
    return Recipe(source, method, options, config, sweep, comment)


def recipe_from_set(info: Mapping[str, Any]) -> Recipe:
    """The recipe that remakes a stored set, from ``Registry.show(ref)``: what its metadata
    says it was made with (method, data, ipc, resolution, backbone, iterations, seed, preset,
    resolved config, experts, device type, storage dtype, processes, compile), saved under
    the same name, so that a rerun is a new version of it."""
    meta = info.get("metadata", {})
    ref = info.get("ref", "?")
    for key in ("method", "dataset", "ipc", "seed", "iterations", "backbone", "config"):
        if meta.get(key) is None:
            raise RegistryError(
                f"{ref} keeps no recipe: its metadata has no {key!r} (an imported set does not say how it was "
                f"made); distill it anew with `condensekit distill METHOD ...`"
            )
    options: dict[str, Any] = {
        "data": meta["dataset"],
        "ipc": int(meta["ipc"]),
        "res": None if meta.get("resolution") is None else int(meta["resolution"]),
        "backbone": meta["backbone"],
        "iterations": int(meta["iterations"]),
        "seed": int(meta["seed"]),
        "preset": meta.get("preset"),
        "experts": meta.get("experts"),
        "teacher": recorded_teacher(meta),
        # The device type, not its index: cuda:3 of one machine is any GPU of another.
        "device": None if meta.get("device") is None else str(meta["device"]).split(":")[0],
        "dtype": meta.get("stored_dtype") if meta.get("stored_dtype") not in (None, "float32") else None,
        "nproc": int(meta["world_size"]) if int(meta.get("world_size") or 1) > 1 else None,
        "compile": True if meta.get("compiled") else None,
        "name": info.get("name"),
    }
    made_with = (
        f"{meta['method']} {meta.get('method_version', '?')}, condensekit {meta.get('condensekit_version', '?')}"
    )
    config = {canonical_key(k): v for k, v in dict(meta["config"]).items() if v is not None}
    return Recipe(
        source=f"set {ref}",
        method=str(meta["method"]),
        options={k: v for k, v in options.items() if v is not None},
        config=config,
        comment=(
            f"condensekit recipe of {ref} (made with {made_with})\n"
            f"`condensekit distill --config FILE` makes it again; flags given with --config override these keys"
        ),
    )


def stored_recipe(ref: str, registry: str | Path | None = None) -> Recipe:
    """The recipe of the stored set ``ref`` (what ``distill --from REF`` reruns)."""
    from condensekit.registry import Registry

    with Registry(registry) as reg:
        return recipe_from_set(reg.show(ref))


# --- writing --------------------------------------------------------------------------------


def dump_recipe(recipe: Recipe) -> str:
    """The recipe as TOML that :func:`load_recipe` reads back to the same recipe: the method,
    the common options, then ``[config]`` and ``[sweep]`` tables."""
    document: dict[str, Any] = {}
    if recipe.method is not None:
        document["method"] = recipe.method
    document.update(recipe.options)
    if recipe.config:
        document["config"] = dict(recipe.config)
    if recipe.sweep:
        document["sweep"] = {key: list(values) for key, values in recipe.sweep.items()}
    header = "".join(f"# {line}\n" for line in (recipe.comment or "").splitlines())
    return header + tomli_w.dumps(document)


# --- expanding into requests ------------------------------------------------------------------


def expand(
    method_cls: type[Method],
    recipe: Recipe | None = None,
    flags: Mapping[str, Any] | None = None,
    sets: Sequence[str] = (),
    ambient: Mapping[str, Any] | None = None,
    command: tuple[str, ...] | None = None,
) -> list[RecipeRun]:
    """Every run a command asks for, in order, each as a checked request (nothing planned yet).

    Layers, later ones win: ``ambient`` (values from the environment, e.g. ``CONDENSEKIT_DATA``)
    < the recipe < its ``[sweep]`` < ``flags`` (given on the command line; keyed by
    DistillRequest field or config field name) < ``sets`` (``--set key=v1,v2``). A flag for a
    key the recipe sweeps replaces that sweep. Several swept keys make their cartesian
    product, the first key varying slowest. In a sweep, each run is saved as the base name
    (``name``, else the default ``<method>-<dataset>-ipc<k>``) followed by ``-<key><value>``
    for each swept key (data and ipc only when ``name`` is given: the default name has them).
    """
    flags = dict(flags or {})
    fields = _config_fields(method_cls)
    source = recipe.source if recipe is not None else "the command line"
    if recipe is not None and recipe.method is not None and recipe.method != method_cls.name:
        raise UsageError(
            f"{recipe.source} is a {recipe.method!r} recipe, not {method_cls.name!r}; "
            f"run `condensekit distill {recipe.method} ...` or leave the method out"
        )
    options: dict[str, Any] = dict(ambient or {})
    config: dict[str, Any] = {}
    axes: dict[str, list[Any]] = {}
    if recipe is not None:
        options.update({COMMON_KEYS[key][0]: value for key, value in recipe.options.items()})
        for key, value in recipe.config.items():
            name = _config_field(key, fields, method_cls, source)
            config[name] = _check_type(key, value, fields[name], source)
        for key, swept in recipe.sweep.items():
            axes[key] = [_check_type(key, v, _key_type(key, fields, method_cls, source), source) for v in swept]
    request_fields = {f.name for f in dataclasses.fields(DistillRequest)}
    for name, value in flags.items():
        if name in fields:
            config[name] = value
        elif name in request_fields:
            options[name] = value
        else:
            raise UsageError(f"unknown option {name!r} for method {method_cls.name!r}")  # a caller's bug
    given = set(flags)
    for key in list(axes):  # a flag replaces the recipe's sweep of that key
        if _field_of(key) in given:
            del axes[key]
    for text in sets:
        key, listed = _parse_set(text, fields, method_cls)
        if _field_of(key) in given:
            raise UsageError(f"--{key} and --set {key}=... are both given; keep one")
        axes[key] = listed
    for key, example in (("data", '"cifar10"'), ("ipc", "10")):
        if _field_of(key) not in options and key not in axes:
            raise UsageError(f"no {key} given: pass --{key} or put {key} = {example} in a recipe (--config FILE)")
    if options.get("name") is not None:
        validate_name(str(options["name"]))
    runs = []
    for combo in itertools.product(*axes.values()):
        values = dict(zip(axes, combo, strict=True))
        run_options = dict(options)
        run_config = dict(config)
        for key, value in values.items():
            if key in COMMON_KEYS:
                run_options[COMMON_KEYS[key][0]] = value
            else:
                run_config[_field_of(key)] = value
        if values:
            run_options["name"] = _sweep_name(method_cls.name, run_options, values)
        request = DistillRequest(method=method_cls.name, config=run_config, command=command, **run_options)
        runs.append(RecipeRun(request, values))
    return runs


def _sweep_name(method: str, options: Mapping[str, Any], values: Mapping[str, Any]) -> str:
    base = options.get("name")
    keys = [key for key in values if base is not None or key not in IN_DEFAULT_NAME]
    if base is None:
        base = default_name(method, options["data"], f"ipc{options['ipc']}")
    return default_name(base, *(f"{key}{format_value(values[key])}" for key in keys))


def _parse_set(text: str, fields: Mapping[str, Any], method_cls: type[Method]) -> tuple[str, list[Any]]:
    """``key=v1,v2`` -> (canonical key, typed values)."""
    key, sep, listed = text.partition("=")
    key = canonical_key(key)
    if not sep or not key or not listed.strip():
        raise UsageError(f"--set {text!r} is not KEY=VALUE[,VALUE...]; write e.g. --set seed=0,1,2")
    if key in UNSWEPT_KEYS:
        raise UsageError(f"{key!r} cannot be swept (--set {text}); give one {key}")
    tp = _key_type(key, fields, method_cls, "--set")
    return key, [_from_text(key, part.strip(), tp) for part in listed.split(",")]


def _config_fields(method_cls: type[Method]) -> dict[str, Any]:
    """The method's config fields and their types."""
    hints = typing.get_type_hints(method_cls.Config)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(method_cls.Config)}


def _field_of(key: str) -> str:
    """The request or config field a canonical recipe key sets."""
    return COMMON_KEYS[key][0] if key in COMMON_KEYS else key.replace("-", "_")


def _config_field(key: str, fields: Mapping[str, Any], method_cls: type[Method], source: str) -> str:
    name = _field_of(key)
    if key in COMMON_KEYS or name not in fields:
        raise UsageError(f"unknown key {key!r} in {source}; valid keys: {_valid_keys(fields, method_cls)}")
    return name


def _key_type(key: str, fields: Mapping[str, Any], method_cls: type[Method], source: str) -> Any:
    if key in COMMON_KEYS:
        return COMMON_KEYS[key][1]
    return fields[_config_field(key, fields, method_cls, source)]


def _valid_keys(fields: Mapping[str, Any], method_cls: type[Method]) -> str:
    config = ", ".join(canonical_key(name) for name in fields)
    return f"method, {', '.join(COMMON_KEYS)}; {method_cls.name} config: {config or 'none'}; tables [config], [sweep]"


def _unwrap(tp: Any) -> Any:
    """``X | None`` -> ``X`` (None is never written in TOML: leaving a key out means auto)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _check_type(key: str, value: Any, tp: Any, source: str) -> Any:
    """``value`` as the field's type (an int where a float goes is fine), or a UsageError."""
    tp = _unwrap(tp)
    if typing.get_origin(tp) is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            shown = ", ".join(format_value(c) for c in choices)
            raise UsageError(f"{key} = {value!r} in {source} is not one of {shown}; use one of them")
        return value
    expected = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(tp)
    if expected is None:  # a type TOML has no scalar for (lists...): taken as written
        return value
    if tp is bool:
        ok = isinstance(value, bool)
    elif tp is float:  # TOML's 1 is an int; a float field takes it
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    else:
        ok = isinstance(value, tp) and not isinstance(value, bool)
    if not ok:
        raise UsageError(f"{key} = {value!r} in {source} must be {expected}; fix its value")
    return float(value) if tp is float else value


def _from_text(key: str, text: str, tp: Any) -> Any:
    """A ``--set`` value typed like the field it sets."""
    tp = _unwrap(tp)
    if typing.get_origin(tp) is Literal:
        for choice in typing.get_args(tp):
            if format_value(choice) == text:
                return choice
        shown = ", ".join(format_value(c) for c in typing.get_args(tp))
        raise UsageError(f"--set {key}: {text!r} is not one of {shown}; use one of them")
    try:
        if tp is bool:
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(text)
            return text.lower() in ("true", "1", "yes")
        if tp is int:
            return int(text)
        if tp is float:
            return float(text)
    except ValueError:
        expected = {bool: "true or false", int: "an integer", float: "a number"}[tp]
        raise UsageError(f"--set {key}: {text!r} is not {expected}; fix the value") from None
    if tp is str:
        return text
    try:  # another type (a list...): the value as TOML, else the text itself
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text
