"""Sets as Hugging Face ``datasets`` repositories: export, import and ``push``.

The layout (docs/format.md, section 9.1) is what ``datasets.load_dataset(DIR)`` reads with no
extra code: Parquet files written by ``datasets`` with float32 ``pixel_values`` (an
``Array3D`` feature, stored losslessly), a ``label`` class column, ``soft_label`` when the set
has soft labels, and an 8-bit PNG ``image`` column for the Hub's viewer; a ``stored`` config
with the registry's arrays as stored when they differ from what one trains on (unit-space or
multi-formation sets); a ``preview.png`` grid; and a dataset card (``README.md``) whose YAML
front matter holds the task, the size, and the set's full provenance and evaluations.

The Hugging Face libraries are an optional dependency (``pip install 'condensekit[hf]'``),
imported only inside these functions; :func:`require` is the one-line error without them.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from condensekit.errors import CondensekitError, UsageError
from condensekit.registry import exchange
from condensekit.registry import format as h5format
from condensekit.sharing.formats import (
    Imported,
    ImportFormat,
    ImportOptions,
    Probe,
    build_set,
    check_not_zca,
    check_tensors,
    dataset_for,
    default_import_name,
    register,
)
from condensekit.synthetic import PixelSpace, SyntheticSet

if TYPE_CHECKING:
    import datasets

HF_INSTALL = "pip install 'condensekit[hf]'"
CARD_FORMAT = "condensekit-hf"
CARD_FORMAT_VERSION = 1
DEFAULT_CONFIG = "default"  # decoded, normalized float32: what one trains on
STORED_CONFIG = "stored"  # the registry's arrays as stored (pixel space, factor), when they differ
DATA_DIRS = {DEFAULT_CONFIG: "data", STORED_CONFIG: "stored"}
PREVIEW = "preview.png"
CARD = "README.md"
#: Rows per Parquet file at most this many bytes of pixels (the Hub's viewer and the
#: ``datasets`` loader handle files of a few hundred MB best).
SHARD_BYTES = 256 * 1024 * 1024
#: Columns an external dataset's images, labels and soft labels may have, tried in order
#: (a ``ClassLabel`` feature is a label column whatever its name).
IMAGE_COLUMNS = ("pixel_values", "image", "img", "images")
LABEL_COLUMNS = ("label", "labels", "target", "class", "fine_label")
SOFT_COLUMNS = ("soft_label", "soft_labels", "soft_target", "soft_targets")


def require(what: str) -> None:
    """Raise a one-line UsageError naming the extra to install when ``datasets`` or
    ``huggingface_hub`` is missing (``what`` is the command or function that needs them)."""
    try:
        import datasets  # noqa: F401
        import huggingface_hub  # noqa: F401
    except ImportError:
        raise UsageError(
            f"{what} needs the Hugging Face libraries (datasets, huggingface_hub), which are not installed: "
            f"{HF_INSTALL}"
        ) from None


@contextmanager
def _quiet() -> Iterator[None]:
    """No ``datasets`` progress bars inside the block (ours report what happened)."""
    import datasets

    enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if enabled:
            datasets.enable_progress_bars()


# --- the dataset ------------------------------------------------------------------------


def class_names(synset: SyntheticSet) -> list[str]:
    """The ``ClassLabel`` names: the set's class names, completed with indices."""
    count = max(int(synset.metadata.get("num_classes") or 0), len(synset.class_names), int(synset.labels.max()) + 1)
    names = synset.class_names
    return [names[k] if k < len(names) else str(k) for k in range(count)]


def needs_stored_config(synset: SyntheticSet) -> bool:
    """Whether the stored arrays differ from the training tensors (so a lossless re-import
    needs them as well): unit-space or multi-formation sets."""
    return synset.pixel_space != "normalized" or synset.factor != 1


