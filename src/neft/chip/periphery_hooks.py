"""What a chip drawn for a model takes from the circuit it is read through (docs/method.md, 'The periphery'): while
a :class:`neft.chip.circuit.Circuit` is applied to a model, every :class:`neft.chip.crossbar.Crossbar` of that model
(the Monte Carlo engine's, and each training objective's own) draws its chips with the circuit's per-column weight
scaling, per-tile mapping and drift-compensation placement and readout. The registry holds the model weakly.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn

__all__ = ["ChipHooks", "install", "remove", "hooks_of"]


class ChipHooks(NamedTuple):
    """``column_scales(name, weight)`` (None: the layer's max |W|), whether chips carry their drift compensation
    factor for the digitised outputs, ``tiles(name)`` (the row ranges of the tiles programmed on their own; None:
    one reference per layer) and ``readout(name, tile, weights, generator, one_hot)`` (the compensation readout
    through the periphery of the layer's tile ``tile``, None: all its tiles; None: on the weights). Chips are drawn by
    :func:`neft.chip.tile_draws.draw_chip` when any but the first is set (:attr:`per_unit`)."""

    column_scales: Callable[[str, torch.Tensor], torch.Tensor] | None
    compensate_outputs: bool
    tiles: Callable[[str], list[tuple[int, int]]] | None = None
    readout: Callable | None = None

    @property
    def per_unit(self) -> bool:
        """Whether chips are drawn unit by unit with their compensation factors (:mod:`neft.chip.tile_draws`)."""
        return self.compensate_outputs or self.tiles is not None or self.readout is not None


_ACTIVE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def install(model: nn.Module, hooks: ChipHooks) -> None:
    """Chips of ``model`` follow ``hooks`` until :func:`remove`."""
    _ACTIVE[model] = hooks


def remove(model: nn.Module) -> None:
    """Chips of ``model`` are drawn plainly again."""
    _ACTIVE.pop(model, None)


def hooks_of(model: nn.Module) -> ChipHooks | None:
    """The hooks in force for ``model`` (None: none)."""
    return _ACTIVE.get(model)
