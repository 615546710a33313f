"""The built-in datasets: one :class:`DatasetSpec` per dataset, each with its own reader.

Every spec here is registered in ``pyproject.toml`` under the entry-point group
``condensekit.datasets``; a third-party package registers its own ``DatasetSpec`` (with its
own reader, see :mod:`condensekit.data.loaders`) the same way. Importing this module imports
neither torch nor torchvision.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import shutil
import socket
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from condensekit.data.cache import folder_name
from condensekit.data.loaders import EmbeddedArrays, FastaiFolders, TinyImageNetFolders, TorchvisionArrays
from condensekit.errors import DatasetError, UsageError

if TYPE_CHECKING:
    from condensekit.data.base import DatasetInfo


class Reader(Protocol):
    """What a spec needs of its reader (see :mod:`condensekit.data.loaders`).

    Two more methods are optional (core uses them when a reader has them):
    ``download_urls(split) -> tuple[str, ...]`` (where a download comes from, so a run on a
    machine that cannot reach them is refused when it is planned, before anything is created)
    and ``labels(root, split) -> np.ndarray | None`` (the class of every image, read without
    decoding images, so ``--ipc`` and real batches are checked against the class sizes).
    """

    def expected_files(self, split: str) -> tuple[str, ...]: ...
    def present(self, root: Path, split: str) -> bool: ...
    def where(self, root: Path, split: str) -> str: ...
    def download(self, root: Path, split: str, resolution: int) -> None: ...
    def read(self, root: Path, split: str, resolution: int, channels: int) -> tuple[np.ndarray, np.ndarray]: ...


#: The ConvNet depth the papers use per input size: depth 3 up to 32 px, 4 at 64, 5 at 128.
_BACKBONE_BY_RESOLUTION: tuple[tuple[int, str], ...] = ((32, "convnet"), (64, "convnetd4"), (128, "convnetd5"))

#: Seconds a download may stall on one network operation before it is abandoned.
DOWNLOAD_TIMEOUT = 30.0
#: Seconds a planned run waits for a download host to accept a connection.
PROBE_TIMEOUT = 5.0


def default_backbone(resolution: int) -> str:
    """``convnet`` for <= 32 px, ``convnetd4`` for <= 64, ``convnetd5`` for <= 128, else ``convnetd6``."""
    return next((name for limit, name in _BACKBONE_BY_RESOLUTION if resolution <= limit), "convnetd6")


@contextlib.contextmanager
def _download_guard() -> Iterator[None]:
    """Bound network stalls and keep torchvision's mirror chatter off stdout (one-line errors)."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        socket.setdefaulttimeout(previous)


def _writable(path: Path) -> bool:
    """Whether ``path`` (or, while it does not exist, the nearest existing path above it) is
    a folder this process can create files in."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate.is_dir() and os.access(candidate, os.W_OK | os.X_OK)
    return False


def _first_missing(path: Path) -> Path | None:
    """The topmost folder of ``path`` that does not exist yet (None: ``path`` exists): what
    creating ``path`` would create, so a failed download can remove exactly that."""
    missing = None
    for candidate in (path, *path.parents):
        if candidate.exists():
            return missing
        missing = candidate
    return missing


def _remove(path: Path) -> None:
    """Remove what a failed download left at ``path`` (a folder tree or a partial file)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()


def _probe_address(url: str) -> tuple[str, int] | None:
    """The (host, port) a download of ``url`` first connects to: the proxy urllib would use
    for it, else the URL's own host."""
    parts = urllib.parse.urlsplit(url)
    if not parts.hostname:
        return None
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(parts.hostname):
        proxied = urllib.parse.urlsplit(proxy if "//" in proxy else f"http://{proxy}")
        if proxied.hostname:
            return proxied.hostname, proxied.port or (443 if proxied.scheme == "https" else 80)
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


