"""Device effects of the realistic chip, frozen per chip (docs/method.md, 'The realistic chip').

A layer of a chip with ``DeviceModel.quantize`` is drawn in five steps on the devices of its mapping
(:mod:`neft.chip.mapping`: quantized levels, digits on a differential pair, conductances in level units ``0 .. T``,
``T = 2**device_bits - 1``, level 0 at ``g_min`` and ``T`` at ``g_max``, :mod:`neft.chip.device_laws`):

1. **Programming variation.** Every device of both rows of the pair (the idle one at ``g_min`` too) deviates from
   its target by a zero-mean Gaussian with std ``sigma * T`` levels (``sigma`` of its conductance range) times the
   weight's state multiplier (:meth:`DeviceModel.std`), combined in quadrature with the conductance law
   ``prog_noise_coeffs`` of the target when set (aihwkit ``PCMLikeNoiseModel``), then clipped to ``[0, T]``
   (``[g_min, g_max]``; aihwkit clips at 0, CrossSim to its range).
2. **Stuck-at devices.** Each device of both rows is stuck at ``g_min`` (level 0) with probability ``stuck_off``
   and at ``g_max`` (``T``) with probability ``stuck_on``; a stuck device has no programming error and does not
   drift.
3. **Drift.** Each device follows ``G(t) = G(t0) * (t / t0) ** -nu`` in uS (``g_min`` included), ``nu ~ N(mean,
   std)`` drawn per device, the mean and std constants (``drift_nu_mean``, ``drift_nu_std``) or laws of the
   target conductance (``drift_nu_mean_law``, ``drift_nu_std_law``), clipped at 0 or folded (``drift_nu_abs``, as
   aihwkit; Joshi et al., Nature Communications 2020). A device that drifts below ``g_min`` is clipped there (above
   ``g_max``, read before t0, at ``g_max``). ``nu`` is drawn whatever ``t`` is, so one chip seed gives the same chip
   at every read time ``drift_time``, and ``t = t0`` is no drift.
4. **Accumulated 1/f read noise** (``read_noise_1f``, frozen per chip and read time): each device's drifted
   conductance ``G`` gets ``|G| * Q_s(G_prog / g_max) * sqrt(ln((t + t_read) / (2 t_read))) * z``, ``z ~ N(0, 1)``,
   clipped to ``[g_min, g_max]`` (aihwkit ``PCMLikeNoiseModel``); with ``read_noise_1f_per_read`` the circuit draws
   it per read instead (:mod:`neft.chip.circuit_layer`).
   With ``drift_of = "resplit"`` (aihwkit 1.2, :func:`neft.chip.aihwkit_conventions.resplit`) steps 3b and 4 act
   on the programmed weight re-split onto one device of its sign (the other at 0) with the layer's new scale
   ``T / max|W_p|``, ``nu`` still that of the target's row, ``Q_s`` of the re-split conductance, and the read
   weight is converted back with that scale. With ``clip_g_max = False`` (aihwkit) steps 1, 3 and 4 clip at
   ``g_min`` only, never at ``g_max``.
5. **Global drift compensation** (``drift_compensation``): the layer is scaled by
   ``alpha = readout(W(t0)) / readout(W(t))``, one scalar per layer measured on this chip's own devices
   (:func:`compensation`: an all-ones input, or aihwkit 1.2's one-hot inputs).

The result is one effective weight per mapped weight, returned as ``dW = W_chip - w`` so that the Monte Carlo
engine and training use it exactly like the Gaussian model's draw (:meth:`neft.chip.crossbar.Crossbar.sample_chip`).
In training ``w + dW`` with a detached ``dW`` is the straight-through estimator of the quantization.
Random draws per layer, in this order from the chip's generator, each shaped ``[2, n, *shape]`` (row, digit,
weight): programming ``randn``, stuck ``rand`` (only with a stuck rate > 0), drift ``randn`` (only when devices
drift), 1/f ``randn`` (only with frozen 1/f read noise). None depends on the batch size or on chips per pass.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from neft.chip import aihwkit_conventions, mapping, variation
from neft.chip import device_laws as laws
from neft.chip.device_model import DeviceModel

__all__ = ["sample", "map_layer", "Mapped", "target_laws", "stick", "compensation", "program", "draw",
           "drift_exponents", "drift", "read_1f", "microsiemens", "read_1f_std"]


def compensation(reference: torch.Tensor, drifted: torch.Tensor, readout: str = "ones") -> torch.Tensor:
    """Global drift compensation factor ``alpha = readout(reference) / readout(drifted)`` of one layer.

    ``readout="ones"``: ``mean_o |sum_i W[o, i]|``, the mean absolute output of the layer's crossbar matrix
    ``W.flatten(1)`` ``[out, fan_in]`` for an all-ones input. ``"one-hot"``: ``mean_{o,i} |W[o, i]|``, the mean
    absolute output for the one-hot inputs ``eye(fan_in)`` (aihwkit 1.2 ``GlobalDriftCompensation``: its
    ``get_readout_tensor`` and ``readout``). Returns a 0-d tensor; 1 when the drifted readout is 0 (nothing to
    rescale; aihwkit floors each readout at 1e-4 instead).
    """
    if readout == "one-hot":
        ref, now = reference.abs().mean(), drifted.abs().mean()
    else:
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
    stuck = uniform < stuck_off + stuck_on
    return conductances.masked_fill(stuck, float(g_top)).masked_fill_(uniform < stuck_off, 0.0), stuck


class Mapped(NamedTuple):
    """The deterministic part of one layer's chip (:func:`map_layer`): ``w_max`` (0-d, max|W|), ``conductances``
    (programmed targets ``[2, n, *shape]`` in level units) and the laws at the targets (:func:`target_laws`):
    ``prog_law`` (the programming law's std in levels, or None), ``nu_mean`` and ``nu_std`` (tensors like
    ``conductances``, or the constants)."""

    w_max: torch.Tensor
    conductances: torch.Tensor
    prog_law: torch.Tensor | None
    nu_mean: torch.Tensor | float
    nu_std: torch.Tensor | float


def target_laws(model: DeviceModel, target: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | float,
                                                                     torch.Tensor | float]:
    """The laws of the target conductances ``target`` (level units, any shape): the programming law's std in levels
    (``prog_noise_coeffs``, None without it), the drift exponent's mean and std (the laws, or the constants)."""
    x = _relative(model, target) if model.prog_noise_coeffs or model.drifts else None
    law = None
    if model.prog_noise_coeffs is not None:  # the law in uS, in levels: / ((g_max - g_min) / T)
        law = laws.polynomial(model.prog_noise_coeffs, x) * (
            (2 ** model.device_bits - 1) / (model.g_max - laws.g_min(model)))
    log_x = torch.log(x.clamp(min=laws.X_FLOOR)) if model.drift_nu_mean_law or model.drift_nu_std_law else None
    mean = model.drift_nu_mean if model.drift_nu_mean_law is None else laws.log_law(model.drift_nu_mean_law, log_x)
    std = model.drift_nu_std if model.drift_nu_std_law is None else laws.log_law(model.drift_nu_std_law, log_x)
    return law, mean, std


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
        return Mapped(w_max, g, *target_laws(device_model, g))


