"""The periphery settings of the crossbar circuit (docs/method.md, 'The periphery'): output noise per read, input
(noise) management, output bound management, a fixed output bound, per-column weight scaling and the converters'
code convention, as aihwkit's ``IOParameters`` (``aihwkit/simulator/parameters/io.py``: ``out_noise``,
``noise_management``, ``bound_management``, ``out_bound``) and ``MappingParameter`` (``weight_scaling_omega``,
``weight_scaling_columnwise``) name them; their checks, names and report labels.

Units. The periphery works in *normalised units*: an input vector divided by its input scale (its max |x| with
``input_management="abs_max"``, else the layer's calibrated DAC full scale), a weight divided by its weight unit
(``weight_scaling``: the layer's max |W|, each crossbar column's max |W|, or 1 as aihwkit's default
``weight_scaling_omega = 0``). ``out_noise`` and ``out_bound`` are in these units: the output of one crossbar row
driven at full input through a weight of one unit.
"""

from __future__ import annotations

import dataclasses

from neft.common.errors import SettingError, check_number

__all__ = ["PERIPHERY_FIELDS", "INPUT_MANAGEMENTS", "BOUND_MANAGEMENTS", "WEIGHT_SCALINGS", "CONVERTER_CODES",
           "COMPENSATION_PLACEMENTS", "TILE_MAPPINGS", "COMPENSATION_READOUTS",
           "check_periphery", "periphery_names", "periphery_label", "MAX_BM_FACTOR", "MAX_BM_RESOLUTION"]

PERIPHERY_FIELDS = ("out_noise", "input_management", "bound_management", "out_bound", "weight_scaling",
                    "converter_codes", "drift_compensation_at", "tile_mapping", "compensation_readout")
INPUT_MANAGEMENTS = ("none", "abs_max")  # aihwkit NoiseManagementType.NONE / ABS_MAX
BOUND_MANAGEMENTS = ("none", "iterative")  # aihwkit BoundManagementType.NONE / ITERATIVE
WEIGHT_SCALINGS = ("layer", "column", "off")  # one max|W| per layer, per crossbar column, none (weight units)
CONVERTER_CODES = ("twos_complement", "sign_magnitude")
COMPENSATION_PLACEMENTS = ("weights", "outputs")  # global drift compensation on the weights / digitised outputs
TILE_MAPPINGS = ("layer", "tile")  # a chip's conductances and compensation factor per layer / per tile
COMPENSATION_READOUTS = ("weights", "periphery")  # the compensation readout on the weights / through the periphery
MAX_BM_FACTOR = 1000  # aihwkit IOParameters.max_bm_factor: the largest input reduction of bound management
MAX_BM_RESOLUTION = 0.25  # aihwkit IOParameters.max_bm_res: the coarsest input step (of the full scale) it allows


def _choice(settings, name: str, choices: tuple[str, ...]) -> None:
    value = getattr(settings, name)
    if value not in choices:
        raise SettingError(name, f"unknown {name} {value!r}; choose one of {', '.join(choices)}")


def check_periphery(settings) -> None:
    """Check (and normalise) the periphery fields of a :class:`~neft.chip.circuit_settings.CircuitSettings`.

    Raises:
        SettingError: naming the setting: ``out_noise`` negative or not finite; ``out_bound`` not > 0; an unknown
            management, weight scaling or code convention; output noise or a fixed output bound without an input
            scale to be relative to (``dac_bits`` or ``input_management="abs_max"``); ``input_management`` without
            a converter or output noise it scales inputs for; ``bound_management`` without an output bound
            (``adc_bits`` or ``out_bound``); ``converter_codes="sign_magnitude"`` without a converter; any
            periphery setting with ``adc_mode="sliced"``. (``drift_compensation_at="outputs"`` without the device
            model's ``drift_compensation`` is refused by :class:`neft.chip.circuit.Circuit`, which knows the model;
            so is ``compensation_readout="periphery"``.)
    """
    settings.out_noise = check_number("out_noise", settings.out_noise, "a finite number >= 0 (the std of the "
                                      "output noise per read, in units of a full-scale row output, e.g. 0.06)",
                                      lambda v: v >= 0)
    if settings.out_bound is not None:
        settings.out_bound = check_number("out_bound", settings.out_bound, "a finite number > 0 (the output full "
                                          "scale in units of a full-scale row output, e.g. 12) or None",
                                          lambda v: v > 0)
    for name, choices in (("input_management", INPUT_MANAGEMENTS), ("bound_management", BOUND_MANAGEMENTS),
                          ("weight_scaling", WEIGHT_SCALINGS), ("converter_codes", CONVERTER_CODES),
                          ("drift_compensation_at", COMPENSATION_PLACEMENTS), ("tile_mapping", TILE_MAPPINGS),
                          ("compensation_readout", COMPENSATION_READOUTS)):
        _choice(settings, name, choices)
    scaled = settings.dac_bits is not None or settings.input_management == "abs_max"
    for name, on in (("out_noise", settings.out_noise > 0), ("out_bound", settings.out_bound is not None)):
        if on and not scaled:
            raise SettingError(name, f"{name} is in units of a full-scale row output (the input full scale times "
                                     "the weight unit), so it needs an input full scale: dac_bits (the calibrated "
                                     "static range) or input_management 'abs_max' (each vector's max |x|): set one")
    if settings.input_management != "none" and not (settings.dac_bits is not None or settings.out_noise > 0
                                                     or settings.out_bound is not None):
        raise SettingError("input_management", "input_management scales each input vector for the DAC and the "
                                               "output noise and bound: it needs dac_bits, out_noise or out_bound")
    if settings.bound_management != "none" and settings.adc_bits is None and settings.out_bound is None:
        raise SettingError("bound_management", "bound_management re-reads outputs that saturate the ADC, so it "
                                               "needs adc_bits (calibrated range) or out_bound: set one")
    if settings.converter_codes != "twos_complement" and not settings.converters:
        raise SettingError("converter_codes", "converter_codes sets the DAC/ADC codes, so it needs dac_bits or "
                                              "adc_bits")
    if periphery_names(settings) and settings.adc_mode == "sliced":
        raise SettingError(periphery_names(settings)[0], f"{periphery_names(settings)[0]} runs with "
                                                         "adc_mode 'analog' only (the periphery of a bit-sliced "
                                                         "ADC is not modelled): leave adc_mode 'analog'")


def periphery_names(settings) -> list[str]:
    """The periphery settings of ``settings`` (a :class:`~neft.chip.circuit_settings.CircuitSettings`) that differ
    from their declared defaults, in :data:`PERIPHERY_FIELDS` order."""
    defaults = {field.name: field.default for field in dataclasses.fields(settings)}
    return [name for name in PERIPHERY_FIELDS if getattr(settings, name) != defaults[name]]


def periphery_label(settings) -> list[str]:
    """Report-label parts of the periphery settings that are on, e.g. ``["out_noise=0.06", "nm=abs_max"]``."""
    short = {"out_noise": "out_noise", "input_management": "nm", "bound_management": "bm", "out_bound": "out_bound",
             "weight_scaling": "wscale", "converter_codes": "codes", "drift_compensation_at": "comp_at",
             "tile_mapping": "tmap", "compensation_readout": "comp_read"}
    return [f"{short[name]}={getattr(settings, name):g}" if isinstance(getattr(settings, name), float)
            else f"{short[name]}={getattr(settings, name)}" for name in periphery_names(settings)]
