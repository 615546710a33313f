"""Readers: how one dataset's files on disk become ``(x uint8 NHWC, y int64)`` arrays.

Each reader is a small object with five methods, used by :class:`~condensekit.data.catalog.DatasetSpec`:

- ``expected_files(split)``: the paths (relative to the data root) it needs, for error messages;
- ``present(root, split)``: whether they are there;
- ``where(root, split)``: the folder or file they are in (for ``condensekit list datasets``);
- ``download(root, split, resolution)``: fetch them (torchvision's own downloader where it has one);
- ``read(root, split, resolution, channels)``: decode one split at ``resolution``;

and two optional ones, which let a run be checked when it is planned, before any image is
decoded: ``download_urls(split)`` (where a download would come from: a machine that cannot
reach them is told so, and nothing is created) and ``labels(root, split)`` (the class of every
image, or None when that needs the images: ``--ipc`` is checked against the class sizes).

A third-party dataset plugin may ship its own reader with these methods. torchvision is
imported inside the methods only, so listing datasets does not import it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np

from condensekit.data.cache import ensure_fits
from condensekit.errors import DatasetError

#: Our split names -> the folder names of the ImageNet-style layouts ("test" is their "val").
_FOLDER_SPLIT = {"train": "train", "test": "val"}


def fit(image: Any, resolution: int) -> np.ndarray:
    """Resize a PIL image's short side to ``resolution``, center-crop it square, as HWC uint8.

    The MTT/DANCE preprocessing for ImageNet subsets (``Resize(res)`` + ``CenterCrop(res)``,
    bilinear with antialiasing). Grey images come back with one channel.
    """
    import torchvision.transforms.functional as F
    from torchvision.transforms import InterpolationMode

    if min(image.size) != resolution or image.size[0] != image.size[1]:
        image = F.center_crop(F.resize(image, resolution, InterpolationMode.BILINEAR), resolution)
    out = np.asarray(image, dtype=np.uint8)
    return out[:, :, None] if out.ndim == 2 else out


def resize_array(x: np.ndarray, resolution: int) -> np.ndarray:
    """Apply :func:`fit` to every image of an NHWC uint8 array (no-op at its own size)."""
    if x.shape[1] == x.shape[2] == resolution:
        return x
    from PIL import Image

    ensure_fits("the resized images", (len(x), resolution, resolution, x.shape[3]))
    out = np.empty((len(x), resolution, resolution, x.shape[3]), dtype=np.uint8)
    for i, img in enumerate(x):
        out[i] = fit(Image.fromarray(img[:, :, 0] if img.shape[2] == 1 else img), resolution)
    return out


def decode(dataset: Any, resolution: int, channels: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Decode a map-style dataset of ``(PIL image, label)`` pairs into fitted NHWC arrays.

    The memory check runs before decoding: the number of files is known, their pixels not yet.
    """
    ensure_fits(what, (len(dataset), resolution, resolution, channels))
    x = np.empty((len(dataset), resolution, resolution, channels), dtype=np.uint8)
    y = np.empty(len(dataset), dtype=np.int64)
    for i in range(len(dataset)):
        image, y[i] = dataset[i]
        x[i] = fit(image, resolution)
    return x, y


#: The image suffixes torchvision's folder datasets read (``torchvision.datasets.folder.IMG_EXTENSIONS``).
_IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp"})


def _count_images(folder: Path) -> int:
    """Image files directly in ``folder`` (0 when it is absent): a class's size, from names only."""
    if not folder.is_dir():
        return 0
    return sum(1 for entry in os.scandir(folder) if Path(entry.name).suffix.lower() in _IMAGE_SUFFIXES)


@dataclass(frozen=True)
class _Files:
    """``(path, label)`` pairs as a map-style dataset of ``(PIL image, label)``."""

    samples: list[tuple[Path, int]]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        from torchvision.datasets.folder import default_loader

        path, label = self.samples[i]
        return default_loader(str(path)), label


def _download_archive(url: str, root: Path, md5: str | None = None) -> None:
    from torchvision.datasets.utils import download_and_extract_archive

    download_and_extract_archive(url, str(root), md5=md5, remove_finished=True)


_TO_NHWC = {
    "NHWC": lambda x: x,
    "NHW": lambda x: x[..., None],
    "NCHW": lambda x: x.transpose(0, 2, 3, 1),
}


