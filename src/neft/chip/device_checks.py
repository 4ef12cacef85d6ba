"""The checks of a device model's settings: sigma, stuck rates, drift times and exponents, bits, state factor, band,
levels, and the realistic chip's combinations (docs/method.md, 'Device variation model', 'The realistic chip').

Each check returns the value it accepts, normalised (a float, a tuple), or raises a
:class:`~neft.common.errors.SettingError` naming the setting.
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING

from neft.chip.aihwkit_conventions import DRIFT_OF
from neft.chip.device_laws import CHIP_DEFAULTS, check_laws
from neft.common.errors import SettingError, check_count, check_name, check_number

if TYPE_CHECKING:
    from neft.chip.device_model import DeviceModel

__all__ = ["check_sigma", "check_level_sigma", "check_rate", "check_time", "check_device_model", "MAX_SIGMA",
           "MAX_BITS"]

MAX_BITS = 64  # bits per weight or device: beyond, the significances 2**(j K) overflow float64
MAX_SIGMA = 1.0  # sigma above the conductance range itself describes no programmable device (check_sigma)


def check_sigma(sigma: float, name: str = "sigma") -> float:
    """Return ``sigma`` as a float after checking it is a relative device variation in [0, ``MAX_SIGMA``].

    sigma is each device's conductance std as a fraction of its conductance range (docs/method.md, 'Device
    variation model'). Above 1 the std would exceed the whole range, so a programmed device would land anywhere
    in it: no memory stores a weight that way (the paper studies 0-0.4).

    Raises:
        SettingError: (a ``ValueError``) if sigma is not a number (a bool included), is NaN or infinite, negative, or
            above ``MAX_SIGMA`` = 1.
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


def check_level_sigma(model: DeviceModel, sigma: float, name: str = "sigma") -> float:
    """Return ``sigma`` (checked by :func:`check_sigma`) after checking that no state of ``model``'s measured
    ``levels`` table varies by more than ``MAX_SIGMA`` at it: a level multiplies sigma (docs/method.md, 'Device
    variation model'), so state ``i`` has the relative std ``sigma * levels[i]``, bounded like sigma itself.

    Raises:
        SettingError: (a ``ValueError``, setting ``levels``) when ``sigma * max(levels)`` is above ``MAX_SIGMA`` = 1;
            as :func:`check_sigma` for a bad ``sigma``.
    """
    sigma = check_sigma(sigma, name)
    if model.levels is not None and sigma * max(model.levels) > MAX_SIGMA:
        raise SettingError("levels", f"device model {model.name!r}: at {name} {sigma:g} its levels table gives a "
                                     f"state the relative std {sigma:g} x {max(model.levels):g} = "
                                     f"{sigma * max(model.levels):g}, above {MAX_SIGMA:g} (a std above the whole "
                                     "conductance range stores no weight): use a smaller sigma, or levels <= "
                                     f"{MAX_SIGMA / sigma:g} (levels multiply sigma)")
    return sigma


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


def check_device_model(model: DeviceModel) -> None:
    """Check every setting of ``model`` and store the normalised values on it (it is frozen: ``object.__setattr__``),
    in this order: the name, read sigma, bits, the realistic chip (:func:`_check_chip`), bits per weight against bits
    per device, then the state-dependent variation (:func:`_check_variation`).

    Raises:
        SettingError: (a ``ValueError`` naming the field) for a name that is not a line of printable text
            (:func:`~neft.common.errors.check_name`), bits that are not integers in [1, ``MAX_BITS``
            = 64], a ``state_factor`` below 1, band edges or levels that are not finite numbers (booleans
            included), or a read sigma that is not a finite number in [0, 1]; naming the chip setting for a
            stuck rate outside [0, 1] or rates summing above 1, a negative or NaN drift exponent or std, a time
            <= 0, a non-bool ``quantize``/``drift_compensation``, stuck devices, drift or compensation without
            ``quantize``, or a ``drift_time`` or compensation without drift.
        ValueError: for weight bits not a multiple of device bits, band edges outside ``0 <= lo < hi <= 1``.
    """
    check_name("name", model.name, "the device model's name in reports and labels")
    object.__setattr__(model, "read_sigma", check_sigma(model.read_sigma, "read_sigma"))
    for attr in ("weight_bits", "device_bits"):  # 2**64 levels: beyond that bit_factor overflows float64
        check_count(attr, getattr(model, attr), 1, "bits per weight or per device", maximum=MAX_BITS)
    _check_chip(model)
    if model.weight_bits % model.device_bits:
        raise ValueError(
            f"weight_bits ({model.weight_bits}) must be a positive multiple of device_bits "
            f"({model.device_bits}): each weight is split over whole devices; e.g. use 8 and 2, 8 and 4, or 6 and 2"
        )
    _check_variation(model)


