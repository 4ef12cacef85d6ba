"""The error raised for an invalid setting, naming the setting as the Python API spells it, and the checks that
every number setting shares.

The command line shows the same message with the matching flag (``runs`` -> ``--runs``), so library messages
speak in API terms and never name a flag.
"""

from __future__ import annotations

import math

__all__ = ["SettingError", "check_count", "check_number", "check_name", "FLOAT32_MAX", "MAX_SEED"]

FLOAT32_MAX = 3.4028234663852886e38  # torch.finfo(torch.float32).max: a larger setting becomes inf in the tensors
MAX_SEED = 2**63 - 1  # seeds reach torch.Generator.manual_seed (at most 2**64 - 1) with small offsets added


class SettingError(ValueError):
    """An invalid value for one setting (a ``ValueError``).

    Attributes:
        setting: the setting's name in the Python API, e.g. ``"runs"``, ``"sigma"`` or ``"batch_size"``.
    """

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(message)
        self.setting = setting


def check_count(setting: str, value, minimum: int, meaning: str = "", maximum: int | None = None) -> int:
    """Return ``value`` after checking it is an integer (not a bool) in [``minimum``, ``maximum``].

    Raises:
        SettingError: naming ``setting``, with ``meaning`` (what the number counts) in the message when given.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum or (
            maximum is not None and value > maximum):
        what = f" ({meaning})" if meaning else ""
        bound = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise SettingError(setting, f"{setting} must be an integer {bound}{what}, got {value!r}")
    return value


def check_number(setting: str, value, valid: str, ok=lambda value: True) -> float:
    """Return ``value`` as a float after checking it is a real number (an int or float, not a bool), finite, no
    larger in size than ``FLOAT32_MAX`` (the computations run in float32, where a larger value is infinite) and
    ``ok(value)``.

    Args:
        setting: the setting's name (in the message and the error's ``setting``).
        valid: what a valid value is, e.g. ``"a finite number > 0 (e.g. 1e-3)"``.
        ok: the range check, e.g. ``lambda v: v > 0``.

    Raises:
        SettingError: naming ``setting`` and ``valid``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SettingError(setting, f"{setting} must be {valid}, got {value!r} (a {type(value).__name__})")
    if abs(value) > FLOAT32_MAX:
        raise SettingError(setting, f"{setting} must be {valid}, got {value!r}, which is beyond the largest "
                                    f"float32 ({FLOAT32_MAX:.4g}) and would compute as infinite")
    if not math.isfinite(value) or not ok(value):
        raise SettingError(setting, f"{setting} must be {valid}, got {value!r}")
    return float(value)


def check_name(setting: str, value, meaning: str) -> str:
    """Return ``value`` after checking it is a non-empty line of printable text: a name that reports, tables, file
    names and terminals show as given (a run directory, a results file name, a label, a device model's name).

    Raises:
        SettingError: naming ``setting``, with ``meaning`` (what the name names) in the message, for a value that is
            not a string, is empty or blank, or holds a line break, tab or other control character
            (``str.isprintable``), which would split a table row or a log line or hide in a file name.
    """
    if not isinstance(value, str) or not value.strip() or not value.isprintable():
        raise SettingError(setting, f"{setting} must be a non-empty line of text ({meaning}; no line breaks or "
                                    f"control characters such as tabs), got {value!r}")
    return value
