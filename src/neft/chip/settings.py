"""One chip's settings in one checked object: the device model with its device effects and the crossbar circuit
(docs/method.md, 'The realistic chip', 'The crossbar circuit').

:class:`ChipSettings` is what training and evaluation both run against. The command line, presets and Python build
the same ``EvalConfig`` / ``TrainConfig`` fields, and :meth:`ChipSettings.of` turns those fields into a chip one
way: the device model looked up once (a preset, a file, a dict or a :class:`~neft.chip.device_model.DeviceModel`),
the config's device-effect settings that are not None replacing the model's own
(:meth:`~neft.chip.device_model.DeviceModel.with_chip`), and the circuit checked with the model's read noise.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from neft.chip import devices
from neft.chip.circuit_settings import CircuitSettings, settings_of
from neft.chip.device_checks import check_level_sigma
from neft.chip.device_model import DeviceModel

__all__ = ["ChipSettings", "EFFECTS"]

EFFECTS = ("read_sigma", "quantize", "stuck_off", "stuck_on", "drift_nu_mean", "drift_nu_std", "drift_time",
           "drift_compensation")  # config fields that override the device model's own (None: keep it)


@dataclass(frozen=True)
class ChipSettings:
    """The chip a network is trained against or evaluated on.

    Attributes:
        device_model: the device model chips are drawn from, with every device effect applied (Gaussian
            programming variation, the quantized differential mapping, stuck devices, drift and its compensation,
            read noise std).
        circuit: the crossbar circuit every mapped layer runs through (tiles, DAC, ADC, read noise per read with
            the device model's ``read_sigma``); all off by default.
    """

    device_model: DeviceModel
    circuit: CircuitSettings

    @classmethod
    def of(cls, config, base: str | Path | dict | DeviceModel | None = None) -> ChipSettings:
        """The checked chip of ``config`` (an ``EvalConfig``, a ``TrainConfig`` or any object with the circuit
        fields of :data:`neft.chip.circuit_settings.FIELDS`; the :data:`EFFECTS` fields are optional).

        Args:
            config: the settings.
            base: the device model to start from; None: ``config.device_model``, else ``RRAM1``.

        Raises:
            SettingError: an unknown device model, an invalid device-effect or circuit setting, or a combination
                that would do nothing (e.g. stuck devices without ``quantize``), naming the setting; setting ``levels``
                when a sigma of ``config`` (``sigmas``, ``sigma``, ``sigma_block``) or the read sigma times a
                measured level is above ``MAX_SIGMA`` (:func:`~neft.chip.device_checks.check_level_sigma`).
            FileNotFoundError: a device model file that does not exist.
        """
        model = devices.get(base if base is not None else getattr(config, "device_model", None) or "RRAM1")
        overrides = {name: getattr(config, name) for name in EFFECTS if getattr(config, name, None) is not None}
        model = model.with_chip(**overrides)
        if model.levels is not None:  # each state of a measured levels table varies like sigma times its level
            for name in ("sigmas", "sigma", "sigma_block", "read_sigma"):
                values = model.read_sigma if name == "read_sigma" else getattr(config, name, None)
                for sigma in values if isinstance(values, (list, tuple)) else [] if values is None else [values]:
                    check_level_sigma(model, sigma, name)
        return cls(model, settings_of(config, model.read_sigma, model.read_noise_1f_per_read))

    def to_dict(self) -> dict:
        """JSON-ready values: ``{"device_model": DeviceModel.to_dict(), "circuit": {field: value}}``."""
        return {"device_model": self.device_model.to_dict(), "circuit": asdict(self.circuit)}