def microsiemens(model: DeviceModel, levels: torch.Tensor) -> torch.Tensor:
    """Conductances in level units (any shape; level 0 at ``g_min``, ``2**device_bits - 1`` at ``g_max``) in uS:
    ``(levels + level_offset) * (g_max - g_min) / T`` (:mod:`neft.chip.device_laws`)."""
    step = (model.g_max - laws.g_min(model)) / (2 ** model.device_bits - 1)  # uS per level
    return (levels + laws.level_offset(model)) * step


def _relative(model: DeviceModel, levels: torch.Tensor) -> torch.Tensor:
    """``x = G / g_max`` of conductances in level units (a new tensor)."""
    offset, top = laws.level_offset(model), 2 ** model.device_bits - 1
    scale = (model.g_max - laws.g_min(model)) / top / model.g_max
    return (levels + offset).mul_(scale) if offset else levels * scale


def program(model: DeviceModel, target: torch.Tensor, sigma: float, generator: torch.Generator | None,
            state_std: torch.Tensor | float = 1.0, censor_k: float | None = None,
            verified_scale: torch.Tensor | None = None, law: torch.Tensor | None = None) -> torch.Tensor:
    """Step 1: the programmed conductances of the targets ``target`` (level units, any shape, one device each).

    Each device gets ``target + std * z``, ``z ~ N(0, 1)`` drawn ``randn(target.shape)`` from ``generator`` (right-
    censored at ``censor_k``), ``std = hypot(sigma * T * state_std, law(target))`` levels with the programming law
    ``prog_noise_coeffs`` (uS, :func:`neft.chip.device_laws.polynomial`; without it ``sigma * T * state_std``),
    times ``verified_scale``, then clipped to ``[0, T]`` (``[g_min, g_max]``). ``state_std``: the weight's state
    multiplier, broadcast against ``target``; ``law``: the law's std in levels if computed already
    (:func:`target_laws`). Returns the programmed conductances, ``target``'s shape.
    """
    top = 2 ** model.device_bits - 1
    std = sigma * top * state_std  # (x * 1.0 is x exactly)
    if model.prog_noise_coeffs is not None:
        law = law if law is not None else target_laws(model, target)[0]
        std = torch.hypot(torch.as_tensor(std, dtype=target.dtype, device=target.device), law)
    if verified_scale is not None:
        std = std * verified_scale
    error = torch.randn(target.shape, generator=generator, dtype=target.dtype, device=target.device)
    if censor_k is not None:
        error.clamp_(max=censor_k)
    return (target + error.mul_(std)).clamp_(0, aihwkit_conventions.upper_clip(model))


