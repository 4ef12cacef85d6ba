"""Pixels of any bit depth, kept in their own range (docs/method.md, 'Data sets of your own').

8-bit images stay uint8 (0..255, scaled to [0, 1] by the preprocessing). Deeper integer images become float32,
divided by the largest value of their type, so that they land in [0, 1] as 8-bit ones do (scikit-image's
``img_as_float`` convention): 16-bit by 65535, signed 32-bit by 2^31 - 1 (and generally an npz integer type by
``np.iinfo(type).max``). Float images are used as they are and must lie in [0, 1] like every other kind (within
``FLOAT_TOLERANCE``): float pixels in 0..255 are refused, saying to divide them by 255, since the stated
normalisations (``none``, a given mean and std) assume [0, 1]. Nothing is clipped.
"""

from __future__ import annotations

import numpy as np
import torch

from neft.common.errors import SettingError

__all__ = ["pillow_scale", "read_pillow", "npz_pixels", "check_float_range", "statistics", "PNG_DEPTH", "INT32_DEPTH",
           "FLOAT_TOLERANCE"]

PNG_DEPTH = 65535  # PNG stores at most 16 bits per sample: a mode "I" PNG (older Pillow) holds 16-bit values
INT32_DEPTH = 2**31 - 1  # Pillow's mode "I": signed 32-bit integers (e.g. a 32-bit TIFF)
FLOAT_TOLERANCE = 1e-3  # float pixels may stray this far outside [0, 1] (rounding), no further
CONSTANT = 1e-6  # a channel whose std is below this fraction of its largest absolute value counts as constant


def pillow_scale(image) -> float | None:
    """The value of full brightness of a Pillow image deeper than 8 bits: 65535 for the 16-bit modes (``I;16``,
    ``I;16B``, ...), 65535 for a mode ``I`` PNG and 2^31 - 1 for any other mode ``I`` image (32-bit integers),
    1.0 for float images (mode ``F``, used as they are); None for 8-bit images. Read before ``image.copy()``,
    which forgets the file format."""
    if image.mode.startswith("I;16"):
        return 65535.0
    if image.mode == "I":
        return float(PNG_DEPTH if image.format == "PNG" else INT32_DEPTH)
    return 1.0 if image.mode == "F" else None


def read_pillow(images: list, scales: list[float | None], paths: list, size: int, gray: bool) -> np.ndarray:
    """``[N, size, size, C]`` pixels of Pillow ``images`` resized bilinearly: uint8 when every image is 8-bit
    (``scales`` all None), else float32 with each image divided by its scale (8-bit ones by 255); C = 1 when
    ``gray``, else 3 (a deep grayscale image repeated in the three channels).

    Raises:
        SettingError: (setting ``dataset``) float images mixed with integer ones, or a float image holding NaN or
            infinite values or values outside [0, 1] (:func:`check_float_range`) (all naming a file).
    """
    from PIL import Image

    if all(scale is None for scale in scales):
        arrays = [np.asarray(image.convert("L" if gray else "RGB").resize((size, size), Image.BILINEAR))
                  for image in images]
        return np.stack(arrays).reshape(len(arrays), size, size, -1)
    floats = [path for path, scale in zip(paths, scales) if scale == 1.0]
    if floats and len(floats) < len(paths):
        other = next(path for path, scale in zip(paths, scales) if scale != 1.0)
        raise SettingError("dataset", f"float image {floats[0]} (used as it is) is in one data set with integer "
                                      f"images such as {other} (scaled to [0, 1]); save them all as one kind, e.g. "
                                      "the float ones as 16-bit PNG or all as float TIFF")
    arrays = []
    for image, scale, path in zip(images, scales, paths):
        if scale is None:
            array = np.asarray(image.convert("L" if gray else "RGB").resize((size, size), Image.BILINEAR),
                               np.float32) / np.float32(255)
        else:
            array = np.asarray(image.convert("F").resize((size, size), Image.BILINEAR), np.float32) / np.float32(scale)
            if not np.isfinite(array).all():
                raise SettingError("dataset", f"image {path} contains NaN or infinite values; fix or remove it")
            if scale == 1.0:
                check_float_range(array, f"float image {path}")
        array = array.reshape(size, size, -1)
        arrays.append(array if gray or array.shape[-1] == 3 else np.repeat(array, 3, axis=-1))
    return np.stack(arrays)


def npz_pixels(x: np.ndarray, what: str) -> torch.Tensor:
    """The images of one npz array as a tensor: uint8 kept, other integer types as float32 divided by the largest
    value of their type (uint16 by 65535, int32 by 2^31 - 1), floats as float32 as they are (in [0, 1]).

    Raises:
        SettingError: (setting ``dataset``) another type (bool, complex, strings), NaN / infinite values (also
            float64 values beyond float32's range), or float values outside [0, 1] (:func:`check_float_range`);
            ``what`` names the array.
    """
    if x.dtype == np.uint8:
        return torch.from_numpy(np.ascontiguousarray(x))
    integer = np.issubdtype(x.dtype, np.integer)
    if integer:
        x = x.astype(np.float64) / np.iinfo(x.dtype).max
    elif not np.issubdtype(x.dtype, np.floating):
        raise SettingError("dataset", f"{what} is {x.dtype}; give integer pixels (uint8 0..255, uint16 0..65535, "
                                      "int32, ...) or floats")
    with np.errstate(over="ignore"):
        x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise SettingError("dataset", f"{what} contains NaN or infinite values (or values beyond float32's range)")
    if not integer:
        check_float_range(x, what)
    return torch.from_numpy(np.ascontiguousarray(x))


def check_float_range(x: np.ndarray, what: str) -> None:
    """Refuse float pixels ``x`` (any shape) outside [0, 1] by more than :data:`FLOAT_TOLERANCE`: every kind of
    image reaches the network in [0, 1] (docs/method.md, 'Data sets of your own'), and the normalisations ``none``
    and a given mean and std assume it.

    Raises:
        SettingError: (setting ``dataset``) naming ``what``, the range found and how to convert it (0..255 pixels:
            divide by 255 or store them as uint8).
    """
    if not x.size:
        return
    low, high = float(x.min()), float(x.max())
    if low < -FLOAT_TOLERANCE or high > 1 + FLOAT_TOLERANCE:
        hint = ("divide 0..255 pixels by 255 (x / 255.0) or store them as uint8" if low >= 0 and high <= 255
                else "scale them to [0, 1]")
        raise SettingError("dataset", f"{what} holds float pixels from {low:g} to {high:g}; float images must lie in "
                                      f"[0, 1]: {hint}")


def statistics(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std (population) of ``images`` ``[N, C, H, W]``, uint8 scaled to [0, 1]; a constant
    channel (std below ``CONSTANT`` times its largest absolute value) gets std 1, so nothing is divided by zero
    and the channel's values pass unscaled."""
    x = images.double() / 255 if images.dtype == torch.uint8 else images.double()
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3), unbiased=False)
    std = torch.where(std > CONSTANT * x.abs().amax(dim=(0, 2, 3)), std, torch.ones_like(std))
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)