def _check_variation(model: DeviceModel) -> None:
    """Check the state-dependent variation: ``state_factor`` >= 1, the band ``0 <= lo < hi <= 1`` (stored as two
    floats) and the measured ``levels`` (stored as a tuple of floats)."""
    check_number("state_factor", model.state_factor, "a finite number >= 1 (1 = state-independent)",
                 lambda v: v >= 1)
    if isinstance(model.band, (str, bytes)) or len(model.band) != 2:
        raise SettingError("band", f"band must be two fractions of max|W| [lo, hi], got {model.band!r}")
    lo, hi = (check_number("band", v, "two fractions of max|W| with 0 <= lo < hi <= 1") for v in model.band)
    if not 0 <= lo < hi <= 1:
        raise ValueError(f"band must satisfy 0 <= lo < hi <= 1 (fractions of max|W|), got {model.band!r}")
    object.__setattr__(model, "band", (float(lo), float(hi)))
    if model.levels is not None:
        valid = "a non-empty list of finite positive std multipliers (levels multiply sigma)"
        levels = tuple(check_number("levels", v, valid, lambda v: v > 0) for v in model.levels)
        if not levels:
            raise SettingError("levels", f"levels must be {valid}, got {model.levels!r}")
        object.__setattr__(model, "levels", levels)


def _check_chip(model: DeviceModel) -> None:
    """Check the realistic-chip settings (docs/method.md, 'The realistic chip')."""
    for name in ("quantize", "drift_compensation", "drift_nu_abs", "read_noise_1f_per_read", "clip_g_max"):
        if not isinstance(getattr(model, name), bool):
            raise SettingError(name, f"{name} must be true or false, got {getattr(model, name)!r}")
    for name in ("stuck_off", "stuck_on"):
        object.__setattr__(model, name, check_rate(getattr(model, name), name))
    if model.stuck_off + model.stuck_on > 1:
        raise SettingError("stuck_on", f"stuck_off + stuck_on = {model.stuck_off + model.stuck_on:g} is above 1: "
                                       "they are the fractions of devices stuck off and stuck on")
    for name in ("drift_nu_mean", "drift_nu_std"):
        object.__setattr__(model, name, _check_exponent(getattr(model, name), name))
    object.__setattr__(model, "drift_t0", check_time(model.drift_t0, "drift_t0"))
    if model.drift_time is not None:
        object.__setattr__(model, "drift_time", check_time(model.drift_time, "drift_time"))
    check_laws(model)
    if not model.quantize:
        needs = [name for name in ("stuck_off", "stuck_on", "drift_nu_mean", "drift_nu_std", "drift_compensation")
                 if getattr(model, name)]
        needs += [name for name, default in CHIP_DEFAULTS.items() if getattr(model, name) != default]
        if needs:
            raise SettingError(needs[0], f"{needs[0]} acts on the devices of the quantized mapping, so it needs "
                                         "quantize = true (--quantize): set quantize, or leave "
                                         f"{', '.join(needs)} unset (at the default)")
    if model.drift_time is not None and not model.drifts and model.read_noise_1f is None:
        raise SettingError("drift_time", f"drift_time {model.drift_time:g} s has no effect: devices drift only "
                                         "with drift_nu_mean or drift_nu_std > 0 (or their laws; and quantize = "
                                         "true), and 1/f read noise (read_noise_1f) is not set; set them (e.g. "
                                         "--device-model PCM-chip) or leave drift_time unset")
    _check_law_combinations(model)
    _check_drift_of(model)
    if model.drift_compensation and model.quantize and not model.drifts:
        raise SettingError("drift_compensation", "drift_compensation rescales drifted conductances, so it "
                                                 "needs drift (drift_nu_mean or drift_nu_std > 0): set one, or "
                                                 "leave drift_compensation off")
    if model.quantize and model.weight_bits > 24:
        raise SettingError("weight_bits", f"quantize = true supports weight_bits <= 24 (float32 holds every "
                                          f"level exactly), got {model.weight_bits}")


