"""Device model files: a user-defined device model read from a ``.toml`` or ``.json`` file, or from the mapping such a
file holds (the format :meth:`~neft.chip.device_model.DeviceModel.to_dict` writes).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from neft.chip.device_model import DeviceModel
from neft.chip.presets import PRESETS
from neft.common.errors import SettingError

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["from_dict", "from_file"]

_FIELDS = {f.name for f in dataclasses.fields(DeviceModel)}


def from_dict(data: dict, default_name: str = "custom") -> DeviceModel:
    """Build a :class:`DeviceModel` from a mapping with the keys of :meth:`DeviceModel.to_dict`.

    Raises:
        SettingError: (a ``ValueError``, setting ``device_model``) for unknown keys; ValueError for invalid values.
    """
    unknown = set(data) - _FIELDS
    if unknown:
        raise SettingError("device_model", f"unknown device model keys {sorted(unknown)}; valid keys are "
                                           f"{sorted(_FIELDS)}")
    data = dict(data)
    data.setdefault("name", default_name)
    if "band" in data:
        data["band"] = tuple(data["band"])
    if data.get("levels") is not None:
        data["levels"] = tuple(data["levels"])
    return DeviceModel(**data)


def _unique_keys(pairs: list[tuple[str, object]], path: Path) -> dict:
    """One JSON object of a device model file as a dict, refusing a key given twice (``json`` would keep the last
    one without a word, as TOML never does)."""
    keys = [key for key, _ in pairs]
    twice = sorted({key for key in keys if keys.count(key) > 1})
    if twice:
        raise SettingError("device_model", f"device model file {str(path)!r} gives the key(s) {', '.join(twice)} "
                                           "more than once; keep one value of each")
    return dict(pairs)


def from_file(path: str | Path) -> DeviceModel:
    """Load a user-defined device model from a ``.toml`` or ``.json`` file.

    The file holds the keys of :class:`DeviceModel` at top level (TOML may also put them in a ``[device]``
    table), e.g. ``weight_bits = 8``, ``device_bits = 4``, ``state_factor = 3``, ``band = [0.2, 0.8]`` or a
    measured ``levels = [1.0, 1.6, 1.6, 1.0]``, ``read_sigma = 0.02`` for read noise, and the realistic chip's
    ``quantize = true``, ``stuck_off``, ``stuck_on``, ``drift_nu_mean``, ``drift_nu_std``, ``drift_t0``,
    ``drift_time`` and ``drift_compensation``.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: for an unsupported extension or a parse error (naming the file); SettingError (a
            ``ValueError``) naming the file for a file that is not UTF-8 text or (JSON) gives a key twice, and the
            key for unknown keys (setting ``device_model``), keys both at top level and in
            ``[device]``, ``levels`` given with ``state_factor`` or ``band`` (which it replaces), or invalid values
            (the setting of the bad key; ``device_model`` for a bad ``name``, which no other setting gives).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"device model file {str(path)!r} not found")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise SettingError("device_model", f"device model file {str(path)!r} is not UTF-8 text ({error}); save it "
                                           "as UTF-8") from None
    try:
        if path.suffix.lower() == ".toml":
            data = tomllib.loads(text)
            if "device" in data and len(data) > 1:
                raise SettingError("device_model", f"device model file {str(path)!r} has keys both at top level "
                                                   f"({', '.join(sorted(set(data) - {'device'}))}) and in a [device] "
                                                   "table: put them all in one place")
            data = data.get("device", data)
        elif path.suffix.lower() == ".json":
            data = json.loads(text, object_pairs_hook=lambda pairs: _unique_keys(pairs, path))
        else:
            raise ValueError(f"device model file {str(path)!r} must end in .toml or .json")
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot parse device model file {str(path)!r}: {error}") from None
    if not isinstance(data, dict):
        raise SettingError("device_model", f"device model file {str(path)!r} holds {type(data).__name__} "
                                           f"{data!r:.40}, not a table of device model keys (e.g. weight_bits = 8)")
    unused = data.get("state_factor", 1.0) != 1.0 or list(data.get("band", [0.25, 0.75])) != [0.25, 0.75]
    if "levels" in data and unused:  # one of the two models of the variation: a table, or a factor and a band
        raise SettingError("levels", f"device model file {str(path)!r}: a measured levels table replaces "
                                     "state_factor and band, which it would leave unused; give the table, or "
                                     "state_factor and band, not both")
    try:
        model = from_dict(data, default_name=path.stem)
    except ValueError as error:  # the file named in the message; a SettingError keeps the key it names, but the
        setting = getattr(error, "setting", "device_model")  # model's name has no setting but the file
        raise SettingError("device_model" if setting == "name" else setting,
                           f"device model file {str(path)!r}: {error}") from None
    preset = {key.lower(): value for key, value in PRESETS.items()}.get(model.name.lower())
    if preset is not None and dataclasses.replace(preset, name=model.name) != model:  # reports name models by name
        raise SettingError("device_model", f"device model file {str(path)!r} is named {model.name!r}, a preset's "
                                           "name, but holds other values; give it a name of its own (or leave "
                                           "name out: the file's)")
    return model
