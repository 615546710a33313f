"""Import formats: readers registered by name, ``auto`` detection, and the one import path.

A format is an :class:`ImportFormat` subclass registered with :func:`register`: ``probe``
says whether a path holds that format (and what it found, in words), ``read`` turns what
the probe found into a :class:`~condensekit.synthetic.SyntheticSet`. ``auto`` tries the
formats in registration order and takes the first that recognizes the path by its content.

:func:`import_source` is the import path the CLI and the library share: everything is read
and checked before the registry is touched, so a refused input writes nothing. Every
imported set records where it came from (``source``, and ``imported_from``: the format,
the path, what was found, and the facts its reader established).

Every ``.pt`` file is loaded with ``torch.load(..., weights_only=True)`` (:func:`load_torch`):
a pickle holding anything but tensors and plain containers is refused, never executed.
"""

from __future__ import annotations

import abc
import json
import pickle
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from condensekit.errors import CondensekitError, UsageError
from condensekit.synthetic import PixelSpace, SyntheticSet

if TYPE_CHECKING:
    from condensekit.data.base import DatasetInfo
    from condensekit.registry import Registry, SetVersion

AUTO = "auto"
#: The CLI flag of each :class:`ImportOptions` field, for messages.
OPTION_FLAGS = {
    "dataset": "--data",
    "exp": "--exp",
    "factor": "--factor",
    "soft_labels": "--soft-labels",
    "zca_check": "--no-zca-check",
}
#: Below both, a set of normalized-space images looks ZCA-whitened (:func:`check_not_zca`).
#: Measured: real CIFAR-10 images (cifar10-mini, normalized) have a mean correlation of 0.87
#: between horizontally neighbouring pixels and a pixel std of 1.25; the same images
#: ZCA-whitened as MTT does (kornia's ZCAWhitening, eps 0.1, fitted on 20,000 CIFAR-10
#: training images) 0.36 and 0.52. Gaussian noise has 0.00 and 1.00 (not flagged).
ZCA_MAX_CORRELATION = 0.6
ZCA_MAX_STD = 0.8


@dataclass(frozen=True)
class ImportOptions:
    """What the user said about the input besides its path (the ``import`` options)."""

    dataset: str | None = None  # --data: the dataset the set belongs to
    exp: int | None = None  # --exp: which experiment of a DC-layout results file
    factor: int | None = None  # --factor: DANCE's multi-formation factor, when no args.log says
    soft_labels: Path | None = None  # --soft-labels: an ImageFolder's soft-label file
    zca_check: bool = True  # --no-zca-check turns the ZCA-whitening statistics check off

    def given(self) -> list[str]:
        """The fields set to something other than their default."""
        return [f.name for f in fields(self) if getattr(self, f.name) != f.default]


@dataclass(frozen=True)
class Probe:
    """What a format found at a path: one line for people, and what its reader needs."""

    found: str
    path: Path
    content: Any = None


@dataclass
class Imported:
    """A set read from an input, ready to be stored: ``dtype`` is the precision to store it
    in, ``name`` the default registry name, ``facts`` what the reader established about the
    input (recorded under ``imported_from`` in the set's metadata)."""

    synset: SyntheticSet
    format: str
    found: str
    name: str
    dtype: str = "float32"
    facts: dict[str, Any] = field(default_factory=dict)


class ImportFormat(abc.ABC):
    """One input format. Subclasses set ``name``, ``expects`` (what a path must hold, for
    the error when it holds something else) and ``options`` (the :class:`ImportOptions`
    fields the reader uses; any other given option is refused before anything is read)."""

    name: ClassVar[str]
    expects: ClassVar[str]
    options: ClassVar[frozenset[str]] = frozenset({"dataset"})

    @abc.abstractmethod
    def probe(self, path: Path) -> Probe | None:
        """A :class:`Probe` when ``path`` holds this format (by content), else None.

        Cheap where it can be; it may load a ``.pt`` file (:func:`load_torch`, cached for
        the duration of one detection) and raises a one-line error for a file it
        recognizes but refuses (a hostile pickle)."""

    @abc.abstractmethod
    def read(self, probe: Probe, options: ImportOptions) -> Imported:
        """The set found by :meth:`probe`, checked; raise UsageError for a bad input."""