def unreachable(urls: Sequence[str], timeout: float = PROBE_TIMEOUT) -> list[str]:
    """The hosts of ``urls`` tried without answer, or ``[]`` as soon as one accepts a TCP
    connection (nothing is downloaded): a cheap "are we online" before promising a download."""
    tried: list[str] = []
    for address in dict.fromkeys(a for a in map(_probe_address, urls) if a is not None):
        try:
            socket.create_connection(address, timeout=timeout).close()
        except OSError:
            tried.append(address[0])
            continue
        return []
    return tried


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{exc.__class__.__name__}: {text[0]}" if text else exc.__class__.__name__


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset: static facts (classes, channels, normalization, resolution) and its reader.

    ``native_resolution`` is the side of the stored images (None when they vary, as in the
    ImageNet subsets, which are then always resized); ``default_resolution`` is what is used
    when none is asked for (the native one if None). ``cache`` is False for readers that are
    already arrays in the package.
    """

    name: str
    class_names: tuple[str, ...]
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    reader: Reader = field(repr=False)
    native_resolution: int | None = None
    default_resolution: int | None = None
    cache: bool = True
    description: str = ""

    def __post_init__(self) -> None:
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError(f"dataset {self.name!r}: mean and std need one value per channel ({self.channels})")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def resolution(self, requested: int | None = None) -> int:
        """The resolution to use: ``requested``, else the default, else the native one."""
        res = requested if requested is not None else self.default_resolution or self.native_resolution
        if not isinstance(res, int) or isinstance(res, bool) or res < 8:
            raise UsageError(f"invalid resolution {requested!r} for {self.name}; use a side of at least 8 pixels")
        return res

    def info(self, resolution: int | None = None) -> DatasetInfo:
        from condensekit.data.base import DatasetInfo

        res = self.resolution(resolution)
        return DatasetInfo(
            name=self.name,
            num_classes=self.num_classes,
            channels=self.channels,
            resolution=res,
            mean=self.mean,
            std=self.std,
            class_names=self.class_names,
            default_backbone=default_backbone(res),
        )

    def cache_folder(self, resolution: int | None = None) -> str:
        """``<name>-npz`` at the native resolution, ``<name>-<res>-npz`` when resized."""
        return folder_name(self.name, self.resolution(resolution), self.native_resolution)

    def expected_files(self, split: str) -> tuple[str, ...]:
        return self.reader.expected_files(split)

    def present(self, root: Path, split: str = "train") -> bool:
        return self.reader.present(root, split)

    def labels(self, root: Path, split: str = "train") -> np.ndarray | None:
        """The class of every image of one split from its files under ``root``, without
        decoding images; None when the files are absent or the reader cannot tell cheaply."""
        read_labels = getattr(self.reader, "labels", None)
        if read_labels is None or not self.reader.present(root, split):
            return None
        try:
            labels = read_labels(root, split)
        except (OSError, ValueError, EOFError) as exc:
            raise DatasetError(
                f"cannot read the labels of {self.name} ({split}) in {root}: {_reason(exc)}; "
                f"check or delete {', '.join(self.expected_files(split))} and retry"
            ) from None
        return None if labels is None else np.asarray(labels, dtype=np.int64)

    def _missing(self, root: Path, split: str, resolution: int) -> str:
        return (
            f"dataset {self.name!r} ({split} split) not found in {root}: expected "
            f"{' + '.join(self.expected_files(split))}, or the array cache {self.cache_folder(resolution)}/{split}.npz"
        )

    def check_download(self, root: Path, split: str, resolution: int | None = None) -> None:
        """For a split absent from ``root``: return if a run could download it (the folder can
        be written and a download host answers), else raise the one-line DatasetError that
        says what is missing where and how to get it. Creates nothing."""
        res = self.resolution(resolution)
        missing = self._missing(root, split, res)
        if not _writable(root):
            raise DatasetError(
                f"{missing}; {root} cannot be created or written, so it cannot be downloaded there; "
                f"point --data-root or CONDENSEKIT_DATA to a folder that has it"
            )
        urls = getattr(self.reader, "download_urls", None)
        if urls is None:
            return  # a third-party reader that does not say: the run tries its download
        hosts = unreachable(urls(split))
        if hosts:
            raise DatasetError(
                f"{missing}; it cannot be downloaded from here (no connection to {', '.join(hosts)}), "
                f"so nothing was created; fetch them where the internet is reachable (a run there downloads "
                f"them) and copy them into {root}, or point --data-root or CONDENSEKIT_DATA to a folder that has them"
            )

    def read(self, root: Path, split: str, resolution: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Read one split from its files under ``root``, downloading them first if absent.

        Any failure (files absent and no download possible, a failed download, unreadable
        files, a missing optional package) becomes a one-line :class:`DatasetError`.
        """
        res = self.resolution(resolution)
        if not self.reader.present(root, split):
            self._download(root, split, res)
        try:
            return self.reader.read(root, split, res, self.channels)
        except DatasetError:
            raise
        except ImportError as exc:
            package = exc.name or str(exc)
            raise DatasetError(f"reading {self.name} needs the {package} package: pip install {package}") from None
        except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as exc:
            raise DatasetError(
                f"cannot read {self.name} ({split}) from {root}: {_reason(exc)}; "
                f"check or delete {', '.join(self.expected_files(split))} and retry"
            ) from None

    def _download(self, root: Path, split: str, resolution: int) -> None:
        """Fetch absent files into a writable ``root``, or say in one line what is missing where.

        A failed download removes the folders it created (torchvision makes ``MNIST/raw``
        before fetching anything), so a retry elsewhere leaves no empty tree behind."""
        missing = self._missing(root, split, resolution)
        if not _writable(root):
            raise DatasetError(
                f"{missing}; the folder is not writable, so nothing was downloaded; "
                f"point --data-root or CONDENSEKIT_DATA to a folder that has it"
            )
        created = _first_missing(root)
        tops = {Path(f).parts[0] for f in self.expected_files(split) if Path(f).parts}
        before = {name for name in tops if (root / name).exists()}
        try:
            root.mkdir(parents=True, exist_ok=True)
            with _download_guard():
                self.reader.download(root, split, resolution)
            if not self.reader.present(root, split):
                raise DatasetError(f"{missing}; the download did not provide these files")
        except BaseException as exc:
            for leftover in [created] if created is not None else [root / name for name in tops - before]:
                _remove(leftover)
            if isinstance(exc, (DatasetError, KeyboardInterrupt, SystemExit)) or not isinstance(exc, Exception):
                raise
            raise DatasetError(
                f"{missing}; downloading it failed ({_reason(exc)}); "
                f"connect to the internet or point --data-root to a folder that has it"
            ) from None


