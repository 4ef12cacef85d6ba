"""The crossbar circuit's settings (docs/method.md, 'The crossbar circuit'): tiles, DAC and ADC bits, the converters'
calibration percentile, the ADC mode and read noise per read, their checks, and the fields that ``EvalConfig`` and
``TrainConfig`` carry.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from neft.chip.device_checks import check_sigma
from neft.chip.periphery_settings import check_periphery, periphery_label, periphery_names
from neft.common.errors import FLOAT32_MAX, SettingError, check_number

__all__ = ["CircuitSettings", "CircuitFields", "settings_of", "ADC_MODES", "FIELDS", "CALIBRATION_IMAGES", "ADC_ERRORS",
           "TILE_SPLITS", "tile_ranges"]

ADC_MODES = ("analog", "sliced")
TILE_SPLITS = ("fill", "equal")  # tiles of tile_rows rows and the rest / equal tiles of at most tile_rows (aihwkit)
ADC_ERRORS = ("adc_offset", "adc_gain", "adc_inl", "adc_mismatch")  # per-ADC errors drawn per chip (adc_circuit)
MAX_WIRE_RESISTANCE = 0.1  # wire over device resistance: beyond it a tile of even 2 x 2 cells loses most of its current
CALIBRATION_IMAGES = 256  # training images that calibrate the converter ranges of a run (neft evaluate, neft train)

MIN_BITS, MAX_BITS = 2, 32  # the fewest and the most bits of a DAC or ADC


def _check_bits(setting: str, value) -> int | None:
    """``value`` of ``setting`` (``dac_bits`` or ``adc_bits``) if it is None or an integer of bits from 2 to 32.

    Raises:
        SettingError: naming ``setting``; 1 bit is refused: a signed 1-bit converter has the codes -1 and 0 only
            (every positive value would read 0), and a DAC is signed as soon as a layer's calibration inputs are.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not MIN_BITS <= value <= MAX_BITS:
        one = (" (a signed 1-bit converter has the codes -1 and 0 only, so every positive value would read 0; a "
               "DAC is signed on any layer whose inputs are, e.g. the first layer's normalised images)"
               if value == 1 else "")
        raise SettingError(setting, f"{setting} must be an integer from {MIN_BITS} to {MAX_BITS} (bits of the "
                                    f"converter) or None (ideal, no quantization), got {value!r}{one}")
    return value


@dataclass
class CircuitFields:
    """The crossbar circuit's settings that ``EvalConfig``, ``TrainConfig`` and :class:`CircuitSettings` carry
    (:data:`FIELDS`), each documented in :class:`CircuitSettings`; all off by default."""

    tile_rows: int | None = None
    dac_bits: int | None = None
    adc_bits: int | None = None
    adc_range: float = 100.0
    adc_mode: str = "analog"
    wire_resistance: float = 0.0
    adc_offset: float = 0.0
    adc_gain: float = 0.0
    adc_inl: float = 0.0
    adc_mismatch: float = 0.0
    out_noise: float = 0.0
    input_management: str = "none"
    bound_management: str = "none"
    out_bound: float | None = None
    weight_scaling: str = "layer"
    converter_codes: str = "twos_complement"
    drift_compensation_at: str = "weights"
    tile_split: str = "fill"
    tile_mapping: str = "layer"
    compensation_readout: str = "weights"


FIELDS = tuple(field.name for field in fields(CircuitFields))  # the settings EvalConfig/TrainConfig carry


