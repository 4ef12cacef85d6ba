"""The technology a cost estimate assumes: every constant of the cost model as one named, sourced, overridable key
(docs/method.md, 'What a chip costs').

One node is named, 45 nm CMOS: the digital energies are Horowitz's 45 nm figures (ISSCC 2014, "Computing's energy
problem"), the converters the median 40-45 nm Nyquist SAR ADC of Murmann's ADC survey, the device and read
conditions those of DNN+NeuroSim V1.4's RRAM defaults (``Param.cpp``) at 45 nm, the array periphery, buffers and
interconnect DNN+NeuroSim V1.4's own estimates at 45 nm per sub-array, read cycle and activation bit. :data:`KEYS`
gives each key's unit, default and source; :func:`technology` builds a checked :class:`Technology` from the
defaults, a TOML or JSON file (``{"key": value}``, or the keys under a ``[technology]`` table) and Python overrides,
in that order.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

from neft.common.errors import SettingError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

__all__ = ["Technology", "KEYS", "NODE", "technology"]

NODE = "45 nm CMOS"
_SURVEY = ("Murmann, ADC Performance Survey 1997-2025 (github.com/bmurmann/ADC-survey): median of the 20 Nyquist "
           "SAR ADCs in 40-45 nm CMOS with 10 MS/s to 2 GS/s (ISSCC and VLSI)")
_HOROWITZ = "Horowitz, ISSCC 2014, 'Computing's energy problem', 45 nm, 0.9 V"
_NEUROSIM = "DNN+NeuroSim V1.4 Param.cpp default (Lee et al., IEEE TCAS-I 2024)"
# array periphery area, its energy per read cycle, interconnect area per array, buffer and interconnect energy per bit
_PERIPHERY = (3.13e-8, 5.66e-12, 1.37e-8, 3.1e-14, 8.78e-13)
_NS_RUN = ("DNN+NeuroSim V1.4 built and run at 45 nm on VGG8 (RRAM, 4-bit ADC, 128 x 128 sub-arrays, 8-bit weights "
           "and inputs): its area or energy over its sub-arrays (9472 with its weight copies), sub-array read cycles "
           "(2,457,664) or activation bits (24,027,216) (benchmarks/cost_table.py, periphery_keys)")

# key: (unit, default, source). Energies in joules, times in seconds, areas in square metres, conductances in siemens.
KEYS: dict[str, tuple[str, float | int | str | None, str]] = {
    "feature_size": ("m", 45e-9, "the node, F = 45 nm"),
    "cell_area_f2": ("F^2", 48.0, f"1T1R cell of 4 F x 12 F, {_NEUROSIM} (heightInFeatureSize1T1R, "
                                  "widthInFeatureSize1T1R)"),
    "g_on": ("S", 1e-5, f"R_on = 100 kOhm, {_NEUROSIM} (resistanceOn)"),
    "g_off": ("S", 1e-5 / 17, f"R_off = 17 R_on (on/off ratio 17), {_NEUROSIM} (resistanceOff)"),
    "read_voltage": ("V", 0.51, f"read voltage at 45 nm, {_NEUROSIM} (readVoltage)"),
    "read_time": ("s", 1.99e-9, "the time a column's current flows per read cycle: the column latency of "
                                "DNN+NeuroSim V1.4's current-mode multilevel sense amplifier at 45 nm "
                                "(MultilevelSenseAmp.cpp ColumnLatency_Table: the slower of its reference columns, "
                                "1.25 and 1.99 ns, for 4-bit reads of 32 parallel rows of 100 kOhm cells), the time "
                                "its column energy counts (its readPulseWidth, 10 ns, is not used by that read)"),
    "adc_fom": ("J/conv-step", 25.6e-15, f"Walden figure of merit FOM_W,hf, {_SURVEY}"),
    "adc_area_per_step": ("m^2", 36.5e-12, f"ADC area / 2**ENOB (Verhelst and Murmann, Electron. Lett. 2012: area "
                                           f"grows as 2**ENOB), {_SURVEY}"),
    "adc_sample_rate": ("S/s", 180e6, f"Nyquist sample rate, {_SURVEY}"),
    "dac_fom": ("J/conv-step", 25.6e-15, "assumed equal to adc_fom: a B-bit input DAC costs a Nyquist converter "
                                         "of B bits (E = dac_fom * 2**B); override with your driver's figure"),
    "dac_area_per_step": ("m^2", 8.3e-14, "input DAC area / 2**bits: ISAAC's 1024 1-bit DACs in 0.00017 mm^2 "
                                          "(Shafiee et al., ISCA 2016, Table 6, 32 nm; not scaled to the node), "
                                          "scaled as 2**bits"),
    "digital_add": ("J", 0.1e-12, f"32-bit integer add, {_HOROWITZ}"),
    "digital_mult": ("J", 3.1e-12, f"32-bit integer multiply, {_HOROWITZ}"),
    "clock": ("Hz", 1e9, f"digital clock, {_NEUROSIM} (clkFreq)"),
    "digital_lanes": ("ops/cycle", 128, "digital units working in parallel (one per column of a 128-column tile; "
                                        "assumption)"),
    "ideal_bits": ("bits", 8, "bits a DAC or ADC is costed at when the chip's converter is ideal (dac_bits or "
                              "adc_bits None), the 8-bit inputs of NeuroSim's VGG8 example"),
    "tile_columns": ("columns", None, "physical columns per tile; None: as many as tile_rows (square arrays, "
                                      "NeuroSim's 128 x 128 sub-arrays), one array per layer when tile_rows is None"),
    "columns_per_adc": ("columns", 8, f"converted columns sharing one ADC, {_NEUROSIM} (numColMuxed)"),
    "input_mode": ("mode", "parallel", "how inputs reach the rows: 'parallel' (one multi-bit DAC conversion per row "
                                       "and read) or 'bit_serial' (one read cycle per input bit, 1-bit drivers, as "
                                       "ISAAC and DNN+NeuroSim do; numBitInput read cycles in NeuroSim's "
                                       "ProcessingUnit.cpp)"),
    "input_activity": ("fraction", 1.0, "fraction of input bits that are 1 in bit-serial mode (rows driven per "
                                        "cycle): 1 is the upper bound; NeuroSim reads it from traces "
                                        "(Param.cpp inputtoggle: 0.18 for VGG8 on CIFAR-10)"),
    "array_periphery_area": ("m^2", _PERIPHERY[0], "per array: row decoders, switch matrices, level shifters, "
                                                   f"column muxes, shift-add and accumulators; {_NS_RUN}"),
    "array_periphery_energy": ("J", _PERIPHERY[1], "per array and read cycle: the same circuits; " + _NS_RUN),
    "interconnect_area": ("m^2", _PERIPHERY[2], "per array: its share of the H-tree / bus between sub-arrays, "
                                                f"processing units and tiles; {_NS_RUN}"),
    "buffer_energy": ("J/bit", _PERIPHERY[3], "per activation bit into and out of a layer's buffers; " + _NS_RUN),
    "interconnect_energy": ("J/bit", _PERIPHERY[4], "per activation bit carried by the interconnect; " + _NS_RUN),
    "write_voltage": ("V", 2.0, f"programming pulse amplitude, {_NEUROSIM} (writeVoltage)"),
    "write_time": ("s", 100e-9, "programming pulse width: 100 ns, the order of RRAM SET/RESET pulses (Wan et al., "
                                "Nature 2022, Methods; assumption)"),
    "verify_pulses": ("pulses", 10.0, "mean write-verify iterations per verified device, each a write pulse and a "
                                      "verify read (incremental-pulse write-verify, Wan et al., Nature 2022, "
                                      "Extended Data Fig. 3; assumption of its order)"),
    "open_loop_pulses": ("pulses", 1.0, "write pulses of a device programmed without verification (one pulse to "
                                        "its target; assumption, the lower bound)"),
    "parallel_writes": ("devices", 1, "devices programmed at once (SWIM's and TSB's cost counts verified "
                                      "devices one after another)"),
    "backward_factor": ("x forward", 2.0, "a tuning step's backward pass costs twice its forward (Kaplan et al., "
                                          "'Scaling laws for neural language models', 2020, section 2.1)"),
}
_INPUT_MODES = ("parallel", "bit_serial")
_COUNTS = ("digital_lanes", "ideal_bits", "columns_per_adc", "parallel_writes")  # integers >= 1


@dataclass(frozen=True)
class Technology:
    """The constants of the cost model, one attribute per key of :data:`KEYS` (units and sources there).

    Raises:
        SettingError: naming the key: an ``input_mode`` other than ``"parallel"`` or ``"bit_serial"``, an
            ``input_activity`` above 1, a negative or non-finite number, a zero read time, clock, sample rate,
            feature size, write time or ``open_loop_pulses``, ``verify_pulses`` below ``open_loop_pulses``,
            ``g_off`` above ``g_on``, a count (``columns_per_adc``, ...) below 1 or not
            an integer (``columns_per_adc`` below 1 would be more ADCs than columns), ``ideal_bits`` above 32,
            ``tile_columns`` not None or an integer >= 1.
    """

    feature_size: float = KEYS["feature_size"][1]
    cell_area_f2: float = KEYS["cell_area_f2"][1]
    g_on: float = KEYS["g_on"][1]
    g_off: float = KEYS["g_off"][1]
    read_voltage: float = KEYS["read_voltage"][1]
    read_time: float = KEYS["read_time"][1]
    adc_fom: float = KEYS["adc_fom"][1]
    adc_area_per_step: float = KEYS["adc_area_per_step"][1]
    adc_sample_rate: float = KEYS["adc_sample_rate"][1]
    dac_fom: float = KEYS["dac_fom"][1]
    dac_area_per_step: float = KEYS["dac_area_per_step"][1]
    digital_add: float = KEYS["digital_add"][1]
    digital_mult: float = KEYS["digital_mult"][1]
    clock: float = KEYS["clock"][1]
    digital_lanes: int = KEYS["digital_lanes"][1]
    ideal_bits: int = KEYS["ideal_bits"][1]
    tile_columns: int | None = KEYS["tile_columns"][1]
    columns_per_adc: int = KEYS["columns_per_adc"][1]
    input_mode: str = KEYS["input_mode"][1]
    input_activity: float = KEYS["input_activity"][1]
    array_periphery_area: float = KEYS["array_periphery_area"][1]
    array_periphery_energy: float = KEYS["array_periphery_energy"][1]
    interconnect_area: float = KEYS["interconnect_area"][1]
    buffer_energy: float = KEYS["buffer_energy"][1]
    interconnect_energy: float = KEYS["interconnect_energy"][1]
    write_voltage: float = KEYS["write_voltage"][1]
    write_time: float = KEYS["write_time"][1]
    verify_pulses: float = KEYS["verify_pulses"][1]
    open_loop_pulses: float = KEYS["open_loop_pulses"][1]
    parallel_writes: int = KEYS["parallel_writes"][1]
    backward_factor: float = KEYS["backward_factor"][1]

    def __post_init__(self) -> None:
        positive = ("feature_size", "read_time", "clock", "adc_sample_rate", "write_time", "g_on", "open_loop_pulses")
        for key in KEYS:
            value = getattr(self, key)
            if key == "tile_columns" and value is None:
                continue
            if key == "input_mode":
                if value not in _INPUT_MODES:
                    raise SettingError(key, f"technology key input_mode must be one of {', '.join(_INPUT_MODES)}, "
                                            f"got {value!r}")
                continue
            if key == "ideal_bits" and isinstance(value, int) and not isinstance(value, bool) and value > 32:
                raise SettingError(key, f"technology key ideal_bits must be at most 32, as a converter's bits, got "
                                        f"{value!r}")
            if key in _COUNTS or key == "tile_columns":
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    more = " (below 1 would be more ADCs than columns)" if key == "columns_per_adc" else ""
                    raise SettingError(key, f"technology key {key} must be an integer >= 1 ({KEYS[key][0]}){more}, "
                                            f"got {value!r}")
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or value < 0 or (key in positive and value == 0):
                bound = "> 0" if key in positive else ">= 0"
                raise SettingError(key, f"technology key {key} must be a finite number {bound} ({KEYS[key][0]}), "
                                        f"got {value!r}")
        if self.input_activity > 1:
            raise SettingError("input_activity", f"technology key input_activity is a fraction of input bits, "
                                                 f"0 to 1, got {self.input_activity!r}")
        if self.verify_pulses < self.open_loop_pulses:  # named: the key moved from its default
            moved = "verify_pulses" if self.verify_pulses != KEYS["verify_pulses"][1] else "open_loop_pulses"
            raise SettingError(moved, f"technology key verify_pulses ({self.verify_pulses:g}) must be at "
                                                f"least open_loop_pulses ({self.open_loop_pulses:g}): a verified "
                                                "device is written at least as often as an unverified one")
        if self.g_off > self.g_on:
            raise SettingError("g_off", f"technology key g_off ({self.g_off:g} S) must not exceed g_on "
                                        f"({self.g_on:g} S): g_off is the lowest conductance of a device")

    @property
    def node(self) -> str:
        """The node's name from ``feature_size``, e.g. ``"45 nm CMOS"``."""
        return f"{self.feature_size * 1e9:.4g} nm CMOS"

    @property
    def adc_time(self) -> float:
        """Seconds per ADC conversion, ``1 / adc_sample_rate``."""
        return 1.0 / self.adc_sample_rate

    def to_dict(self) -> dict:
        """``{key: value}`` for every key, JSON-ready."""
        return dataclasses.asdict(self)