_FORMATS: dict[str, type[ImportFormat]] = {}


def register(cls: type[ImportFormat]) -> type[ImportFormat]:
    """Class decorator: add an import format under its ``name`` (auto tries them in order)."""
    if cls.name in _FORMATS or cls.name == AUTO:
        raise ValueError(f"import format {cls.name!r} is already registered")
    _FORMATS[cls.name] = cls
    return cls


def import_formats() -> dict[str, ImportFormat]:
    """Every registered format, in auto-detection order."""
    # The built-in readers register when their modules are imported.
    from condensekit.sharing import hf, native  # noqa: F401

    return {name: cls() for name, cls in _FORMATS.items()}


def format_names() -> list[str]:
    """``auto`` and every format name, for ``--format`` and messages."""
    return [AUTO, *import_formats()]


# --- reading ----------------------------------------------------------------------------


def read_source(source: str | Path, fmt: str = AUTO, options: ImportOptions | None = None) -> Imported:
    """Read and check ``source`` (a path, or ``hf:REPO_ID`` for a Hub dataset repository)
    in format ``fmt`` (``auto``: detected by content). Nothing is written anywhere."""
    options = options or ImportOptions()
    formats = import_formats()
    if fmt != AUTO and fmt not in formats:
        raise UsageError(f"unknown import format {fmt!r}; choose one of {', '.join(format_names())}")
    text = str(source)
    origin = text
    if text.startswith("hf:"):
        from condensekit.sharing import hf

        if fmt not in (AUTO, hf.HFDataset.name):
            raise UsageError(f"{text} is a Hugging Face dataset repository; it imports with --format hf (or auto)")
        fmt = hf.HFDataset.name
        _check_options(formats[fmt], options, text)  # before the download
        path = hf.download(text[3:])
    else:
        path = Path(text)
        if not path.exists():
            raise UsageError(f"{path}: no such file or directory")
    if fmt == AUTO:
        chosen, probe = detect(path, formats)
    else:
        chosen = formats[fmt]
        with _probing():
            found = chosen.probe(path)
        if found is None:
            raise UsageError(f"{path} is not {chosen.expects} (--format {fmt}); try --format auto")
        probe = found
    _check_options(chosen, options, str(path))
    imported = chosen.read(probe, options)
    if origin.startswith("hf:"):  # named after the repository the user asked for
        from condensekit.sharing.hf import repo_name

        imported.name = repo_name(origin[3:])
    imported.synset.metadata["source"] = origin
    imported.synset.metadata["imported_from"] = {
        "format": chosen.name,
        "path": str(path.absolute()),
        "found": probe.found,
        "detected": fmt == AUTO,
        **imported.facts,
    }
    return imported


def detect(path: Path, formats: dict[str, ImportFormat] | None = None) -> tuple[ImportFormat, Probe]:
    """The first format (in registration order) that recognizes ``path``, and its probe."""
    formats = formats or import_formats()
    with _probing():
        for fmt in formats.values():
            probe = fmt.probe(path)
            if probe is not None:
                return fmt, probe
    expected = "; ".join(f"{name}: {fmt.expects}" for name, fmt in formats.items())
    raise UsageError(f"{path}: no import format recognizes it (auto tried {expected})")


def import_source(
    source: str | Path,
    registry: Registry,
    name: str | None = None,
    fmt: str = AUTO,
    options: ImportOptions | None = None,
) -> tuple[SetVersion, Imported]:
    """Read ``source`` (see :func:`read_source`) and store it as the next version of
    ``name`` (default: what the reader proposes, e.g. ``dc-cifar10-ipc10``). The name and
    the registry's writability are checked first, the input completely before the write."""
    from condensekit.registry.refs import validate_name

    if name is not None:
        validate_name(name)
    registry.check_writable()
    imported = read_source(source, fmt, options)
    return registry.save(imported.synset, name or imported.name, dtype=imported.dtype), imported


def _check_options(fmt: ImportFormat, options: ImportOptions, where: str) -> None:
    unused = [OPTION_FLAGS[o] for o in options.given() if o not in fmt.options]
    if unused:
        takes = ", ".join(OPTION_FLAGS[o] for o in sorted(fmt.options)) or "no options"
        raise UsageError(f"{where} is {fmt.name} input, which takes {takes}, not {', '.join(unused)}")


