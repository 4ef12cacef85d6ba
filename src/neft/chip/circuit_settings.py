"""The crossbar circuit's settings (docs/method.md, 'The crossbar circuit'): tiles, DAC and ADC bits, the converters'
calibration percentile, the ADC mode and read noise per read, their checks, and the fields that ``EvalConfig`` and
``TrainConfig`` carry.
"""

from __future__ import annotations

from dataclasses import dataclass

from neft.chip.device_checks import check_sigma
from neft.common.errors import SettingError

__all__ = ["CircuitSettings", "settings_of", "ADC_MODES", "FIELDS", "CALIBRATION_IMAGES"]

ADC_MODES = ("analog", "sliced")
FIELDS = ("tile_rows", "dac_bits", "adc_bits", "adc_range", "adc_mode")  # the settings EvalConfig/TrainConfig carry
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
class CircuitSettings:
    """The crossbar circuit of a chip (docs/method.md, 'The crossbar circuit'); every field off by default.

    Attributes:
        tile_rows: crossbar rows per tile (>= 1); None: one tile per layer (as many rows as its input).
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
    """

    tile_rows: int | None = None
    dac_bits: int | None = None
    adc_bits: int | None = None
    adc_range: float = 100.0
    read_sigma: float = 0.0
    adc_mode: str = "analog"
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
            raise SettingError("adc_range", f"adc_range {self.adc_range:g} sets the converters' full scale, so it "
                                            "needs dac_bits or adc_bits: set one, or leave adc_range at 100")
        self.read_sigma = check_sigma(self.read_sigma, "read_sigma")
        if not isinstance(self.read_1f, bool):
            raise SettingError("read_noise_1f_per_read", f"read_noise_1f_per_read must be true or false, got "
                                                         f"{self.read_1f!r}")
        return self

    @property
    def calibrated(self) -> bool:
        """Whether a converter needs a range calibration (DAC or ADC on)."""
        return self.dac_bits is not None or self.adc_bits is not None

    @property
    def active(self) -> bool:
        """Whether any circuit effect changes a result (tiles alone only reorder float sums: not active)."""
        return self.calibrated or self.reads

    @property
    def reads(self) -> bool:
        """Whether noise is drawn per read (``read_sigma`` > 0 or the 1/f read noise per read)."""
        return self.read_sigma > 0 or self.read_1f

    def names(self) -> list[str]:
        """The names of the settings that are on (``adc_bits``, ``dac_bits``, ``read_sigma``, ``tile_rows``)."""
        on = {"adc_bits": self.adc_bits is not None, "dac_bits": self.dac_bits is not None,
              "read_sigma": self.read_sigma > 0, "read_noise_1f_per_read": self.read_1f,
              "tile_rows": self.tile_rows is not None}
        return [name for name, value in on.items() if value]

    def label(self) -> str:
        """The non-default settings as a report suffix, e.g. ``" tile=128 adc=6b"``; empty when off."""
        parts = [f"tile={self.tile_rows}" if self.tile_rows is not None else "",
                 f"dac={self.dac_bits}b" if self.dac_bits is not None else "",
                 f"adc={self.adc_bits}b" if self.adc_bits is not None else "",
                 "sliced" if self.adc_bits is not None and self.adc_mode == "sliced" else "",
                 f"range=p{self.adc_range:g}" if self.calibrated and self.adc_range < 100 else ""]
        return "".join(f" {p}" for p in parts if p)


def settings_of(config, read_sigma: float = 0.0, read_1f: bool = False) -> CircuitSettings:
    """The checked :class:`CircuitSettings` of an ``EvalConfig`` or ``TrainConfig`` (its :data:`FIELDS`).

    Raises:
        SettingError: as :meth:`CircuitSettings.check`.
    """
    return CircuitSettings(**{name: getattr(config, name) for name in FIELDS}, read_sigma=read_sigma,
                           read_1f=read_1f).check()
