"""The error raised for an invalid setting, naming the setting as the Python API spells it.

The command line shows the same message with the matching flag (``runs`` -> ``--runs``), so library messages
speak in API terms and never name a flag.
"""

from __future__ import annotations

__all__ = ["SettingError", "check_count"]


class SettingError(ValueError):
    """An invalid value for one setting (a ``ValueError``).

    Attributes:
        setting: the setting's name in the Python API, e.g. ``"runs"``, ``"sigma"`` or ``"batch_size"``.
    """

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(message)
        self.setting = setting


def check_count(setting: str, value, minimum: int, meaning: str = "") -> int:
    """Return ``value`` after checking it is an integer (not a bool) >= ``minimum``.

    Raises:
        SettingError: naming ``setting``, with ``meaning`` (what the number counts) in the message when given.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        what = f" ({meaning})" if meaning else ""
        raise SettingError(setting, f"{setting} must be an integer >= {minimum}{what}, got {value!r}")
    return value
