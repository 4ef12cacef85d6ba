"""The Gaussian device variation model: how a relative device variation sigma becomes a weight perturbation.

A weight of ``weight_bits`` bits is stored on ``weight_bits / device_bits`` devices; device ``j`` carries
significance ``2**(j * device_bits)``. Each device deviates from its programmed conductance by a zero-mean
Gaussian whose standard deviation is ``sigma`` times that device's full conductance range (device-to-device
variation). Summed over the devices of one weight this is an additive Gaussian weight perturbation
(docs/method.md, 'Device variation model'):

    std_W = sigma * max|W| * sqrt(sum_j 4**(j K)) / sum_j 2**(j K)        (0.77763 * sigma * max|W| for 8/2 bits)

State-dependent variation: weights in the intermediate conductance band ``lo < |w| / max|W| < hi`` vary ``s``
times more than the edge states, with the overall sigma rescaled by ``1 / sqrt(0.4 s^2 + 0.6)`` so the
population-average variance stays at sigma when 40 % of the weights are intermediate ([release];
docs/method.md, 'State-dependent variation and presets'). A measured per-state table
(``levels``) replaces the band model when a user has characterised their own chip.

:class:`~neft.chip.device_model.DeviceModel` reads its ``bit_factor``, ``multipliers``, ``std`` and ``sample`` from
the functions here.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from neft.chip.device_checks import check_level_sigma

if TYPE_CHECKING:
    from neft.chip.device_model import DeviceModel

__all__ = ["bit_factor", "multipliers", "weight_scale", "weight_std", "sample"]


def bit_factor(device_bits: int, devices_per_weight: int) -> float:
    """``sqrt(sum_j 4**(jK)) / sum_j 2**(jK)`` over the ``devices_per_weight`` devices of ``device_bits`` bits K:
    std of a weight per unit sigma and unit max|W| (docs/method.md, 'Device variation model')."""
    k, n = device_bits, devices_per_weight
    return math.sqrt(sum(4 ** (j * k) for j in range(n))) / sum(2 ** (j * k) for j in range(n))


def multipliers(state_factor: float) -> tuple[float, float]:
    """(edge, intermediate) std multipliers for state factor s: ``1 / sqrt(0.4 s^2 + 0.6)`` and ``s`` times it,
    relative to the state-independent std_W(sigma) (docs/method.md, 'State-dependent variation and presets')."""
    s = state_factor
    edge = 1.0 / math.sqrt(0.4 * s * s + 0.6)
    return edge, edge * s


def weight_scale(model: DeviceModel, weight: torch.Tensor,
                 sigma: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(detached weight, max|W|, std_W(sigma) = sigma * bit_factor * max|W|) of one layer (docs/method.md).

    Raises:
        ValueError: for negative, NaN or infinite sigma, a sigma at which a state of the measured ``levels`` would
            vary by more than the whole conductance range (:func:`~neft.chip.device_checks.check_level_sigma`), or
            NaN/infinite weights.
    """
    sigma = check_level_sigma(model, sigma)
    w = weight.detach()
    w_max = w.abs().amax() if w.numel() else w.new_zeros(())
    if not torch.isfinite(w_max):
        raise ValueError("weight contains NaN or infinite values; check the model's parameters before perturbing")
    return w, w_max, sigma * model.bit_factor * w_max


def weight_std(model: DeviceModel, weight: torch.Tensor, sigma: float) -> torch.Tensor:
    """Per-element standard deviation of ``model``'s perturbation of ``weight`` (any shape) at relative device
    variation ``sigma``: :meth:`~neft.chip.device_model.DeviceModel.std` (shapes, units and errors there)."""
    w, w_max, scale = weight_scale(model, weight, sigma)
    if model.state_independent:
        return scale.expand_as(w).clone()
    ratio = w.abs() / torch.where(w_max > 0, w_max, torch.ones_like(w_max))
    if model.levels is not None:
        table = torch.tensor(model.levels, dtype=w.dtype, device=w.device)
        index = (ratio * len(model.levels)).long().clamp_(0, len(model.levels) - 1)
        return scale * table[index]
    edge, middle = model.multipliers
    lo, hi = model.band
    intermediate = (ratio > lo) & (ratio < hi)
    return scale * torch.where(intermediate, torch.full_like(w, middle), torch.full_like(w, edge))


def sample(model: DeviceModel, weight: torch.Tensor, sigma: float, generator: torch.Generator | None = None,
           censor_k: float | None = None) -> torch.Tensor:
    """One additive perturbation ``dW`` of ``weight`` drawn from ``model`` (one programmed chip for this layer),
    right-censored at ``censor_k`` standard deviations when given: :meth:`~neft.chip.device_model.DeviceModel.sample`
    (arguments, shapes and errors there)."""
    std = weight_scale(model, weight, sigma)[2] if model.state_independent else weight_std(model, weight, sigma)
    noise = torch.randn(weight.shape, generator=generator, dtype=weight.dtype, device=weight.device)
    if censor_k is not None:
        noise.clamp_(max=censor_k)
    return noise.mul_(std)
