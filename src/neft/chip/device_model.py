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
from neft.chip.device_laws import AIHWKIT_T_READ, CHIP_DEFAULTS, G_MAX, ON_OFF_RATIO

__all__ = ["DeviceModel", "DRIFT_T0", "G_MAX", "ON_OFF_RATIO", "CHIP_DEFAULTS"]

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
        levels: optional measured std multipliers of equal bins of ``|w| / max|W|`` in [0, 1], used as measured
            instead of ``state_factor``/``band``.
        read_sigma: read noise relative to the conductance range, in [0, 1] (default 0), drawn afresh per read with
            std :meth:`std` ``(w, read_sigma)`` in evaluation (docs/method.md, 'Read noise'); training ignores it.
        quantize: the realistic chip: weights as ``weight_bits``-level digits on differential pairs of devices
            (:mod:`neft.chip.mapping`, :mod:`neft.chip.effects`); False (default): the Gaussian model, bit for bit.
        stuck_off, stuck_on: probability of a device stuck at g_min (off) or g_max (on), sum <= 1. Needs ``quantize``.
        drift_nu_mean, drift_nu_std: drift ``G(t) = G(t0) (t / t0) ** -nu``, ``nu ~ N(mean, std)`` per device clipped
            at 0 (Joshi et al., Nature Communications 2020); both >= 0, 0 (default): no drift. Needs ``quantize``.
        drift_t0, drift_time: t0 (default 20 s, aihwkit's) and the read time (None: t0) in s after programming
            (``EvalConfig.drift_time`` overrides it).
        drift_compensation: rescale each layer by one scalar measured on the chip, read at t0 over read at t
            (global drift compensation, aihwkit GlobalDriftCompensation). Needs ``quantize``.
        g_max, on_off_ratio, prog_noise_coeffs, drift_nu_mean_law, drift_nu_std_law, drift_nu_abs, read_noise_1f,
            t_read, read_noise_1f_per_read, drift_compensation_input, clip_g_max, drift_of: range, laws and aihwkit
            1.2 conventions (:mod:`neft.chip.device_laws`, :mod:`neft.chip.aihwkit_conventions`). Need quantize.

    Raises:
        SettingError: (a ``ValueError`` naming the setting) for an invalid value or a realistic-chip setting
            without what it needs (every check: :func:`neft.chip.device_checks.check_device_model`).
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
    g_max: float = G_MAX
    on_off_ratio: float = ON_OFF_RATIO
    prog_noise_coeffs: tuple[float, ...] | None = None
    drift_nu_mean_law: tuple[float, float, float, float] | None = None
    drift_nu_std_law: tuple[float, float, float, float] | None = None
    drift_nu_abs: bool = False
    read_noise_1f: tuple[float, float, float, float] | None = None
    t_read: float = AIHWKIT_T_READ
    read_noise_1f_per_read: bool = False
    drift_compensation_input: str = "ones"
    clip_g_max: bool = True
    drift_of: str = "devices"

    def __post_init__(self) -> None:
        check_device_model(self)

    def with_chip(self, **settings) -> DeviceModel:
        """This model with ``settings`` (``quantize``, ``stuck_off``, ... by name) replacing its own; ``quantize=False``
        turns its whole realistic chip off first (:attr:`gaussian`). A changed model is named after this one and
        what changed, as the flags say it (``PCM-chip no-quantize``, ``RRAM-chip stuck-off=0.05``; the read
        conditions ``read_sigma`` and ``drift_time`` excepted; docs/results.md).

        Raises:
            SettingError: an invalid setting or combination (e.g. stuck devices given with ``quantize=False``).
        """
        base = self.gaussian if settings.get("quantize") is False else self
        changed = dataclasses.replace(base, **settings) if settings else self
        return dataclasses.replace(changed, name=_derived_name(self, changed))

    @property
    def gaussian(self) -> DeviceModel:
        """This model without the realistic chip (its settings at their defaults): the Gaussian model."""
        return dataclasses.replace(self, quantize=False, stuck_off=0.0, stuck_on=0.0, drift_nu_mean=0.0,
                                   drift_nu_std=0.0, drift_time=None, drift_compensation=False, **CHIP_DEFAULTS)

    @property
    def drifts(self) -> bool:
        """True when devices drift (a drift exponent or law is set); the chip is then read at ``drift_time``."""
        return (self.drift_nu_mean > 0 or self.drift_nu_std > 0 or self.drift_nu_mean_law is not None
                or self.drift_nu_std_law is not None)

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
        """Plain JSON-serialisable description (the format :func:`from_file` reads): :func:`_as_dict`."""
        return _as_dict(self)


def _as_dict(model: DeviceModel) -> dict:
    """``model``'s fields as plain JSON values, ``levels`` only when set and the conductance keys only when they
    differ from their defaults (so a model without them writes what it wrote before they existed)."""
    data = asdict(model)
    data["band"] = list(model.band)
    if model.levels is None:
        del data["levels"]
    else:
        data["levels"] = list(model.levels)
    for key, default in CHIP_DEFAULTS.items():
        if data[key] == default:
            del data[key]
        elif isinstance(data[key], tuple):
            data[key] = list(data[key])
    return data


_READ_CONDITIONS = ("name", "read_sigma", "drift_time")  # settings a derived name leaves out (reports name them)


def _word(setting: str, value) -> str:
    """How a derived name says one setting: ``quantize`` / ``no-quantize``, ``stuck-off=0.05``."""
    flag = setting.replace("_", "-")
    if isinstance(value, bool):
        return flag if value else f"no-{flag}"
    if value is None:
        return f"no-{flag}"
    if isinstance(value, tuple):
        return f"{flag}={','.join(f'{v:g}' for v in value)}"
    if isinstance(value, str):
        return f"{flag}={value}"
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
