"""The ADC as a circuit (docs/method.md, 'The crossbar circuit', 'Converter circuits'): every ADC of a chip (one per
column of every tile, and per bit slice in sliced mode) has its own offset, gain error, integral nonlinearity and,
for a successive-approximation (SAR) ADC, capacitor mismatch, drawn per chip from the chip's seed.

The anchor is CrossSim 3.2's SAR model (``simulator/circuits/adc/sar_adc.py``; Spear et al., "The Impact of
Analog-to-Digital Converter Architecture and Variability on Analog Neural Network Accuracy", IEEE JXCDC 2023): a
binary search against a capacitive DAC whose capacitor ``k`` (nominal ``2**k`` unit capacitors) has a random error of
std ``sigma * 2**(k / 2)`` units (mismatch grows with the square root of a capacitor's area), and a termination
capacitor of one unit. The terms are IEEE Std 1241 (offset, gain error, INL with the end points at 0).

With every setting at 0 the ideal converter of :func:`neft.chip.converters.codes` runs, bit for bit.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from neft.common.seeds import adc_seed

__all__ = ["AdcErrors", "AdcCircuit", "sar_codes", "transfer", "CHUNK"]

CHUNK = 16  # images whose partial sums one in-place conversion step holds temporaries for


@dataclass(frozen=True)
class AdcErrors:
    """The per-ADC errors of one layer of one chip (or of the chips of a pass, stacked first).

    Attributes:
        offset: ``[..., A, C]`` input-referred offset in ADC steps (LSB) of ADC group ``A`` (tile and slice), column C.
        gain: ``[..., A, C]`` relative gain error (the transfer's slope is ``1 + gain``).
        inl: ``[..., A, C]`` mid-scale INL in LSB of a bow ``inl * (1 - u**2)``, ``u`` the input over half the full
            scale (0 at both ends of the range, IEEE 1241's end-point INL).
        weights: ``[..., A, C, bits]`` the SAR's bit weights in LSB (nominal ``2**k``), or None without mismatch.
    """

    offset: torch.Tensor
    gain: torch.Tensor
    inl: torch.Tensor
    weights: torch.Tensor | None


def draw(chip_seed: int, layer: int, groups: int, columns: int, bits: int, offset: float, gain: float, inl: float,
         mismatch: float, device: torch.device | str = "cpu") -> AdcErrors:
    """The errors of the ``groups x columns`` ADCs of mapped layer ``layer`` on the chip drawn from ``chip_seed``.

    One generator seeded :func:`neft.common.seeds.adc_seed` ``(chip_seed, layer)`` draws, in this order, standard
    normals for the offsets, gains, INL amplitudes (``[groups, columns]`` each) and the ``bits + 1`` capacitors of
    every SAR (``[groups, columns, bits + 1]``), whatever settings are on: each error replays from the chip's seed
    alone, and turning one on does not change the others. Capacitor ``k < bits`` is ``2**k + mismatch * 2**(k/2) *
    z_k`` units, the termination capacitor ``1 + mismatch * z_bits``; bit ``k`` weighs ``2**bits * c_k / sum(c)``
    LSB (the capacitive divider of the reference).

    Args:
        offset, gain, inl, mismatch: the standard deviations (LSB, relative, LSB, relative to a unit capacitor).

    Returns:
        :class:`AdcErrors` on ``device`` (float32).
    """
    generator = torch.Generator().manual_seed(adc_seed(chip_seed, layer))
    z = torch.randn((3 + bits + 1, groups, columns), generator=generator, dtype=torch.float64)
    weights = None
    if mismatch > 0:
        nominal = 2.0 ** torch.arange(bits, dtype=torch.float64)
        caps = torch.cat([nominal + mismatch * nominal.sqrt() * z[3:3 + bits].movedim(0, -1),
                          1 + mismatch * z[3 + bits].unsqueeze(-1)], -1)  # [groups, columns, bits + 1]
        weights = (2.0 ** bits * caps[..., :bits] / caps.sum(-1, keepdim=True)).float().to(device)
    return AdcErrors((offset * z[0]).float().to(device), (gain * z[1]).float().to(device),
                     (inl * z[2]).float().to(device), weights)


def transfer(x: torch.Tensor, errors: AdcErrors, bits: int, shape: Sequence[int]) -> torch.Tensor:
    """The analog input as the ADC's comparators see it, in LSB: ``x (1 + gain) + offset + inl (1 - u**2)`` with
    ``u = x / 2**(bits - 1)`` clipped to [-1, 1] (differentiable).

    Args:
        x: partial sums in ADC steps, ``[B, C, ...]`` or ``[..., C]``.
        errors: one ADC group's errors ``[C]`` (its offset, gain, inl).
        shape: the shape that broadcasts ``[C]`` against ``x`` (``(C, 1, ...)`` for ``[B, C, ...]``).
    """
    def view(t):
        return t.reshape(shape)
    u = (x / 2 ** (bits - 1)).clamp(-1, 1)
    return x * (1 + view(errors.gain)) + view(errors.offset) + view(errors.inl) * (1 - u * u)


def sar_codes(x: torch.Tensor, weights: torch.Tensor, bits: int) -> torch.Tensor:
    """Signed codes ``-2**(bits-1) .. 2**(bits-1) - 1`` of ``x`` (in LSB) from a SAR binary search with bit weights
    ``weights`` (broadcast against ``x`` with the bit last, in LSB; nominal ``2**k`` gives rounding to the nearest
    code, clipped). Not differentiable (the caller adds a straight-through gradient); ``x`` is not changed.

    MSB first, bit ``k`` is kept when the offset-binary input ``x + 2**(bits-1) + 1/2`` reaches the sum of the kept
    bits' weights plus ``weights[k]`` (the residual, input minus kept weights, reaches ``weights[k]``); the code
    counts the kept bits at their nominal ``2**k``.
    """
    return _sar_search(x + (2 ** (bits - 1) + 0.5), weights, bits)


def _sar_search(residual: torch.Tensor, weights: torch.Tensor, bits: int) -> torch.Tensor:
    """:func:`sar_codes` of the offset-binary input ``residual`` (overwritten): one code tensor and one temporary of
    its size at a time."""
    code = torch.full_like(residual, -float(2 ** (bits - 1)))
    for k in reversed(range(bits)):
        weight = weights[..., k]
        bit = residual >= weight
        residual.sub_(bit * weight)
        code.add_(bit.to(code.dtype), alpha=2.0 ** k)
    return code


class AdcCircuit:
    """The ADC errors of the chips being read, drawn once per chip and layer and kept for its batches.

    Args:
        bits: the ADC's bits.
        offset, gain, inl, mismatch: the circuit settings ``adc_offset``, ``adc_gain``, ``adc_inl``, ``adc_mismatch``.
    """

    def __init__(self, bits: int, offset: float, gain: float, inl: float, mismatch: float) -> None:
        self.bits, self.sigmas = bits, (offset, gain, inl, mismatch)
        self._cache: dict[tuple, AdcErrors] = {}

    @classmethod
    def of(cls, settings) -> AdcCircuit | None:
        """The ADC circuit of :class:`~neft.chip.circuit_settings.CircuitSettings` ``settings``; None when every ADC
        error is 0 (ideal ADCs)."""
        if not settings.adc_errors:
            return None
        return cls(settings.adc_bits, settings.adc_offset, settings.adc_gain, settings.adc_inl, settings.adc_mismatch)

    def prepare(self, chip_seeds: Sequence[int], layers) -> None:
        """Draw the errors of every ADC of ``layers`` (:class:`~neft.chip.circuit_layer.CircuitLayer`) on chips
        ``chip_seeds`` into the cache, outside ``torch.func.vmap`` (which refuses random draws)."""
        for layer in layers:
            weight = layer.module.weight
            self.errors(chip_seeds, layer.index, len(layer.tiles) * layer.slice_count, weight.shape[0], weight.device)

    def read(self, layer, column: int, x: torch.Tensor, chip_seeds: Sequence[int],
             chip_index: torch.Tensor | None) -> torch.Tensor:
        """:meth:`convert` of partial sums ``x`` (in ADC steps, one chip's) by ADC group ``column`` (tile and slice)
        of circuit layer ``layer`` on chip ``chip_index`` of ``chip_seeds``; the columns are dimension 1 of a
        convolution's partial sums and the last of a linear layer's."""
        channel_dim = 1 if layer.conv is not None else x.dim() - 1
        errors = self.errors(chip_seeds, layer.index, len(layer.tiles) * layer.slice_count, x.shape[channel_dim],
                             x.device)
        return self.convert(x, errors, column, chip_index, channel_dim)

    def errors(self, chip_seeds: Sequence[int], layer: int, groups: int, columns: int,
               device: torch.device) -> AdcErrors:
        """The errors of layer ``layer`` on chips ``chip_seeds``, stacked ``[K, groups, columns, ...]`` (cached for
        the chips of the last call only)."""
        key = (tuple(chip_seeds), layer, groups, columns, str(device))
        if key not in self._cache:
            if any(k[0] != key[0] for k in self._cache):
                self._cache.clear()  # a new group of chips
            drawn = [draw(seed, layer, groups, columns, self.bits, *self.sigmas, device=device)
                     for seed in chip_seeds]
            self._cache[key] = AdcErrors(*[None if parts[0] is None else torch.stack(parts)
                                           for parts in zip(*[(d.offset, d.gain, d.inl, d.weights) for d in drawn])])
        return self._cache[key]

    def convert(self, x: torch.Tensor, errors: AdcErrors, group: int, chip_index: torch.Tensor | None,
                channel_dim: int) -> torch.Tensor:
        """The codes of partial sums ``x`` (in ADC steps; columns along ``channel_dim``) read by ADC group ``group``
        of the chip at ``chip_index`` (None: the first chip): :func:`transfer`, then rounding and clipping, or the
        SAR search with mismatch; the gradient is that of the transfer inside the range (straight through the
        rounding), 0 where clipped. Without autograd ``x`` (which the caller owns) is overwritten and at most three
        more tensors of its size are held at a time."""
        pick = functools.partial(_pick, group=group, chip_index=chip_index)
        one = AdcErrors(pick(errors.offset), pick(errors.gain), pick(errors.inl),
                        None if errors.weights is None else pick(errors.weights))
        shape = [1] * x.dim()
        shape[channel_dim] = -1
        if not (x.requires_grad and torch.is_grad_enabled()):
            return _lean_codes(x, one, shape, self.bits)
        analog = transfer(x, one, self.bits, shape)
        half = 2 ** (self.bits - 1)
        clipped = analog.clamp(-half, half - 1)
        if one.weights is None:
            digital = torch.round(clipped)
        else:
            digital = sar_codes(analog.detach(), one.weights.reshape(*shape, self.bits), self.bits)
        return clipped + (digital - clipped).detach()


def _lean_codes(x: torch.Tensor, errors: AdcErrors, shape: list[int], bits: int) -> torch.Tensor:
    """The codes of :meth:`AdcCircuit.convert` without autograd, computed in place in ``x``, :data:`CHUNK` images
    (first dimension) at a time so that its temporaries stay small: the same values as :func:`transfer` then
    rounding (or :func:`sar_codes`), up to float rounding."""
    half = 2 ** (bits - 1)
    weights = None if errors.weights is None else errors.weights.reshape(*shape, bits)
    for part in x.split(CHUNK):
        bow = part.div(half).clamp_min_(-1).clamp_max_(1)  # vmap batches clamp_min_ and clamp_max_, not clamp_
        bow.mul_(bow).neg_().add_(1).mul_(errors.inl.reshape(shape))
        part.mul_(1 + errors.gain.reshape(shape)).add_(errors.offset.reshape(shape)).add_(bow)
        del bow
        if weights is None:
            part.clamp_min_(-half).clamp_max_(half - 1).round_()
        else:
            part.copy_(_sar_search(part.add_(half + 0.5), weights, bits))
    return x


def _pick(t: torch.Tensor, group: int, chip_index: torch.Tensor | None) -> torch.Tensor:
    """One ADC group's errors of one chip: ``t[chip, group]`` (``chip_index`` batched under vmap, or chip 0)."""
    return t[0, group] if chip_index is None else t[chip_index][group]
