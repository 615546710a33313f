"""Peers' native files: what each method's official code saves, read as a condensekit set.

* ``dc``: the DC/DSA/DM code (VICO-UoE/DatasetCondensation) saves
  ``res_<method>_<dataset>_<model>_<ipc>ipc.pt``, a dict ``{"data": [[images, labels], ...],
  "accs_all_exps": {model: [accuracy, ...]}}`` with one ``[images, labels]`` per experiment
  (``--exp N`` picks one), images in the dataset's normalized space.
* ``datadam``: DataDAM's ``main_DataDAM.py`` saves the same dict as
  ``res_DataDAM_<dataset>_<model>_<ipc>ipc_.pt`` (its ``--zca`` whitening is refused).
* ``mtt``: MTT-family code saves ``images_best.pt`` (normalized, or ZCA-whitened: refused)
  and ``labels_best.pt`` (hard labels, or learned soft labels as an (N, K) tensor), and some
  descendants a learned learning rate (``lr_best.pt``), recorded as ``learned_lr``.
* ``rded``: an ImageFolder of PNG/JPEG images (RDED, SRe2L) with an optional soft-label file
  (``--soft-labels FILE``: an (N, K) tensor in ImageFolder order, or a ``labels.json`` as
  ``export --folder`` writes it).
* ``dance``: DANCE's ``DANCE.py`` saves ``data_best.pt`` / ``data_<it>.pt``, a list
  ``[images, targets]`` of [0, 1] pixels in multi-formation layout, and ``args.log`` (JSON)
  beside them with its ``factor`` and ``decode_type``; the set keeps the factor, and
  condensekit's decoder (:func:`condensekit.synthetic.decode_multiformation`) decodes it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from condensekit.errors import UsageError
from condensekit.sharing.formats import (
    Imported,
    ImportFormat,
    ImportOptions,
    Probe,
    build_set,
    check_not_zca,
    dataset_for,
    default_import_name,
    load_torch,
    probabilities,
    read_json,
    register,
)

#: Dataset names in the DC/MTT code (``get_dataset``) and in DANCE's arguments -> condensekit's.
PEER_DATASETS = {
    "mnist": "mnist",
    "fashionmnist": "fashion-mnist",
    "fashion": "fashion-mnist",
    "svhn": "svhn",
    "cifar10": "cifar10",
    "cifar100": "cifar100",
    "tinyimagenet": "tinyimagenet",
    "imagenette": "imagenette",
    "imagewoof": "imagewoof",
}
#: Network names in the DC code -> condensekit backbones (others are recorded as given).
PEER_MODELS = {
    "convnet": "convnet",
    "convnetd4": "convnetd4",
    "convnetd5": "convnetd5",
    "convnetd6": "convnetd6",
    "convnetbn": "convnet-bn",
    "convnetd4bn": "convnetd4-bn",
    "convnetd5bn": "convnetd5-bn",
    "convnetnn": "convnet-nonorm",
}
#: DANCE's ConvNet depth -> condensekit backbone.
DANCE_DEPTHS = {3: "convnet", 4: "convnetd4", 5: "convnetd5", 6: "convnetd6"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}
#: Config files a peer may leave beside its tensors; a true ``zca`` in one is ZCA evidence.
CONFIG_FILES = ("args.json", "args.log", "config.json")

_RES_NAME = re.compile(r"^res_(?P<method>[^_]+)_(?P<dataset>[^_]+)_(?P<model>.+)_(?P<ipc>\d+)ipc_?\.pt$")
_TAGGED = re.compile(r"^(?P<kind>images|data)_(?P<tag>best|\d+)\.pt$")


def peer_dataset(name: Any) -> str | None:
    """condensekit's name for a dataset as a peer's code names it (None if unknown)."""
    return PEER_DATASETS.get(str(name).lower().replace("-", "").replace("_", "")) if name else None


def _zca_flag(folder: Path) -> str | None:
    """Evidence of ZCA whitening in a config file beside the tensors, in words."""
    for name in CONFIG_FILES:
        config = read_json(folder / name)
        if config is not None and config.get("zca") in (True, "True", "true", 1):
            return f"{name} beside it says zca: {config['zca']}"
    return None


def _tagged(folder: Path, kind: str) -> Path | None:
    """``<kind>_best.pt`` in ``folder``, else the highest-numbered ``<kind>_<it>.pt``."""
    best = folder / f"{kind}_best.pt"
    if best.is_file():
        return best
    numbered = [
        (int(m["tag"]), p) for p in folder.glob(f"{kind}_*.pt") if (m := _TAGGED.match(p.name)) and m["tag"].isdigit()
    ]
    return max(numbered)[1] if numbered else None


def _shape(t: torch.Tensor) -> str:
    return str(tuple(t.shape))


# --- DC / DSA / DM and DataDAM results files --------------------------------------------


class _ResultsFile(ImportFormat):
    """The DC code's results dict; subclasses say which method names they accept."""

    options = frozenset({"dataset", "exp", "zca_check"})
    methods: frozenset[str] | None = None  # lowercased file-name methods accepted (None: any)

    def probe(self, path: Path) -> Probe | None:
        if path.is_dir():
            files = sorted(path.glob("res_*.pt"))
            if len(files) > 1 and any(self._named(f) for f in files):
                raise UsageError(f"{path} holds {len(files)} results files ({files[0].name}, ...); name one")
            if not files:
                return None
            path = files[0]
        if not path.is_file() or path.suffix != ".pt" or not self._named(path):
            return None
        payload = load_torch(path)
        if not _is_results(payload):
            return None
        match = _RES_NAME.match(path.name)
        named = (
            f" ({match['method']} on {match['dataset']} with {match['model']}, {match['ipc']} per class, from its name)"
            if match
            else ""
        )
        images = payload["data"][0][0]
        return Probe(
            f"a DC-layout results file{named}: {len(payload['data'])} experiment(s) of images {_shape(images)}",
            path,
            payload,
        )

    def _named(self, path: Path) -> bool:
        if self.methods is None:
            return True
        match = _RES_NAME.match(path.name)
        return match is not None and match["method"].lower() in self.methods

    def read(self, probe: Probe, options: ImportOptions) -> Imported:
        data = probe.content["data"]
        count = len(data)
        if options.exp is None and count > 1:
            raise UsageError(f"{probe.path}: holds {count} experiments; pick one with --exp 0..{count - 1}")
        exp = 0 if options.exp is None else options.exp
        if not 0 <= exp < count:
            raise UsageError(f"{probe.path}: --exp {exp} is out of range; it holds experiments 0..{count - 1}")
        images, labels = data[exp]
        match = _RES_NAME.match(probe.path.name)
        from_name = match.groupdict() if match else {}
        info = dataset_for(
            options,
            peer_dataset(from_name.get("dataset")),
            str(probe.path),
            "its name does not say which dataset (res_<method>_<dataset>_<model>_<ipc>ipc.pt)",
        )
        where = f"{probe.path} (data[{exp}])"
        facts: dict[str, Any] = {"experiment": exp, "experiments": count}
        facts.update(check_not_zca(images, where, options, _zca_flag(probe.path.parent)))
        model = from_name.get("model")
        metadata: dict[str, Any] = {}
        if model:
            metadata["backbone"] = PEER_MODELS.get(model.lower().replace("_", ""), model)
        if from_name:
            facts["file_name"] = from_name
        accuracies = probe.content.get("accs_all_exps")
        if isinstance(accuracies, dict):
            facts["reported_accuracies"] = {str(k): [float(a) for a in v] for k, v in accuracies.items()}
        method = (from_name.get("method") or self.name).lower()
        synset = build_set(
            images,
            labels,
            None,
            info,
            where=(f"{where} images", f"{where} labels", f"{where} soft labels"),
            method=method,
            ipc=int(from_name["ipc"]) if "ipc" in from_name else None,
            metadata=metadata,
        )
        return Imported(synset, self.name, probe.found, default_import_name(self.name, synset), facts=facts)


