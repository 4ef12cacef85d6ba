"""Where global drift compensation acts (docs/method.md, 'The periphery'): on the weights (neft's default: the
chip's weights are scaled by ``alpha``, before the ADC) or on the digitised outputs (aihwkit's placement:
``aihwkit/simulator/tiles/inference.py`` multiplies the tile's digital output by the compensation factor, the
``alpha`` of ``ForwardBackwardPassIOManaged::forwardVector``'s ``out_scale``).

With ``drift_compensation_at="outputs"`` a chip keeps its drifted, uncompensated weights, and the factor ``alpha``
of each layer (or of each tile, ``tile_mapping="tile"``), taken from the same draw (:mod:`neft.chip.tile_draws`),
travels with the chip as a buffer :data:`ALPHA` of each mapped module (0-d, or one entry per tile), which
:func:`neft.chip.periphery.managed_output` multiplies the layer's (the tile's) digital output by (before the
bias). With ideal converters both placements give the same layer outputs; with an ADC they differ: the
uncompensated (drifted, smaller) sums use fewer ADC codes and the output noise is not scaled along.
"""

from __future__ import annotations

__all__ = ["ALPHA", "alpha_key"]

ALPHA = "neft_drift_alpha"  # the buffer of a mapped module that holds its chip's compensation factor


def alpha_key(name: str) -> str:
    """The chip entry of the compensation factor of mapped weight ``name`` (``"conv1.weight"`` ->
    ``"conv1.neft_drift_alpha"``)."""
    return f"{name.rpartition('.')[0]}.{ALPHA}".lstrip(".")
