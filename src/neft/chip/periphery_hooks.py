"""What a chip drawn for a model takes from the circuit it is read through (docs/method.md, 'The periphery'): while
a :class:`neft.chip.circuit.Circuit` is applied to a model, every :class:`neft.chip.crossbar.Crossbar` of that model
(the Monte Carlo engine's, and each training objective's own) draws its chips with the circuit's per-column weight
scaling and drift-compensation placement. The registry holds the model weakly.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn

__all__ = ["ChipHooks", "install", "remove", "hooks_of"]


class ChipHooks(NamedTuple):
    """``column_scales(name, weight)`` (None: the layer's max |W|) and whether chips carry their drift
    compensation factor for the digitised outputs."""

    column_scales: Callable[[str, torch.Tensor], torch.Tensor] | None
    compensate_outputs: bool


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