# --- helpers for readers ----------------------------------------------------------------

#: Files loaded during the detection in progress (innermost last), see :func:`_probing`.
_CACHES: list[dict[Path, Any]] = []


@contextmanager
def _probing() -> Iterator[None]:
    """Within the block, :func:`load_torch` loads each file once (auto detection asks
    several formats about the same file)."""
    _CACHES.append(_CACHES[-1] if _CACHES else {})
    try:
        yield
    finally:
        _CACHES.pop()


def _numpy_scalar_globals() -> list[Any]:
    """What unpickling a NumPy scalar needs (DC's code saves its accuracies as
    ``numpy.float64``): its ``scalar`` constructor, under NumPy 2's and NumPy 1's module
    names, ``numpy.dtype`` and the numeric dtype classes. They build numbers, nothing else."""
    core = getattr(np, "_core", None) or np.core
    scalar = core.multiarray.scalar
    dtypes = [type(np.dtype(code)) for code in ("f8", "f4", "f2", "i8", "i4", "i2", "i1", "u1", "b1")]
    return [(scalar, "numpy._core.multiarray.scalar"), (scalar, "numpy.core.multiarray.scalar"), np.dtype, *dtypes]


def load_torch(path: Path, error: type[CondensekitError] = UsageError) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)``, plus NumPy scalars.

    A pickle that needs anything else (a class, a function: what a hostile file uses to
    run code) is refused with a one-line ``error`` naming what it asked for; so is a file
    that is not a torch file at all."""
    key = path.absolute()
    cache = _CACHES[-1] if _CACHES else None
    if cache is not None and key in cache:
        return cache[key]
    try:
        with warnings.catch_warnings(), torch.serialization.safe_globals(_numpy_scalar_globals()):
            warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol 4" for a plain pickle
            value = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        boilerplate = ("Weights only load failed", "Please file an issue", "Check the documentation")
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        detail = next((line for line in lines if not line.startswith(boilerplate)), "not a plain tensor file")
        if not any(word in detail for word in ("GLOBAL", "allowlist", "Can only build")):
            raise error(f"{path}: not a loadable tensor file ({detail.rstrip('.')})") from None
        raise error(
            f"{path}: refused: it holds pickled objects other than tensors and plain containers, "
            f"which are not loaded (torch.load with weights_only=True: {detail.rstrip('.')})"
        ) from None
    except Exception as exc:  # noqa: BLE001 -- torch.load raises many types for foreign or broken files
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise error(f"{path}: not a loadable tensor file ({first})") from None
    if cache is not None:
        cache[key] = value
    return value


def check_tensors(
    images: torch.Tensor,
    labels: torch.Tensor,
    soft: torch.Tensor | None,
    info: DatasetInfo,
    where: tuple[str, str, str] = ("images", "labels", "soft labels"),
    error: type[CondensekitError] = UsageError,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Images, labels and soft labels checked against ``info`` (shape, resolution, count,
    class range, finite values), with labels as int64. ``where`` names the three inputs in
    messages; ``error`` is the class raised (one line)."""
    images_at, labels_at, soft_at = where
    expected = (info.channels, info.resolution, info.resolution)
    if images.dim() != 4 or tuple(images.shape[1:]) != expected:
        hint = ""
        if images.dim() == 4 and images.shape[1] == info.channels:
            hint = f" (wrong resolution: {images.shape[2]}x{images.shape[3]} px)"
        raise error(
            f"{images_at}: images have shape {tuple(images.shape)}, "
            f"expected (N, {', '.join(map(str, expected))}) for {info.name}{hint}"
        )
    if not images.is_floating_point() or not torch.isfinite(images).all():
        raise error(f"{images_at}: images must be finite floating-point values")
    if labels.dim() != 1 or labels.shape[0] != images.shape[0]:
        raise error(f"{labels_at}: expected {images.shape[0]} labels (one per image), got shape {tuple(labels.shape)}")
    if labels.is_floating_point() and not torch.equal(labels, labels.round()):
        raise error(f"{labels_at}: labels must be integer class indices")
    labels = labels.long()
    if labels.numel() and (labels.min() < 0 or labels.max() >= info.num_classes):
        raise error(
            f"{labels_at}: labels must be in [0, {info.num_classes}) for {info.name}, "
            f"got {int(labels.min())}..{int(labels.max())}"
        )
    if soft is not None and tuple(soft.shape) != (images.shape[0], info.num_classes):
        raise error(f"{soft_at}: expected shape ({images.shape[0]}, {info.num_classes}), got {tuple(soft.shape)}")
    return images, labels, soft


