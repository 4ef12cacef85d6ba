"""Chip presets: a device model together with the crossbar circuit and periphery it is read through
(docs/method.md, 'The periphery', chip preset aihwkit-inference).

``aihwkit-inference`` reproduces aihwkit 1.2's shipped ``InferenceRPUConfig()`` (``aihwkit/simulator/configs/
configs.py``), each value read from aihwkit's source:

* device model ``PCM-aihwkit`` (its ``noise_model = PCMLikeNoiseModel()`` and ``drift_compensation =
  GlobalDriftCompensation()``, :mod:`neft.chip.presets`);
* ``forward = IOParameters()`` (``aihwkit/simulator/parameters/io.py``): ``inp_res = 1/(2**7 - 2)`` -> ``dac_bits =
  7`` sign-magnitude (codes +-63 of the bound 1), ``out_res = 1/(2**9 - 2)`` -> ``adc_bits = 9`` sign-magnitude
  (codes +-255), ``out_bound = 12``, ``out_noise = 0.06``, ``noise_management = ABS_MAX``, ``bound_management =
  ITERATIVE`` (``max_bm_factor = 1000``, ``max_bm_res = 0.25``), ``inp_bound = 1``, no input noise, no weight
  noise, no IR drop, no output nonlinearity;
* ``mapping = MappingParameter()`` (``parameters/mapping.py``): ``weight_scaling_omega = 0`` -> ``weight_scaling =
  "off"``, ``max_input_size = 512`` -> ``tile_rows = 512`` split into equal tiles (``tile_split = "equal"``: 576
  -> 288 + 288, ``TileModuleArray.get_split_sizes`` in ``aihwkit/simulator/tiles/array.py``), ``digital_bias =
  True`` (neft's biases are digital);
* every tile an ``InferenceTile`` of its own (``tile_mapping = "tile"``): conductances relative to the tile's max
  |W| (``aihwkit/inference/converter/conductance.py``) and its own compensation factor;
* the compensation factor scales the digitised outputs (``drift_compensation_at = "outputs"``), its readout taken
  through the tile's noisy periphery (``compensation_readout = "periphery"``: the one-hot inputs read with output
  noise and converters, ``_forward_drift_readout_tensor`` in ``aihwkit/simulator/tiles/inference.py``).

Where it differs: aihwkit also splits outputs beyond 512 (``max_output_size``; neft's tiles span all outputs of a
layer: the same for layers of at most 512 outputs, as in LeNet-5 and VGG8 width 0.25, but one programming
reference, compensation factor and bound-management decision over all outputs of a wider layer); aihwkit draws its
noise from its own generators (torch's for the devices, the simulator's for the output noise), neft from the chip's
seed.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import weakref

from neft.chip.circuit_settings import CircuitFields
from neft.common.errors import SettingError

__all__ = ["CHIP_PRESETS", "CHIP_PRESET_SOURCES", "apply_chip_preset", "chip_preset", "remember", "remember_given",
           "replace_given"]

_GIVEN: dict[int, frozenset] = {}  # id(config) -> the fields its caller gave; dropped with the config

CHIP_PRESETS: dict[str, tuple[str, dict]] = {
    "aihwkit-inference": ("PCM-aihwkit", {
        "tile_rows": 512, "dac_bits": 7, "adc_bits": 9, "out_bound": 12.0, "out_noise": 0.06,
        "input_management": "abs_max", "bound_management": "iterative", "converter_codes": "sign_magnitude",
        "weight_scaling": "off", "drift_compensation_at": "outputs", "tile_split": "equal", "tile_mapping": "tile",
        "compensation_readout": "periphery"}),
}
CHIP_PRESET_SOURCES = {
    "aihwkit-inference": "aihwkit 1.2 InferenceRPUConfig(): PCM-aihwkit devices; IOParameters() 7-bit inputs "
                         "(inp_res 1/126), 9-bit outputs (out_res 1/510) of bound 12, out_noise 0.06, ABS_MAX noise "
                         "management, ITERATIVE bound management, sign-magnitude codes; MappingParameter() "
                         "weight_scaling_omega 0, 512-row tiles split equally, each mapped on its own; global "
                         "drift compensation per tile on the digitised outputs, read through the periphery",
}


def chip_preset(name) -> tuple[str, dict] | None:
    """``(device model preset, circuit settings)`` of the chip preset ``name`` (case-insensitive), None if it is
    not one. ``name`` may also be a device-model dict (``DeviceModel.to_dict()``): what ``neft train
    --device-model aihwkit-inference --drift-time T`` records, the preset's device model with chip flags applied
    under the preset's name, or named after it and the flags that change the devices (``aihwkit-inference
    no-drift-compensation``); the first word of its ``"name"`` is read, so the flags keep the preset's circuit."""
    if isinstance(name, dict):
        name = name.get("name")
        if isinstance(name, str) and all(_is_flag_word(word) for word in name.split(" ")[1:]):
            name = name.split(" ")[0]
    if not isinstance(name, str):
        return None
    return next((preset for key, preset in CHIP_PRESETS.items() if key.lower() == name.lower()), None)


