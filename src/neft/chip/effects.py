"""Device effects of the realistic chip, frozen per chip (docs/method.md, 'The realistic chip').

A layer of a chip with ``DeviceModel.quantize`` is drawn in four steps on the devices of its mapping
(:mod:`neft.chip.mapping`: quantized levels, digits on a differential pair, conductances in level units):

1. **Programming variation.** Every device of the row holding the weight (``G+`` for ``w >= 0``, ``G-`` for
   ``w < 0``) deviates from its digit by a zero-mean Gaussian with std ``sigma * (2**device_bits - 1)`` levels
   (``sigma`` of its conductance range) times the weight's state multiplier (:meth:`DeviceModel.std`); the other
   row stays at its lowest conductance. Summed over the digits this is the Gaussian model's
   ``std_W = sigma * bit_factor * max|W|`` around the quantized weight. Errors are not clipped to the range.
2. **Stuck-at devices.** Each device of both rows is stuck at its lowest conductance (0) with probability
   ``stuck_off`` and at its highest (``2**device_bits - 1``) with probability ``stuck_on``; a stuck device has no
   programming error and does not drift.
3. **Drift.** Each device follows ``G(t) = G(t0) * (t / t0) ** -nu``, ``nu ~ N(drift_nu_mean, drift_nu_std)``
   clipped at 0, drawn per device (Joshi et al., Nature Communications 2020; aihwkit PCMLikeNoiseModel). ``nu`` is
   drawn whatever ``t`` is, so one chip seed gives the same chip at every read time ``drift_time``, and ``t = t0``
   is no drift.
4. **Global drift compensation** (``drift_compensation``): the layer is scaled by
   ``alpha = readout(W(t0)) / readout(W(t))`` with ``readout(W) = mean |W x|`` for the all-ones calibration input
   ``x`` over the crossbar's rows (one scalar per layer, as aihwkit's GlobalDriftCompensation), measured on this
   chip's own stuck and programmed devices.

The result is one effective weight per mapped weight, returned as ``dW = W_chip - w`` so that the Monte Carlo
engine and training use it exactly like the Gaussian model's draw (:meth:`neft.chip.crossbar.Crossbar.sample_chip`).
In training ``w + dW`` with a detached ``dW`` is the straight-through estimator of the quantization.
Random draws per layer, in this order from the chip's generator: programming ``randn [n, *shape]``, stuck
``rand [2, n, *shape]`` (only with a stuck rate > 0), drift ``randn [2, n, *shape]`` (only when devices drift).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from neft.chip import mapping, variation
from neft.chip.device_model import DeviceModel

__all__ = ["sample", "map_layer", "Mapped", "stick", "compensation"]


def compensation(reference: torch.Tensor, drifted: torch.Tensor) -> torch.Tensor:
    """Global drift compensation factor ``alpha = readout(reference) / readout(drifted)`` of one layer.

    ``readout(W) = mean_o |sum_i W[o, i]|``: the mean absolute output of the layer's crossbar matrix
    ``W.flatten(1)`` ``[out, fan_in]`` for an all-ones input (aihwkit GlobalDriftCompensation). Returns a 0-d
    tensor; 1 when the drifted readout is 0 (nothing to rescale).
    """
    ref = reference.flatten(1).sum(1).abs().mean()
    now = drifted.flatten(1).sum(1).abs().mean()
    return torch.where(now > 0, ref / torch.where(now > 0, now, torch.ones_like(now)), torch.ones_like(now))


def stick(conductances: torch.Tensor, uniform: torch.Tensor, stuck_off: float, stuck_on: float,
          g_top: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Stuck-at devices: a device with ``uniform < stuck_off`` is stuck at 0 (off), one with
    ``stuck_off <= uniform < stuck_off + stuck_on`` at ``g_top`` (on).

    Args:
        conductances: any shape, level units.
        uniform: draws in [0, 1) of the same shape (one per device).
        stuck_off, stuck_on: the rates, each in [0, 1], summing to at most 1.
        g_top: the highest conductance, ``2**device_bits - 1`` levels.

    Returns:
        (conductances with the stuck devices set, bool mask of the stuck devices).
    """
    off = uniform < stuck_off
    on = (uniform < stuck_off + stuck_on) & ~off
    return conductances.masked_fill(off, 0.0).masked_fill_(on, float(g_top)), off | on


