"""Data sets of your own: ``folder:PATH`` (one subfolder of images per class) and ``npz:PATH`` (NumPy arrays)
(docs/api.md, 'Your own network and data'; docs/method.md, 'Data sets of your own').

- ``folder:PATH``: torchvision's ImageFolder layout, read with Pillow. ``PATH/train/<class>/`` and
  ``PATH/test/<class>/`` give the split; a plain ``PATH/<class>/`` is split 80/20 by a fixed seed (0), so
  training and evaluation see the same test images. Classes are the subfolder names in sorted order (label k =
  k-th name); a class folder without images is refused. Files ending in .png, .jpg, .jpeg, .bmp, .gif, .tif,
  .tiff or .webp are read (others are skipped), resized to ``image_size`` x ``image_size`` (bilinear; default 32)
  and kept grayscale when every image is (1 channel), else converted to RGB (3 channels). Images of more than 8
  bits keep their range (:mod:`neft.data.pixels`).
- ``npz:PATH``: a ``.npz`` file with ``x_train``, ``y_train``, ``x_test``, ``y_test`` and optionally ``classes``
  (the K class names in label order). Images ``[N, H, W]`` (one channel), ``[N, C, H, W]`` or ``[N, H, W, C]``
  (:func:`channels_first`); uint8 pixels (0..255), deeper integers scaled by their type's range, floats used as
  they are (they must lie in [0, 1]). Labels are integers ``0 .. K - 1``, K = the number of ``classes``, else 1 +
  the largest training label, in which case every class needs a training image (a label far above the others is
  refused). Every class of the training split needs test images too (a class missing from the test split would
  bias the accuracy silently).

Normalisation: the per-channel mean and std of the training split (pixels in [0, 1]), computed on the whole
training split before any validation hold-out, so every run of the data set uses the same numbers; ``neft train``
records them in config.json. No augmentation.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from neft.common.errors import SettingError
from neft.data import pixels

__all__ = ["PREFIXES", "is_user_dataset", "canonical", "short_name", "read", "channels_first", "IMAGE_EXTENSIONS",
           "resize_hint"]

PREFIXES = ("folder:", "npz:")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
DEFAULT_FOLDER_SIZE = 32  # side of folder: images after resizing, without image_size
TEST_FRACTION = 0.2  # of a folder without train/ and test/, split by seed SPLIT_SEED
SPLIT_SEED = 0
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}

Split = tuple[torch.Tensor, torch.Tensor]


def is_user_dataset(name: str) -> bool:
    """Whether ``name`` is ``folder:PATH`` or ``npz:PATH``."""
    return str(name).strip().startswith(PREFIXES)


def resize_hint(name: str, side: int) -> str:
    """For a ``folder:``/``npz:`` data set ``name`` whose preprocessed images are ``side`` pixels square, not the
    32x32 the built-in models (vgg8, resnet18, lenet5) take: the end of an error message that suggests resizing
    them (``image_size=32``, ``--image-size 32``); empty otherwise."""
    if not is_user_dataset(name) or side == 32:
        return ""
    return (f"; the images of {name} are {side}x{side}: resize them to the 32x32 the built-in models take with "
            "image_size=32 (--image-size 32)")


def canonical(name: str) -> str:
    """``folder:`` or ``npz:`` with the absolute path, after checking the path exists.

    Raises:
        SettingError: (setting ``dataset``) for a path that is not there (or not a folder / not a file).
    """
    kind, _, where = str(name).strip().partition(":")
    path = Path(where).expanduser()
    if not where or not (path.is_dir() if kind == "folder" else path.is_file()):
        what = "a folder with one subfolder of images per class" if kind == "folder" else "a .npz file"
        raise SettingError("dataset", f"data set {name!r}: {where!r} is not {what}; give {kind}:PATH to it")
    return f"{kind}:{path.resolve()}"


def short_name(name: str) -> str:
    """A name fit for a run directory, e.g. ``folder-flowers`` or ``npz-signals``."""
    kind, _, where = str(name).partition(":")
    return f"{kind}-{Path(where).stem}"


def read(name: str, image_size: int | None) -> tuple[Split, Split, dict]:
    """Read ``folder:PATH`` or ``npz:PATH`` (canonical, see :func:`canonical`).

    Args:
        name: the data set.
        image_size: side S to resize the images to (folder: default 32; npz: default the stored size).

    Returns:
        ``(train, test, info)``: splits of images (uint8 ``[N, C, H, W]`` for 8-bit images, else float32:
        :mod:`neft.data.pixels`) and int64 labels ``[N]``; ``info`` = ``{"num_classes", "mean", "std",
        "image_size", "classes", "split"}`` (``classes``: the class names in label order; None for an npz without
        them; ``split``: :func:`split_digest` of a folder's own 80/20 split, None for train/ and test/ or an npz).

    Raises:
        SettingError: (setting ``dataset``) for a folder with fewer than two classes or a class folder without
            images, an unreadable image, float images mixed with integer ones, an npz without one of its four
            arrays, images of an unusable shape or type or whose channel axis cannot be told, labels that are not
            integers ``0 .. K - 1``, a class without training images (an npz without ``classes``), test labels
            the training split lacks, or (an npz, a folder with train/ and test/) a class of the training split
            without test images; (setting ``image_size``) for a size < 1.
    """
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int)
                                   or image_size < 1):
        raise SettingError("image_size", f"image_size must be an integer >= 1 (pixels per side), got {image_size!r}")
    kind, _, where = name.partition(":")
    if kind == "folder":
        train, test, classes, split = _read_folder(Path(where), image_size or DEFAULT_FOLDER_SIZE)
    else:
        (train, test, classes), split = _read_npz(Path(where), name), None
    num_classes = _check_labels(name, train[1], test[1], classes)
    if kind == "npz" or _has_splits(Path(where)):  # a split of one's own (the 80/20 split may miss a tiny class)
        _check_tested(name, train[1], test[1], classes)
    mean, std = pixels.statistics(train[0])
    size = image_size if image_size is not None else (train[0].shape[-1] if train[0].shape[-1] == train[0].shape[-2]
                                                      else None)
    return train, test, {"num_classes": num_classes, "mean": mean, "std": std, "image_size": size,
                         "classes": classes, "split": split}


def _check_labels(name: str, train: torch.Tensor, test: torch.Tensor, classes: tuple[str, ...] | None) -> int:
    """The number of classes K of data set ``name``: the number of ``classes`` when given, else 1 + the largest
    training label, which every class below it must then have a training image of (:func:`_check_present`)."""
    for split, labels in (("train", train), ("test", test)):
        if not len(labels):
            raise SettingError("dataset", f"data set {name!r} has no {split} images")
        if int(labels.min()) < 0:
            raise SettingError("dataset", f"data set {name!r}: {split} labels must be 0 .. K - 1, found "
                                          f"{int(labels.min())}")
    if classes and int(train.max()) >= len(classes):
        raise SettingError("dataset", f"data set {name!r}: training labels reach {int(train.max())} but classes "
                                      f"has {len(classes)} names (labels 0 .. {len(classes) - 1}); give one name "
                                      "per label 0 .. K - 1")
    num_classes = len(classes) if classes else int(train.max()) + 1
    if not classes:
        _check_present(name, train)
    if int(test.max()) >= num_classes:
        raise SettingError("dataset", f"data set {name!r}: test labels reach {int(test.max())} but the "
                                      f"{'classes' if classes else 'training labels'} only 0 .. {num_classes - 1}; "
                                      "labels out of range")
    if num_classes < 2:
        raise SettingError("dataset", f"data set {name!r} has {num_classes} class; a classifier needs at least two "
                                      "(one subfolder or label value per class)")
    return num_classes


def _check_present(name: str, train: torch.Tensor) -> None:
    """Refuse training labels that leave a class below the largest label without a training image (e.g. labels
    0 .. 9 and one 1000: 990 empty classes), naming the largest label and the missing ones."""
    present = torch.unique(train).tolist()
    if len(present) == present[-1] + 1:
        return
    pieces, expected = [], 0
    for value in present:
        if value > expected:
            pieces.append(str(expected) if value == expected + 1 else f"{expected} .. {value - 1}")
        expected = value + 1
    top, count = present[-1], int((train == present[-1]).sum())
    missing = ", ".join(pieces[:4]) + (", ..." if len(pieces) > 4 else "")
    raise SettingError("dataset", f"data set {name!r}: the largest training label, {top} ({count} image"
                                  f"{'s' if count > 1 else ''}), makes K = {top + 1} classes 0 .. {top}, but no "
                                  f"training image has label {missing} ({top + 1 - len(present)} empty classes); "
                                  "give labels 0 .. K - 1 with every class present, or, if the empty classes are "
                                  "intended, store the K class names in the npz as classes (np.savez(..., "
                                  "classes=names))")


def _check_tested(name: str, train: torch.Tensor, test: torch.Tensor, classes: tuple[str, ...] | None) -> None:
    """Refuse a test split without images of a class the training split has (e.g. a ``test/<class>/`` folder
    moved away): the accuracy would silently leave that class out. Names the classes (or labels)."""
    untested = sorted(set(torch.unique(train).tolist()) - set(torch.unique(test).tolist()))
    if untested:
        named = [repr(classes[k]) if classes else f"label {k}" for k in untested]
        raise SettingError("dataset", f"data set {name!r}: the test split has no image of class "
                                      f"{', '.join(named)}, which the training split has; every class needs test "
                                      "images (the accuracy would silently leave it out): add its test images "
                                      "(a folder: test/<class>/)")


def _has_splits(root: Path) -> bool:
    """Whether folder ``root`` holds its own ``train/`` and ``test/`` splits."""
    return (root / "train").is_dir() and (root / "test").is_dir()


def _class_folders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _read_folder(root: Path, size: int) -> tuple[Split, Split, tuple[str, ...], str | None]:
    split_folders = _has_splits(root)
    classes = tuple(p.name for p in _class_folders(root / "train" if split_folders else root))
    if len(classes) < 2:
        raise SettingError("dataset", f"folder:{root} has {len(classes)} class folder(s) "
                                      f"{list(classes)}; put the images of each class (at least two) in their own "
                                      "subfolder, e.g. cats/ and dogs/")
    label = {name: k for k, name in enumerate(classes)}
    if split_folders:
        unknown = sorted(p.name for p in _class_folders(root / "test") if p.name not in label)
        if unknown:
            raise SettingError("dataset", f"folder:{root}: test/ has classes {unknown} that train/ lacks")
        items = {split: _image_files(root / split, label) for split in ("train", "test")}
        _check_filled(root / "train", label, items["train"])
    else:
        files = _image_files(root, label)
        _check_filled(root, label, files)
        order = torch.randperm(len(files), generator=torch.Generator().manual_seed(SPLIT_SEED)).tolist()
        n_test = max(1, round(TEST_FRACTION * len(files)))
        items = {"test": [files[i] for i in order[:n_test]], "train": [files[i] for i in order[n_test:]]}
    everything = items["train"] + items["test"]
    images = _read_images([path for path, _ in everything], size)
    labels = torch.tensor([k for _, k in everything], dtype=torch.int64)
    n = len(items["train"])
    split = None if split_folders else split_digest([path.relative_to(root) for path, _ in items["test"]])
    return (images[:n], labels[:n]), (images[n:], labels[n:]), classes, split


def split_digest(test_files: list[Path]) -> str:
    """The first 16 hex digits of the SHA-256 of the test files' relative paths, sorted: what an 80/20 split of a
    folder was, recorded in training so that an evaluation can tell when the folder's files, and so its split,
    changed (a file added redraws the split: training images then land in the test set)."""
    text = "\n".join(sorted(path.as_posix() for path in test_files))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _check_filled(folder: Path, label: dict[str, int], files: list[tuple[Path, int]]) -> None:
    """Refuse class folders of ``folder`` that hold no image file (an empty folder would be a class of its own
    that no image teaches), naming them."""
    filled = {k for _, k in files}
    empty = [name for name, k in label.items() if k not in filled]
    if empty:
        which = (f"class folder {empty[0]!r} holds" if len(empty) == 1
                 else f"class folders {', '.join(map(repr, empty))} hold")
        raise SettingError("dataset", f"folder:{folder}: {which} no image file ({', '.join(IMAGE_EXTENSIONS)}); "
                                      "add its images or remove the folder")


def _image_files(folder: Path, label: dict[str, int]) -> list[tuple[Path, int]]:
    return [(path, k) for name, k in label.items() if (folder / name).is_dir()
            for path in sorted((folder / name).rglob("*")) if path.suffix.lower() in IMAGE_EXTENSIONS]


def _read_images(paths: list[Path], size: int) -> torch.Tensor:
    """``[N, C, size, size]`` images, uint8 when every one is 8-bit, else float32 in their own range
    (:func:`neft.data.pixels.read_pillow`): grayscale (C = 1) when every image is, else RGB (C = 3)."""
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError as error:
        raise ImportError("folder: data sets need pillow: pip install pillow") from error
    opened, scales = [], []
    for path in paths:
        try:
            with Image.open(path) as image:
                image.load()
                scales.append(pixels.pillow_scale(image))
                opened.append(image.copy())
        except (OSError, UnidentifiedImageError, ValueError) as error:
            raise SettingError("dataset", f"cannot read image {path} ({type(error).__name__}: "
                                          f"{(str(error).splitlines() or [''])[0][:120]}); fix or remove the file"
                               ) from None
    gray = all(image.mode in _GRAY_MODES for image in opened)
    stacked = pixels.read_pillow(opened, scales, paths, size, gray)
    return torch.from_numpy(stacked).permute(0, 3, 1, 2).contiguous()


_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _read_npz(path: Path, name: str) -> tuple[Split, Split, tuple[str, ...] | None]:
    try:
        with np.load(path, allow_pickle=False) as arrays:
            missing = [key for key in _NPZ_KEYS if key not in arrays.files]
            if missing:
                raise SettingError("dataset", f"{name!r} lacks {', '.join(missing)} (it has "
                                              f"{', '.join(arrays.files) or 'no array'}); save it with "
                                              "np.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)")
            loaded = {key: arrays[key] for key in _NPZ_KEYS + ("classes",) if key in arrays.files}
    except SettingError:
        raise
    except (OSError, ValueError) as error:
        raise SettingError("dataset", f"cannot read {name!r} as a .npz file ({type(error).__name__}: "
                                      f"{(str(error).splitlines() or [''])[0][:120]})") from None
    splits = []
    for split in ("train", "test"):
        images, labels = _npz_images(loaded[f"x_{split}"], name, split), _npz_labels(loaded[f"y_{split}"], name, split)
        if len(images) != len(labels):
            raise SettingError("dataset", f"{name!r}: x_{split} has {len(images)} images but y_{split} "
                                          f"{len(labels)} labels")
        splits.append((images, labels))
    if splits[0][0].shape[1:] != splits[1][0].shape[1:]:
        raise SettingError("dataset", f"{name!r}: training images are {list(splits[0][0].shape[1:])}, test images "
                                      f"{list(splits[1][0].shape[1:])}; both splits need one shape")
    return splits[0], splits[1], _npz_classes(loaded.get("classes"), name)


def _npz_classes(names: np.ndarray | None, name: str) -> tuple[str, ...] | None:
    """The class names of an npz's optional ``classes`` array (one per label, in label order), or None.

    Raises:
        SettingError: (setting ``dataset``) for names that are not one row of distinct values.
    """
    if names is None:
        return None
    classes = tuple(str(value) for value in np.asarray(names).reshape(-1)) if names.ndim <= 1 else ()
    if not classes or len(set(classes)) != len(classes):
        raise SettingError("dataset", f"{name!r}: classes must be the distinct names of the classes in label order "
                                      f"(e.g. np.array(['cat', 'dog'])), got {names.dtype} {list(names.shape)}")
    return classes


def _npz_images(x: np.ndarray, name: str, split: str) -> torch.Tensor:
    if x.ndim not in (3, 4):
        raise SettingError("dataset", f"{name!r}: x_{split} has shape {list(x.shape)}; give images [N, H, W], "
                                      "[N, C, H, W] or [N, H, W, C]")
    first = True if x.ndim == 3 else channels_first(x.shape)
    x = x[:, None] if x.ndim == 3 else x
    if first is None:
        raise SettingError("dataset", f"{name!r}: x_{split} has shape {list(x.shape)}, whose channel axis is "
                                      "ambiguous; accepted are [N, H, W] (one channel), [N, C, H, W] or [N, H, W, C] "
                                      "where the channel axis has at most 4 entries and the other more, and "
                                      "[N, C, H, W] with more than 4 channels and C != H: transpose it to one of "
                                      "these (x.transpose(0, 3, 1, 2) turns [N, H, W, C] into [N, C, H, W])")
    return pixels.npz_pixels(x if first else x.transpose(0, 3, 1, 2), f"{name!r}: x_{split}")


def channels_first(shape: tuple[int, ...]) -> bool | None:
    """Whether 4-D npz images of ``shape`` ``[N, A, B, D]`` are ``[N, C, H, W]`` (True) or ``[N, H, W, C]``
    (False); None when that cannot be told.

    The channel axis is the one of A and D with at most 4 entries when the other has more ([N, 3, 32, 32],
    [N, 32, 32, 3]). With more than 4 entries on both it is A, PyTorch's layout ([N, 8, 64, 64]), unless
    A == B, which reads as well as square images with D channels ([N, 64, 64, 8]). With at most 4 on both
    ([N, 3, 32, 3], [N, 4, 4, 4]) it cannot be told.
    """
    first, last = shape[1], shape[3]
    if (first <= 4) != (last <= 4):
        return first <= 4
    return None if first <= 4 or first == shape[2] else True


def _npz_labels(y: np.ndarray, name: str, split: str) -> torch.Tensor:
    y = np.asarray(y).reshape(-1) if y.ndim == 2 and 1 in y.shape else y
    if y.ndim != 1 or not (np.issubdtype(y.dtype, np.integer) or
                           (np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0))):
        raise SettingError("dataset", f"{name!r}: y_{split} must be integer class labels [N], got {y.dtype} "
                                      f"{list(y.shape)}")
    return torch.from_numpy(y.astype(np.int64))