def _is_results(payload: Any) -> bool:
    data = payload.get("data") if isinstance(payload, dict) else None
    return (
        isinstance(data, list)
        and len(data) > 0
        and all(
            isinstance(e, (list, tuple))
            and len(e) == 2
            and all(isinstance(t, torch.Tensor) for t in e)
            and e[0].dim() == 4
            for e in data
        )
    )


@register
class DataDAMResults(_ResultsFile):
    """DataDAM's ``res_DataDAM_<dataset>_<model>_<ipc>ipc_.pt`` (the DC layout)."""

    name = "datadam"
    expects = "a DataDAM results file (res_DataDAM_<dataset>_<model>_<ipc>ipc_.pt)"
    methods = frozenset({"datadam"})


@register
class DCResults(_ResultsFile):
    """The DC/DSA/DM code's ``res_<method>_<dataset>_<model>_<ipc>ipc.pt``."""

    name = "dc"
    expects = "a DC/DSA/DM results file (res_<method>_<dataset>_<model>_<ipc>ipc.pt, a dict with 'data')"


# --- MTT-family images_best.pt + labels_best.pt -----------------------------------------


@register
class MTTPair(ImportFormat):
    """``images_<tag>.pt`` + ``labels_<tag>.pt`` (``best`` or an iteration), with an
    optional learned learning rate ``lr_<tag>.pt`` / ``syn_lr_<tag>.pt``."""

    name = "mtt"
    expects = "an MTT-style images_best.pt + labels_best.pt pair (a folder, or the images_*.pt path)"
    options = frozenset({"dataset", "zca_check"})

    def probe(self, path: Path) -> Probe | None:
        images_path = _tagged(path, "images") if path.is_dir() else path
        if images_path is None or not images_path.is_file():
            return None
        match = _TAGGED.match(images_path.name)
        if match is None or match["kind"] != "images":
            return None
        tag = match["tag"]
        labels_path = images_path.with_name(f"labels_{tag}.pt")
        if not labels_path.is_file():
            return None
        images, labels = load_torch(images_path), load_torch(labels_path)
        if not (isinstance(images, torch.Tensor) and images.dim() == 4 and isinstance(labels, torch.Tensor)):
            return None
        lr_path = next(
            (p for p in (images_path.with_name(f"{s}_{tag}.pt") for s in ("lr", "syn_lr")) if p.is_file()), None
        )
        kind = "learned soft labels" if labels.dim() == 2 else "hard labels"
        found = f"MTT-style {images_path.name} {_shape(images)} + {labels_path.name} {_shape(labels)} ({kind})"
        if lr_path is not None:
            found += f" + {lr_path.name}"
        return Probe(found, images_path, {"images": images, "labels": labels, "lr": lr_path, "tag": tag})

    def read(self, probe: Probe, options: ImportOptions) -> Imported:
        content = probe.content
        images: torch.Tensor = content["images"]
        labels: torch.Tensor = content["labels"]
        guess = next((d for d in map(peer_dataset, reversed(probe.path.parent.parts)) if d), None)
        info = dataset_for(options, guess, str(probe.path), "MTT's files do not say which dataset they belong to")
        facts: dict[str, Any] = {"tag": content["tag"]}
        if guess and not options.dataset:
            facts["dataset_from"] = "a folder name in its path"
        facts.update(check_not_zca(images, str(probe.path), options, _zca_flag(probe.path.parent)))
        soft = None
        labels_at = str(probe.path.with_name(f"labels_{content['tag']}.pt"))
        if labels.dim() == 2 and labels.is_floating_point():
            if labels.shape[1] != info.num_classes:
                raise UsageError(
                    f"{labels_at}: soft labels over {labels.shape[1]} classes, {info.name} has {info.num_classes}"
                )
            soft, facts["soft_labels"] = probabilities(labels)
            labels = soft.argmax(dim=1)
            facts["labels"] = "learned soft labels; hard labels are their argmax"
        metadata: dict[str, Any] = {}
        if content["lr"] is not None:
            lr = load_torch(content["lr"])
            if not (isinstance(lr, torch.Tensor) and lr.numel() == 1) and not isinstance(lr, (int, float)):
                raise UsageError(f"{content['lr']}: expected the learned learning rate (one number)")
            metadata["learned_lr"] = float(lr.item() if isinstance(lr, torch.Tensor) else lr)
            facts["learned_lr_file"] = content["lr"].name
        synset = build_set(
            images,
            labels,
            soft,
            info,
            where=(str(probe.path), labels_at, labels_at),
            method=self.name,
            metadata=metadata,
        )
        return Imported(synset, self.name, probe.found, default_import_name(self.name, synset), facts=facts)