def to_hf_dataset(synset: SyntheticSet, stored: bool = False) -> datasets.Dataset:
    """The set as an in-memory ``datasets.Dataset``.

    Default: ``pixel_values`` float32 (C, H, W) decoded and in the dataset's normalized space
    (what one trains on, the tensors of :meth:`SyntheticSet.training_tensors`), ``label``
    (``ClassLabel``), ``soft_label`` (float32, K) when the set has soft labels, and ``image``,
    an 8-bit PNG of each image for viewers (1- and 3-channel sets). ``stored``: the arrays as
    the registry stores them (pixel space and multi-formation factor of the set), no PNGs."""
    require("the Hugging Face export")
    import datasets

    if stored:
        images, labels, soft = synset.images.detach().cpu().float(), synset.labels, synset.soft_labels
    else:
        images, labels, soft = synset.training_tensors()
    _, c, h, w = images.shape
    names = class_names(synset)
    features: dict[str, Any] = {
        "pixel_values": datasets.Array3D(shape=(c, h, w), dtype="float32"),
        "label": datasets.ClassLabel(names=names),
    }
    columns: dict[str, Any] = {
        "pixel_values": images.contiguous().numpy(),
        "label": labels.cpu().numpy().astype(np.int64),
    }
    if soft is not None:
        features["soft_label"] = datasets.List(datasets.Value("float32"), length=int(soft.shape[1]))
        columns["soft_label"] = soft.detach().cpu().float().numpy()
    if not stored and c in (1, 3):
        features["image"] = datasets.Image()
        columns["image"] = [exchange._pil(img) for img in exchange._to_uint8(synset.for_display())]
    return datasets.Dataset.from_dict(columns, features=datasets.Features(features))


