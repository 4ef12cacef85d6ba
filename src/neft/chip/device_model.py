"""NVM device models: the settings of one device model (bits, state-dependent variation, read noise and the
realistic chip's rates and laws) and the perturbations it draws (docs/method.md, 'Device variation model').

Its Gaussian model (how a relative device variation sigma becomes a weight perturbation) is
:mod:`neft.chip.variation`; its checks are :mod:`neft.chip.device_checks`.

A realistic chip (``quantize = True``, docs/method.md, 'The realistic chip'): every weight is quantized to
``weight_bits`` levels and stored digit by digit on a differential pair of device rows (:mod:`neft.chip.mapping`); its
devices then carry programming variation, stuck-at faults and conductance drift, frozen per chip
(:mod:`neft.chip.effects`). With ``quantize = False`` (the default) none of these apply and chips are the Gaussian model
of :mod:`neft.chip.variation`, bit for bit.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field

import torch

from neft.chip import variation
from neft.chip.device_checks import check_device_model

__all__ = ["DeviceModel", "DRIFT_T0"]

DRIFT_T0 = 20.0  # s, the first read after programming that drift counts from (aihwkit PCMLikeNoiseModel t_0 = 20 s)


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
        SettingError: (a ``ValueError`` naming the setting) for an invalid value (bits, state factor, band,
            levels, read sigma, stuck rate, drift exponent or time), or a realistic-chip setting without what it
            needs (every check: :func:`neft.chip.device_checks.check_device_model`).
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
        check_device_model(self)

    def with_chip(self, **settings) -> DeviceModel:
        """This model with the realistic-chip settings ``settings`` (``quantize``, ``stuck_off``, ... by name)
        replacing its own; ``quantize=False`` turns its whole realistic chip off first (:attr:`gaussian`), so that
        a preset's stuck devices and drift go with its quantization. A changed model gets a name of its own,
        this one's followed by what changed as the flags say it (``PCM-chip no-quantize``, ``RRAM-chip
        stuck-off=0.05``; the read conditions ``read_sigma`` and ``drift_time`` excepted; docs/results.md).

        Raises:
            SettingError: an invalid setting or combination (e.g. stuck devices given with ``quantize=False``).
        """
        base = self.gaussian if settings.get("quantize") is False else self
        changed = dataclasses.replace(base, **settings) if settings else self
        return dataclasses.replace(changed, name=_derived_name(self, changed))

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
        return variation.bit_factor(self.device_bits, self.devices_per_weight)

    @property
    def multipliers(self) -> tuple[float, float]:
        """(edge, intermediate) std multipliers relative to the state-independent std_W(sigma)."""
        return variation.multipliers(self.state_factor)

    @property
    def state_independent(self) -> bool:
        """True when every weight of a layer gets the same std (state factor 1, no measured levels)."""
        return self.levels is None and self.state_factor == 1.0

    def std(self, weight: torch.Tensor, sigma: float) -> torch.Tensor:
        """Per-element standard deviation of the weight perturbation (:mod:`neft.chip.variation`).

        Args:
            weight: any shape, the clean weights of one crossbar-mapped layer (max|W| is taken over all of it
                and carries no gradient).
            sigma: relative device variation (fraction of a device's conductance range), >= 0.

        Returns:
            Tensor of ``weight``'s shape and dtype, in weight units; all zeros when ``weight`` is all zero.

        Raises:
            ValueError: for negative, NaN or infinite sigma, or NaN/infinite weights.
        """
        return variation.weight_std(self, weight, sigma)

    def sample(self, weight: torch.Tensor, sigma: float, generator: torch.Generator | None = None,
               censor_k: float | None = None) -> torch.Tensor:
        """Draw one additive perturbation of ``weight`` (one programmed chip for this layer;
        :mod:`neft.chip.variation`).

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
        return variation.sample(self, weight, sigma, generator, censor_k)

    def to_dict(self) -> dict:
        """Plain JSON-serialisable description (the format :func:`from_file` reads)."""
        data = asdict(self)
        data["band"] = list(self.band)
        if self.levels is None:
            del data["levels"]
        else:
            data["levels"] = list(self.levels)
        return data


_READ_CONDITIONS = ("name", "read_sigma", "drift_time")  # settings a derived name leaves out (reports name them)


def _word(setting: str, value) -> str:
    """How a derived name says one setting: ``quantize`` / ``no-quantize``, ``stuck-off=0.05``."""
    flag = setting.replace("_", "-")
    if isinstance(value, bool):
        return flag if value else f"no-{flag}"
    if isinstance(value, tuple):
        return f"{flag}={','.join(f'{v:g}' for v in value)}"
    return f"{flag}={value:g}"


def _derived_name(old: DeviceModel, new: DeviceModel) -> str:
    """``old.name`` followed by a word per setting in which ``new`` differs from ``old`` (:func:`_word`), the
    realistic chip's own settings left out when ``new`` turns it off (``no-quantize`` says it); a word of
    ``old.name`` that names a setting stays only while it is still true and not said again."""
    settings = {f.name for f in dataclasses.fields(DeviceModel)} - set(_READ_CONDITIONS)
    gaussian = ("quantize", "weight_bits", "device_bits", "state_factor", "band", "levels")
    changed = [f.name for f in dataclasses.fields(DeviceModel) if f.name in settings
               and getattr(old, f.name) != getattr(new, f.name) and (new.quantize or f.name in gaussian)]
    if not changed:
        return old.name
    first, *rest = old.name.split(" ")
    kept = []
    for word in rest:
        setting = word.split("=")[0].removeprefix("no-").replace("-", "_")
        if setting not in settings or (setting not in changed and _word(setting, getattr(new, setting)) == word):
            kept.append(word)
    return " ".join([first, *kept, *(_word(name, getattr(new, name)) for name in changed)])