def drift_exponents(model: DeviceModel, target: torch.Tensor, generator: torch.Generator | None,
                    mean: torch.Tensor | float | None = None, std: torch.Tensor | float | None = None) -> torch.Tensor:
    """Step 3a: one drift exponent per device of the targets ``target`` (level units): ``mean + std * z``, ``z``
    drawn ``randn(target.shape)``, mean and std the constants or the laws of the target conductance
    (:func:`target_laws`, given as ``mean`` and ``std`` if computed already), folded (``drift_nu_abs``) or clipped
    at 0."""
    if mean is None or std is None:
        _, mean, std = target_laws(model, target)
    z = torch.randn(target.shape, generator=generator, dtype=target.dtype, device=target.device)
    nu = z.mul_(std).add_(mean)  # mean + std * z (IEEE sums and products commute)
    return nu.abs_() if model.drift_nu_abs else nu.clamp_(min=0)


def drift(model: DeviceModel, g: torch.Tensor, nu: torch.Tensor, stuck: torch.Tensor | None) -> torch.Tensor:
    """Step 3b: conductances ``g`` (level units) read at ``drift_time``: ``G (t / t0) ** -nu`` in uS (``g_min``
    included), stuck devices unchanged, clipped to ``[0, T]`` (below ``g_min`` to ``g_min``); ``g`` itself at t0.
    ``nu`` (one exponent per device, :func:`drift_exponents`) is overwritten."""
    if model.drift_time is None or model.drift_time == model.drift_t0:  # read at t0: no drift
        return g
    factor = torch.pow(model.drift_time / model.drift_t0, nu.neg_())  # (t / t0) ** -nu (nu is used up)
    if stuck is not None:
        factor.masked_fill_(stuck, 1.0)
    offset = laws.level_offset(model)
    top = aihwkit_conventions.upper_clip(model)
    if not offset:  # g_min = 0
        return factor.mul_(g).clamp_(0, top)
    return factor.mul_(g + offset).sub_(offset).clamp_(0, top)


def read_1f(model: DeviceModel, programmed: torch.Tensor, g: torch.Tensor,
            generator: torch.Generator | None) -> torch.Tensor:
    """Step 4: conductances ``g`` (level units, drifted) with their frozen 1/f read noise at the read time ``t``
    (``drift_time``, else ``drift_t0``): ``G + |G| * Q_s(G_prog / g_max) * sqrt(ln((t + t_read) / (2 t_read))) * z``
    in uS, ``G_prog`` the ``programmed`` conductances, ``z`` drawn ``randn(g.shape)``, clipped to ``[0, T]``."""
    t = model.drift_time if model.drift_time is not None else model.drift_t0
    relative = laws.q_s(model.read_noise_1f, _relative(model, programmed)).mul_(laws.accumulated(t, model.t_read))
    z = torch.randn(g.shape, generator=generator, dtype=g.dtype, device=g.device)
    top = aihwkit_conventions.upper_clip(model)
    return z.mul_(relative).mul_(g + laws.level_offset(model)).add_(g).clamp_(0, top)