def _write_parquet(dataset: datasets.Dataset, folder: Path) -> list[str]:
    """``folder/train-0000i-of-0000n.parquet``, each at most about :data:`SHARD_BYTES` of pixels."""
    folder.mkdir(parents=True, exist_ok=True)
    row_bytes = max(1, int(np.prod(dataset.features["pixel_values"].shape)) * 4)
    shards = max(1, -(-len(dataset) * row_bytes // SHARD_BYTES))
    written = []
    with _quiet():
        for i in range(shards):
            name = f"train-{i:05d}-of-{shards:05d}.parquet"
            dataset.shard(shards, i, contiguous=True).to_parquet(str(folder / name))
            written.append(f"{folder.name}/{name}")
    return written


# --- the dataset card -------------------------------------------------------------------


def size_category(rows: int) -> str:
    """The Hub's ``size_categories`` value for ``rows`` examples."""
    bounds = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")]
    for bound, label in bounds:
        if rows < bound:
            return label
    return "1M<n<10M" if rows < 10_000_000 else "n>10M"


def _plain(value: Any) -> Any:
    """JSON-like plain data (YAML writes it as is)."""
    import json

    return json.loads(h5format.to_json(value))


def card_section(synset: SyntheticSet, evaluations: Sequence[dict[str, Any]], sha: str, dtype: str) -> dict[str, Any]:
    """The ``condensekit`` mapping of the card's front matter: everything a re-import needs
    (normalization, pixel space, factor, dtype, sha256) and the full provenance."""
    from condensekit import __version__

    meta = synset.metadata
    provenance = {k: v for k, v in meta.items() if k not in (*h5format.REGISTRY_KEYS, "mean", "std") and v is not None}
    section: dict[str, Any] = {
        "format": CARD_FORMAT,
        "format_version": CARD_FORMAT_VERSION,
        "exported_from": meta.get("ref"),
        "exported_by": f"condensekit {__version__}",
        "exported": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "sha256": sha,
        "stored_dtype": dtype,
        "pixel_space": synset.pixel_space,
        "factor": int(synset.factor),
        "normalization": {"mean": list(meta["mean"]), "std": list(meta["std"])},
        "provenance": provenance,
        "evaluations": [_evaluation(ev) for ev in evaluations],
    }
    return {k: _plain(v) for k, v in section.items() if v is not None}  # in this order


def _evaluation(ev: dict[str, Any]) -> dict[str, Any]:
    """One stored evaluation for the card: protocol, when, every architecture's runs, and
    the parameters it ran with."""
    result = ev.get("result") or {}
    return {
        "protocol": ev.get("protocol") or result.get("protocol"),
        "created": ev.get("created"),
        "scores": ev.get("scores"),
        "results": result.get("results"),
        "params": result.get("params"),
        "device": result.get("device"),
        "condensekit_version": result.get("condensekit_version"),
    }


def card_text(synset: SyntheticSet, section: dict[str, Any], configs: Sequence[str], rows: int) -> str:
    """The dataset card: YAML front matter (written by ``huggingface_hub``'s card class) and
    a body saying what the set is, how to load it, where it came from and how it scored."""
    from huggingface_hub import DatasetCardData

    meta = synset.metadata
    method, dataset, ipc = meta.get("method", "?"), meta.get("dataset", "?"), meta.get("ipc")
    data = DatasetCardData(
        task_categories=["image-classification"],
        size_categories=[size_category(rows)],
        pretty_name=f"{meta.get('ref', method)}: {method} on {dataset}" + (f", {ipc} images per class" if ipc else ""),
        tags=["dataset-distillation", "dataset-condensation", "synthetic", "condensekit", str(method)],
        configs=[
            {
                "config_name": name,
                "data_files": [{"split": "train", "path": f"{DATA_DIRS[name]}/train-*.parquet"}],
                **({"default": True} if name == DEFAULT_CONFIG else {}),
            }
            for name in configs
        ],
        condensekit=section,
    )
    license_note = (
        f"# license: choose the license of this set before sharing it (it is derived from {dataset}: "
        "check that dataset's terms); https://huggingface.co/docs/hub/repositories-licenses"
    )
    front = f"---\n{license_note}\n{data.to_yaml()}\n---\n"
    return front + _card_body(synset, section, configs)


def _card_body(synset: SyntheticSet, section: dict[str, Any], configs: Sequence[str]) -> str:
    meta = synset.metadata
    prov = section["provenance"]
    images = synset.training_tensors()[0]
    n, c, h, w = images.shape
    lines = [
        f"# {meta.get('ref', 'synthetic set')}",
        "",
        f"A synthetic (distilled) training set of {n} images of {meta.get('dataset')} "
        f"({c}x{h}x{w}), made with `{prov.get('method')}` and exported by {section['exported_by']}. "
        "Train a network on it and test on the real test split.",
        "",
        "## Loading",
        "",
        "```python",
        "from datasets import load_dataset",
        'ds = load_dataset("<this repository or folder>", split="train").with_format("torch")',
        "rows = ds[:]  # every row: a dict of tensors",
        f'x, y = rows["pixel_values"], rows["label"]  # float32 ({n}, {c}, {h}, {w}) normalized, int64 ({n},)',
        "```",
        "",
        f"`pixel_values` are in the dataset's normalized space, `(pixels - mean) / std` with "
        f"mean {section['normalization']['mean']} and std {section['normalization']['std']}; "
        "`image` is an 8-bit PNG of each image, for viewing only."
        + (" `soft_label` holds each image's class probabilities." if synset.soft_labels is not None else ""),
    ]
    if STORED_CONFIG in configs:
        lines += [
            "",
            f"The `{STORED_CONFIG}` config holds the arrays as condensekit stores them "
            f"({synset.pixel_space} pixel space, multi-formation factor {synset.factor}), for a lossless re-import.",
        ]
    lines += ["", "With condensekit: `condensekit import hf:<repository>` (or `condensekit import <folder>`).", ""]
    lines += ["## Provenance", "", "| | |", "|---|---|"]
    spent = [
        f"{prov['iterations']} iterations" if prov.get("iterations") is not None else None,
        f"{prov['wall_time_s']:.1f} s" if isinstance(prov.get("wall_time_s"), (int, float)) else None,
    ]
    budget = ", ".join(b for b in spent if b) + (f" on {prov['device']}" if prov.get("device") else "")
    rows = {
        "method": f"{prov.get('method')} {prov.get('method_version', '')}".strip(),
        "dataset": prov.get("dataset"),
        "images per class": prov.get("ipc"),
        "backbone": prov.get("backbone"),
        "budget": budget.strip() or None,
        "seed": prov.get("seed"),
        "config": f"`{h5format.to_json(prov.get('config', {}))}`",
        "sha256": f"`{section['sha256']}`",
        "made with": f"condensekit {prov['condensekit_version']}" if prov.get("condensekit_version") else None,
        "created": prov.get("created"),
    }
    lines += [f"| {k} | {v} |" for k, v in rows.items() if v is not None]
    lines += ["", "## Evaluations", ""]
    if section["evaluations"]:
        lines += ["| protocol | architecture | accuracy (%) | runs | created |", "|---|---|---|---|---|"]
        for ev in section["evaluations"]:
            for arch, score in (ev.get("scores") or {}).items():
                runs = next((len(r["accuracies"]) for r in ev.get("results") or [] if r.get("arch") == arch), "?")
                std = "" if score.get("std") is None else f" ± {score['std']:.2f}"
                lines.append(f"| {ev['protocol']} | {arch} | {score['mean']:.2f}{std} | {runs} | {ev['created']} |")
        lines += ["", "Each run trains a fresh network on this set only and tests it on the real test split."]
    else:
        lines.append("None recorded.")
    lines += [
        "",
        "## License",
        "",
        "Not set by condensekit: add a `license` to the front matter of this card before sharing it.",
        "",
    ]
    return "\n".join(lines)


# --- export -----------------------------------------------------------------------------


@dataclass(frozen=True)
class HFExport:
    """What an export wrote: the folder, its files (relative), configs and rows."""

    path: Path
    files: list[str]
    configs: list[str]
    rows: int


def _is_hf_export(folder: Path) -> bool:
    card = _read_card(folder)
    section = card.get("condensekit")
    return isinstance(section, dict) and section.get("format") == CARD_FORMAT


def check_hf_target(directory: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """Refuse, before any work, an export the folder cannot take: the Hugging Face libraries
    missing, a folder that is not empty (unless ``overwrite`` and it holds a previous
    ``--hf`` export: a README.md whose front matter has a condensekit section)."""
    require("export --hf")
    out = Path(directory)
    if overwrite and out.is_dir() and any(out.iterdir()) and not _is_hf_export(out):
        raise UsageError(
            f"{out} is not empty and holds no previous --hf export (a README.md with a condensekit section), "
            "so --overwrite will not replace it; pick a new or empty folder"
        )
    return exchange.check_folder_target(out, overwrite, markers=(CARD,), option="--hf")


def write_hf(synset: SyntheticSet, folder: Path, evaluations: Sequence[dict[str, Any]] = ()) -> HFExport:
    """Write the layout into ``folder`` (new or empty): Parquet configs, preview, card."""
    require("the Hugging Face export")
    dtype = str(synset.metadata.get("stored_dtype", "float32"))
    sha = h5format.content_sha256(h5format.stored_arrays(synset, dtype))
    configs = [DEFAULT_CONFIG] + ([STORED_CONFIG] if needs_stored_config(synset) else [])
    files: list[str] = []
    default = to_hf_dataset(synset)
    for config in configs:
        dataset = default if config == DEFAULT_CONFIG else to_hf_dataset(synset, stored=True)
        files += _write_parquet(dataset, folder / DATA_DIRS[config])
    if "image" in default.features:
        exchange.export_grid(synset, folder / PREVIEW)
        files.append(PREVIEW)
    section = card_section(synset, evaluations, sha, dtype)
    (folder / CARD).write_text(card_text(synset, section, configs, len(default)))
    files.append(CARD)
    return HFExport(folder, sorted(files), configs, len(default))


def export_hf(
    synset: SyntheticSet,
    directory: str | os.PathLike[str],
    evaluations: Sequence[dict[str, Any]] = (),
    overwrite: bool = False,
) -> HFExport:
    """``export --hf DIR``: the layout built in a hidden folder beside ``DIR`` and renamed
    into place once complete (see :func:`check_hf_target` for what ``DIR`` may be)."""
    out = check_hf_target(directory, overwrite)
    with exchange.staged_folder(out, overwrite, markers=(CARD,)) as stage:
        written = write_hf(synset, stage, evaluations)
    return HFExport(out, written.files, written.configs, written.rows)


# --- push -------------------------------------------------------------------------------


@dataclass(frozen=True)
class PushResult:
    """What ``push`` did (or, with ``dry_run``, would do)."""

    repo_id: str
    url: str
    files: list[str]
    bytes: int
    uploaded: bool
    folder: Path | None  # where the layout was kept (``--folder``), else None
    commit_url: str | None = None


def check_push(repo_id: str, dry_run: bool = False) -> str | None:
    """The Hub token ``push`` will use, after checking the repository id; a one-line
    UsageError when not logged in (a dry run needs no login: it returns None then)."""
    require("push")
    import huggingface_hub
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils._validators import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise UsageError(f"{repo_id!r} is not a Hub repository id (NAME or OWNER/NAME): {_first_line(exc)}") from None
    token = huggingface_hub.get_token()
    if token is None and not dry_run:
        raise UsageError("push needs a Hugging Face login: run `hf auth login` (or set HF_TOKEN); nothing was uploaded")
    return token


def push(
    synset: SyntheticSet,
    repo_id: str,
    evaluations: Sequence[dict[str, Any]] = (),
    *,
    private: bool = False,
    dry_run: bool = False,
    folder: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
) -> PushResult:
    """Export ``synset`` in the Hugging Face layout and upload it to the dataset repository
    ``repo_id`` (created if missing) with ``huggingface_hub``. Everything that can fail here
    (no libraries, bad id, no login, a ``folder`` that is taken) fails before the export;
    ``dry_run`` stops before the upload. ``folder`` keeps the exported layout there."""
    token = check_push(repo_id, dry_run)
    url = f"https://huggingface.co/datasets/{repo_id}"
    if folder is not None:
        exported = export_hf(synset, folder, evaluations, overwrite)
        return _upload(exported, repo_id, url, token, private, dry_run, synset, kept=True)
    with tempfile.TemporaryDirectory(prefix="condensekit-push-") as tmp:
        exported = write_hf(synset, Path(tmp), evaluations)
        return _upload(exported, repo_id, url, token, private, dry_run, synset, kept=False)


def _upload(
    exported: HFExport,
    repo_id: str,
    url: str,
    token: str | None,
    private: bool,
    dry_run: bool,
    synset: SyntheticSet,
    kept: bool,
) -> PushResult:
    size = sum((exported.path / f).stat().st_size for f in exported.files)
    result = PushResult(repo_id, url, exported.files, size, False, exported.path if kept else None)
    if dry_run:
        return result
    # The network path: not exercised by the tests (they stop at dry_run; docs/format.md 9.3).
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi(token=token)
    try:
        api.create_repo(repo_id=repo_id, repo_type="dataset", private=private, exist_ok=True)
        commit = api.upload_folder(
            repo_id=repo_id,
            repo_type="dataset",
            folder_path=str(exported.path),
            commit_message=f"condensekit: {synset.metadata.get('ref', 'synthetic set')}",
        )
    except (HfHubHTTPError, OSError) as exc:
        raise CondensekitError(f"upload to {url} failed: {_first_line(exc)}") from None
    return PushResult(
        repo_id, url, exported.files, size, True, result.folder, str(getattr(commit, "commit_url", "")) or None
    )


# --- import -----------------------------------------------------------------------------


def download(repo_id: str) -> Path:
    """The local snapshot of the Hub dataset repository ``repo_id`` (``OWNER/NAME`` or
    ``OWNER/NAME@REVISION``), downloaded into the Hugging Face cache (or found there)."""
    require(f"import hf:{repo_id}")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    repo, _, revision = repo_id.partition("@")
    try:
        return Path(snapshot_download(repo_id=repo, repo_type="dataset", revision=revision or None))
    except HFValidationError as exc:
        raise UsageError(f"hf:{repo_id}: not a Hub repository id ({_first_line(exc)})") from None
    except RepositoryNotFoundError:
        raise UsageError(
            f"hf:{repo}: no such dataset repository on the Hub (a private one needs `hf auth login`)"
        ) from None
    except RevisionNotFoundError:
        raise UsageError(f"hf:{repo_id}: the repository has no revision {revision!r}") from None
    except LocalEntryNotFoundError:
        raise CondensekitError(
            f"hf:{repo_id}: the Hub cannot be reached and the repository is not in the local cache; "
            "retry online, or download it and import the folder"
        ) from None
    except (HfHubHTTPError, OSError) as exc:
        raise CondensekitError(f"hf:{repo_id}: download failed: {_first_line(exc)}") from None


def repo_name(repo_id: str) -> str:
    """A registry name from a repository id (``owner/dm-cifar10@v2`` -> ``dm-cifar10``)."""
    from condensekit.registry.refs import default_name

    return default_name(repo_id.partition("@")[0].rsplit("/", 1)[-1])


def _read_card(folder: Path) -> dict[str, Any]:
    """The front matter of ``folder/README.md`` as a dict ({} when there is none)."""
    path = folder / CARD
    if not path.is_file():
        return {}
    from huggingface_hub import DatasetCard

    try:
        data = DatasetCard.load(path, ignore_metadata_errors=True).data.to_dict()
    except (ValueError, OSError):
        return {}
    return data if isinstance(data, dict) else {}


def _has_data_files(folder: Path) -> bool:
    """Parquet or Arrow files at most three folders deep (``data/``, ``<config>/<split>/``):
    auto detection must not walk a large tree it was pointed at by mistake."""
    patterns = [f"{'*/' * depth}*.{ext}" for depth in range(4) for ext in ("parquet", "arrow")]
    return any(next(folder.glob(p), None) is not None for p in patterns)


@register
class HFDataset(ImportFormat):
    """A Hugging Face ``datasets`` folder: an export of ours (its card's condensekit section
    gives the provenance, normalization, pixel space and sha256), or any image
    classification dataset (``method: external``; ``--data`` names the condensekit dataset)."""

    name = "hf"
    expects = "a Hugging Face dataset folder (Parquet or Arrow files, or a save_to_disk folder)"
    options = frozenset({"dataset", "zca_check"})

    def probe(self, path: Path) -> Probe | None:
        if not path.is_dir():
            return None
        disk = (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()
        if not (disk or _has_data_files(path)):
            return None
        try:
            card = _read_card(path)
        except ImportError:  # no huggingface_hub: read() says what to install
            card = {}
        section = card.get("condensekit")
        if isinstance(section, dict) and section.get("format") == CARD_FORMAT:
            found = f"a condensekit Hugging Face export of {section.get('exported_from') or 'a set'}"
        else:
            found = (
                "a Hugging Face dataset " + ("saved with save_to_disk" if disk else "folder") + " (no condensekit card)"
            )
        return Probe(found, path, card)

    def read(self, probe: Probe, options: ImportOptions) -> Imported:
        require("import of a Hugging Face dataset")
        card: dict[str, Any] = probe.content or {}
        section = card.get("condensekit")
        if isinstance(section, dict) and section.get("format") == CARD_FORMAT:
            return self._read_export(probe, section, card, options)
        return self._read_external(probe, section if isinstance(section, dict) else {}, card, options)

    def _read_export(
        self, probe: Probe, section: dict[str, Any], card: dict[str, Any], options: ImportOptions
    ) -> Imported:
        from condensekit.data import dataset_info

        version = int(section.get("format_version", 0))
        if version != CARD_FORMAT_VERSION:
            raise UsageError(
                f"{probe.path}: card format_version {version} is not supported by this condensekit "
                f"(reads {CARD_FORMAT_VERSION}); upgrade condensekit"
            )
        names = {c.get("config_name") for c in card.get("configs") or [] if isinstance(c, dict)}
        config = STORED_CONFIG if STORED_CONFIG in names else DEFAULT_CONFIG
        columns = _load_columns(probe.path, config if names else None)
        provenance = dict(section.get("provenance") or {})
        dataset = provenance.get("dataset")
        if options.dataset is not None and dataset != options.dataset:
            raise UsageError(f"{probe.path}: holds a {dataset!r} set, not {options.dataset!r}")
        images = torch.from_numpy(_float_images(columns, probe.path))
        info = dataset_info(str(dataset), int(images.shape[-1]))
        labels = torch.from_numpy(np.asarray(columns["label"], dtype=np.int64))
        soft = _soft(columns)
        images, labels, soft = check_tensors(images, labels, soft, info, _where(probe.path))
        stored = config == STORED_CONFIG
        space: PixelSpace = section.get("pixel_space", "normalized") if stored else "normalized"
        norm = section.get("normalization") or {}
        metadata = {**provenance, "mean": norm.get("mean", list(info.mean)), "std": norm.get("std", list(info.std))}
        metadata.setdefault("class_names", columns.get("_names") or list(info.class_names))
        try:
            synset = SyntheticSet(
                images=images.float().contiguous(),
                labels=labels,
                soft_labels=soft,
                pixel_space=space,
                factor=int(section.get("factor", 1)) if stored else 1,
                metadata=metadata,
            )
        except ValueError as exc:
            raise UsageError(f"{probe.path}: invalid set: {exc}") from None
        dtype = str(section.get("stored_dtype", "float32"))
        sha = h5format.content_sha256(h5format.stored_arrays(synset, dtype))
        if section.get("sha256") and sha != section["sha256"]:
            raise UsageError(
                f"{probe.path}: the data does not match the sha256 in its card ({sha[:12]} != "
                f"{str(section['sha256'])[:12]}): it changed after the export"
            )
        exported_from = str(section.get("exported_from") or "")
        name = exported_from.split(":", 1)[0] or default_import_name(str(provenance.get("method", "set")), synset)
        facts = {
            "card": f"{CARD_FORMAT} v{version}",
            "config": config,
            "sha256_verified": bool(section.get("sha256")),
            "exported_from": exported_from or None,
            "card_evaluations": section.get("evaluations") or [],
        }
        return Imported(synset, self.name, probe.found, name, dtype, facts)

    def _read_external(
        self, probe: Probe, section: dict[str, Any], card: dict[str, Any], options: ImportOptions
    ) -> Imported:
        info = dataset_for(
            options, section.get("dataset"), str(probe.path), "its dataset card does not name a condensekit dataset"
        )
        columns = _load_columns(probe.path, None)
        facts: dict[str, Any] = {"columns": columns["_columns"]}
        norm = section.get("normalization") or {}
        space: PixelSpace
        if columns["_image_kind"] == "image":
            unit = _pil_images(columns["_images"], info.channels, probe.path)
            images, space = torch.from_numpy(unit), "unit"
            facts["pixels"] = "8-bit images, divided by 255"
        else:
            images = torch.from_numpy(_float_images(columns, probe.path, info.channels))
            space = "unit" if section.get("pixel_space") == "unit" else "normalized"
            if space == "normalized" and not norm:
                facts["normalization"] = f"the card states none: {info.name}'s mean and std assumed"
                facts.update(check_not_zca(images, str(probe.path), options))
        labels, label_facts = _labels(columns, info, probe.path)
        facts.update(label_facts)
        soft = _soft(columns)
        where = _where(probe.path)
        extra: dict[str, Any] = {}
        if norm:
            extra = {"mean": list(norm["mean"]), "std": list(norm["std"])}
        license_ = card.get("license")
        if license_:
            facts["license"] = license_
        if card.get("pretty_name"):
            facts["title"] = card["pretty_name"]
        synset = build_set(
            images, labels, soft, info, where=where, method="external", pixel_space=space, metadata=extra
        )
        return Imported(synset, self.name, probe.found, default_import_name("hf", synset), "float32", facts)


def _where(path: Path) -> tuple[str, str, str]:
    return (f"{path} (pixel_values)", f"{path} (label)", f"{path} (soft_label)")


def _load_columns(path: Path, config: str | None) -> dict[str, Any]:
    """The train split's columns as NumPy arrays (images kept as decoded objects for an
    ``Image`` column), with the image column's kind and the class names of a ``ClassLabel``.
    Read with ``datasets`` itself, through a temporary cache removed afterwards."""
    import datasets

    with _quiet(), tempfile.TemporaryDirectory(prefix="condensekit-hf-") as cache:
        try:
            if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
                loaded = datasets.load_from_disk(str(path), keep_in_memory=True)
            else:
                loaded = datasets.load_dataset(str(path), name=config, cache_dir=cache, keep_in_memory=True)
        except (ValueError, OSError, datasets.exceptions.DatasetGenerationError) as exc:
            raise UsageError(f"{path}: datasets cannot load it: {_first_line(exc)}") from None
        ds = _train_split(loaded, path)
        features = ds.features
        image_col = next((c for c in IMAGE_COLUMNS if c in features), None)
        if image_col is None:
            image_col = next((c for c, f in features.items() if isinstance(f, datasets.Image)), None)
        if image_col is None:
            raise UsageError(f"{path}: no image column (looked for {', '.join(IMAGE_COLUMNS)} or an Image feature)")
        label_col = next((c for c, f in features.items() if isinstance(f, datasets.ClassLabel)), None)
        label_col = label_col or next((c for c in LABEL_COLUMNS if c in features), None)
        if label_col is None:
            raise UsageError(f"{path}: no label column (looked for {', '.join(LABEL_COLUMNS)} or a ClassLabel feature)")
        soft_col = next((c for c in SOFT_COLUMNS if c in features), None)
        out: dict[str, Any] = {"_columns": {"images": image_col, "labels": label_col, "soft_labels": soft_col}}
        label_feature = features[label_col]
        out["_names"] = list(label_feature.names) if isinstance(label_feature, datasets.ClassLabel) else None
        arrays = [label_col] + ([soft_col] if soft_col is not None else [])
        if isinstance(features[image_col], datasets.Image):
            out["_image_kind"] = "image"
            out["_images"] = list(ds.select_columns([image_col])[:][image_col])
        else:
            out["_image_kind"] = "array"
            arrays.append(image_col)
        rows = ds.select_columns(arrays).with_format("numpy")[:]  # every row, one array per column
        if out["_image_kind"] == "array":
            out["pixel_values"] = np.asarray(rows[image_col])
        out["label"] = np.asarray(rows[label_col])
        if soft_col is not None:
            out["soft_label"] = np.asarray(rows[soft_col], dtype=np.float32)
    return out


def _train_split(loaded: Any, path: Path) -> Any:
    import datasets

    if isinstance(loaded, datasets.Dataset):
        return loaded
    if "train" in loaded:
        return loaded["train"]
    if len(loaded) == 1:
        return next(iter(loaded.values()))
    raise UsageError(f"{path}: several splits ({', '.join(loaded)}) and none named train")


def _float_images(columns: dict[str, Any], path: Path, channels: int | None = None) -> np.ndarray:
    images = np.asarray(columns["pixel_values"])
    if images.dtype == object or images.ndim != 4:
        raise UsageError(f"{path}: pixel_values must be (N, C, H, W) arrays of one shape, got {images.shape}")
    if channels is not None and images.shape[1] != channels and images.shape[3] == channels:
        images = images.transpose(0, 3, 1, 2)  # (N, H, W, C) arrays
    if not np.issubdtype(images.dtype, np.floating):
        raise UsageError(f"{path}: pixel_values must be floating-point, got {images.dtype}")
    out: np.ndarray = np.ascontiguousarray(images, dtype=np.float32)
    return out


def _pil_images(images: list[Any], channels: int, path: Path) -> np.ndarray:
    mode = "L" if channels == 1 else "RGB"
    arrays = [np.asarray(img.convert(mode)) for img in images]
    sizes = {a.shape[:2] for a in arrays}
    if len(sizes) > 1:
        raise UsageError(f"{path}: the images have different sizes ({', '.join(f'{h}x{w}' for h, w in sorted(sizes))})")
    stacked = np.stack(arrays).reshape(len(arrays), *arrays[0].shape[:2], channels)
    unit: np.ndarray = np.ascontiguousarray(stacked.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255)
    return unit


def _labels(columns: dict[str, Any], info: Any, path: Path) -> tuple[torch.Tensor, dict[str, Any]]:
    """Labels in the dataset's class order: a ``ClassLabel`` whose names are the dataset's
    class names (in any order, any case) is mapped by name; otherwise indices are kept."""
    labels = torch.from_numpy(np.asarray(columns["label"]).astype(np.int64))
    names = columns.get("_names")
    if names and len(names) != info.num_classes:
        raise UsageError(f"{path}: its label column has {len(names)} classes, {info.name} has {info.num_classes}")
    ours = [n.lower() for n in info.class_names]
    if names and sorted(n.lower() for n in names) == sorted(ours) and [n.lower() for n in names] != ours:
        order = torch.tensor([ours.index(n.lower()) for n in names])
        return order[labels], {"classes": f"mapped by name to {info.name}'s class order"}
    return labels, {"classes": "label indices kept"}


def _soft(columns: dict[str, Any]) -> torch.Tensor | None:
    soft = columns.get("soft_label")
    return None if soft is None else torch.from_numpy(np.ascontiguousarray(soft, dtype=np.float32))


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