@dataclass(frozen=True)
class TorchvisionArrays:
    """A torchvision dataset class that holds a whole split as one array (CIFAR, MNIST, SVHN).

    ``split_arg`` is how the class takes the split: ``"train"`` (``train=True/False``) or
    ``"split"`` (``split="train"/"test"``); ``layout`` is the layout of its ``.data`` array.
    """

    class_name: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    split_arg: str = "train"
    layout: str = "NHWC"  # "NHWC", "NHW" (grey) or "NCHW"
    labels_attr: str = "targets"

    def expected_files(self, split: str) -> tuple[str, ...]:
        return self.train_files if split == "train" else self.test_files

    def present(self, root: Path, split: str) -> bool:
        return all((root / f).is_file() for f in self.expected_files(split))

    def where(self, root: Path, split: str) -> str:
        return str(root / Path(self.expected_files(split)[0]).parts[0])

    def _open(self, root: Path, split: str, download: bool) -> Any:
        import torchvision.datasets

        cls = getattr(torchvision.datasets, self.class_name)
        kwargs = {"train": split == "train"} if self.split_arg == "train" else {"split": split}
        return cls(str(root), download=download, **kwargs)

    def download(self, root: Path, split: str, resolution: int) -> None:
        self._open(root, split, download=True)

    def download_urls(self, split: str) -> tuple[str, ...]:
        """Where the torchvision class downloads from: its mirrors, archive or split files."""
        import torchvision.datasets

        cls = getattr(torchvision.datasets, self.class_name)
        urls: list[str] = list(getattr(cls, "mirrors", ()))  # MNIST, FashionMNIST
        if isinstance(getattr(cls, "url", None), str):  # CIFAR
            urls.append(cls.url)
        urls.extend(entry[0] for entry in getattr(cls, "split_list", {}).values())  # SVHN
        return tuple(urls)

    def labels(self, root: Path, split: str) -> np.ndarray | None:
        """MNIST-style label files (``*labels-idx1-ubyte``) are read directly: 8 header bytes
        and one byte per image. Other layouts keep labels beside the images: None."""
        names = [f for f in self.expected_files(split) if f.endswith("labels-idx1-ubyte")]
        if not names:
            return None
        raw = (root / names[0]).read_bytes()
        if len(raw) < 8 or int.from_bytes(raw[:4], "big") != 2049 or int.from_bytes(raw[4:8], "big") != len(raw) - 8:
            raise ValueError(f"{names[0]} is not an idx1 label file")
        return np.frombuffer(raw, dtype=np.uint8, offset=8).astype(np.int64)

    def read(self, root: Path, split: str, resolution: int, channels: int) -> tuple[np.ndarray, np.ndarray]:
        ds = self._open(root, split, download=False)
        x = np.asarray(ds.data, dtype=np.uint8)
        x = _TO_NHWC[self.layout](x)
        y = np.asarray(getattr(ds, self.labels_attr), dtype=np.int64)
        return resize_array(np.ascontiguousarray(x), resolution), y


#: fastai's archive variants: torchvision's ``size`` argument, folder suffix, short side (None: full size).
_FASTAI_SIZES: tuple[tuple[str, str, int | None], ...] = (
    ("160px", "-160", 160),
    ("320px", "-320", 320),
    ("full", "", None),
)


@dataclass(frozen=True)
class FastaiFolders:
    """Imagenette/Imagewoof in fastai's layout: ``<stem>[-160|-320]/{train,val}/<wnid>/*.JPEG``.

    Whichever size is present is read, preferring the smallest whose short side is at least
    the target resolution (decoding a full-size image to get 128 px wastes time). With
    ``torchvision_class`` set, files are listed by that torchvision class (``Imagenette``),
    otherwise by ``ImageFolder`` (torchvision has no ``Imagewoof``). Labels follow sorted WNIDs.
    """

    stem: str
    wnids: tuple[str, ...]
    url: str  # with "{suffix}" for the size variant
    torchvision_class: str | None = None

    def _folders(self, resolution: int | None = None) -> list[tuple[str, str]]:
        """(torchvision size, folder) pairs in order of preference for ``resolution``."""

        target = resolution or 0

        def rank(variant: tuple[str, str, int | None]) -> tuple[bool, int]:
            side = variant[2] or 10**6  # full size is larger than any variant
            # Big enough ones first, smallest first; then too-small ones, largest first.
            return (side < target, side if side >= target else -side)

        return [(size, f"{self.stem}{suffix}") for size, suffix, _ in sorted(_FASTAI_SIZES, key=rank)]

    def _found(self, root: Path, split: str, resolution: int | None = None) -> tuple[str, str] | None:
        for size, folder in self._folders(resolution):
            if (root / folder / _FOLDER_SPLIT[split]).is_dir():
                return size, folder
        return None

    def expected_files(self, split: str) -> tuple[str, ...]:
        first, *others = [folder for _, folder in self._folders()]
        return (f"{first}/{_FOLDER_SPLIT[split]}/<wnid>/*.JPEG (or the same in {' or '.join(others)})",)

    def present(self, root: Path, split: str) -> bool:
        return self._found(root, split) is not None

    def where(self, root: Path, split: str) -> str:
        found = self._found(root, split)
        return str(root / found[1]) if found else ""

    def download_urls(self, split: str) -> tuple[str, ...]:
        return tuple(self.url.format(suffix=folder[len(self.stem) :]) for _, folder in self._folders())

    def labels(self, root: Path, split: str) -> np.ndarray | None:
        """One label per image file in each class folder, counted without opening them."""
        found = self._found(root, split)
        if found is None:
            return None
        base = root / found[1] / _FOLDER_SPLIT[split]
        return np.repeat(np.arange(len(self.wnids)), [_count_images(base / wnid) for wnid in self.wnids])

    def download(self, root: Path, split: str, resolution: int) -> None:
        size, folder = self._folders(resolution)[0]
        if self.torchvision_class:
            import torchvision.datasets

            getattr(torchvision.datasets, self.torchvision_class)(
                str(root), split=_FOLDER_SPLIT[split], size=size, download=True
            )
        else:
            _download_archive(self.url.format(suffix=folder[len(self.stem) :]), root)

    def read(self, root: Path, split: str, resolution: int, channels: int) -> tuple[np.ndarray, np.ndarray]:
        import torchvision.datasets

        found = self._found(root, split, resolution)
        if found is None:
            raise DatasetError(f"no {self.stem} folder with a {_FOLDER_SPLIT[split]}/ split in {root}")
        size, folder = found
        if self.torchvision_class:
            ds = getattr(torchvision.datasets, self.torchvision_class)(str(root), split=_FOLDER_SPLIT[split], size=size)
            wnids = tuple(ds.wnids)
        else:
            ds = torchvision.datasets.ImageFolder(str(root / folder / _FOLDER_SPLIT[split]))
            wnids = tuple(ds.classes)
        if wnids != self.wnids:
            raise DatasetError(
                f"{root / folder / _FOLDER_SPLIT[split]} has class folders {', '.join(wnids) or 'none'}; "
                f"expected the {len(self.wnids)} WNIDs {', '.join(self.wnids)}"
            )
        return decode(ds, resolution, channels, f"{folder} {split}")


