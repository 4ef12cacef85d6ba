"""Weight-to-device mapping of the realistic chip: quantized, bit-sliced weights on a differential pair
(docs/method.md, 'The realistic chip').

A layer's weights ``w`` (max|W| over the layer) are quantized to signed integer levels
``q = round(w / max|W| * L)`` with ``L = 2**weight_bits - 1`` magnitude levels, so ``|q| <= L``. The magnitude
``|q|`` is split into ``n = weight_bits / device_bits`` digits ``d_j`` (``j = 0`` least significant), one
device per digit with ``2**device_bits`` conductance levels ``0 .. 2**device_bits - 1`` and significance
``2**(j * device_bits)`` (bit slicing, as CrossSim's ``BITSLICED`` cores shift and add the slices digitally).
The sign is held by a differential pair of device rows ``W ~ G+ - G-`` (CrossSim's ``BALANCED`` core, aihwkit's
``SinglePairConductanceConverter``): a positive weight's digits are on the ``G+`` row and its ``G-`` devices
stay at the lowest conductance, a negative weight the other way round, zero on neither.

Conductances here are in level units (0 = the device's lowest conductance, ``2**device_bits - 1`` its highest),
a tensor ``[2, n, *weight.shape]``: index 0 the ``G+`` row, 1 the ``G-`` row. Every function is a pure tensor
function; :func:`from_conductances` inverts :func:`to_conductances` exactly and :func:`dequantize` maps levels
back to weight units. Device effects on these conductances live in :mod:`neft.chip.effects`.
"""

from __future__ import annotations

import torch

__all__ = ["magnitude_levels", "quantize", "dequantize", "to_digits", "from_digits", "to_conductances",
           "from_conductances"]


def magnitude_levels(weight_bits: int) -> int:
    """``L = 2**weight_bits - 1``: the largest magnitude level (max|W| maps to it)."""
    return 2 ** weight_bits - 1


def quantize(weight: torch.Tensor, w_max: torch.Tensor | float, weight_bits: int) -> torch.Tensor:
    """Signed integer levels ``q = round(w / w_max * (2**weight_bits - 1))`` (ties to even), int64.

    Args:
        weight: any shape, weight units.
        w_max: the layer's max|W| (a 0-d tensor or float), > 0; 0 gives all-zero levels.
        weight_bits: M >= 1.

    Returns:
        int64 tensor of ``weight``'s shape with ``|q| <= 2**weight_bits - 1`` (clamped there).
    """
    top = magnitude_levels(weight_bits)
    w_max = torch.as_tensor(w_max, dtype=weight.dtype, device=weight.device)
    if not w_max > 0:
        return torch.zeros(weight.shape, dtype=torch.int64, device=weight.device)
    return torch.round(weight / w_max * top).clamp_(-top, top).to(torch.int64)


def dequantize(levels: torch.Tensor, w_max: torch.Tensor | float, weight_bits: int,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Levels (integer-valued, any dtype) back to weight units: ``levels * (w_max / (2**weight_bits - 1))``."""
    lsb = torch.as_tensor(w_max, dtype=dtype, device=levels.device) / magnitude_levels(weight_bits)
    return levels.to(dtype) * lsb


def to_digits(magnitude: torch.Tensor, weight_bits: int, device_bits: int) -> torch.Tensor:
    """Split non-negative integer magnitudes into ``n = weight_bits / device_bits`` base-``2**device_bits`` digits.

    Args:
        magnitude: int64 tensor, any shape, values in ``[0, 2**weight_bits - 1]``.

    Returns:
        int64 ``[n, *magnitude.shape]``, digit ``j`` = ``(magnitude >> (j * device_bits)) & (2**device_bits - 1)``.
    """
    n, mask = weight_bits // device_bits, 2 ** device_bits - 1
    return torch.stack([(magnitude >> (j * device_bits)) & mask for j in range(n)])


def from_digits(digits: torch.Tensor, device_bits: int) -> torch.Tensor:
    """Inverse of :func:`to_digits` for any real-valued digits ``[n, ...]``: ``sum_j digits[j] * 2**(j * device_bits)``
    (digits may be drifted or noisy conductances; integer digits give the integer back exactly)."""
    scale = torch.tensor([2 ** (j * device_bits) for j in range(digits.shape[0])], device=digits.device)
    return (digits * scale.to(digits.dtype).view(-1, *[1] * (digits.dim() - 1))).sum(0)


def to_conductances(levels: torch.Tensor, weight_bits: int, device_bits: int,
                    dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The differential pair's programmed conductances of signed levels, in level units.

    Args:
        levels: int64 signed levels from :func:`quantize`, any shape.

    Returns:
        ``[2, n, *levels.shape]`` in ``dtype``: row 0 (``G+``) holds the digits of ``max(q, 0)``, row 1 (``G-``)
        those of ``max(-q, 0)``.
    """
    plus = to_digits(levels.clamp(min=0), weight_bits, device_bits)
    minus = to_digits((-levels).clamp(min=0), weight_bits, device_bits)
    return torch.stack([plus, minus]).to(dtype)


def from_conductances(conductances: torch.Tensor, device_bits: int) -> torch.Tensor:
    """Signed levels of a differential pair ``[2, n, ...]``: ``from_digits(G+) - from_digits(G-)`` (real-valued
    for drifted or noisy conductances; exact integers for programmed ones)."""
    return from_digits(conductances[0], device_bits) - from_digits(conductances[1], device_bits)
