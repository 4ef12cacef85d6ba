"""What every package of neft may use; imports nothing of neft.

- :mod:`~neft.common.errors`: :class:`SettingError` and the checks of a setting's value;
- :mod:`~neft.common.seeds`: the seed of every chip, read, training step and per-chip fix (docs/method.md);
- :mod:`~neft.common.compute`: the torch device, eval mode, freed memory;
- :mod:`~neft.common.distributed`: ``torch.distributed`` ranks (README, 'Scaling out');
- :mod:`~neft.common.version`: the package version.
"""