# Standard normalizations (the DC/DSA/DM/MTT/DANCE code values) and class names.
_CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_CIFAR10_MEAN, _CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
_DIGITS = tuple(str(d) for d in range(10))
_CIFAR100_CLASSES = tuple(
    """apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly
    camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup
    dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower
    leopard lion lizard lobster man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid
    otter palm_tree pear pickup_truck pine_tree plain plate poppy porcupine possum rabbit raccoon ray road
    rocket rose sea seal shark shrew skunk skyscraper snail snake spider squirrel streetcar sunflower
    sweet_pepper table tank telephone television tiger tractor train trout tulip turtle wardrobe whale
    willow_tree wolf woman worm""".split()
)
_FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
_IMAGENETTE = {  # WNID -> name, in torchvision's (sorted-WNID) class order
    "n01440764": "tench",
    "n02102040": "English springer",
    "n02979186": "cassette player",
    "n03000684": "chain saw",
    "n03028079": "church",
    "n03394916": "French horn",
    "n03417042": "garbage truck",
    "n03425413": "gas pump",
    "n03445777": "golf ball",
    "n03888257": "parachute",
}
_IMAGEWOOF = {
    "n02086240": "Shih-Tzu",
    "n02087394": "Rhodesian ridgeback",
    "n02088364": "beagle",
    "n02089973": "English foxhound",
    "n02093754": "Border terrier",
    "n02096294": "Australian terrier",
    "n02099601": "golden retriever",
    "n02105641": "Old English sheepdog",
    "n02111889": "Samoyed",
    "n02115641": "dingo",
}
# Tiny ImageNet's 200 WNIDs (its wnids.txt), sorted: the ImageFolder label order the papers use.
_TINY_WNIDS = tuple(
    """n01443537 n01629819 n01641577 n01644900 n01698640 n01742172 n01768244 n01770393 n01774384 n01774750
    n01784675 n01855672 n01882714 n01910747 n01917289 n01944390 n01945685 n01950731 n01983481 n01984695
    n02002724 n02056570 n02058221 n02074367 n02085620 n02094433 n02099601 n02099712 n02106662 n02113799
    n02123045 n02123394 n02124075 n02125311 n02129165 n02132136 n02165456 n02190166 n02206856 n02226429
    n02231487 n02233338 n02236044 n02268443 n02279972 n02281406 n02321529 n02364673 n02395406 n02403003
    n02410509 n02415577 n02423022 n02437312 n02480495 n02481823 n02486410 n02504458 n02509815 n02666196
    n02669723 n02699494 n02730930 n02769748 n02788148 n02791270 n02793495 n02795169 n02802426 n02808440
    n02814533 n02814860 n02815834 n02823428 n02837789 n02841315 n02843684 n02883205 n02892201 n02906734
    n02909870 n02917067 n02927161 n02948072 n02950826 n02963159 n02977058 n02988304 n02999410 n03014705
    n03026506 n03042490 n03085013 n03089624 n03100240 n03126707 n03160309 n03179701 n03201208 n03250847
    n03255030 n03355925 n03388043 n03393912 n03400231 n03404251 n03424325 n03444034 n03447447 n03544143
    n03584254 n03599486 n03617480 n03637318 n03649909 n03662601 n03670208 n03706229 n03733131 n03763968
    n03770439 n03796401 n03804744 n03814639 n03837869 n03838899 n03854065 n03891332 n03902125 n03930313
    n03937543 n03970156 n03976657 n03977966 n03980874 n03983396 n03992509 n04008634 n04023962 n04067472
    n04070727 n04074963 n04099969 n04118538 n04133789 n04146614 n04149813 n04179913 n04251144 n04254777
    n04259630 n04265275 n04275548 n04285008 n04311004 n04328186 n04356056 n04366367 n04371430 n04376876
    n04398044 n04399382 n04417672 n04456115 n04465501 n04486054 n04487081 n04501370 n04507155 n04532106
    n04532670 n04540053 n04560804 n04562935 n04596742 n04597913 n06596364 n07579787 n07583066 n07614500
    n07615774 n07695742 n07711569 n07715103 n07720875 n07734744 n07747607 n07749582 n07753592 n07768694
    n07871810 n07873807 n07875152 n07920052 n09193705 n09246464 n09256479 n09332890 n09428293 n12267677""".split()
)
_FASTAI_URL = "https://s3.amazonaws.com/fast-ai-imageclas/{stem}{{suffix}}.tgz"

