"""The objectives' settings and their checks: the default of each method's own setting (``censor_k``, ``rcg_scale``,
``lipschitz_lambda``, ``correctnet_lambda``, ``distill_alpha``, ``distill_temperature``), OVF's sigma offsets, and
which setting means something for which method (docs/method.md, 'Negative feedback loss', 'OVF', 'Other answers to
device variation').
"""

from __future__ import annotations

from neft.chip.device_checks import MAX_SIGMA
from neft.common.errors import SettingError, check_number

OVF_OFFSETS = (0.15, 0.10, 0.05)  # sigma offsets of the oriented forwards, weights 1, 0.1, 0.01 (docs/method.md, 'OVF')
# [ours] defaults of the other answers to device variation (docs/method.md, 'Other answers to device variation')
RCG_CENSOR_K = 1.0  # RCG: draws above +k std are set to +k std
RCG_SCALE = 1.0  # RCG: training-noise magnitude as a multiple of the std at the training sigma (1: tied to it)
LIPSCHITZ_LAMBDA = 0.1  # Lipschitz: weight of the spectral-norm penalty
LIPSCHITZ_BOUND = 1.0  # Lipschitz: per-layer spectral norm above which the penalty acts (no error amplification)
POWER_ITERATIONS = 20  # Lipschitz: power iterations per spectral-norm estimate
CORRECTNET_LAMBDA = 5e-4  # CorrectNet baseline of the NeFT paper: weight of the orthogonality penalty [authors' code]
DISTILL_ALPHA = 0.9  # Distill: weight of the distillation term
DISTILL_TEMPERATURE = 4.0  # Distill: softmax temperature of teacher and student
# setting -> (the method it applies to, its default, what a valid value is, the check) [ours]
METHOD_SETTINGS = {
    "censor_k": ("rcg", RCG_CENSOR_K, "a finite number >= 0 (standard deviations above which draws are censored)",
                 lambda v: v >= 0),
    "rcg_scale": ("rcg", RCG_SCALE, "a finite number > 0 (the training noise's magnitude as a multiple of the std "
                                    "at the training sigma)", lambda v: v > 0),
    "lipschitz_lambda": ("lipschitz", LIPSCHITZ_LAMBDA, "a finite number >= 0 (weight of the penalty)",
                         lambda v: v >= 0),
    "correctnet_lambda": ("correctnet", CORRECTNET_LAMBDA, "a finite number >= 0 (weight of the orthogonality "
                                                            "penalty)", lambda v: v >= 0),
    "distill_alpha": ("distill", DISTILL_ALPHA, "a number in [0, 1] (weight of the distillation term)",
                      lambda v: 0 <= v <= 1),
    "distill_temperature": ("distill", DISTILL_TEMPERATURE, "a finite number > 0 (softmax temperature)",
                            lambda v: v > 0),
}


def check_beta(beta: float) -> float:
    """Return ``beta`` as a float after checking it is a finite feedback strength >= 0 (docs/method.md,
    'Negative feedback loss').

    Raises:
        SettingError: (a ``ValueError``) for a negative, NaN, infinite or float32-overflowing beta, or a bool.
    """
    return check_number("beta", beta, "a finite number >= 0 (feedback strength, e.g. 1e-3)", lambda v: v >= 0)


def check_temperature(temperature: float) -> float:
    """Return ``temperature`` as a float after checking it is a finite logit temperature > 0.

    Raises:
        SettingError: (a ``ValueError``) for a zero, negative, NaN, infinite or float32-overflowing temperature,
            or a bool.
    """
    return check_number("temperature", temperature, "a finite number > 0 (logit divisor, 1 = plain "
                        "cross-entropy)", lambda v: v > 0)


def check_setting(setting: str, value: float) -> float:
    """Return ``value`` as a float after checking it is valid for ``setting``, one of ``censor_k`` (>= 0,
    standard deviations), ``rcg_scale`` (> 0), ``lipschitz_lambda`` (>= 0), ``correctnet_lambda`` (>= 0),
    ``distill_alpha`` (in [0, 1]) or ``distill_temperature`` (> 0); all finite.

    Raises:
        SettingError: (a ``ValueError``) naming the setting, for a value that is not a finite number in range.
        KeyError: for another setting name.
    """
    _, _, valid, ok = METHOD_SETTINGS[setting]
    return check_number(setting, value, valid, ok)


