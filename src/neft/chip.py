"""Device effects of the realistic chip, frozen per chip (docs/method.md, 'The realistic chip').

A layer of a chip with ``DeviceModel.quantize`` is drawn in four steps on the devices of its mapping
(:mod:`neft.mapping`: quantized levels, digits on a differential pair, conductances in level units):

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
   drawn whatever ``t`` is, so one chip seed gives the same chip at every read time ``drift_time``, and ``t = t0`` is no drift.
4. **Global drift compensation** (``drift_compensation``): the layer is scaled by
   ``alpha = readout(W(t0)) / readout(W(t))`` with ``readout(W) = mean |W x|`` for the all-ones calibration input
   ``x`` over the crossbar's rows (one scalar per layer, as aihwkit's GlobalDriftCompensation), measured on this
   chip's own stuck and programmed devices.

The result is one effective weight per mapped weight, returned as ``dW = W_chip - w`` so that the Monte Carlo
engine and training use it exactly like the Gaussian model's draw (:meth:`neft.variation.Crossbar.sample_chip`).
In training ``w + dW`` with a detached ``dW`` is the straight-through estimator of the quantization.
Random draws per layer, in this order from the chip's generator: programming ``randn [n, *shape]``, stuck
``rand [2, n, *shape]`` (only with a stuck rate > 0), drift ``randn [2, n, *shape]`` (only when devices drift).
"""

from __future__ import annotations

import torch

from . import mapping
from .devices import DeviceModel

__all__ = ["sample", "compensation"]


def compensation(reference: torch.Tensor, drifted: torch.Tensor) -> torch.Tensor:
    """Global drift compensation factor ``alpha = readout(reference) / readout(drifted)`` of one layer.

    ``readout(W) = mean_o |sum_i W[o, i]|``: the mean absolute output of the layer's crossbar matrix
    ``W.flatten(1)`` ``[out, fan_in]`` for an all-ones input (aihwkit GlobalDriftCompensation). Returns a 0-d
    tensor; 1 when the drifted readout is 0 (nothing to rescale).
    """
    ref = reference.flatten(1).sum(1).abs().mean()
    now = drifted.flatten(1).sum(1).abs().mean()
    return torch.where(now > 0, ref / torch.where(now > 0, now, torch.ones_like(now)), torch.ones_like(now))


def sample(device_model: DeviceModel, weight: torch.Tensor, sigma: float, generator: torch.Generator | None = None,
           censor_k: float | None = None, verified_scale: torch.Tensor | None = None) -> torch.Tensor:
    """Draw one layer of a realistic chip and return its weight error ``dW = W_chip - w``.

    Args:
        device_model: a :class:`~neft.devices.DeviceModel` with ``quantize`` set (the mapping's bits and the
            device effects come from it).
        weight: the clean weights of one mapped layer, any shape with a leading output dimension (Conv/Linear).
        sigma: relative device variation (programming), in [0, 1].
        generator: the chip's ``torch.Generator`` on ``weight``'s device.
        censor_k: right-censor each device's programming draw at ``+censor_k`` std (rcg's training noise).
        verified_scale: optional per-weight factor on the programming std, shaped like ``weight``
            (write-verified weights, :meth:`neft.variation.Crossbar.sample_chip`).

    Returns:
        ``dW``, shaped like ``weight``, detached. At sigma 0 without stuck devices or drift ``w + dW`` is the
        dequantized weight exactly.

    Raises:
        ValueError: as :meth:`DeviceModel.std` (invalid sigma, non-finite weights).
    """
    model = device_model
    with torch.no_grad():
        w, w_max, _ = model._scale(weight, sigma)
        top = mapping.magnitude_levels(model.weight_bits)
        levels = mapping.quantize(w, w_max, model.weight_bits)
        g = mapping.to_conductances(levels, model.weight_bits, model.device_bits, w.dtype)
        n, g_top = model.devices_per_weight, 2 ** model.device_bits - 1
        # programming: std in levels = sigma * (2**K - 1) * the weight's state multiplier
        unit = model.std(w, 1.0)
        unit = unit / torch.where(w_max > 0, model.bit_factor * w_max, torch.ones_like(w_max))
        std = sigma * g_top * (unit if verified_scale is None else unit * verified_scale)
        error = torch.randn((n, *w.shape), generator=generator, dtype=w.dtype, device=w.device)
        if censor_k is not None:
            error.clamp_(max=censor_k)
        error = error * std
        negative = levels < 0
        g = g + torch.stack([torch.where(negative, 0.0, error), torch.where(negative, error, 0.0)])
        stuck = None
        if model.stuck_off > 0 or model.stuck_on > 0:
            u = torch.rand(g.shape, generator=generator, dtype=w.dtype, device=w.device)
            off, on = u < model.stuck_off, (u >= model.stuck_off) & (u < model.stuck_off + model.stuck_on)
            g = torch.where(off, 0.0, torch.where(on, float(g_top), g))
            stuck = off | on
        lsb = w_max / top
        programmed = mapping.from_conductances(g, model.device_bits) * lsb
        chip_weight = programmed
        if model.drifts:
            nu = (model.drift_nu_mean + model.drift_nu_std
                  * torch.randn(g.shape, generator=generator, dtype=w.dtype, device=w.device)).clamp_(min=0)
            if model.drift_time is not None and model.drift_time != model.drift_t0:  # read at drift_time
                factor = torch.pow(torch.as_tensor(model.drift_time / model.drift_t0, dtype=w.dtype, device=w.device), -nu)
                if stuck is not None:
                    factor = torch.where(stuck, 1.0, factor)
                chip_weight = mapping.from_conductances(g * factor, model.device_bits) * lsb
        if model.drift_compensation:
            chip_weight = chip_weight * compensation(programmed, chip_weight)
        return chip_weight - w
