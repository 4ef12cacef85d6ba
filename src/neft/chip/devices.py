"""NVM device variation models: how a relative device variation sigma becomes a weight perturbation.

A weight of ``weight_bits`` bits is stored on ``weight_bits / device_bits`` devices; device ``j`` carries
significance ``2**(j * device_bits)``. Each device deviates from its programmed conductance by a zero-mean
Gaussian whose standard deviation is ``sigma`` times that device's full conductance range (device-to-device
variation). Summed over the devices of one weight this is an additive Gaussian weight perturbation
(docs/method.md, 'Device variation model'):

    std_W = sigma * max|W| * sqrt(sum_j 4**(j K)) / sum_j 2**(j K)        (0.77763 * sigma * max|W| for 8/2 bits)

State-dependent variation: weights in the intermediate conductance band ``lo < |w| / max|W| < hi`` vary ``s``
times more than the edge states, with the overall sigma rescaled by ``1 / sqrt(0.4 s^2 + 0.6)`` so the
population-average variance stays at sigma when 40 % of the weights are intermediate ([release];
docs/method.md, 'State-dependent variation and presets'). A measured per-state table
(``levels``) replaces the band model when a user has characterised their own chip.

A realistic chip (``quantize = True``, docs/method.md, 'The realistic chip'): every weight is quantized to
``weight_bits`` levels and stored digit by digit on a differential pair of device rows (:mod:`neft.chip.mapping`); its
devices then carry programming variation, stuck-at faults and conductance drift, frozen per chip
(:mod:`neft.chip.effects`). With ``quantize = False`` (the default) none of these apply and chips are the Gaussian model
above, bit for bit.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from neft.common.errors import SettingError, check_count, check_number

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["DeviceModel", "PRESETS", "PRESET_SOURCES", "get", "from_file", "check_sigma", "check_rate", "check_time",
           "MAX_SIGMA", "DRIFT_T0"]

MAX_BITS = 64  # bits per weight or device: beyond, the significances 2**(j K) overflow float64
MAX_SIGMA = 1.0  # sigma above the conductance range itself describes no programmable device (check_sigma)
DRIFT_T0 = 20.0  # s, the first read after programming that drift counts from (aihwkit PCMLikeNoiseModel t_0 = 20 s)


def check_sigma(sigma: float, name: str = "sigma") -> float:
    """Return ``sigma`` as a float after checking it is a relative device variation in [0, ``MAX_SIGMA``].

    sigma is each device's conductance std as a fraction of its conductance range (docs/method.md, 'Device
    variation model'). Above 1 the std would exceed the whole range, so a programmed device would land anywhere
    in it: no memory stores a weight that way (the paper studies 0-0.4).

    Raises:
        SettingError: (a ``ValueError``) if sigma is not a number (a bool included), is NaN or infinite, negative, or above
            ``MAX_SIGMA`` = 1.
    """
    try:
        if isinstance(sigma, bool):  # True would read as sigma 1
            raise TypeError
        value = float(sigma)
    except (TypeError, ValueError, OverflowError):
        raise SettingError(name, f"{name} must be a number such as 0.1 (relative device variation), "
                                 f"got {sigma!r}") from None
    if not math.isfinite(value) or value < 0:
        raise SettingError(name, f"{name} must be a finite number >= 0 (relative device variation, e.g. 0.1 for "
                                 f"10 % of the conductance range), got {sigma!r}")
    if value > MAX_SIGMA:
        raise SettingError(name, f"{name} {value:g} is above {MAX_SIGMA:g}: sigma is the device std as a fraction "
                                 "of its conductance range, and a std above the whole range stores no weight; the "
                                 "paper studies 0-0.4 (did you mean a fraction, e.g. 0.1 for 10 %?)")
    return value


def check_rate(value, name: str) -> float:
    """Return ``value`` as a float after checking it is a probability per device in [0, 1].

    Raises:
        SettingError: (a ``ValueError``) naming ``name`` for a value that is not a number, NaN, negative or above 1.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise SettingError(name, f"{name} is the fraction of devices stuck, a number in [0, 1] (e.g. 0.01 for 1 %), "
                                 f"got {value!r}")
    return float(value)


def check_time(value, name: str) -> float:
    """Return ``value`` as a float after checking it is a finite time in seconds > 0.

    Raises:
        SettingError: (a ``ValueError``) naming ``name`` for a value that is not a finite number > 0.
    """
    return check_number(name, value, "a time in seconds after programming, a finite number > 0 (e.g. 3600 for "
                        "one hour)", lambda v: v > 0)