def settings_of(method: str, config: dict) -> dict:
    """``{"censor_k", "rcg_scale", "lipschitz_lambda", "correctnet_lambda", "distill_alpha", "distill_temperature",
    "teacher"}``
    (every :data:`METHOD_SETTINGS` name and ``teacher``) of a run's
    ``config.json`` dict as ``method`` used them: the config's value (its default when the config predates the
    setting) for the settings of ``method``, None for those of other methods (what ``results.json`` records)."""
    settings = {name: (config.get(name, default) if owner == method else None)
                for name, (owner, default, *_) in METHOD_SETTINGS.items()}
    return {**settings, "teacher": config.get("teacher") if method == "distill" else None}


def check_method_settings(method: str, beta: float, temperature: float, sigma: float = 0.0, *,
                          teacher=None, taps=None, sigma_block=None, **settings: float) -> None:
    """Check that ``beta``, ``temperature`` and the ``settings`` (``censor_k``, ``rcg_scale``, ``lipschitz_lambda``,
    ``correctnet_lambda``, ``distill_alpha``, ``distill_temperature``, each checked by :func:`check_setting`) mean
    something for ``method``: a beta other than 0 only for the negative feedback methods (ovf, irs), a
    temperature other than 1 only for noise-injection (OVF and IRS already divide their logits by N + 1), each of
    the other settings only at its default unless ``method`` is the one it belongs to (``censor_k`` and
    ``rcg_scale``: rcg, ``lipschitz_lambda``: lipschitz, ``correctnet_lambda``: correctnet, ``distill_*``:
    distill); a ``teacher`` for distill and for distill only; IRS's feedback heads (``taps``, ``sigma_block``)
    for irs only; and that OVF's largest oriented sigma,
    ``sigma + 0.15``, stays within :data:`neft.chip.device_checks.MAX_SIGMA`.

    Raises:
        SettingError: (a ``ValueError``) naming the setting and the methods it applies to.
    """
    for setting, value in settings.items():
        owner, default = METHOD_SETTINGS[setting][:2]
        if check_setting(setting, value) != default and method != owner:
            raise SettingError(setting, f"{setting} applies to {owner} only, not {method!r}")
    if (teacher is not None) != (method == "distill"):
        raise SettingError("teacher", "distill needs a teacher: the run directory of a network trained without "
                                      "noise, e.g. `neft train --method vanilla --out runs/teacher`" if teacher is None
                           else f"teacher applies to distill only, not {method!r}")
    if taps and method != "irs":  # IRS's feedback heads: another method would ignore them
        raise SettingError("taps", f"taps are the snapshot points of IRS: they apply to method 'irs', not "
                                   f"{method!r}; drop them or train with method irs")
    if sigma_block is not None and method != "irs":
        raise SettingError("sigma_block", f"sigma_block is the noise of IRS's feedback blocks: it applies to method "
                                          f"'irs', not {method!r}; drop it or train with method irs")
    if temperature != 1.0 and method != "noise-injection":
        raise SettingError("temperature", f"temperature applies to noise-injection only, not {method!r} (OVF and "
                                          "IRS divide their logits by N + 1 already)")
    if beta != 0 and method not in ("ovf", "irs"):
        raise SettingError("beta", f"beta (the negative feedback strength) applies to ovf and irs only, "
                                   f"not {method!r}")
    if method == "ovf" and sigma + max(OVF_OFFSETS) > MAX_SIGMA:
        raise SettingError("sigma", f"OVF trains with oriented forwards at sigma + {max(OVF_OFFSETS):g}, which must "
                                    f"stay <= {MAX_SIGMA:g}; sigma {sigma:g} is too large for OVF (at most "
                                    f"{MAX_SIGMA - max(OVF_OFFSETS):g})")