def technology(source: str | Path | dict | Technology | None = None, **overrides) -> Technology:
    """The checked :class:`Technology`: the defaults of :data:`KEYS`, then ``source`` (a ``.toml`` or ``.json`` file
    path, or a dict; keys at the top, under ``technology``, or both), then ``overrides`` by key.

    Raises:
        SettingError: an unknown key (named, with the known ones), a key both at the top and under ``technology``,
            a bad value (:class:`Technology`), or (setting ``technology``) a file that is not valid TOML / JSON or
            does not hold a table of keys, that does not end in ``.toml`` or ``.json``, or that does not exist.
    """
    if isinstance(source, Technology):
        values = source.to_dict()
    elif source is None:
        values = {}
    elif isinstance(source, dict):
        values = dict(source)
    else:
        path = Path(source)
        if path.suffix.lower() not in (".toml", ".json"):
            raise SettingError("technology", f"technology file {path} must end in .toml or .json (its format)")
        if not path.is_file():
            raise SettingError("technology", f"technology file {path} does not exist or is not a file")
        text = path.read_text()
        try:
            values = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
        except (tomllib.TOMLDecodeError, json.JSONDecodeError) as error:
            raise SettingError("technology", f"technology file {path} is not valid "
                                             f"{'TOML' if path.suffix.lower() == '.toml' else 'JSON'}: {error}") \
                from None
        if not isinstance(values, dict):
            raise SettingError("technology", f"technology file {path} must hold a table of keys (e.g. adc_fom = "
                                             f"5e-15), got {type(values).__name__}")
    values = dict(values)
    if isinstance(values.get("technology"), dict):  # a [technology] table, with or without keys at the top
        table = values.pop("technology")
        both = sorted(set(table) & set(values))
        if both:
            raise SettingError(both[0], f"technology key {both[0]!r} is given both at the top and under "
                                        "[technology]; give it once")
        values |= table
    values |= overrides
    unknown = sorted(set(values) - set(KEYS))
    if unknown:
        raise SettingError(unknown[0], f"unknown technology key {unknown[0]!r}; the keys are {', '.join(KEYS)}")
    return Technology(**values)
