"""The crossbar circuit's converters (docs/method.md, 'The crossbar circuit'): uniform DAC/ADC quantization with a
straight-through gradient, converter codes, the bit slices a sliced ADC reads, and the calibration magnitude that
sets a converter's full scale.
"""

from __future__ import annotations

import math

import torch

from neft.chip import mapping
from neft.chip.device_model import DeviceModel

__all__ = ["quantize", "codes", "slices", "full_scale_steps", "calibration_magnitude"]


def quantize(x: torch.Tensor, full_scale: torch.Tensor, bits: int, signed: bool = True,
             inplace: bool = False) -> torch.Tensor:
    """Uniform quantization with a straight-through gradient (docs/method.md, 'The crossbar circuit').

    Signed: codes ``-2**(bits-1) .. 2**(bits-1) - 1`` of step ``full_scale / 2**(bits-1)`` (a two's-complement
    converter of full scale +-``full_scale``); unsigned: codes ``0 .. 2**bits - 1`` of step
    ``full_scale / (2**bits - 1)``. At most ``2**bits`` distinct values; zero is exact.

    Args:
        x: any shape.
        full_scale: a positive scalar tensor (a zero full scale reads 0).
        bits: 1-32.
        signed: as above.
        inplace: overwrite ``x`` when no gradient is wanted (saves a copy of partial sums the caller owns).

    Returns:
        ``x`` quantized, same shape and dtype; its gradient is 1 inside the range and 0 where clipped.
    """
    step = full_scale.clamp_min(torch.finfo(torch.float32).tiny) / full_scale_steps(bits, signed)
    scaled = x.div_(step) if inplace and not (x.requires_grad and torch.is_grad_enabled()) else x / step
    return codes(scaled, bits, signed, inplace=True).mul_(step)


def full_scale_steps(bits: int, signed: bool, symmetric: bool = False) -> int:
    """Steps in a converter's full scale: ``2**(bits-1)`` signed (two's complement), ``2**(bits-1) - 1`` signed and
    ``symmetric`` (sign-magnitude codes ``-(2**(bits-1) - 1) .. 2**(bits-1) - 1``, as aihwkit's ``inp_res = 1 /
    (2**(bits-1) - 1)`` of the half range and CrossSim's symmetric converters), ``2**bits - 1`` unsigned."""
    if not signed:
        return 2 ** bits - 1
    return 2 ** (bits - 1) - 1 if symmetric else 2 ** (bits - 1)


def codes(x: torch.Tensor, bits: int, signed: bool = True, inplace: bool = False,
          batched: bool = False, symmetric: bool = False) -> torch.Tensor:
    """The converter codes of ``x`` given in units of its step: ``x`` clipped to the codes of :func:`quantize`
    (signed ``-2**(bits-1) .. 2**(bits-1) - 1``, unsigned ``0 .. 2**bits - 1``) and rounded to the nearest
    integer, with a straight-through gradient (1 inside the range, 0 where clipped).

    Args:
        x: any shape, in steps of the converter.
        bits: 1-32.
        signed: as above.
        inplace: overwrite ``x`` when no gradient is wanted.
        batched: ``x`` is batched by ``torch.func.vmap`` (over chips): clipped in place by ``clamp_min_`` and
            ``clamp_max_``, for which vmap has batching rules (it has none for ``clamp_``, and would loop over the
            chips); otherwise by one ``clamp_``, a pass less.
        symmetric: signed sign-magnitude codes ``-(2**(bits-1) - 1) .. 2**(bits-1) - 1`` (:func:`full_scale_steps`).

    Returns:
        The codes as floats, same shape and dtype as ``x``.
    """
    levels = full_scale_steps(bits, signed, symmetric)
    low, high = ((-levels, levels) if symmetric else (-levels, levels - 1)) if signed else (0, levels)
    if not (x.requires_grad and torch.is_grad_enabled()):  # no gradient wanted: in place where allowed
        if not inplace:
            x = x.clamp(low, high)
        elif batched:
            x = x.clamp_min_(low).clamp_max_(high)
        else:
            x = x.clamp_(low, high)
        return x.round_()
    clipped = torch.clamp(x, low, high)
    return clipped + (torch.round(clipped) - clipped).detach()


def slices(weight: torch.Tensor, clean: torch.Tensor, device_model: DeviceModel) -> torch.Tensor:
    """The bit slices of a mapped layer, in weight units: ``[n, *weight.shape]`` summing to ``weight``.

    Slice j (``n = weight_bits / device_bits`` of them, j = 0 least significant) holds digit j of the clean
    weight's quantized magnitude (:func:`neft.chip.mapping.quantize`, :func:`neft.chip.mapping.to_digits`), with its
    sign (the differential pair) and significance ``2**(j * device_bits)`` times the level ``max|W| / (2**weight_bits
    - 1)``. The rest, ``weight`` minus the clean quantized weight (the chip's device errors, and the quantization
    error when the chip is not quantized), is split over the slices in proportion to their shares
    ``4**(j K) / sum_i 4**(i K)`` of the programming variance: the expected error of each slice given the weight's
    error (the engine carries one effective weight per mapped weight; docs/method.md, 'The crossbar circuit').
    Differentiable with respect to ``weight``.

    Args:
        weight: the weight the layer reads (a chip's ``w + dW``, or ``w`` in training), any shape.
        clean: the layer's clean weight, same shape (its max|W| sets the levels).
        device_model: gives ``weight_bits`` and ``device_bits``.
    """
    bits, k = device_model.weight_bits, device_model.device_bits
    with torch.no_grad():
        clean = clean.detach()
        w_max = clean.abs().amax()
        levels = mapping.quantize(clean, w_max, bits)
        digits = mapping.to_digits(levels.abs(), bits, k).to(weight.dtype)
        lsb = w_max.to(weight.dtype) / mapping.magnitude_levels(bits)
        significance = torch.tensor([2.0 ** (j * k) for j in range(digits.shape[0])], dtype=weight.dtype,
                                    device=weight.device).view(-1, *[1] * clean.dim())
        ideal = digits * significance * levels.sign().to(weight.dtype) * lsb
        share = significance.square() / significance.square().sum()
    return ideal + share * (weight - ideal.sum(0))


def calibration_magnitude(values: torch.Tensor, percentile: float) -> torch.Tensor:
    """The ``percentile`` of ``|values|`` (100: the maximum), from at most 2**24 evenly strided samples: a
    converter's full scale from the values it reads on the calibration images (``adc_range``)."""
    values = values.detach()
    if values.dtype not in (torch.float32, torch.float64):
        values = values.float()
    if percentile >= 100:  # max |v| from one pass, without a copy of |values|
        dense = values.permute(sorted(range(values.dim()), key=lambda axis: -values.stride(axis)))
        if dense.is_contiguous():  # channels-last partial sums: reduced in memory order (aminmax copies otherwise)
            values = dense
        low, high = torch.aminmax(values)
        return torch.maximum(-low, high)
    magnitudes = values.abs().flatten()
    stride = max(1, math.ceil(magnitudes.numel() / 2 ** 24))
    return torch.quantile(magnitudes[::stride], percentile / 100)