def _is_flag_word(word: str) -> bool:
    """Whether ``word`` is one a chip flag adds to a device model's name (``no-drift-compensation``,
    ``stuck-on=0.01``: a device-model setting, ``neft.chip.device_model``)."""
    from neft.chip.device_model import DeviceModel

    setting = word.split("=")[0].removeprefix("no-").replace("-", "_")
    return setting in {field.name for field in dataclasses.fields(DeviceModel)}


def remember_given(cls):
    """Class decorator, written over ``@dataclass``: an instance remembers the fields its constructor was given (by
    name or position), so that :func:`apply_chip_preset` leaves a setting given at the plain circuit's default
    (``out_noise=0.0`` under ``aihwkit-inference``) as it is; ``copy.copy`` and ``copy.deepcopy`` carry the
    record. A call that passes every field (``dataclasses.replace``, ``cls(**config.__dict__)``: a copy) records
    nothing (:func:`replace_given` keeps the record of a copy)."""
    init = cls.__init__
    names = [field.name for field in dataclasses.fields(cls) if field.init]

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        given = frozenset(names[:len(args)]) | frozenset(kwargs)
        if len(given) < len(names):
            remember(self, given)
        init(self, *args, **kwargs)

    def __copy__(self):
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        _carry(self, new)
        return new

    def __deepcopy__(self, memo):
        new = object.__new__(type(self))
        memo[id(self)] = new
        new.__dict__.update({key: copy.deepcopy(value, memo) for key, value in self.__dict__.items()})
        _carry(self, new)
        return new

    cls.__init__, cls.__copy__, cls.__deepcopy__ = __init__, __copy__, __deepcopy__
    return cls


def _carry(config, new) -> None:
    if id(config) in _GIVEN:
        remember(new, _GIVEN[id(config)])


def remember(config, given) -> None:
    """Record ``given`` as the fields the caller of ``config`` chose (every field: a configuration read back from
    a run, whose recorded values are its own); kept beside the object, not in it, and dropped with it."""
    if id(config) not in _GIVEN:
        weakref.finalize(config, _GIVEN.pop, id(config), None)
    _GIVEN[id(config)] = frozenset(given)


def replace_given(config, **changes):
    """``dataclasses.replace(config, **changes)`` of a :func:`remember_given` config, remembering as given the
    fields ``config`` was given and ``changes``."""
    new = dataclasses.replace(config, **changes)
    if id(config) in _GIVEN:
        remember(new, _GIVEN[id(config)] | frozenset(changes))
    return new


_COMPENSATION_FIELDS = ("drift_compensation_at", "compensation_readout")  # they need drift compensation on


def apply_chip_preset(config) -> dict:
    """Give an ``EvalConfig`` / ``TrainConfig`` whose ``device_model`` names a chip preset that preset's circuit
    settings, each where the field is still at the plain circuit's default and the caller did not give it
    (:func:`remember_given`: a setting given explicitly wins, at any value; one set after construction, at any
    other value), so that the recorded settings say what the chip was; with ``drift_compensation`` or ``quantize``
    False the preset's compensation placement (``drift_compensation_at``, ``compensation_readout``) is not
    applied. Once applied, every field counts as given (the config is resolved: checking it again, or a copy of it,
    changes nothing). ``device_model`` keeps the preset's name; :func:`neft.chip.devices.get` reads it as the
    preset's device model.

    Returns:
        The settings it filled, name -> value (empty without a preset), for :func:`naming_preset`.
    """
    preset = chip_preset(getattr(config, "device_model", None))
    if preset is None:
        return {}
    filled, given, default = {}, _GIVEN.get(id(config), frozenset()), CircuitFields()
    # turned off by a flag of evaluate or folded into a device dict (quantize off turns the whole chip off)
    flags = config.device_model if isinstance(config.device_model, dict) else {}
    compensated = all(getattr(config, name, None) is not False and flags.get(name) is not False
                      for name in ("drift_compensation", "quantize"))
    for name, value in preset[1].items():
        if name in _COMPENSATION_FIELDS and not compensated:
            continue
        if name not in given and getattr(config, name) == getattr(default, name):
            setattr(config, name, value)
            filled[name] = value
    if dataclasses.is_dataclass(config):
        remember(config, [field.name for field in dataclasses.fields(config)])
    return filled


@contextlib.contextmanager
def naming_preset(device_model, filled: dict):
    """Re-raise a :class:`~neft.common.errors.SettingError` of a setting that the chip preset ``device_model``
    filled (``filled``, from :func:`apply_chip_preset`) as ``the chip preset aihwkit-inference sets tile_split =
    'equal': ...``: the caller never gave that setting, the preset did (e.g. ``tile_rows=None`` over
    ``aihwkit-inference`` leaves its equal tile split without tiles)."""
    try:
        yield
    except SettingError as error:
        if error.setting not in filled or str(error).startswith("the chip preset"):
            raise
        name = device_model.get("name", "").split(" ")[0] if isinstance(device_model, dict) else device_model
        raise SettingError(error.setting, f"the chip preset {name} sets {error.setting} = "
                                          f"{filled[error.setting]!r}: {error} (set {error.setting} to change it)"
                           ) from None