class Mapped(NamedTuple):
    """The deterministic part of one layer's chip (:func:`map_layer`): ``w_max`` (0-d, max|W|), ``conductances``
    (programmed targets ``[2, n, *shape]`` in level units) and ``rows`` (``[2, 1, *shape]``, 1 on the row that
    holds each weight: ``G+`` for ``w >= 0``, ``G-`` for ``w < 0``)."""

    w_max: torch.Tensor
    conductances: torch.Tensor
    rows: torch.Tensor


def map_layer(device_model: DeviceModel, weight: torch.Tensor) -> Mapped:
    """Quantize one layer and map it onto its differential pair (:mod:`neft.chip.mapping`); no random draws, so a
    :class:`~neft.chip.crossbar.Crossbar` reuses it for every chip of unchanged weights.

    Raises:
        ValueError: for NaN or infinite weights.
    """
    with torch.no_grad():
        w, w_max, _ = variation.weight_scale(device_model, weight, 0.0)
        levels = mapping.quantize(w, w_max, device_model.weight_bits)
        g = mapping.to_conductances(levels, device_model.weight_bits, device_model.device_bits, w.dtype)
        negative = (levels < 0).to(w.dtype)
        return Mapped(w_max, g, torch.stack([1 - negative, negative]).unsqueeze(1))


def sample(device_model: DeviceModel, weight: torch.Tensor, sigma: float, generator: torch.Generator | None = None,
           censor_k: float | None = None, verified_scale: torch.Tensor | None = None,
           mapped: Mapped | None = None) -> torch.Tensor:
    """Draw one layer of a realistic chip and return its weight error ``dW = W_chip - w``.

    Args:
        device_model: a :class:`~neft.chip.device_model.DeviceModel` with ``quantize`` set (the mapping's bits and the
            device effects come from it).
        weight: the clean weights of one mapped layer, any shape with a leading output dimension (Conv/Linear).
        sigma: relative device variation (programming), in [0, 1].
        generator: the chip's ``torch.Generator`` on ``weight``'s device.
        censor_k: right-censor each device's programming draw at ``+censor_k`` std (rcg's training noise).
        verified_scale: optional per-weight factor on the programming std, shaped like ``weight``
            (write-verified weights, :meth:`neft.chip.crossbar.Crossbar.sample_chip`).
        mapped: :func:`map_layer` of these weights (None: computed here).

    Returns:
        ``dW``, shaped like ``weight``, detached. At sigma 0 without stuck devices or drift ``w + dW`` is the
        dequantized weight exactly.

    Raises:
        ValueError: as :meth:`DeviceModel.std` (invalid sigma, non-finite weights).
    """
    model = device_model
    with torch.no_grad():
        w = variation.weight_scale(model, weight, sigma)[0]
        w_max, g, rows = mapped if mapped is not None else map_layer(model, w)
        top = mapping.magnitude_levels(model.weight_bits)
        n, g_top = model.devices_per_weight, 2 ** model.device_bits - 1
        # programming: std in levels = sigma * (2**K - 1) * the weight's state multiplier
        std = sigma * g_top
        if not model.state_independent:
            std = std * model.std(w, 1.0) / torch.where(w_max > 0, model.bit_factor * w_max, torch.ones_like(w_max))
        if verified_scale is not None:
            std = std * verified_scale
        error = torch.randn((n, *w.shape), generator=generator, dtype=w.dtype, device=w.device)
        if censor_k is not None:
            error.clamp_(max=censor_k)
        g = g + error.mul_(std) * rows  # the programmed row's devices; the other row stays at its lowest
        stuck = None
        if model.stuck_off > 0 or model.stuck_on > 0:
            uniform = torch.rand(g.shape, generator=generator, dtype=w.dtype, device=w.device)
            g, stuck = stick(g, uniform, model.stuck_off, model.stuck_on, g_top)
        lsb = w_max / top
        programmed = chip_weight = mapping.from_conductances(g, model.device_bits) * lsb
        if model.drifts:
            nu = (model.drift_nu_mean + model.drift_nu_std
                  * torch.randn(g.shape, generator=generator, dtype=w.dtype, device=w.device)).clamp_(min=0)
            if model.drift_time is not None and model.drift_time != model.drift_t0:  # read at drift_time
                factor = nu.mul_(-math.log(model.drift_time / model.drift_t0)).exp_()  # (t / t0) ** -nu
                if stuck is not None:
                    factor.masked_fill_(stuck, 1.0)
                chip_weight = mapping.from_conductances(g * factor, model.device_bits) * lsb
        if model.drift_compensation:
            chip_weight = chip_weight * compensation(programmed, chip_weight)
        return chip_weight - w
