"""How the crossbar circuit sets up its periphery on a model (docs/method.md, 'The periphery'): the checks that need the
mapped layers and the device model, the hooks the model's chips follow (:mod:`neft.chip.periphery_hooks`) and the
buffer that carries a chip's drift compensation factor (:mod:`neft.chip.compensation_placement`).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from neft.chip.circuit_layer import CircuitLayer
from neft.chip.circuit_settings import CircuitSettings
from neft.chip.column_scaling import column_scales
from neft.chip.compensation_placement import ALPHA
from neft.chip.periphery import compensation_readout
from neft.chip.periphery_hooks import ChipHooks
from neft.common.errors import SettingError

__all__ = ["alpha_buffer", "chip_hooks", "check_layers"]


def alpha_buffer(module: torch.nn.Module, on: bool) -> None:
    """Give ``module`` the buffer of its chip's drift compensation factor (1 until a chip's replaces it in
    ``functional_call``; :mod:`neft.chip.compensation_placement`), or remove it."""
    if on:
        module.register_buffer(ALPHA, torch.ones((), device=module.weight.device), persistent=False)
    elif ALPHA in module._buffers:
        del module._buffers[ALPHA]


def chip_hooks(settings: CircuitSettings, layers: list[CircuitLayer], names: list[str]) -> ChipHooks:
    """What the chips of the model take from the periphery (:mod:`neft.chip.periphery_hooks`): per-column scales
    (each column spans its own max |W|), the compensation placement, per-tile mapping and the compensation
    readout through the periphery."""
    columns = functools.partial(_column_scales, layers, names) if settings.weight_scaling == "column" else None
    tiles = functools.partial(_tiles, layers, names) if settings.tile_mapping == "tile" else None
    readout = (functools.partial(_readout, layers, names, settings) if settings.compensation_readout == "periphery"
               else None)
    return ChipHooks(columns, settings.drift_compensation_at == "outputs", tiles, readout)


def _layer(layers: list[CircuitLayer], names: list[str], name: str) -> CircuitLayer:
    return next(layer for layer in layers if names[layer.index] == name)


def _tiles(layers: list[CircuitLayer], names: list[str], name: str) -> list[tuple[int, int]]:
    """The row ranges of the tiles of mapped weight ``name``."""
    return _layer(layers, names, name).tiles


def _readout(layers, names, settings, name: str, tile: int | None, weights: torch.Tensor, generator,
             one_hot: bool) -> torch.Tensor:
    """:func:`neft.chip.periphery.compensation_readout` of mapped weight ``name``'s tile ``tile`` (None: all its
    tiles), ``weights`` ``[out, rows]`` of those tiles in weight units."""
    layer = _layer(layers, names, name)
    tiles = list(range(len(layer.tiles))) if tile is None else [tile]
    return compensation_readout(layer, tiles, weights, settings, generator, one_hot)


def _column_scales(layers: list[CircuitLayer], names: list[str], name: str, weight: torch.Tensor) -> torch.Tensor:
    """The column scales of mapped weight ``name`` (:func:`neft.chip.column_scaling.column_scales` over its tiles),
    for :meth:`neft.chip.crossbar.Crossbar.sample_chip` with ``weight_scaling="column"``."""
    return column_scales(weight, next(layer.tiles for layer in layers if names[layer.index] == name))


def check_layers(settings: CircuitSettings, layers: list[CircuitLayer], crossbar) -> None:
    """Raises SettingError: (the first active setting) a mapped weight shared by a second module (tied weights:
    the circuit runs one module per weight, the other would skip it); (``input_management``) per-vector DAC codes
    on a layer other than Conv2d/Linear; (``drift_compensation_at``) compensation on the outputs without the device
    model's drift compensation."""
    run = {id(layer.module) for layer in layers}
    mapped = {id(layer.module.weight): crossbar.names[layer.index] for layer in layers}
    for name, module in crossbar.model.named_modules() if settings.active else ():
        if id(module) not in run and id(getattr(module, "weight", None)) in mapped:
            setting = settings.names()[0]
            raise SettingError(setting, f"{setting} is set, but module {name!r} uses the weight "
                                        f"{mapped[id(module.weight)]!r} of another module (tied weights): the "
                                        "crossbar circuit runs one module per mapped weight, and this one would "
                                        "skip it; untie them (give each module its own copy of the weight) or "
                                        "leave the circuit settings off for this model (a chip preset such as "
                                        "aihwkit-inference sets them)")
    if settings.input_management == "abs_max" and settings.dac_bits is not None and any(
            layer.conv not in (None, F.conv2d) for layer in layers):
        raise SettingError("input_management", "input_management 'abs_max' with dac_bits quantizes each "
                                               "receptive field on its own, which neft runs for nn.Conv2d and "
                                               "nn.Linear layers only: leave dac_bits off or use 'none'")
    for name, on in (("drift_compensation_at", settings.drift_compensation_at == "outputs"),
                     ("compensation_readout", settings.compensation_readout == "periphery")):
        if on and not (crossbar.device_model.quantize and crossbar.device_model.drift_compensation):
            raise SettingError(name, f"{name} {getattr(settings, name)!r} sets the device model's global drift "
                                     "compensation, which is off here: turn on drift_compensation (and quantize), "
                                     f"or leave {name} at its default")
