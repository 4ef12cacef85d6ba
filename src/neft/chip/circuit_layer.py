"""One crossbar-mapped layer as the crossbar circuit runs it (docs/method.md, 'The crossbar circuit'): its tiles (row
ranges of the weight's input dimension), each tile's slice of the input and weight, the crossbar product, the read-noise
variance of each tile's partial sums, and the converters' calibrated ranges.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from neft.chip.circuit_settings import CircuitSettings, tile_ranges
from neft.chip.converters import calibration_magnitude, full_scale_steps
from neft.common.errors import SettingError

__all__ = ["CircuitLayer", "window_reduce"]

_CONV = {nn.Conv1d: F.conv1d, nn.Conv2d: F.conv2d, nn.Conv3d: F.conv3d}


def _box(x: torch.Tensor, kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int]) -> torch.Tensor:
    """Sums of ``x`` ``[B, C, *spatial]`` (already padded) over each strided, dilated kernel window, per channel:
    the convolution with a kernel of ones, as separable sums of shifted views (cheaper than a one-channel conv)."""
    return window_reduce(x, kernel, stride, dilation, lambda a, b: a + b, lambda total, view: total.add_(view))


def conv_pads(m: nn.Module) -> list[int]:
    """The amounts convolution ``m`` pads its input by, in ``F.pad``'s order (last dimension first, left then
    right), as torch's forward takes them: ``padding`` read at call time for zero padding (integers, ``"valid"``, or
    ``"same"``: ``dilation * (kernel - 1)`` split with the odd one on the right), the amounts torch computed when
    the layer was built for the other padding modes."""
    if m.padding_mode != "zeros":
        return list(m._reversed_padding_repeated_twice)
    if m.padding == "valid":
        return [0] * (2 * len(m.kernel_size))
    if m.padding == "same":
        totals = [d * (k - 1) for d, k in zip(m.dilation, m.kernel_size)]
        return [side for total in reversed(totals) for side in (total // 2, total - total // 2)]
    padding = (m.padding,) * len(m.kernel_size) if isinstance(m.padding, int) else m.padding
    return [p for p in reversed(padding) for _ in range(2)]


def padded(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``x`` ``[B, C, *spatial]`` padded as convolution ``m`` pads its input (:func:`conv_pads`, every
    ``padding_mode``), so that the convolution then runs unpadded; ``x`` itself when it does not pad."""
    pads = conv_pads(m)
    if not any(pads):
        return x
    return F.pad(x, pads, mode="constant" if m.padding_mode == "zeros" else m.padding_mode)


def window_reduce(x: torch.Tensor, kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int],
                  first, more) -> torch.Tensor:
    """``x`` ``[B, C, *spatial]`` (already padded) reduced over each strided, dilated kernel window, per channel, one
    axis at a time over shifted views: ``first(tap0, tap1)`` starts a reduction (a new tensor), ``more(total, tap)``
    adds a tap to it (e.g. sums: ``a + b`` then ``total.add_``; maxima: ``torch.maximum`` both)."""
    for axis, (k, s, d) in enumerate(zip(kernel, stride, dilation), start=2):
        span = (x.shape[axis] - d * (k - 1) - 1) // s * s + 1  # the input positions the first tap reads
        index = [slice(None)] * x.dim()
        views = []
        for tap in range(k):
            index[axis] = slice(tap * d, tap * d + span, s)
            views.append(x[tuple(index)])
        total = views[0] if k == 1 else first(views[0], views[1])
        for view in views[2:]:
            total = more(total, view)
        x = total
    return x


