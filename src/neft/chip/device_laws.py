"""Conductance-dependent device laws of the realistic chip and their checks (docs/method.md, 'The realistic chip',
'Conductance-dependent device laws').

A device's conductance is in microsiemens (uS) on ``[g_min, g_max]``, ``g_min = g_max / on_off_ratio`` (0 for an
infinite ratio, aihwkit's default ``g_min``); the mapping's level units (:mod:`neft.chip.mapping`, level 0 ..
``T = 2**device_bits - 1``) map onto it linearly, level 0 at ``g_min`` and level ``T`` at ``g_max``. ``x = g / g_max``
is the relative conductance every law below reads. The laws (each an optional device-model key; None: the constant
law of the model's ``sigma``, ``drift_nu_mean`` and ``drift_nu_std``):

* programming-noise std ``sum_i c_i x**i`` uS (``prog_noise_coeffs``; aihwkit ``PCMLikeNoiseModel.prog_coeff``, a
  fit on the PCM devices of Nandakumar et al., ICECS 2019; CrossSim ``RRAM_Milo`` is the linear case);
* drift exponent mean and std ``clip(c0 + c1 ln(max(x, 1e-7)), lo, hi)`` (``drift_nu_mean_law``,
  ``drift_nu_std_law`` = ``(c0, c1, lo, hi)``; aihwkit ``PCMLikeNoiseModel.generate_drift_coefficients``, after
  Joshi et al., Nature Communications 2020);
* accumulated 1/f read noise, relative std ``Q_s(x) sqrt(ln((t + t_read) / (2 t_read)))`` with
  ``Q_s(x) = min(q / max(x**e, floor), q_max)`` (``read_noise_1f`` = ``(q, e, floor, q_max)``, ``t_read``;
  aihwkit ``PCMLikeNoiseModel.apply_drift_noise_to_conductance``).

Every function is a pure function of tensors or floats; the checks raise a
:class:`~neft.common.errors.SettingError` naming the key before any work.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from neft.common.errors import SettingError, check_number

if TYPE_CHECKING:
    from neft.chip.device_model import DeviceModel

__all__ = ["g_min", "level_offset", "polynomial", "log_law", "q_s", "accumulated", "check_laws",
           "AIHWKIT_PROG_COEFFS", "AIHWKIT_NU_MEAN_LAW", "AIHWKIT_NU_STD_LAW", "AIHWKIT_READ_1F", "AIHWKIT_T_READ",
           "X_FLOOR", "G_MAX", "ON_OFF_RATIO", "CHIP_DEFAULTS"]

# aihwkit 1.2 PCMLikeNoiseModel defaults (aihwkit/inference/noise/pcm.py), g in uS at g_max = 25 uS
AIHWKIT_PROG_COEFFS = (0.26348, 1.9650, -1.1731)  # programming std in uS, polynomial in g / g_max
AIHWKIT_NU_MEAN_LAW = (0.0244, -0.0155, 0.049, 0.1)  # mu_nu = clip(0.0244 - 0.0155 ln(x), 0.049, 0.1)
AIHWKIT_NU_STD_LAW = (-0.0059, -0.0125, 0.008, 0.045)  # sigma_nu = clip(-0.0059 - 0.0125 ln(x), 0.008, 0.045)
AIHWKIT_READ_1F = (0.0088, 0.65, 1e-3, 0.2)  # Q_s = min(0.0088 / max(x**0.65, 1e-3), 0.2)
AIHWKIT_T_READ = 250e-9  # s, aihwkit's t_read
X_FLOOR = 1e-7  # the smallest x a logarithmic law reads (aihwkit's _ZERO_CLIP)
G_MAX = 25.0  # uS, the highest conductance (aihwkit SinglePairConductanceConverter / PCMLikeNoiseModel g_max)
ON_OFF_RATIO = 10.0  # g_max / g_min (CrossSim 3.2's default device range: Gmin_norm = 0.1 of Gmax_norm = 1)
# the conductance range and laws with their defaults: what a DeviceModel without them holds
CHIP_DEFAULTS = {"g_max": G_MAX, "on_off_ratio": ON_OFF_RATIO, "prog_noise_coeffs": None, "drift_nu_mean_law": None,
                 "drift_nu_std_law": None, "drift_nu_abs": False, "read_noise_1f": None, "t_read": AIHWKIT_T_READ,
                 "read_noise_1f_per_read": False, "drift_compensation_input": "ones", "clip_g_max": True,
                 "drift_of": "devices"}


def g_min(model: DeviceModel) -> float:
    """The lowest conductance in uS: ``g_max / on_off_ratio``; 0 for an infinite ratio."""
    return 0.0 if math.isinf(model.on_off_ratio) else model.g_max / model.on_off_ratio


def level_offset(model: DeviceModel) -> float:
    """``g_min`` in level units of the device's range: ``g_min / ((g_max - g_min) / T)``, so that a device at level
    ``L`` has the conductance ``(L + offset) * (g_max - g_min) / T`` uS (0 for an infinite on/off ratio)."""
    low = g_min(model)
    return low / ((model.g_max - low) / (2 ** model.device_bits - 1))


def polynomial(coeffs: tuple[float, ...], x):
    """``sum_i coeffs[i] * x**i`` for a tensor or float ``x``, the powers accumulated from ``x**0`` upwards (the
    order aihwkit's ``apply_programming_noise_to_conductance`` sums them in)."""
    total, power = coeffs[0], 1.0
    for coeff in coeffs[1:]:
        power = power * x
        total = total + power * coeff
    return total


def log_law(law: tuple[float, float, float, float], log_x: torch.Tensor) -> torch.Tensor:
    """``clip(c0 + c1 ln(max(x, X_FLOOR)), lo, hi)`` of ``law = (c0, c1, lo, hi)``, elementwise on
    ``log_x = ln(max(x, X_FLOOR))`` (any shape; aihwkit ``generate_drift_coefficients``)."""
    c0, c1, lo, hi = law
    return (c1 * log_x + c0).clamp_(min=lo, max=hi)


def q_s(law: tuple[float, float, float, float], x: torch.Tensor) -> torch.Tensor:
    """The 1/f noise's ``Q_s(x) = min(q / max(x**e, floor), q_max)`` of ``law = (q, e, floor, q_max)`` (aihwkit
    ``apply_drift_noise_to_conductance``), elementwise on ``x = |g| / g_max`` (any shape)."""
    q, exponent, floor, q_max = law
    return torch.div(q, (x ** exponent).clamp_(min=floor)).clamp_(max=q_max)


def accumulated(t: float, t_read: float) -> float:
    """``sqrt(ln((t + t_read) / (2 t_read)))``: the 1/f noise accumulated between reads of duration ``t_read`` and
    the read time ``t`` (both in s, ``t >= t_read``; aihwkit's ``sig_noise / Q_s``)."""
    return math.sqrt(math.log((t + t_read) / (2 * t_read)))


def _numbers(model: DeviceModel, key: str, count: int | None, meaning: str) -> tuple[float, ...] | None:
    """The tuple of finite floats under ``key`` (``count`` of them when given), stored normalised; None passes."""
    value = getattr(model, key)
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or not value \
            or (count is not None and len(value) != count):
        raise SettingError(key, f"{key} must be {meaning}, got {value!r}")
    numbers = tuple(check_number(key, v, meaning) for v in value)
    object.__setattr__(model, key, numbers)
    return numbers


def _lowest(coeffs: tuple[float, ...], lo: float) -> tuple[float, float]:
    """(smallest value, where) of the polynomial ``coeffs`` on ``[lo, 1]``: at the ends and at the real roots of its
    derivative inside."""
    candidates = [lo, 1.0]
    if len(coeffs) > 2:
        import numpy

        roots = numpy.polynomial.polynomial.polyroots([i * c for i, c in enumerate(coeffs)][1:])
        candidates += [float(r.real) for r in roots if abs(r.imag) < 1e-12 and lo < r.real < 1]
    return min((polynomial(coeffs, x), x) for x in candidates)


def check_laws(model: DeviceModel) -> None:
    """Check the conductance range and the laws of ``model`` and store them normalised (tuples of floats).

    Raises:
        SettingError: naming the key for ``g_max`` not a finite number > 0, ``on_off_ratio`` not > 1 (infinity:
            ``g_min`` 0), ``prog_noise_coeffs`` that give a negative std somewhere on ``[g_min, g_max]``, a drift
            law whose clip range is not ``0 <= lo <= hi``, a 1/f law with a negative ``q``/``q_max`` or a ``floor``
            <= 0, ``t_read`` not a finite number > 0, or a read time (``drift_time``, else ``drift_t0``) before
            ``t_read``, where the 1/f law's logarithm turns negative.
    """
    object.__setattr__(model, "g_max", check_number("g_max", model.g_max, "the highest conductance in uS, a finite "
                                                    "number > 0 (aihwkit: 25)", lambda v: v > 0))
    ratio = model.on_off_ratio
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or math.isnan(ratio) or ratio <= 1:
        raise SettingError("on_off_ratio", f"on_off_ratio is g_max / g_min, a number > 1 (e.g. 10; inf for "
                                           f"g_min = 0 as aihwkit), got {ratio!r}")
    object.__setattr__(model, "on_off_ratio", float(ratio))
    coeffs = _numbers(model, "prog_noise_coeffs", None, "a list of finite polynomial coefficients [c0, c1, ...] "
                      "of the programming std in uS over g / g_max (aihwkit: [0.26348, 1.9650, -1.1731])")
    if coeffs is not None:
        value, where = _lowest(coeffs, g_min(model) / model.g_max)
        if value < 0:
            raise SettingError("prog_noise_coeffs", f"prog_noise_coeffs {list(coeffs)} give the negative std "
                                                    f"{value:.4g} uS at g = {where * model.g_max:.4g} uS, inside "
                                                    f"[g_min, g_max]: a std is >= 0 over the whole range")
    for key in ("drift_nu_mean_law", "drift_nu_std_law"):
        law = _numbers(model, key, 4, "four numbers [c0, c1, lo, hi]: clip(c0 + c1 ln(g / g_max), lo, hi)")
        if law is not None and not 0 <= law[2] <= law[3]:
            raise SettingError(key, f"{key} clips to [lo, hi] = [{law[2]:g}, {law[3]:g}]: need 0 <= lo <= hi "
                                    "(a drift exponent and its std are >= 0)")
    law = _numbers(model, "read_noise_1f", 4, "four numbers [q, e, floor, q_max]: Q_s = min(q / max((g / g_max) "
                   "** e, floor), q_max) (aihwkit: [0.0088, 0.65, 0.001, 0.2])")
    if law is not None and not (law[0] >= 0 and law[2] > 0 and law[3] >= 0):
        raise SettingError("read_noise_1f", f"read_noise_1f {list(law)}: need q >= 0, floor > 0 and q_max >= 0 "
                                            "(Q_s is a relative std)")
    object.__setattr__(model, "t_read", check_number("t_read", model.t_read, "the 1/f noise's read duration in s, "
                                                     "a finite number > 0 (aihwkit: 2.5e-7)", lambda v: v > 0))
    t = model.drift_time if model.drift_time is not None else model.drift_t0
    if law is not None and t < model.t_read:
        key = "drift_time" if model.drift_time is not None else "drift_t0"
        raise SettingError(key, f"{key} {t:g} s is before t_read {model.t_read:g} s: the 1/f read noise "
                                "accumulates from t_read on (ln((t + t_read) / (2 t_read)) < 0 before); read later")