@dataclass(frozen=True)
class TinyImageNetFolders:
    """Tiny ImageNet's own layout: ``train/<wnid>/images/*.JPEG``; ``val/images`` + ``val_annotations.txt``."""

    wnids: tuple[str, ...]
    folder: str = "tiny-imagenet-200"
    url: str = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
    md5: str = "90528d7ca1a48142e341f4ef8d21d0de"

    def expected_files(self, split: str) -> tuple[str, ...]:
        if split == "train":
            return (f"{self.folder}/train/<wnid>/images/*.JPEG",)
        return (f"{self.folder}/val/val_annotations.txt", f"{self.folder}/val/images/*.JPEG")

    def present(self, root: Path, split: str) -> bool:
        marker = "train" if split == "train" else "val/val_annotations.txt"
        return (root / self.folder / marker).exists()

    def where(self, root: Path, split: str) -> str:
        return str(root / self.folder)

    def download(self, root: Path, split: str, resolution: int) -> None:
        _download_archive(self.url, root, self.md5)

    def download_urls(self, split: str) -> tuple[str, ...]:
        return (self.url,)

    def labels(self, root: Path, split: str) -> np.ndarray | None:
        """The classes of the file list :meth:`read` would decode (no image is opened)."""
        return np.array([label for _, label in self._samples(root / self.folder, split)], dtype=np.int64)

    def _samples(self, base: Path, split: str) -> list[tuple[Path, int]]:
        label = {wnid: i for i, wnid in enumerate(self.wnids)}
        if split == "train":
            missing = [w for w in self.wnids if not (base / "train" / w / "images").is_dir()]
            if missing:
                raise DatasetError(f"{base / 'train'} lacks {len(missing)} class folders, e.g. {missing[0]}/images")
            return [(p, label[w]) for w in self.wnids for p in sorted((base / "train" / w / "images").glob("*.JPEG"))]
        samples = []
        for line in (base / "val" / "val_annotations.txt").read_text().splitlines():
            fields = line.split("\t")
            if len(fields) >= 2:
                if fields[1] not in label:
                    raise DatasetError(f"{base / 'val' / 'val_annotations.txt'} names unknown class {fields[1]}")
                samples.append((base / "val" / "images" / fields[0], label[fields[1]]))
        return samples

    def read(self, root: Path, split: str, resolution: int, channels: int) -> tuple[np.ndarray, np.ndarray]:
        return decode(_Files(self._samples(root / self.folder, split)), resolution, channels, f"{self.folder} {split}")


@dataclass(frozen=True)
class EmbeddedArrays:
    """Arrays shipped inside the package (``condensekit/data/embedded/<file>``): no data root, no network."""

    file: str

    def expected_files(self, split: str) -> tuple[str, ...]:
        return (f"condensekit/data/embedded/{self.file} (x_{split}, y_{split})",)

    def present(self, root: Path, split: str) -> bool:
        return (files("condensekit.data") / "embedded" / self.file).is_file()

    def where(self, root: Path, split: str) -> str:
        return "embedded"

    def download(self, root: Path, split: str, resolution: int) -> None:
        raise DatasetError(
            f"the embedded file {self.file} is missing from the installed package; reinstall condensekit"
        )

    def labels(self, root: Path, split: str) -> np.ndarray | None:
        with (files("condensekit.data") / "embedded" / self.file).open("rb") as fh, np.load(fh) as data:
            return np.asarray(data[f"y_{split}"], dtype=np.int64)

    def read(self, root: Path, split: str, resolution: int, channels: int) -> tuple[np.ndarray, np.ndarray]:
        with (files("condensekit.data") / "embedded" / self.file).open("rb") as fh, np.load(fh) as data:
            x, y = data[f"x_{split}"], data[f"y_{split}"].astype(np.int64)
        return resize_array(x, resolution), y
