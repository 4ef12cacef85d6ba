"""The input normalisation a network was trained with, stated for weights trained elsewhere (``neft import
--normalisation``, ``import_run(..., normalisation=...)``; docs/method.md, 'Data sets and preprocessing').

A network only gives its accuracy on inputs normalised as in its training: evaluated on other ones it gives wrong
accuracies without any error. Three statements:

- ``"dataset"``: the data set's own per-channel mean and std (:class:`~neft.data.datasets.ImageDataset`; what
  ``neft train`` uses);
- ``"none"``: no normalisation, pixel values as preprocessing scales them, in [0, 1] (mean 0, std 1);
- ``{"mean": [...], "std": [...]}``: given, one mean and one std per channel, of pixel values in [0, 1] (e.g.
  torchvision's ImageNet statistics ``[0.485, 0.456, 0.406]`` and ``[0.229, 0.224, 0.225]``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from neft.common.errors import SettingError, check_number
from neft.data.datasets import ImageDataset

__all__ = ["NORMALISATIONS", "stated", "describe"]

NORMALISATIONS = ("dataset", "none")  # or a given {"mean": [...], "std": [...]}


def stated(dataset: ImageDataset, normalisation: str | Mapping) -> tuple[ImageDataset, str]:
    """``dataset`` with the mean and std of ``normalisation`` (see the module docstring), and the source to record:
    ``"dataset"``, ``"none"`` or ``"given"``.

    Raises:
        SettingError: (setting ``normalisation``) for another word, a mapping with other keys than ``mean`` and
            ``std``, or values that are not one finite number per channel: means in [0, 1], stds in (0, 1]
            (statistics of 0-255 pixel values are refused with how to scale them).
    """
    channels = dataset.in_channels
    if isinstance(normalisation, str) and normalisation in NORMALISATIONS:
        if normalisation == "dataset":
            return dataset, "dataset"
        return dataclasses.replace(dataset, mean=(0.0,) * channels, std=(1.0,) * channels), "none"
    if not isinstance(normalisation, Mapping) or set(normalisation) != {"mean", "std"}:
        raise SettingError("normalisation", f"normalisation must be 'dataset' (the data set's own mean and std), "
                                            f"'none' (pixel values in [0, 1] as they are) or {{'mean': [...], "
                                            f"'std': [...]}} with one value per channel, got {normalisation!r}")
    mean = _per_channel("mean", normalisation["mean"], channels, lambda v: 0 <= v <= 1, "in [0, 1]")
    std = _per_channel("std", normalisation["std"], channels, lambda v: 0 < v <= 1, "in (0, 1]")
    return dataclasses.replace(dataset, mean=mean, std=std), "given"


def _per_channel(name: str, values, channels: int, ok, valid: str) -> tuple[float, ...]:
    """``values`` as a tuple of ``channels`` floats each ``ok``, else a SettingError naming ``name``."""
    if isinstance(values, (int, float)):
        values = [values]
    if not isinstance(values, Sequence) or isinstance(values, str) or len(values) != channels:
        raise SettingError("normalisation", f"the normalisation's {name} must be {channels} number(s), one per "
                                            f"channel of the data set's {channels}-channel images, got {values!r}")
    checked = tuple(check_number(f"normalisation {name}", value, f"a finite number {valid}") for value in values)
    if not all(ok(value) for value in checked):
        raise SettingError("normalisation", f"the normalisation's {name} must be {valid}, of pixel values scaled to "
                                            f"[0, 1], got {list(checked)}; statistics of 0-255 pixel values divide "
                                            "by 255 (e.g. mean 123.675 -> 0.485, std 58.395 -> 0.229)")
    return checked


def describe(source: str, mean: Sequence[float], std: Sequence[float]) -> str:
    """A normalisation in words, e.g. ``"none (pixel values in [0, 1])"`` or ``"given (mean 0.485, 0.456, 0.406;
    std 0.229, 0.224, 0.225)"``."""
    if source == "none":
        return "none (pixel values in [0, 1])"
    name = "the data set's own" if source == "dataset" else source
    return f"{name} (mean {', '.join(f'{m:g}' for m in mean)}; std {', '.join(f'{s:g}' for s in std)})"
