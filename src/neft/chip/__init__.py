"""The chip: how trained weights become a programmed, read-out crossbar (docs/method.md, 'Device variation model',
'The realistic chip', 'The crossbar circuit'). May import: :mod:`neft.common`, :mod:`neft.models`.

Three layers, each a module:

- :mod:`~neft.chip.devices`: device models (:class:`DeviceModel`: sigma, state factor, bits, the realistic chip's
  rates and laws), the presets and device files;
- :mod:`~neft.chip.mapping` (weights to device digits on a differential pair and back) and
  :mod:`~neft.chip.effects` (device effects frozen per chip: programming variation, stuck devices, drift);
- :mod:`~neft.chip.circuit`: circuit effects per forward (tiles, DAC, ADC, read noise per read);
- :mod:`~neft.chip.crossbar`: the :class:`Crossbar` that applies a device model to any ``nn.Module``.
"""

from neft.chip.circuit import Circuit, CircuitSettings
from neft.chip.crossbar import Crossbar, make_generator, mapped_weight_names
from neft.chip.devices import PRESETS, DeviceModel

__all__ = ["Circuit", "CircuitSettings", "Crossbar", "DeviceModel", "PRESETS", "make_generator", "mapped_weight_names"]