def dataset_for(options: ImportOptions, found: str | None, where: str, how: str = "") -> DatasetInfo:
    """The dataset the input belongs to: ``--data``, else what the input says (``found``,
    a condensekit dataset name); a one-line UsageError when neither is known."""
    from condensekit.data import dataset_info

    name = options.dataset or found
    if not name:
        raise UsageError(f"{where}: {how or 'the input does not say which dataset it belongs to'}; pass --data DATASET")
    return dataset_info(name)


def build_set(
    images: torch.Tensor,
    labels: torch.Tensor,
    soft: torch.Tensor | None,
    info: DatasetInfo,
    *,
    where: tuple[str, str, str],
    method: str,
    pixel_space: PixelSpace = "normalized",
    factor: int = 1,
    ipc: int | None = None,
    metadata: dict[str, Any] | None = None,
) -> SyntheticSet:
    """A set from peer tensors, after :func:`check_tensors` and the checks an import adds:
    every class of the dataset present (a set of 10 classes is not a CIFAR-100 set), the
    same count per class as the input states (``ipc``), soft labels that are probabilities.
    Raises a one-line UsageError."""
    images, labels, soft = check_tensors(images, labels, soft, info, where)
    counts = torch.bincount(labels, minlength=info.num_classes)
    missing = (counts == 0).nonzero().flatten().tolist()
    if missing:
        present = info.num_classes - len(missing)
        raise UsageError(
            f"{where[1]}: the set has images of {present} classes, {info.name} has {info.num_classes} "
            f"(none of class {', '.join(map(str, missing[:5]))}{', ...' if len(missing) > 5 else ''}); "
            "pass the --data DATASET it was made from"
        )
    per_class = int(counts[0]) if bool((counts == counts[0]).all()) else None
    if ipc is not None and per_class != ipc:
        held = f"{per_class}" if per_class is not None else f"{int(counts.min())} to {int(counts.max())}"
        raise UsageError(f"{where[0]}: says {ipc} images per class but holds {held} per class")
    if soft is not None:
        soft = soft.float()
        if (soft < 0).any() or not torch.allclose(soft.sum(1), torch.ones(soft.shape[0]), atol=1e-3):
            raise UsageError(f"{where[2]}: soft labels must be class probabilities (non-negative rows summing to 1)")
    meta = {**info.as_metadata(), "method": method, "ipc": per_class, **(metadata or {})}
    return SyntheticSet(
        images=images.detach().float().contiguous(),
        labels=labels,
        soft_labels=soft,
        pixel_space=pixel_space,
        factor=factor,
        metadata=meta,
    )


def probabilities(soft: torch.Tensor) -> tuple[torch.Tensor, str]:
    """Soft labels as class probabilities: rows that already are (non-negative, summing to
    1) are kept; other rows (learned logits) go through a softmax. Returns what was done."""
    soft = soft.detach().float()
    if (soft >= 0).all() and torch.allclose(soft.sum(1), torch.ones(soft.shape[0]), atol=1e-3):
        return soft, "class probabilities, kept"
    return torch.softmax(soft, dim=1), "not probabilities (logits): softmax applied"


def zca_statistics(images: torch.Tensor) -> tuple[float, float]:
    """Mean correlation between horizontally neighbouring pixels (per image and channel,
    about the image mean) and the pixel std: natural images are smooth, whitened ones not."""
    x = images.detach().float()
    x = x - x.mean(dim=(2, 3), keepdim=True)
    num = (x[..., :, 1:] * x[..., :, :-1]).sum(dim=(1, 2, 3))
    den = x.pow(2).sum(dim=(1, 2, 3)).clamp_min(1e-12)
    return float((num / den).mean()), float(images.float().std())