# --- DANCE data_best.pt -----------------------------------------------------------------


@register
class DANCEData(ImportFormat):
    """DANCE's ``data_best.pt`` / ``data_<it>.pt`` (``[images, targets]``, [0, 1] pixels,
    multi-formation layout) with the ``args.log`` beside it."""

    name = "dance"
    expects = "a DANCE data_best.pt / data_<iteration>.pt file ([images, targets]), with its args.log"
    options = frozenset({"dataset", "factor"})

    def probe(self, path: Path) -> Probe | None:
        data_path = _tagged(path, "data") if path.is_dir() else path
        if data_path is None or not data_path.is_file() or data_path.suffix != ".pt":
            return None
        if path.is_file() and _RES_NAME.match(path.name):
            return None
        payload = load_torch(data_path)
        if not (
            isinstance(payload, (list, tuple))
            and len(payload) == 2
            and all(isinstance(t, torch.Tensor) for t in payload)
            and payload[0].dim() == 4
            and payload[1].dim() == 1
        ):
            return None
        args = read_json(data_path.parent / "args.log")
        found = f"DANCE-style {data_path.name}: images {_shape(payload[0])}, targets {_shape(payload[1])}"
        if args is not None:
            found += f"; args.log: factor {args.get('factor')}, decode_type {args.get('decode_type')}"
        return Probe(found, data_path, {"images": payload[0], "labels": payload[1], "args": args or {}})

    def read(self, probe: Probe, options: ImportOptions) -> Imported:
        images: torch.Tensor = probe.content["images"]
        labels: torch.Tensor = probe.content["labels"]
        args: dict[str, Any] = probe.content["args"]
        logged = args.get("factor")
        if logged is not None and not isinstance(logged, int):
            raise UsageError(f"{probe.path}: args.log beside it gives factor {logged!r}, not a whole number")
        if options.factor is not None and logged is not None and logged != options.factor:
            raise UsageError(f"{probe.path}: --factor {options.factor}, but args.log beside it says factor {logged}")
        given = options.factor if options.factor is not None else logged
        if given is None:
            raise UsageError(
                f"{probe.path}: DANCE stores multi-formation images and no args.log beside it gives the factor; "
                "pass --factor F (the run's --factor, 1 for none)"
            )
        factor = max(1, given)  # as DANCE's Synthesizer: max(1, args.factor)
        decode = str(args.get("decode_type", "single"))
        if factor > 1 and decode != "single":
            raise UsageError(
                f"{probe.path}: decode_type {decode!r}; condensekit decodes DANCE's uniform multi-formation "
                "(decode_type 'single') only"
            )
        side = int(images.shape[-1]) if images.dim() == 4 else 0
        if factor > 1 and side % factor:
            raise UsageError(
                f"{probe.path}: {side} px images do not split into {factor}x{factor} tiles evenly; DANCE pads them "
                "with grey before decoding, which condensekit's decoder does not"
            )
        info = dataset_for(
            options, peer_dataset(args.get("dataset")), str(probe.path), "no args.log beside it names the dataset"
        )
        metadata: dict[str, Any] = {}
        backbone = DANCE_DEPTHS.get(int(args.get("depth", 0) or 0)) if args.get("net_type") == "convnet" else None
        if backbone:
            metadata["backbone"] = backbone
        ipc = args.get("ipc")
        synset = build_set(
            images,
            labels,
            None,
            info,
            where=(f"{probe.path} (images)", f"{probe.path} (targets)", ""),
            method=self.name,
            pixel_space="unit",
            factor=factor,
            ipc=int(ipc) if isinstance(ipc, int) and ipc > 0 else None,
            metadata=metadata,
        )
        keys = ("dataset", "ipc", "factor", "decode_type", "net_type", "depth", "niter", "seed")
        facts = {
            "factor": factor,
            "factor_from": "--factor" if options.factor is not None else "args.log",
            "args": {k: args[k] for k in keys if k in args},
        }
        return Imported(synset, self.name, probe.found, default_import_name(self.name, synset), facts=facts)