@dataclass
class CircuitSettings(CircuitFields):
    """The crossbar circuit of a chip (docs/method.md, 'The crossbar circuit'); every field off by default.

    Attributes:
        tile_rows: crossbar rows per tile (>= 1); None: one tile per layer (as many rows as its input).
        tile_split: how a layer of more than ``tile_rows`` inputs is split (:func:`tile_ranges`): ``"fill"``
            (default: full tiles of ``tile_rows`` and the rest, 576 -> 512 + 64) or ``"equal"`` (as few tiles,
            of equal sizes, 576 -> 288 + 288: aihwkit's ``TileModuleArray.get_split_sizes``).
        dac_bits: input DAC resolution in bits (2-32); None: ideal inputs.
        adc_bits: ADC resolution in bits (2-32) of each tile's partial sums; None: ideal (float) sums.
        adc_mode: ``"analog"`` (one ADC per column reads the analog sum of a weight's devices) or ``"sliced"``
            (one ADC per bit slice, then shift and add; the slices are the device digits of the layer's
            ``weight_bits``/``device_bits`` mapping, :func:`slices`).
        adc_range: percentile of the calibration magnitudes that sets the DAC and ADC full scale, in (0, 100]
            (100: the maximum, nothing clipped on the calibration images).
        read_sigma: read noise per read, relative to the conductance range like sigma, in [0, 1].
        read_1f: the device model's 1/f read noise drawn per read (``DeviceModel.read_noise_1f_per_read``), its
            variance added to ``read_sigma``'s.
        wire_resistance: resistance of the wire segment between neighbouring cells over the on-state resistance
            ``1 / g_max`` of a device (CrossSim's ``Rp_row / Rmin`` = ``Rp_col / Rmin``), in [0, 0.1]; > 0 gives
            every tile IR drop (:mod:`neft.chip.ir_drop`; needs ``tile_rows``). 0: ideal wires.
        adc_offset, adc_gain, adc_inl, adc_mismatch: standard deviations of each ADC's offset (LSB), relative gain
            error, mid-scale integral nonlinearity (LSB) and SAR capacitor mismatch (relative to a unit capacitor),
            drawn per ADC and chip from the chip's seed (:mod:`neft.chip.adc_circuit`; need ``adc_bits``). 0: ideal.
        out_noise, input_management, bound_management, out_bound, weight_scaling, converter_codes,
            drift_compensation_at: the periphery
            as aihwkit's ``IOParameters`` run it (:mod:`neft.chip.periphery_settings`; docs/method.md, 'The
            periphery'): output noise per read, per-vector input scaling, iterative bound management, a fixed
            output bound, per-column weight scaling and symmetric sign-magnitude converter codes. All off by
            default (no output noise, the static input range, no bound management, no fixed bound, the layer's
            max |W|, two's-complement codes, drift compensation on the weights).
    """

    read_sigma: float = 0.0
    read_1f: bool = False

    def check(self) -> CircuitSettings:
        """Validate every field; returns self.

        Raises:
            SettingError: naming the bad setting (``tile_rows`` < 1, bits outside 2-32, a percentile outside
                (0, 100], a read sigma outside [0, 1], ``adc_mode="sliced"`` without ``adc_bits``, an
                ``adc_range`` below 100 without a DAC or ADC).
        """
        if self.tile_rows is not None and (isinstance(self.tile_rows, bool) or not isinstance(self.tile_rows, int)
                                           or self.tile_rows < 1):
            raise SettingError("tile_rows", f"tile_rows must be an integer >= 1 (crossbar rows per tile, e.g. 128) "
                                            f"or None (one tile per layer), got {self.tile_rows!r}")
        if self.tile_split not in TILE_SPLITS:
            raise SettingError("tile_split", f"unknown tile_split {self.tile_split!r}; choose one of "
                                             f"{', '.join(TILE_SPLITS)}")
        if self.tile_split != "fill" and self.tile_rows is None:
            raise SettingError("tile_split", "tile_split sets how a layer is split into tiles of at most tile_rows "
                                             "rows, so it needs tile_rows (e.g. 512): set tile_rows, or leave "
                                             "tile_split 'fill'")
        self.dac_bits = _check_bits("dac_bits", self.dac_bits)
        self.adc_bits = _check_bits("adc_bits", self.adc_bits)
        if isinstance(self.adc_range, bool) or not (isinstance(self.adc_range, (int, float))
                                                    and 0 < self.adc_range <= 100):
            raise SettingError("adc_range", f"adc_range is the percentile of the calibration magnitudes that sets "
                                            f"the converters' full scale, in (0, 100] (100 = max), got "
                                            f"{self.adc_range!r}")
        self.adc_range = float(self.adc_range)
        if self.adc_mode not in ADC_MODES:
            raise SettingError("adc_mode", f"unknown adc_mode {self.adc_mode!r}; choose one of {', '.join(ADC_MODES)}")
        if self.adc_mode == "sliced" and self.adc_bits is None:
            raise SettingError("adc_mode", "adc_mode 'sliced' sets how the ADC reads the bit slices, so it needs "
                                           "adc_bits (e.g. --adc-bits 6): set adc_bits, or leave adc_mode 'analog'")
        if self.adc_range != 100 and not self.calibrated:
            raise SettingError("adc_range", f"adc_range {self.adc_range:g} sets the full scale a converter "
                                            "calibrates, so it needs dac_bits (without per-vector input scaling) or "
                                            "adc_bits (without out_bound): set one, or leave adc_range at 100")
        self.read_sigma = check_sigma(self.read_sigma, "read_sigma")
        if not isinstance(self.read_1f, bool):
            raise SettingError("read_noise_1f_per_read", f"read_noise_1f_per_read must be true or false, got "
                                                         f"{self.read_1f!r}")
        check_periphery(self)
        _check_circuits(self)
        return self

    @property
    def adc_errors(self) -> bool:
        """Whether any ADC error is drawn per chip (:data:`ADC_ERRORS`)."""
        return any(getattr(self, name) > 0 for name in ADC_ERRORS)

    @property
    def converters(self) -> bool:
        """Whether a converter is on (DAC or ADC)."""
        return self.dac_bits is not None or self.adc_bits is not None

    @property
    def calibrated(self) -> bool:
        """Whether a converter's full scale is calibrated on clean inputs: a DAC of one range per layer (not scaled
        per input vector, ``input_management="abs_max"``), an ADC without a fixed ``out_bound``. aihwkit's periphery
        (per-vector inputs, output bound 12) calibrates nothing and needs no calibration images."""
        return ((self.dac_bits is not None and self.input_management != "abs_max")
                or (self.adc_bits is not None and self.out_bound is None))

    @property
    def active(self) -> bool:
        """Whether any circuit effect changes a result (tiles alone only reorder float sums: not active)."""
        return self.converters or self.reads or self.managed or self.wire_resistance > 0

    @property
    def managed(self) -> bool:
        """Whether a periphery setting is on (:mod:`neft.chip.periphery_settings`): the layers then run through
        :func:`neft.chip.periphery.managed_output`."""
        return bool(periphery_names(self))

    @property
    def reads(self) -> bool:
        """Whether noise is drawn per read (``read_sigma`` > 0, the 1/f read noise per read, or output noise): each
        chip's reads are then keyed by its seed."""
        return self.read_sigma > 0 or self.read_1f or self.out_noise > 0

    def names(self) -> list[str]:
        """The names of the settings that are on (``adc_bits``, ``dac_bits``, ``read_sigma``, ``tile_rows``)."""
        on = {"adc_bits": self.adc_bits is not None, "dac_bits": self.dac_bits is not None,
              "read_sigma": self.read_sigma > 0, "read_noise_1f_per_read": self.read_1f,
              "wire_resistance": self.wire_resistance > 0, "tile_rows": self.tile_rows is not None}
        return periphery_names(self) + [name for name, value in on.items() if value]

    def label(self) -> str:
        """The non-default settings as a report suffix, e.g. ``" tile=128 adc=6b"``; empty when off."""
        parts = [f"tile={self.tile_rows}" if self.tile_rows is not None else "",
                 f"split={self.tile_split}" if self.tile_split != "fill" else "",
                 f"dac={self.dac_bits}b" if self.dac_bits is not None else "",
                 f"adc={self.adc_bits}b" if self.adc_bits is not None else "",
                 "sliced" if self.adc_bits is not None and self.adc_mode == "sliced" else "",
                 f"range=p{self.adc_range:g}" if self.calibrated and self.adc_range < 100 else "",
                 f"wire={self.wire_resistance:g}" if self.wire_resistance > 0 else "",
                 *[f"{name[4:]}={getattr(self, name):g}" for name in ADC_ERRORS if getattr(self, name) > 0],
                 *periphery_label(self)]
        return "".join(f" {p}" for p in parts if p)



