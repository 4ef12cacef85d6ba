"""The chip: how trained weights become a programmed, read-out crossbar (docs/method.md, 'Device variation model',
'The realistic chip', 'The crossbar circuit'). May import: :mod:`neft.common`, :mod:`neft.models`.

Three layers, each a few modules:

- device models: :mod:`~neft.chip.device_model` (:class:`DeviceModel`: sigma, state factor, bits, the realistic
  chip's rates and laws), its Gaussian model :mod:`~neft.chip.variation`, checks :mod:`~neft.chip.device_checks`, the
  conductance range and conductance-dependent laws :mod:`~neft.chip.device_laws`,
  the presets :mod:`~neft.chip.presets`, device files :mod:`~neft.chip.device_files`, and :func:`neft.chip.devices.get`
  that finds a model by preset name, file or dict;
- :mod:`~neft.chip.mapping` (weights to device digits on a differential pair and back) and
  :mod:`~neft.chip.effects` (device effects frozen per chip: programming variation, stuck devices, drift, 1/f read
  noise, drift compensation);
- :mod:`~neft.chip.circuit`: circuit effects per forward (tiles, DAC, ADC, read noise per read), with its settings
  :mod:`~neft.chip.circuit_settings`, converters :mod:`~neft.chip.converters`, layers :mod:`~neft.chip.circuit_layer`
  and read-noise draws :mod:`~neft.chip.read_noise`;
- :mod:`~neft.chip.crossbar`: the :class:`Crossbar` that applies a device model to any ``nn.Module``;
- :mod:`~neft.chip.settings`: :class:`ChipSettings`, one chip's device model and circuit in one checked object,
  shared by training and evaluation.
"""

from neft.chip.circuit import Circuit, calibration_sample
from neft.chip.circuit_settings import CircuitSettings, settings_of
from neft.chip.crossbar import Crossbar, make_generator, mapped_weight_names
from neft.chip.device_checks import check_sigma
from neft.chip.device_files import from_file
from neft.chip.device_model import DeviceModel
from neft.chip.presets import PRESET_SOURCES, PRESETS
from neft.chip.settings import ChipSettings

__all__ = ["ChipSettings", "Circuit", "CircuitSettings", "Crossbar", "DeviceModel", "PRESETS", "PRESET_SOURCES",
           "calibration_sample", "check_sigma", "from_file", "make_generator", "mapped_weight_names", "settings_of"]