def _check_exponent(value, name: str) -> float:
    return check_number(name, value, "a drift exponent, a finite number >= 0 (PCM: about 0.05)", lambda v: v >= 0)


@dataclass(frozen=True)
class DeviceModel:
    """An immutable NVM device variation model (docs/method.md, 'Device variation model').

    Attributes:
        name: a label used in reports and checkpoints.
        weight_bits: bits per weight M (default 8).
        device_bits: bits stored per NVM device K (default 2); M must be a positive multiple of K.
        state_factor: s >= 1, how much more intermediate states vary than edge states (1 = state-independent).
        band: ``(lo, hi)`` edges of the intermediate band, as fractions of max|W| (default (0.25, 0.75)).
        levels: optional measured per-state std multipliers for equal-width bins of ``|w| / max|W|`` over
            [0, 1]; when given it replaces ``state_factor``/``band`` and is used as measured (no rescaling).
        read_sigma: read (cycle-to-cycle) noise, relative to the conductance range like sigma, in [0, 1]
            (default 0): Monte Carlo evaluation adds a fresh perturbation of std :meth:`std` ``(w, read_sigma)``
            on every forward on top of the chip's frozen programming noise (docs/method.md, 'Read noise').
            Training ignores it.
        quantize: store each weight as ``weight_bits``-level digits on a differential pair of device rows
            (:mod:`neft.chip.mapping`; docs/method.md, 'The realistic chip'); a chip's weight is then the dequantized
            level plus its devices' errors. False (default): the Gaussian model above, bit for bit.
        stuck_off, stuck_on: probability that a device is stuck at its lowest (off) or highest (on) conductance,
            each in [0, 1], sum <= 1; drawn per chip (:mod:`neft.chip.effects`). Needs ``quantize``.
        drift_nu_mean, drift_nu_std: conductance drift ``G(t) = G(t0) (t / t0) ** -nu`` with ``nu`` drawn per
            device from ``N(drift_nu_mean, drift_nu_std)`` and clipped at 0 (Joshi et al., Nature
            Communications 2020). Both >= 0; 0 and 0 (default): no drift. Needs ``quantize``.
        drift_t0: t0 in seconds, the read that drift counts from (default 20 s, as aihwkit).
        drift_time: the time in seconds after programming at which the chip is read (training and evaluation;
            ``EvalConfig.drift_time`` overrides it); None (default): at t0, no drift.
        drift_compensation: rescale each layer's outputs by one scalar measured on the chip with an all-ones
            calibration input, read at t0 over read at t (global drift compensation, aihwkit
            GlobalDriftCompensation). Needs ``quantize``.

    Raises:
        SettingError: (a ``ValueError`` naming the field) for bits that are not integers in [1, ``MAX_BITS``
            = 64], a ``state_factor`` below 1, band edges or levels that are not finite numbers (booleans
            included), or a read sigma that is not a finite number in [0, 1]; naming the chip setting for a
            stuck rate outside [0, 1] or rates summing above 1, a negative or NaN drift exponent or std, a time
            <= 0, a non-bool ``quantize``/``drift_compensation``, stuck devices, drift or compensation without
            ``quantize``, or a ``drift_time`` or compensation without drift.
        ValueError: for weight bits not a multiple of device bits, band edges outside ``0 <= lo < hi <= 1``.
    """

    name: str = "custom"
    weight_bits: int = 8
    device_bits: int = 2
    state_factor: float = 1.0
    band: tuple[float, float] = (0.25, 0.75)
    levels: tuple[float, ...] | None = field(default=None)
    read_sigma: float = 0.0
    quantize: bool = False
    stuck_off: float = 0.0
    stuck_on: float = 0.0
    drift_nu_mean: float = 0.0
    drift_nu_std: float = 0.0
    drift_t0: float = DRIFT_T0
    drift_time: float | None = None
    drift_compensation: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "read_sigma", check_sigma(self.read_sigma, "read_sigma"))
        for attr in ("weight_bits", "device_bits"):  # 2**64 levels: beyond that bit_factor overflows float64
            check_count(attr, getattr(self, attr), 1, "bits per weight or per device", maximum=MAX_BITS)
        self._check_chip()
        if self.weight_bits % self.device_bits:
            raise ValueError(
                f"weight_bits ({self.weight_bits}) must be a positive multiple of device_bits "
                f"({self.device_bits}): each weight is split over whole devices; e.g. use 8 and 2, 8 and 4, or 6 and 2"
            )
        check_number("state_factor", self.state_factor, "a finite number >= 1 (1 = state-independent)",
                     lambda v: v >= 1)
        if isinstance(self.band, (str, bytes)) or len(self.band) != 2:
            raise SettingError("band", f"band must be two fractions of max|W| [lo, hi], got {self.band!r}")
        lo, hi = (check_number("band", v, "two fractions of max|W| with 0 <= lo < hi <= 1") for v in self.band)
        if not 0 <= lo < hi <= 1:
            raise ValueError(f"band must satisfy 0 <= lo < hi <= 1 (fractions of max|W|), got {self.band!r}")
        object.__setattr__(self, "band", (float(lo), float(hi)))
        if self.levels is not None:
            valid = "a non-empty list of finite positive std multipliers"
            levels = tuple(check_number("levels", v, valid, lambda v: v > 0) for v in self.levels)
            if not levels:
                raise SettingError("levels", f"levels must be {valid}, got {self.levels!r}")
            object.__setattr__(self, "levels", levels)

    def _check_chip(self) -> None:
        """Check the realistic-chip settings (docs/method.md, 'The realistic chip')."""
        for name in ("quantize", "drift_compensation"):
            if not isinstance(getattr(self, name), bool):
                raise SettingError(name, f"{name} must be true or false, got {getattr(self, name)!r}")
        for name in ("stuck_off", "stuck_on"):
            object.__setattr__(self, name, check_rate(getattr(self, name), name))
        if self.stuck_off + self.stuck_on > 1:
            raise SettingError("stuck_on", f"stuck_off + stuck_on = {self.stuck_off + self.stuck_on:g} is above 1: "
                                           "they are the fractions of devices stuck off and stuck on")
        for name in ("drift_nu_mean", "drift_nu_std"):
            object.__setattr__(self, name, _check_exponent(getattr(self, name), name))
        object.__setattr__(self, "drift_t0", check_time(self.drift_t0, "drift_t0"))
        if self.drift_time is not None:
            object.__setattr__(self, "drift_time", check_time(self.drift_time, "drift_time"))
        if not self.quantize:
            needs = [name for name in ("stuck_off", "stuck_on", "drift_nu_mean", "drift_nu_std", "drift_compensation")
                     if getattr(self, name)]
            if needs:
                raise SettingError(needs[0], f"{needs[0]} acts on the devices of the quantized mapping, so it needs "
                                             "quantize = true (--quantize): set quantize, or leave "
                                             f"{', '.join(needs)} at 0/false")
        if self.drift_time is not None and not self.drifts:
            raise SettingError("drift_time", f"drift_time {self.drift_time:g} s has no effect: devices drift only "
                                             "with drift_nu_mean or drift_nu_std > 0 (and quantize = true); set "
                                             "them (e.g. --device-model PCM-chip) or leave drift_time unset")
        if self.drift_compensation and self.quantize and not self.drifts:
            raise SettingError("drift_compensation", "drift_compensation rescales drifted conductances, so it "
                                                     "needs drift (drift_nu_mean or drift_nu_std > 0): set one, or "
                                                     "leave drift_compensation off")
        if self.quantize and self.weight_bits > 24:
            raise SettingError("weight_bits", f"quantize = true supports weight_bits <= 24 (float32 holds every "
                                              f"level exactly), got {self.weight_bits}")

    def with_chip(self, **settings) -> DeviceModel:
        """This model with the realistic-chip settings ``settings`` (``quantize``, ``stuck_off``, ... by name)
        replacing its own; ``quantize=False`` turns its whole realistic chip off first (:attr:`gaussian`), so that
        a preset's stuck devices and drift go with its quantization.

        Raises:
            SettingError: an invalid setting or combination (e.g. stuck devices given with ``quantize=False``).
        """
        base = self.gaussian if settings.get("quantize") is False else self
        return dataclasses.replace(base, **settings) if settings else self

    @property
    def gaussian(self) -> DeviceModel:
        """This model without the realistic chip (``quantize`` off, no stuck devices, drift or compensation): the
        Gaussian model its read noise is drawn from."""
        return dataclasses.replace(self, quantize=False, stuck_off=0.0, stuck_on=0.0, drift_nu_mean=0.0,
                                   drift_nu_std=0.0, drift_time=None, drift_compensation=False)

    @property
    def drifts(self) -> bool:
        """True when devices drift (a drift exponent is set); the chip is then read at ``drift_time``."""
        return self.drift_nu_mean > 0 or self.drift_nu_std > 0

    @property
    def devices_per_weight(self) -> int:
        """Number of NVM devices n = M / K that store one weight."""
        return self.weight_bits // self.device_bits

    @property
    def bit_factor(self) -> float:
        """``sqrt(sum_j 4**(jK)) / sum_j 2**(jK)``: std of a weight per unit sigma and unit max|W| (docs/method.md)."""
        k, n = self.device_bits, self.devices_per_weight
        return math.sqrt(sum(4 ** (j * k) for j in range(n))) / sum(2 ** (j * k) for j in range(n))

    @property
    def multipliers(self) -> tuple[float, float]:
        """(edge, intermediate) std multipliers relative to the state-independent std_W(sigma)."""
        s = self.state_factor
        edge = 1.0 / math.sqrt(0.4 * s * s + 0.6)
        return edge, edge * s

    @property
    def state_independent(self) -> bool:
        """True when every weight of a layer gets the same std (state factor 1, no measured levels)."""
        return self.levels is None and self.state_factor == 1.0

    def _scale(self, weight: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(detached weight, max|W|, std_W(sigma) = sigma * bit_factor * max|W|) of one layer (docs/method.md)."""
        sigma = check_sigma(sigma)
        w = weight.detach()
        w_max = w.abs().amax() if w.numel() else w.new_zeros(())
        if not torch.isfinite(w_max):
            raise ValueError("weight contains NaN or infinite values; check the model's parameters before perturbing")
        return w, w_max, sigma * self.bit_factor * w_max

    def std(self, weight: torch.Tensor, sigma: float) -> torch.Tensor:
        """Per-element standard deviation of the weight perturbation.

        Args:
            weight: any shape, the clean weights of one crossbar-mapped layer (max|W| is taken over all of it
                and carries no gradient).
            sigma: relative device variation (fraction of a device's conductance range), >= 0.

        Returns:
            Tensor of ``weight``'s shape and dtype, in weight units; all zeros when ``weight`` is all zero.

        Raises:
            ValueError: for negative, NaN or infinite sigma, or NaN/infinite weights.
        """
        w, w_max, scale = self._scale(weight, sigma)
        if self.state_independent:
            return scale.expand_as(w).clone()
        ratio = w.abs() / torch.where(w_max > 0, w_max, torch.ones_like(w_max))
        if self.levels is not None:
            table = torch.tensor(self.levels, dtype=w.dtype, device=w.device)
            index = (ratio * len(self.levels)).long().clamp_(0, len(self.levels) - 1)
            return scale * table[index]
        edge, middle = self.multipliers
        lo, hi = self.band
        intermediate = (ratio > lo) & (ratio < hi)
        return scale * torch.where(intermediate, torch.full_like(w, middle), torch.full_like(w, edge))

    def sample(self, weight: torch.Tensor, sigma: float, generator: torch.Generator | None = None,
               censor_k: float | None = None) -> torch.Tensor:
        """Draw one additive perturbation of ``weight`` (one programmed chip for this layer).

        Args:
            weight: clean weights, any shape.
            sigma: relative device variation, >= 0.
            generator: the ``torch.Generator`` to draw from (on ``weight``'s device); the same generator state
                gives the same perturbation.
            censor_k: right-censor the draw at ``+censor_k`` standard deviations: every element above
                ``censor_k * std(w)`` is set to it, ``dW = min(z, censor_k) * std(w)`` with ``z ~ N(0, 1)``
                (right-censored Gaussian noise, Yan et al., ICCAD 2023; docs/method.md, 'RCG'). ``None``
                (default): the plain Gaussian, bit-identical to a call without it.

        Returns:
            Perturbation ``dW`` of ``weight``'s shape (add it to the weights); exactly zero when sigma is 0.

        Raises:
            ValueError: as :meth:`std`.
        """
        std = self._scale(weight, sigma)[2] if self.state_independent else self.std(weight, sigma)
        noise = torch.randn(weight.shape, generator=generator, dtype=weight.dtype, device=weight.device)
        if censor_k is not None:
            noise.clamp_(max=censor_k)
        return noise.mul_(std)

    def to_dict(self) -> dict:
        """Plain JSON-serialisable description (the format :func:`from_file` reads)."""
        data = asdict(self)
        data["band"] = list(self.band)
        if self.levels is None:
            del data["levels"]
        else:
            data["levels"] = list(self.levels)
        return data


PRESETS: dict[str, DeviceModel] = {
    "RRAM1": DeviceModel("RRAM1", state_factor=1.0),
    "FeFET2": DeviceModel("FeFET2", state_factor=2.0),
    "RRAM4": DeviceModel("RRAM4", state_factor=4.0),
    "FeFET6": DeviceModel("FeFET6", state_factor=6.0),
    "RRAM-chip": DeviceModel("RRAM-chip", quantize=True, stuck_off=0.0175, stuck_on=0.0904),
    "PCM-chip": DeviceModel("PCM-chip", quantize=True, drift_nu_mean=0.06, drift_nu_std=0.02,
                            drift_compensation=True),
}

# Where every number of a preset comes from (``neft devices`` prints it; docs/method.md, 'Realistic presets').
PRESET_SOURCES: dict[str, str] = {
    "RRAM1": "state-independent variation, 8/2 bits (NeFT, Qin et al. 2023, and its release)",
    "FeFET2": "intermediate states vary 2x (the release's FeFET2)",
    "RRAM4": "intermediate states vary 4x (the release's RRAM4)",
    "FeFET6": "intermediate states vary 6x (the release's FeFET6)",
    "RRAM-chip": "8/2-bit quantized differential mapping; stuck_off 1.75 %, stuck_on 9.04 % (RRAM stuck-at-0/1 "
                 "rates of Chen et al., IEEE Trans. Computers 64(1), 2015, as fault-tolerance papers cite them); "
                 "no drift (RRAM retention loss is small next to PCM drift)",
    "PCM-chip": "8/2-bit quantized differential mapping; drift nu ~ N(0.06, 0.02) clipped at 0 from t0 = 20 s "
                "(aihwkit PCMLikeNoiseModel: mean 0.060, std 0.023 at 10 % of g_max, fitted on the PCM devices "
                "of Joshi et al., Nature Communications 2020); global drift compensation on (aihwkit "
                "GlobalDriftCompensation); no stuck devices",
}

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


def from_file(path: str | Path) -> DeviceModel:
    """Load a user-defined device model from a ``.toml`` or ``.json`` file.

    The file holds the keys of :class:`DeviceModel` at top level (TOML may also put them in a ``[device]``
    table), e.g. ``weight_bits = 8``, ``device_bits = 4``, ``state_factor = 3``, ``band = [0.2, 0.8]`` or a
    measured ``levels = [1.0, 1.6, 1.6, 1.0]``, ``read_sigma = 0.02`` for read noise, and the realistic chip's
    ``quantize = true``, ``stuck_off``, ``stuck_on``, ``drift_nu_mean``, ``drift_nu_std``, ``drift_t0``,
    ``drift_time`` and ``drift_compensation``.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: for an unsupported extension or a parse error; SettingError (a ``ValueError``) naming the
            file and the key for unknown keys (setting ``device_model``), keys both at top level and in
            ``[device]``, or invalid values (the setting of the bad key).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"device model file {str(path)!r} not found")
    text = path.read_text()
    try:
        if path.suffix.lower() == ".toml":
            data = tomllib.loads(text)
            if "device" in data and len(data) > 1:
                raise SettingError("device_model", f"device model file {str(path)!r} has keys both at top level "
                                                   f"({', '.join(sorted(set(data) - {'device'}))}) and in a [device] "
                                                   "table: put them all in one place")
            data = data.get("device", data)
        elif path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            raise ValueError(f"device model file {str(path)!r} must end in .toml or .json")
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot parse device model file {str(path)!r}: {error}") from None
    try:
        model = from_dict(data, default_name=path.stem)
    except ValueError as error:  # the file named in the message; a SettingError keeps the key it names
        raise SettingError(getattr(error, "setting", "device_model"),
                           f"device model file {str(path)!r}: {error}") from None
    preset = {key.lower(): value for key, value in PRESETS.items()}.get(model.name.lower())
    if preset is not None and dataclasses.replace(preset, name=model.name) != model:  # reports name models by name
        raise SettingError("device_model", f"device model file {str(path)!r} is named {model.name!r}, a preset's "
                                           "name, but holds other values; give it a name of its own (or leave "
                                           "name out: the file's)")
    return model


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
    for key, preset in PRESETS.items():
        if key.lower() == text.lower():
            return preset
    if text.lower().endswith((".toml", ".json")) or Path(text).exists():
        return from_file(text)
    raise SettingError("device_model", f"unknown device model {text!r}; choose a preset ({', '.join(PRESETS)}) or "
                                       "give a .toml/.json file")