def _check_circuits(settings: CircuitSettings) -> None:
    """Check ``wire_resistance`` and the ADC errors (:data:`ADC_ERRORS`).

    Raises:
        SettingError: a negative or non-finite value, a wire resistance above :data:`MAX_WIRE_RESISTANCE`, a
            gain error std of 0.5 or more, IR drop without ``tile_rows``, an ADC error without ``adc_bits``, IR drop
            or ADC errors with a periphery setting (:func:`neft.chip.periphery.managed_output` models neither).
    """
    settings.wire_resistance = check_number(
        "wire_resistance", settings.wire_resistance,
        f"a wire-to-device resistance ratio in [0, {MAX_WIRE_RESISTANCE}] (e.g. 1e-4: a 1 ohm wire segment per cell "
        "next to a 10 kohm device)",
        lambda v: 0 <= v <= MAX_WIRE_RESISTANCE)
    if settings.wire_resistance > 0 and settings.tile_rows is None:
        raise SettingError("wire_resistance", "wire_resistance gives every tile IR drop, which depends on the "
                                              "tile's size, so it needs tile_rows (e.g. 128): set tile_rows, or "
                                              "leave wire_resistance at 0")
    for name in ADC_ERRORS:
        limit = 0.5 if name == "adc_gain" else FLOAT32_MAX
        value = check_number(name, getattr(settings, name), "a standard deviation >= 0" + (
            " and < 0.5 (a relative gain error)" if name == "adc_gain" else ""), lambda v: 0 <= v < limit)
        setattr(settings, name, value)
        if value > 0 and settings.adc_bits is None:
            raise SettingError(name, f"{name} is an error of each ADC, so it needs adc_bits (e.g. 8): set "
                                     f"adc_bits, or leave {name} at 0")
    if settings.managed and (settings.wire_resistance > 0 or settings.adc_errors):
        setting = periphery_names(settings)[0]
        raise SettingError(setting, f"{setting} runs the layers through the managed periphery, which does not "
                                    f"model IR drop or the ADCs' own errors yet: leave {setting} off, or set "
                                    "wire_resistance and the adc_offset/gain/inl/mismatch errors to 0")