def read_1f_std(model: DeviceModel, weight: torch.Tensor) -> torch.Tensor:
    """Per-weight std (weight units, ``weight``'s shape) of the 1/f read noise drawn per read
    (``read_noise_1f_per_read``; :mod:`neft.chip.circuit`): the devices of the clean weight's mapping at their
    target conductances ``G``, each with std ``G * Q_s(G / g_max) * sqrt(ln((t + t_read) / (2 t_read)))`` uS at the
    read time ``t`` (``drift_time``, else ``drift_t0``), added in variance over both rows and the digits with their
    significances. One std serves every chip, so it reads the targets, not a chip's programmed and drifted
    conductances (the frozen form, :func:`read_1f`, does); it is not clipped to the range."""
    with torch.no_grad():
        w_max, target = map_layer(model, weight)[:2]
        t = model.drift_time if model.drift_time is not None else model.drift_t0
        relative = laws.q_s(model.read_noise_1f, _relative(model, target)) * laws.accumulated(t, model.t_read)
        significance = torch.tensor([2.0 ** (j * model.device_bits) for j in range(target.shape[1])],
                                    dtype=target.dtype, device=target.device).view(1, -1, *[1] * weight.dim())
        device_std = (target + laws.level_offset(model)) * relative * significance
        return device_std.square().sum((0, 1)).sqrt() * (w_max / mapping.magnitude_levels(model.weight_bits))


def sample(device_model: DeviceModel, weight: torch.Tensor, sigma: float, generator: torch.Generator | None = None,
           censor_k: float | None = None, verified_scale: torch.Tensor | None = None,
           mapped: Mapped | None = None) -> torch.Tensor:
    """Draw one layer of a realistic chip and return its weight error ``dW = W_chip - w``: :func:`draw` (its
    arguments and errors), then step 5 (global drift compensation on the weights) when the model has it.

    Returns:
        ``dW``, shaped like ``weight``, detached. At sigma 0 without a programming law, stuck devices, drift or
        frozen 1/f read noise ``w + dW`` is the dequantized weight exactly.
    """
    with torch.no_grad():
        programmed, chip_weight, w = draw(device_model, weight, sigma, generator, censor_k, verified_scale, mapped)
        if device_model.drift_compensation:
            chip_weight = chip_weight * compensation(programmed, chip_weight, device_model.drift_compensation_input)
        return chip_weight - w


def draw(device_model: DeviceModel, weight: torch.Tensor, sigma: float, generator: torch.Generator | None = None,
         censor_k: float | None = None, verified_scale: torch.Tensor | None = None,
         mapped: Mapped | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw one layer of a realistic chip, steps 1-4 (no compensation; every random draw of the layer).

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
        ``(programmed, read, w)``, each shaped like ``weight``, detached: the programmed weights at t0 (steps 1-2),
        the weights read at ``drift_time`` (steps 3-4, uncompensated; ``programmed`` itself without drift or 1/f
        noise) and the clean weights they were drawn for.

    Raises:
        ValueError: as :meth:`DeviceModel.std` (invalid sigma, non-finite weights).
    """
    model = device_model
    with torch.no_grad():
        w = variation.weight_scale(model, weight, sigma)[0]
        w_max, target, law, nu_mean, nu_std = mapped if mapped is not None else map_layer(model, w)
        state = 1.0
        if not model.state_independent:  # the weight's state multiplier
            state = model.std(w, 1.0) / torch.where(w_max > 0, model.bit_factor * w_max, torch.ones_like(w_max))
        g = program(model, target, sigma, generator, state, censor_k, verified_scale, law)
        stuck = None
        if model.stuck_off > 0 or model.stuck_on > 0:
            uniform = torch.rand(g.shape, generator=generator, dtype=w.dtype, device=w.device)
            g, stuck = stick(g, uniform, model.stuck_off, model.stuck_on, 2 ** model.device_bits - 1)
        lsb = w_max / mapping.magnitude_levels(model.weight_bits)
        source, unit = (g, None) if model.drift_of == "devices" else aihwkit_conventions.resplit(model, g)
        now = (drift(model, source, drift_exponents(model, target, generator, nu_mean, nu_std), stuck)
               if model.drifts else source)
        if model.read_noise_1f is not None and not model.read_noise_1f_per_read:
            now = read_1f(model, source, now, generator)
        programmed = chip_weight = mapping.from_conductances(g, model.device_bits) * lsb
        if now is not g:
            chip_weight = mapping.from_conductances(now, model.device_bits) * (lsb if unit is None else unit * lsb)
        return programmed, chip_weight, w