# --- RDED / SRe2L ImageFolder + soft labels ---------------------------------------------


def _class_folders(path: Path) -> list[Path]:
    return sorted(d for d in path.iterdir() if d.is_dir() and not d.name.startswith("."))


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


@register
class ImageFolderSet(ImportFormat):
    """An ImageFolder (one folder per class, sorted names = class order, as torchvision's
    ``ImageFolder``) of 8-bit images, with soft labels from ``--soft-labels FILE``, or
    ``soft_labels.pt`` / a ``labels.json`` with ``soft_label`` entries in the folder."""

    name = "rded"
    expects = "an ImageFolder of PNG/JPEG images (one folder per class), optionally with a soft-label file"
    options = frozenset({"dataset", "soft_labels"})

    def probe(self, path: Path) -> Probe | None:
        if not path.is_dir():
            return None
        folders = [d for d in _class_folders(path) if _image_files(d)]
        if len(folders) < 2:
            return None
        count = sum(len(_image_files(d)) for d in folders)
        return Probe(f"an ImageFolder of {count} images in {len(folders)} class folders", path, folders)

    def read(self, probe: Probe, options: ImportOptions) -> Imported:
        exported = read_json(probe.path / "metadata.json") or {}  # `export --folder` writes one
        info = dataset_for(
            options, exported.get("dataset"), str(probe.path), "an ImageFolder does not say which dataset it holds"
        )
        folders: list[Path] = _class_folders(probe.path)
        if len(folders) != info.num_classes:
            raise UsageError(f"{probe.path}: {len(folders)} class folders, {info.name} has {info.num_classes} classes")
        order, how = _class_order([d.name for d in folders], list(info.class_names))
        arrays: list[np.ndarray] = []
        labels: list[int] = []
        files: list[str] = []
        mode = "L" if info.channels == 1 else "RGB"
        for folder, label in zip(folders, order, strict=True):
            for file in _image_files(folder):
                with Image.open(file) as img:
                    if img.size != (info.resolution, info.resolution):
                        raise UsageError(
                            f"{file}: a {img.size[0]}x{img.size[1]} px image; {info.name}'s are "
                            f"{info.resolution}x{info.resolution} px (wrong resolution: resize the set first)"
                        )
                    arrays.append(np.asarray(img.convert(mode)).reshape(info.resolution, info.resolution, -1))
                labels.append(label)
                files.append(f"{folder.name}/{file.name}")
        if not arrays:
            raise UsageError(f"{probe.path}: no images in its class folders")
        unit = torch.from_numpy(np.stack(arrays).transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255))
        label_tensor = torch.tensor(labels, dtype=torch.int64)
        facts: dict[str, Any] = {"class_folders": len(folders), "class_order": how, "pixels": "8-bit, divided by 255"}
        soft, soft_at = _soft_labels(probe.path, options, files, label_tensor, facts)
        synset = build_set(
            unit,
            label_tensor,
            soft,
            info,
            where=(str(probe.path), str(probe.path), soft_at),
            method=self.name,
            pixel_space="unit",
        )
        return Imported(synset, self.name, probe.found, default_import_name(self.name, synset), facts=facts)


