"""Per-column weight scaling of the crossbar circuit (docs/method.md, 'The periphery'; aihwkit
``MappingParameter.weight_scaling_omega = 1`` with ``weight_scaling_columnwise = True``): each crossbar column (one
output of a tile) is mapped to its own max |W|, so its devices span their conductance range whatever the other
columns hold, and a digital scale on its output restores the weight units.
"""

from __future__ import annotations

import torch

__all__ = ["column_scales"]


def column_scales(weight: torch.Tensor, tiles: list[tuple[int, int]]) -> torch.Tensor:
    """The column scale of every weight, shaped like ``weight`` ``[out, ...]``: the max |W| of its crossbar column,
    i.e. of its output row within its tile (the row range ``tiles[t] = (r0, r1)`` of ``weight.flatten(1)``); 1 for
    an all-zero column. Detached.

    The chip of a layer with per-column scaling is drawn on ``weight / scale`` (every column's max |W| is 1) and its
    errors are multiplied by ``scale`` (:meth:`neft.chip.crossbar.Crossbar.sample_chip`): the Gaussian model's std
    ``sigma * bit_factor * max|W|`` and the realistic chip's levels then follow each column's own max |W|.
    """
    flat = weight.detach().flatten(1)
    scale = torch.empty_like(flat)
    for r0, r1 in tiles:
        block = flat[:, r0:r1].abs().amax(1, keepdim=True)
        scale[:, r0:r1] = torch.where(block > 0, block, torch.ones_like(block))
    return scale.view_as(weight)