class CircuitLayer:
    """One mapped layer as the crossbar runs it: its tiles (row ranges), read-noise stds and calibrated ranges."""

    def __init__(self, index: int, module: nn.Module, std: torch.Tensor | None, tile_rows: int | None,
                 slice_count: int = 1, split: str = "fill") -> None:
        self.index, self.module, self.slice_count = index, module, slice_count
        self.conv = _CONV.get(type(module))
        weight = module.weight
        self.kernel = math.prod(weight.shape[2:])  # rows per input channel (1 for a Linear)
        self.tiles = tile_ranges(weight[0].numel(), tile_rows, split)  # split: CircuitSettings.tile_split
        self.masks = [self._mask(r0, r1, weight) for r0, r1 in self.tiles]
        self.read_var = None if std is None else [self._variance_kernel(std, t) for t in range(len(self.tiles))]
        # every device of the tile has the same read std: its variance kernel is s^2 times ones (a box sum)
        uniform = std is not None and bool((std == std.flatten()[0]).all())
        self.read_const = [float(std.flatten()[0]) ** 2 if uniform and mask is None else None for mask in self.masks]
        self.clean = weight  # the live clean parameter: bit slices follow it (training updates it)
        self.dac_scale: torch.Tensor | None = None
        self.dac_signed = True
        self.dac_zeros: float | None = None
        self.adc_scale: list[torch.Tensor] | None = None
        self.dac_step: float | None = None  # the converters' steps as numbers (set by :meth:`set_steps`)
        self.adc_step: list[float] | None = None

    def calibrate_input(self, x: torch.Tensor, settings: CircuitSettings) -> None:
        """In the calibration forward: the DAC's sign and full scale from the layer's clean input ``x``, and an empty
        list for the ADC full scales of its tiles (and slices), appended as they are read."""
        if settings.dac_bits is not None:
            self.dac_signed = bool((x < 0).any())
            self.dac_scale = calibration_magnitude(x, settings.adc_range)
            # the share of zero inputs when the percentile fell on them (a DAC that reads every input as 0)
            self.dac_zeros = float((x == 0).float().mean()) if self.dac_scale == 0 and bool(x.any()) else None
        if settings.adc_bits is not None:
            self.adc_scale = []

    def check_ranges(self, name: str, adc_range: float) -> None:
        """After calibration: the converter full scales of the layer (named ``name``) can be used.

        Raises:
            FloatingPointError: a full scale is NaN or infinite (the clean forward of the calibration images is not
                finite at this layer).
            SettingError: (setting ``adc_range``) the DAC's full scale is 0 while the layer's inputs are not all 0
                (the percentile fell on the zeros after a ReLU): the layer would read a constant.
        """
        scales = [scale for scale in [self.dac_scale, *(self.adc_scale or [])] if scale is not None]
        if scales and not bool(torch.isfinite(torch.stack(scales)).all()):
            raise FloatingPointError(f"the converter ranges of {name!r} cannot be calibrated: the clean forward of "
                                     "the calibration images is NaN or infinite there (the network's weights or the "
                                     "calibration images are not finite)")
        if self.dac_zeros is not None:
            raise SettingError("adc_range", f"adc_range {adc_range:g}: the {adc_range:g}th percentile of the inputs "
                                            f"of {name!r} on the calibration images is 0 ({100 * self.dac_zeros:.1f} "
                                            "% of them are 0, as after a ReLU), so its DAC would read every input as "
                                            "0 and the layer a constant; raise --adc-range (e.g. 99.99, or 100 for "
                                            "the maximum)")

    def set_steps(self, dac_bits: int | None, adc_bits: int | None) -> None:
        """The DAC step and each ADC's step (full scale / levels, as in :func:`neft.chip.converters.quantize`) from
        the calibrated full scales. A zero full scale (the converter read only zeros on the calibration images: an
        all-zero input, or a tile of zero weights) gives step 0: that converter reads 0."""
        if dac_bits is not None:
            self.dac_step = float(self.dac_scale) / full_scale_steps(dac_bits, self.dac_signed)
        if adc_bits is not None:
            self.adc_step = [float(scale) / full_scale_steps(adc_bits, True) for scale in self.adc_scale]

    def _channels(self, tile: int) -> tuple[int, int]:
        r0, r1 = self.tiles[tile]
        return r0 // self.kernel, -(-r1 // self.kernel)

    def _mask(self, r0: int, r1: int, weight: torch.Tensor) -> torch.Tensor | None:
        """Rows of the tile's channels that belong to it (None when the tile holds whole channels)."""
        c0, c1 = r0 // self.kernel, -(-r1 // self.kernel)
        if r0 == c0 * self.kernel and r1 == c1 * self.kernel:
            return None
        rows = torch.arange(c0 * self.kernel, c1 * self.kernel, device=weight.device)
        return ((rows >= r0) & (rows < r1)).to(weight.dtype).reshape(c1 - c0, *weight.shape[2:])

    def _variance_kernel(self, std: torch.Tensor, tile: int) -> torch.Tensor:
        """The tile's squared read stds as a weight; one row per group when every device has the same std."""
        c0, c1 = self._channels(tile)
        var = std[:, c0:c1].square()
        if self.masks[tile] is not None:
            var = var * self.masks[tile]
        groups = getattr(self.module, "groups", 1)
        if bool((std == std.flatten()[0]).all()):  # state-independent: the same kernel for every output row
            var = var.unflatten(0, (groups, -1))[:, 0]
        return var

    def tile_input(self, x: torch.Tensor, tile: int) -> torch.Tensor:
        """The tile's slice of the input (the channels its rows read)."""
        if len(self.tiles) == 1:
            return x
        c0, c1 = self._channels(tile)
        if self.conv is None:
            return x[..., c0:c1]
        groups = self.module.groups
        return x[:, c0:c1] if groups == 1 else x.unflatten(1, (groups, -1))[:, :, c0:c1].flatten(1, 2)

    def tile_weight(self, weight: torch.Tensor, tile: int) -> torch.Tensor:
        """The tile's slice of the weight, its rows outside the tile masked to 0."""
        if len(self.tiles) == 1:
            return weight
        c0, c1 = self._channels(tile)
        weight = weight[:, c0:c1]
        return weight if self.masks[tile] is None else weight * self.masks[tile]

    def matmul(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """The crossbar product without bias, with the layer's stride, padding, dilation and groups."""
        if self.conv is None:
            return F.linear(x, weight)
        m = self.module
        padding = m.padding
        if m.padding_mode != "zeros":
            x = F.pad(x, m._reversed_padding_repeated_twice, mode=m.padding_mode)
            padding = 0
        return self.conv(x, weight, None, m.stride, padding, m.dilation, m.groups)

    def read_variance(self, x: torch.Tensor, tile: int, out_channels: int) -> torch.Tensor:
        """``x^2 s^2`` summed over the tile's rows of ``x`` (the tile's input): its read-noise variance per output
        (size 1 along the output channels when it is the same for all of them, to broadcast)."""
        const = self.read_const[tile]
        if const is not None and self.conv is None:
            return x.square().sum(-1, keepdim=True).mul_(const)
        if const is not None:  # s^2 times the window sums of the squared inputs, summed over each group's channels
            m = self.module
            squares = padded(m, x).square().unflatten(1, (m.groups, -1)).sum(2)  # [B, groups, *spatial]
            variance = _box(squares, m.kernel_size, m.stride, m.dilation).mul_(const)
            return variance if m.groups == 1 else variance.repeat_interleave(out_channels // m.groups, dim=1)
        var = self.read_var[tile].to(x.dtype)
        variance = self.matmul(x.square(), var)
        if var.shape[0] == out_channels:
            return variance
        if self.conv is None:  # [..., 1]: one row for every output, broadcast
            return variance
        if var.shape[0] == 1:
            return variance  # [B, 1, ...]: the same for every output channel, broadcast
        return variance.repeat_interleave(out_channels // var.shape[0], dim=1)  # one row per group