def _class_order(folders: list[str], classes: list[str]) -> tuple[list[int], str]:
    """Each folder's class index: by name when the folders are the dataset's class names
    (optionally ``<index>_``-prefixed, as ``export --folder`` writes them), else sorted order."""
    wanted = [c.lower() for c in classes]
    bare = [re.sub(r"^\d+_", "", f).lower() for f in folders]
    if sorted(bare) == sorted(wanted):
        return [wanted.index(b) for b in bare], "folder names matched to the dataset's class names"
    return list(range(len(folders))), "sorted folder names (ImageFolder order)"


def _soft_labels(
    root: Path, options: ImportOptions, files: list[str], labels: torch.Tensor, facts: dict[str, Any]
) -> tuple[torch.Tensor | None, str]:
    """Soft labels for the images ``files`` (ImageFolder order): ``--soft-labels``, else
    ``soft_labels.pt`` or a ``labels.json`` with ``soft_label`` entries in the folder."""
    path = options.soft_labels
    if path is None:
        path = next((p for p in (root / "soft_labels.pt", root / "labels.json") if p.is_file()), None)
    if path is None:
        return None, ""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such soft-label file")
    if path.suffix == ".json":
        soft = _soft_from_json(path, files, labels)
        if soft is None:
            return None, ""
    else:
        value = load_torch(path)
        if not isinstance(value, torch.Tensor) or value.dim() != 2:
            raise UsageError(f"{path}: expected an (N, K) tensor of soft labels in ImageFolder order")
        if value.shape[0] != len(files):
            raise UsageError(f"{path}: {value.shape[0]} rows of soft labels for {len(files)} images")
        soft = value
    soft, facts["soft_labels"] = probabilities(soft)
    facts["soft_label_file"] = str(path)
    return soft, str(path)


def _soft_from_json(path: Path, files: list[str], labels: torch.Tensor) -> torch.Tensor | None:
    """Soft labels from ``export --folder``'s ``labels.json`` (None when it has none)."""
    import json

    try:
        entries = json.loads(path.read_text())
        by_file = {str(e["file"]): e for e in entries}
    except (ValueError, TypeError, KeyError):
        raise UsageError(f"{path}: expected a list of {{'file', 'label', 'soft_label'}} entries") from None
    if not any("soft_label" in e for e in by_file.values()):
        return None
    missing = [f for f in files if f not in by_file or "soft_label" not in by_file[f]]
    if missing or len(by_file) != len(files):
        raise UsageError(f"{path}: {len(by_file)} entries for {len(files)} images (first without one: {missing[:1]})")
    wrong = [f for f, y in zip(files, labels.tolist(), strict=True) if int(by_file[f]["label"]) != y]
    if wrong:
        raise UsageError(f"{path}: the label of {wrong[0]} differs from its class folder")
    return torch.tensor([by_file[f]["soft_label"] for f in files], dtype=torch.float32)