def _check_law_combinations(model: DeviceModel) -> None:
    """A law given with the constant it replaces, or a law setting without the law it modifies (docs/method.md,
    'Conductance-dependent device laws')."""
    for law, constant in (("drift_nu_mean_law", "drift_nu_mean"), ("drift_nu_std_law", "drift_nu_std")):
        if getattr(model, law) is not None and getattr(model, constant):
            raise SettingError(law, f"{law} replaces {constant} (the drift exponent's {constant[9:]} as a function "
                                    f"of the conductance): give one of them, not both")
    if model.drift_nu_abs and not model.drifts:
        raise SettingError("drift_nu_abs", "drift_nu_abs folds drift exponents, so it needs drift (drift_nu_mean, "
                                           "drift_nu_std or their laws): set one, or leave drift_nu_abs false")
    if model.read_noise_1f_per_read and model.read_noise_1f is None:
        raise SettingError("read_noise_1f_per_read", "read_noise_1f_per_read draws the 1/f read noise per read, so "
                                                     "it needs read_noise_1f: set it, or leave this false")
    if model.drift_compensation_input not in ("ones", "one-hot"):
        raise SettingError("drift_compensation_input", "drift_compensation_input must be 'ones' (an all-ones input) "
                                                       "or 'one-hot' (aihwkit 1.2: eye(fan_in)), got "
                                                       f"{model.drift_compensation_input!r}")


def _check_drift_of(model: DeviceModel) -> None:
    """``drift_of``: ``"devices"`` or ``"resplit"`` (aihwkit 1.2, :mod:`neft.chip.aihwkit_conventions`), the latter
    only for one device per weight and sign, with drift or frozen 1/f read noise to act on, and no stuck devices."""
    if model.drift_of not in DRIFT_OF:
        raise SettingError("drift_of", f"drift_of must be 'devices' (each programmed device drifts) or 'resplit' "
                                       f"(aihwkit 1.2: the re-split programmed weight drifts), got {model.drift_of!r}")
    if model.drift_of == "devices":
        return
    if model.weight_bits != model.device_bits:
        raise SettingError("drift_of", f"drift_of = 'resplit' re-splits a weight onto one device per sign, so it "
                                       f"needs weight_bits == device_bits (got {model.weight_bits} and "
                                       f"{model.device_bits}; PCM-aihwkit uses 24 and 24)")
    if not model.drifts and (model.read_noise_1f is None or model.read_noise_1f_per_read):
        raise SettingError("drift_of", "drift_of = 'resplit' changes what drifts and gets frozen 1/f read noise, so "
                                       "it needs drift (drift_nu_mean, drift_nu_std or their laws) or read_noise_1f "
                                       "frozen per chip: set one, or leave drift_of = 'devices'")
    if model.stuck_off or model.stuck_on:
        raise SettingError("drift_of", "drift_of = 'resplit' (aihwkit 1.2) has no stuck devices: leave stuck_off "
                                       "and stuck_on at 0, or drift_of = 'devices'")


def warn_read_before_t0(model: DeviceModel) -> None:
    """Warn when a drifting chip is read before its drift reference time t0 (docs/method.md, 'The realistic
    chip'): there the drift law runs backwards, conductances above the programmed ones."""
    if model.drifts and model.drift_time is not None and model.drift_time < model.drift_t0:
        warnings.warn(f"drift_time {model.drift_time:g} s is before the drift reference time t0 = "
                      f"{model.drift_t0:g} s, where conductances equal the programmed ones: G(t) = G(t0) (t / t0) ** "
                      "-nu then runs backwards (conductances above the programmed ones; aihwkit counts read times "
                      "from t0, so its reads never come before it); read at t >= t0", RuntimeWarning, stacklevel=4)
