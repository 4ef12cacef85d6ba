"""The error raised for an invalid setting, naming the setting as the Python API spells it.

The command line shows the same message with the matching flag (``runs`` -> ``--runs``), so library messages
speak in API terms and never name a flag.
"""

from __future__ import annotations

__all__ = ["SettingError"]


class SettingError(ValueError):
    """An invalid value for one setting (a ``ValueError``).

    Attributes:
        setting: the setting's name in the Python API, e.g. ``"runs"``, ``"sigma"`` or ``"batch_size"``.
    """

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(message)
        self.setting = setting