def tile_ranges(rows: int, tile_rows: int | None, split: str = "fill") -> list[tuple[int, int]]:
    """The row ranges ``[(r0, r1), ...]`` of the tiles of a layer with ``rows`` inputs (crossbar rows).

    ``tile_rows`` None: one tile. ``split="fill"``: tiles of ``tile_rows`` rows and the rest (576 rows, 512 per
    tile: 512 + 64). ``"equal"``: ``n = ceil(rows / tile_rows)`` tiles whose sizes differ by at most one, the
    larger first (576: 288 + 288; 1152: 384 x 3; 1000: 334 + 333 + 333), aihwkit 1.2's
    ``TileModuleArray.get_split_sizes`` (``aihwkit/simulator/tiles/array.py``) with ``max_input_size = tile_rows``.
    """
    size = rows if tile_rows is None else tile_rows
    if split == "fill":
        return [(start, min(start + size, rows)) for start in range(0, rows, size)]
    count = -(-rows // size)
    base, extra = divmod(rows, count)
    ends = [0]
    for tile in range(count):
        ends.append(ends[-1] + base + (tile < extra))
    return list(zip(ends[:-1], ends[1:]))


def settings_of(config, read_sigma: float = 0.0, read_1f: bool = False) -> CircuitSettings:
    """The checked :class:`CircuitSettings` of an ``EvalConfig`` or ``TrainConfig`` (its :data:`FIELDS`), or of
    any object with some of them, e.g. a results file's ``evaluation`` record: a field it lacks (written before the
    setting existed) is off.

    Raises:
        SettingError: as :meth:`CircuitSettings.check`.
    """
    off = CircuitSettings()
    return CircuitSettings(**{name: getattr(config, name, getattr(off, name)) for name in FIELDS},
                           read_sigma=read_sigma, read_1f=read_1f).check()
