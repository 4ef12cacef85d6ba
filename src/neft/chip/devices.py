"""Device models by name: a preset (:mod:`neft.chip.presets`), a device model file (:mod:`neft.chip.device_files`),
a mapping, or a :class:`~neft.chip.device_model.DeviceModel` itself (docs/method.md, 'Device variation model').
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from neft.chip.chip_presets import CHIP_PRESETS, chip_preset
from neft.chip.device_files import from_dict, from_file
from neft.chip.device_model import DeviceModel
from neft.chip.presets import PRESETS
from neft.common.errors import SettingError

__all__ = ["get"]


def get(name_or_path: str | Path | DeviceModel | dict) -> DeviceModel:
    """Look up a device model by preset name (case-insensitive), file path, dict, or pass one through.

    Raises:
        SettingError: (a ``ValueError``, setting ``device_model``) for an unknown preset name (the message lists
            the valid names); ValueError: an invalid file.
        FileNotFoundError: for a path that does not exist.
    """
    if isinstance(name_or_path, DeviceModel):
        return name_or_path
    if isinstance(name_or_path, dict):
        return from_dict(name_or_path)
    text = str(name_or_path)
    chip = chip_preset(text)  # a chip preset: its device model under the preset's name (its circuit: the config's)
    if chip is not None:
        return dataclasses.replace(get(chip[0]), name=next(k for k in CHIP_PRESETS if k.lower() == text.lower()))
    for key, preset in PRESETS.items():
        if key.lower() == text.lower():
            return preset
    if text.lower().endswith((".toml", ".json")) or Path(text).exists():
        return from_file(text)
    raise SettingError("device_model", f"unknown device model {text!r}; choose a preset ({', '.join(PRESETS)}), a "
                                       f"chip preset ({', '.join(CHIP_PRESETS)}) or give a .toml/.json file")