def check_not_zca(images: torch.Tensor, where: str, options: ImportOptions, flag: str | None = None) -> dict[str, Any]:
    """Refuse ZCA-whitened images (MTT's and DataDAM's ``--zca``): condensekit trains and
    tests in the dataset's normalized space and cannot undo the whitening. ``flag`` is the
    evidence of a config file beside the input (``args.log says zca: true``), which always
    refuses; otherwise :func:`zca_statistics` decides, unless ``--no-zca-check``. Returns
    the statistics as facts to record."""
    correlation, std = zca_statistics(images)
    facts: dict[str, Any] = {
        "neighbour_correlation": round(correlation, 3),
        "pixel_std": round(std, 3),
        "zca_check": "statistics" if options.zca_check else "skipped (--no-zca-check)",
    }
    advice = "condensekit cannot undo ZCA whitening: distill or save the set without --zca"
    if flag is not None:
        raise UsageError(f"{where}: ZCA-whitened images ({flag}); {advice}")
    if options.zca_check and correlation < ZCA_MAX_CORRELATION and std < ZCA_MAX_STD:
        raise UsageError(
            f"{where}: the images look ZCA-whitened (neighbouring-pixel correlation {correlation:.2f}, "
            f"pixel std {std:.2f}; normalized images have about 0.87 and 1.25); {advice}, "
            "or pass --no-zca-check if they are in the dataset's normalized space"
        )
    return facts


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object file (e.g. DANCE's ``args.log``), or None when absent or not one."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def default_import_name(prefix: str, synset: SyntheticSet) -> str:
    """``<prefix>-<dataset>-ipc<k>`` (``dc-cifar10-ipc10``): an import's default name, apart
    from the names condensekit's own runs get."""
    from condensekit.registry.refs import default_name

    ipc = synset.metadata.get("ipc")
    return default_name(prefix, synset.metadata.get("dataset"), None if ipc is None else f"ipc{ipc}")


# --- condensekit's own files --------------------------------------------------------------


@register
class CondensekitFile(ImportFormat):
    """A condensekit set file (HDF5, docs/format.md), stored as it is: same arrays, same
    sha256, same dtype."""

    name = "condensekit"
    expects = "a condensekit set file (.h5)"

    def probe(self, path: Path) -> Probe | None:
        import h5py

        if path.is_file() and h5py.is_hdf5(path):
            return Probe("an HDF5 file (condensekit set format)", path)
        return None

    def read(self, probe: Probe, options: ImportOptions) -> Imported:
        from condensekit.registry import format as h5format

        synset, sha = h5format.read_set(probe.path, verify=True)
        dataset = synset.metadata.get("dataset")
        if options.dataset is not None and dataset != options.dataset:
            raise UsageError(f"{probe.path}: holds a {dataset!r} set, not {options.dataset!r}")
        dtype = synset.metadata.pop("stored_dtype", "float32")
        name = default_import_name(str(synset.metadata.get("method") or "set"), synset)
        return Imported(synset, self.name, f"condensekit set file, sha256 {sha[:12]}", name, dtype, {"sha256": sha})


@register
class TensorPair(ImportFormat):
    """``images.pt`` + ``labels.pt`` (+ ``soft_labels.pt``) in the dataset's normalized
    space, as ``export --pt`` writes them (``condensekit.registry.exchange.read_pt_pair``)."""

    name = "pt"
    expects = "an images.pt + labels.pt pair (a folder holding them, or the images.pt path)"

    def probe(self, path: Path) -> Probe | None:
        images = path / "images.pt" if path.is_dir() else path
        if images.name == "images.pt" and images.is_file() and images.with_name("labels.pt").is_file():
            return Probe("images.pt + labels.pt tensors", images)
        return None

    def read(self, probe: Probe, options: ImportOptions) -> Imported:
        from condensekit.registry.exchange import read_pt_pair

        if options.dataset is None:
            raise UsageError(f"importing {probe.path.name} needs the dataset it belongs to: pass --data DATASET")
        synset = read_pt_pair(probe.path, options.dataset)
        return Imported(synset, self.name, probe.found, default_import_name("imported", synset))