CIFAR10 = DatasetSpec(
    name="cifar10",
    class_names=_CIFAR10_CLASSES,
    channels=3,
    mean=_CIFAR10_MEAN,
    std=_CIFAR10_STD,
    native_resolution=32,
    description="CIFAR-10: 50,000 + 10,000 32x32 colour images, 10 classes",
    reader=TorchvisionArrays(
        "CIFAR10",
        train_files=tuple(f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)),
        test_files=("cifar-10-batches-py/test_batch",),
    ),
)
CIFAR100 = DatasetSpec(
    name="cifar100",
    class_names=_CIFAR100_CLASSES,
    channels=3,
    mean=(0.5071, 0.4866, 0.4409),
    std=(0.2673, 0.2564, 0.2762),
    native_resolution=32,
    description="CIFAR-100: 50,000 + 10,000 32x32 colour images, 100 classes",
    reader=TorchvisionArrays(
        "CIFAR100", train_files=("cifar-100-python/train",), test_files=("cifar-100-python/test",)
    ),
)
MNIST = DatasetSpec(
    name="mnist",
    class_names=_DIGITS,
    channels=1,
    mean=(0.1307,),
    std=(0.3081,),
    native_resolution=28,
    description="MNIST: 60,000 + 10,000 28x28 handwritten digits",
    reader=TorchvisionArrays(
        "MNIST",
        train_files=("MNIST/raw/train-images-idx3-ubyte", "MNIST/raw/train-labels-idx1-ubyte"),
        test_files=("MNIST/raw/t10k-images-idx3-ubyte", "MNIST/raw/t10k-labels-idx1-ubyte"),
        layout="NHW",
    ),
)
FASHION_MNIST = DatasetSpec(
    name="fashion-mnist",
    class_names=_FASHION_CLASSES,
    channels=1,
    mean=(0.2861,),
    std=(0.3530,),
    native_resolution=28,
    description="Fashion-MNIST: 60,000 + 10,000 28x28 grey clothing images, 10 classes",
    reader=TorchvisionArrays(
        "FashionMNIST",
        train_files=("FashionMNIST/raw/train-images-idx3-ubyte", "FashionMNIST/raw/train-labels-idx1-ubyte"),
        test_files=("FashionMNIST/raw/t10k-images-idx3-ubyte", "FashionMNIST/raw/t10k-labels-idx1-ubyte"),
        layout="NHW",
    ),
)
SVHN = DatasetSpec(
    name="svhn",
    class_names=_DIGITS,
    channels=3,
    mean=(0.4377, 0.4438, 0.4728),
    std=(0.1980, 0.2010, 0.1970),
    native_resolution=32,
    description="SVHN: 73,257 + 26,032 32x32 house-number digits (reading needs scipy)",
    reader=TorchvisionArrays(
        "SVHN",
        train_files=("train_32x32.mat",),
        test_files=("test_32x32.mat",),
        split_arg="split",
        layout="NCHW",
        labels_attr="labels",
    ),
)
IMAGENETTE = DatasetSpec(
    name="imagenette",
    class_names=tuple(_IMAGENETTE.values()),
    channels=3,
    mean=_IMAGENET_MEAN,
    std=_IMAGENET_STD,
    default_resolution=128,
    description="Imagenette: 10 easy ImageNet classes, resized to 128x128 by default",
    reader=FastaiFolders("imagenette2", tuple(_IMAGENETTE), _FASTAI_URL.format(stem="imagenette2"), "Imagenette"),
)
IMAGEWOOF = DatasetSpec(
    name="imagewoof",
    class_names=tuple(_IMAGEWOOF.values()),
    channels=3,
    mean=_IMAGENET_MEAN,
    std=_IMAGENET_STD,
    default_resolution=128,
    description="Imagewoof: 10 dog breeds from ImageNet, resized to 128x128 by default",
    reader=FastaiFolders("imagewoof2", tuple(_IMAGEWOOF), _FASTAI_URL.format(stem="imagewoof2")),
)
TINYIMAGENET = DatasetSpec(
    name="tinyimagenet",
    class_names=_TINY_WNIDS,
    channels=3,
    mean=_IMAGENET_MEAN,
    std=_IMAGENET_STD,
    native_resolution=64,
    description="Tiny ImageNet: 100,000 + 10,000 (val) 64x64 images, 200 classes (WNIDs)",
    reader=TinyImageNetFolders(_TINY_WNIDS),
)
CIFAR10_MINI = DatasetSpec(
    name="cifar10-mini",
    class_names=_CIFAR10_CLASSES,
    channels=3,
    mean=_CIFAR10_MEAN,
    std=_CIFAR10_STD,
    native_resolution=32,
    cache=False,
    description="Embedded real CIFAR-10 subset: 200 train + 100 test images per class, no download",
    reader=EmbeddedArrays("cifar10-mini.npz"),
)
