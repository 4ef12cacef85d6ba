"""The crossbar circuit: how a mapped Conv/Linear layer computes on the chip (docs/method.md, 'The crossbar
circuit').

Device effects change a chip's weights (:meth:`neft.chip.crossbar.Crossbar.sample_chip`); circuit effects change how a
mapped layer computes with them. :class:`Circuit` runs every crossbar-mapped ``nn.Conv1d/2d/3d`` and
``nn.Linear`` of a model as the crossbar would, for the Monte Carlo engine and for training alike:

* **Tiles** (``tile_rows``): a layer's input dimension (``in_features``, or ``in_channels / groups`` x kernel size
  in the order of ``weight.flatten(1)``: channel-major, then kernel positions) is split into tiles of
  ``tile_rows`` crossbar rows; each tile gives its own partial sums, summed digitally.
* **DAC** (``dac_bits``): the input of each mapped layer is quantized before the crossbar, with a range
  calibrated on clean activations (unsigned if the calibration inputs were all >= 0, else signed).
* **ADC** (``adc_bits``): each tile's partial sums are quantized, signed, with a per-layer-and-tile range
  calibrated on the clean partial sums of the calibration images. ``adc_mode="analog"``: one ADC reads each
  column's analog sum over the weight's devices; ``"sliced"``: each bit slice (device digit of the quantized
  mapping, :mod:`neft.chip.mapping`) has its own column, digitised on its own (range per layer, tile and slice) and
  shifted and added digitally, as in bit-sliced macros (CrossSim's bit-sliced cores).
* **Read noise per read** (``read_sigma``): Gaussian read noise R with per-device std s on every read gives
  ``x (W + R) = x W + e`` with e Gaussian of variance ``x^2 s^2`` per output (exact for linear and convolutional
  layers): one extra pass of squared inputs over squared stds, added to each tile's partial sums before its ADC.
  The noise of image i comes from generators keyed by (chip seed, layer, tile, block of ``READ_BLOCK`` images
  holding i) (:func:`neft.common.seeds.read_seed`), so it depends neither on the batch size nor on chips per pass.

Rounding uses straight-through estimators (the gradient of a rounding is that of the identity inside the range,
0 where clipped), so a network can be trained with the periphery. Layers are rerouted by substituting the mapped
modules' ``forward`` inside :meth:`Circuit.applied` (the stored parameters are untouched, and ``functional_call``,
``torch.func.vmap`` over chips and ``torch.compile`` see ordinary torch operations); with every option off
nothing is substituted and results are bit-identical.
"""

from __future__ import annotations

import functools
import math
import types
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from neft.chip import mapping
from neft.chip.crossbar import MAPPED_LAYER_TYPES, Crossbar
from neft.chip.devices import DeviceModel, check_sigma
from neft.common.errors import SettingError
from neft.common.seeds import read_seed

__all__ = ["CircuitSettings", "Circuit", "READ_BLOCK", "ADC_MODES", "FIELDS", "CALIBRATION_IMAGES", "quantize",
           "codes", "slices", "settings_of"]

ADC_MODES = ("analog", "sliced")
FIELDS = ("tile_rows", "dac_bits", "adc_bits", "adc_range", "adc_mode")  # the settings EvalConfig/TrainConfig carry
CALIBRATION_IMAGES = 256  # training images that calibrate the converter ranges of a run (neft evaluate, neft train)

READ_BLOCK = 16  # images per read-noise draw: image i's noise is row i % 16 of block i // 16's draw
MAX_BITS = 32
_CONV = {nn.Conv1d: F.conv1d, nn.Conv2d: F.conv2d, nn.Conv3d: F.conv3d}


def _check_bits(setting: str, value) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_BITS:
        raise SettingError(setting, f"{setting} must be an integer from 1 to {MAX_BITS} (bits of the converter) or "
                                    f"None (ideal, no quantization), got {value!r}")
    return value


@dataclass
class CircuitSettings:
    """The crossbar circuit of a chip (docs/method.md, 'The crossbar circuit'); every field off by default.

    Attributes:
        tile_rows: crossbar rows per tile (>= 1); None: one tile per layer (as many rows as its input).
        dac_bits: input DAC resolution in bits (1-32); None: ideal inputs.
        adc_bits: ADC resolution in bits (1-32) of each tile's partial sums; None: ideal (float) sums.
        adc_mode: ``"analog"`` (one ADC per column reads the analog sum of a weight's devices) or ``"sliced"``
            (one ADC per bit slice, then shift and add; the slices are the device digits of the layer's
            ``weight_bits``/``device_bits`` mapping, :func:`slices`).
        adc_range: percentile of the calibration magnitudes that sets the DAC and ADC full scale, in (0, 100]
            (100: the maximum, nothing clipped on the calibration images).
        read_sigma: read noise per read, relative to the conductance range like sigma, in [0, 1].
    """

    tile_rows: int | None = None
    dac_bits: int | None = None
    adc_bits: int | None = None
    adc_range: float = 100.0
    read_sigma: float = 0.0
    adc_mode: str = "analog"

    def check(self) -> CircuitSettings:
        """Validate every field; returns self.

        Raises:
            SettingError: naming the bad setting (``tile_rows`` < 1, bits outside 1-32, a percentile outside
                (0, 100], a read sigma outside [0, 1], ``adc_mode="sliced"`` without ``adc_bits``, an
                ``adc_range`` below 100 without a DAC or ADC).
        """
        if self.tile_rows is not None and (isinstance(self.tile_rows, bool) or not isinstance(self.tile_rows, int)
                                           or self.tile_rows < 1):
            raise SettingError("tile_rows", f"tile_rows must be an integer >= 1 (crossbar rows per tile, e.g. 128) "
                                            f"or None (one tile per layer), got {self.tile_rows!r}")
        self.dac_bits = _check_bits("dac_bits", self.dac_bits)
        self.adc_bits = _check_bits("adc_bits", self.adc_bits)
        if isinstance(self.adc_range, bool) or not (isinstance(self.adc_range, (int, float))
                                                    and 0 < self.adc_range <= 100):
            raise SettingError("adc_range", f"adc_range is the percentile of the calibration magnitudes that sets "
                                            f"the converters' full scale, in (0, 100] (100 = max), got "
                                            f"{self.adc_range!r}")
        self.adc_range = float(self.adc_range)
        if self.adc_mode not in ADC_MODES:
            raise SettingError("adc_mode", f"unknown adc_mode {self.adc_mode!r}; choose one of {', '.join(ADC_MODES)}")
        if self.adc_mode == "sliced" and self.adc_bits is None:
            raise SettingError("adc_mode", "adc_mode 'sliced' sets how the ADC reads the bit slices, so it needs "
                                           "adc_bits (e.g. --adc-bits 6): set adc_bits, or leave adc_mode 'analog'")
        if self.adc_range != 100 and not self.calibrated:
            raise SettingError("adc_range", f"adc_range {self.adc_range:g} sets the converters' full scale, so it "
                                            "needs dac_bits or adc_bits: set one, or leave adc_range at 100")
        self.read_sigma = check_sigma(self.read_sigma, "read_sigma")
        return self

    @property
    def calibrated(self) -> bool:
        """Whether a converter needs a range calibration (DAC or ADC on)."""
        return self.dac_bits is not None or self.adc_bits is not None

    @property
    def active(self) -> bool:
        """Whether any circuit effect changes a result (tiles alone only reorder float sums: not active)."""
        return self.calibrated or self.read_sigma > 0

    def names(self) -> list[str]:
        """The names of the settings that are on (``adc_bits``, ``dac_bits``, ``read_sigma``, ``tile_rows``)."""
        on = {"adc_bits": self.adc_bits is not None, "dac_bits": self.dac_bits is not None,
              "read_sigma": self.read_sigma > 0, "tile_rows": self.tile_rows is not None}
        return [name for name, value in on.items() if value]

    def label(self) -> str:
        """The non-default settings as a report suffix, e.g. ``" tile=128 adc=6b"``; empty when off."""
        parts = [f"tile={self.tile_rows}" if self.tile_rows is not None else "",
                 f"dac={self.dac_bits}b" if self.dac_bits is not None else "",
                 f"adc={self.adc_bits}b" if self.adc_bits is not None else "",
                 "sliced" if self.adc_bits is not None and self.adc_mode == "sliced" else "",
                 f"range=p{self.adc_range:g}" if self.calibrated and self.adc_range < 100 else ""]
        return "".join(f" {p}" for p in parts if p)


def settings_of(config, read_sigma: float = 0.0) -> CircuitSettings:
    """The checked :class:`CircuitSettings` of an ``EvalConfig`` or ``TrainConfig`` (its :data:`FIELDS`).

    Raises:
        SettingError: as :meth:`CircuitSettings.check`.
    """
    return CircuitSettings(**{name: getattr(config, name) for name in FIELDS}, read_sigma=read_sigma).check()


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
    step = full_scale.clamp_min(torch.finfo(torch.float32).tiny) / _levels(bits, signed)
    scaled = x.div_(step) if inplace and not (x.requires_grad and torch.is_grad_enabled()) else x / step
    return codes(scaled, bits, signed, inplace=True).mul_(step)


def _levels(bits: int, signed: bool) -> int:
    """Steps in a converter's full scale: ``2**(bits-1)`` signed, ``2**bits - 1`` unsigned."""
    return 2 ** (bits - 1) if signed else 2 ** bits - 1


def codes(x: torch.Tensor, bits: int, signed: bool = True, inplace: bool = False,
          batched: bool = False) -> torch.Tensor:
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

    Returns:
        The codes as floats, same shape and dtype as ``x``.
    """
    levels = _levels(bits, signed)
    low, high = (-levels, levels - 1) if signed else (0, levels)
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
    weight's quantized magnitude (:func:`neft.chip.mapping.quantize`, :func:`neft.chip.mapping.to_digits`), with its sign
    (the differential pair) and significance ``2**(j * device_bits)`` times the level ``max|W| / (2**weight_bits -
    1)``. The rest, ``weight`` minus the clean quantized weight (the chip's device errors, and the quantization
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


def _magnitude(values: torch.Tensor, percentile: float) -> torch.Tensor:
    """The ``percentile`` of ``|values|`` (100: the maximum), from at most 2**24 evenly strided samples."""
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


def _box(x: torch.Tensor, kernel: Sequence[int], stride: Sequence[int], padding: Sequence[int],
         dilation: Sequence[int]) -> torch.Tensor:
    """Sums of ``x`` ``[B, C, *spatial]`` over each (zero-padded, strided, dilated) kernel window, per channel:
    the convolution with a kernel of ones, as separable sums of shifted views (cheaper than a one-channel conv)."""
    if any(padding):
        x = F.pad(x, [p for p in reversed(padding) for _ in range(2)])
    for axis, (k, s, d) in enumerate(zip(kernel, stride, dilation), start=2):
        span = (x.shape[axis] - d * (k - 1) - 1) // s * s + 1  # the input positions the first tap reads
        index = [slice(None)] * x.dim()
        views = []
        for tap in range(k):
            index[axis] = slice(tap * d, tap * d + span, s)
            views.append(x[tuple(index)])
        total = views[0] if k == 1 else views[0] + views[1]
        for view in views[2:]:
            total.add_(view)
        x = total
    return x


class _Layer:
    """One mapped layer as the crossbar runs it: its tiles (row ranges), read-noise stds and calibrated ranges."""

    def __init__(self, index: int, module: nn.Module, std: torch.Tensor | None, tile_rows: int | None,
                 slice_count: int = 1) -> None:
        self.index, self.module, self.slice_count = index, module, slice_count
        self.conv = _CONV.get(type(module))
        weight = module.weight
        self.kernel = math.prod(weight.shape[2:])  # rows per input channel (1 for a Linear)
        rows = weight[0].numel()
        size = rows if tile_rows is None else tile_rows
        self.tiles = [(start, min(start + size, rows)) for start in range(0, rows, size)]
        self.masks = [self._mask(r0, r1, weight) for r0, r1 in self.tiles]
        self.read_var = None if std is None else [self._variance_kernel(std, t) for t in range(len(self.tiles))]
        # every device of the tile has the same read std: its variance kernel is s^2 times ones (a box sum)
        uniform = std is not None and bool((std == std.flatten()[0]).all()) and self._box_padding() is not None
        self.read_const = [float(std.flatten()[0]) ** 2 if uniform and mask is None else None for mask in self.masks]
        self.clean = weight  # the live clean parameter: bit slices follow it (training updates it)
        self.dac_scale: torch.Tensor | None = None
        self.dac_signed = True
        self.adc_scale: list[torch.Tensor] | None = None
        self.dac_step: float | None = None  # the converters' steps as numbers (set by :meth:`set_steps`)
        self.adc_step: list[float] | None = None

    def set_steps(self, dac_bits: int | None, adc_bits: int | None) -> None:
        """The DAC step and each ADC's step (full scale / levels, as in :func:`quantize`) from the calibrated
        full scales."""
        tiny = torch.finfo(torch.float32).tiny
        if dac_bits is not None:
            self.dac_step = max(float(self.dac_scale), tiny) / _levels(dac_bits, self.dac_signed)
        if adc_bits is not None:
            self.adc_step = [max(float(scale), tiny) / _levels(adc_bits, True) for scale in self.adc_scale]

    def _box_padding(self) -> tuple[int, ...] | None:
        """The zero padding of the layer's convolution as integers (0s for a Linear), None for string padding."""
        if self.conv is None:
            return ()
        padding = self.module.padding
        if isinstance(padding, str):
            return None
        return tuple(padding) if self.module.padding_mode == "zeros" else (0,) * len(padding)

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
            if m.padding_mode != "zeros":
                x = F.pad(x, m._reversed_padding_repeated_twice, mode=m.padding_mode)
            squares = x.square().unflatten(1, (m.groups, -1)).sum(2)  # [B, groups, *spatial]
            variance = _box(squares, m.kernel_size, m.stride, self._box_padding(), m.dilation).mul_(const)
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


class Circuit:
    """Runs the crossbar-mapped layers of ``crossbar.model`` as the crossbar circuit would.

    Args:
        crossbar: the model and its mapped weights (:class:`~neft.chip.crossbar.Crossbar`); read-noise stds are
            ``crossbar.device_model.std(w, read_sigma)`` of its clean weights at construction.
        settings: the :class:`CircuitSettings` (checked here).

    Usage: :meth:`calibrate` once (when a DAC or ADC is on), then run the model inside :meth:`applied`; give
    the chips and the first image index of each batch with :meth:`reading` for read noise.

    Raises:
        SettingError: for invalid settings, or an active setting on a model whose mapped weights include recurrent or
            attention weights (the circuit runs Conv/Linear layers only).
    """

    def __init__(self, crossbar: Crossbar, settings: CircuitSettings) -> None:
        self.crossbar, self.settings = crossbar, settings.check()
        modules = dict(crossbar.model.named_modules())
        read = self.settings.read_sigma
        self.layers = []
        for index, name in enumerate(crossbar.names):
            owner, _, attribute = name.rpartition(".")
            module = modules[owner]
            if not (isinstance(module, MAPPED_LAYER_TYPES) and attribute == "weight"):
                if self.settings.active:
                    setting = self.settings.names()[0]
                    raise SettingError(setting, f"{setting} is set, but the crossbar circuit (tiles, DAC, ADC, read "
                                                f"noise per read) runs nn.Conv1d/2d/3d and nn.Linear layers only, "
                                                f"and {name!r} belongs to a {type(module).__name__}: leave the "
                                                "circuit settings off for this model")
                continue  # recurrent / attention weights: device effects only
            std = crossbar.device_model.std(module.weight.detach(), read) if read > 0 else None
            count = crossbar.device_model.devices_per_weight if self.sliced else 1
            self.layers.append(_Layer(index, module, std, self.settings.tile_rows, count))
        self._reads: tuple[Sequence[int], int] | None = None
        self._chip_index: torch.Tensor | None = None
        self._calibrating = False
        self._generator: torch.Generator | None = None
        self._draw = _eager_draw() if read > 0 else None

    @property
    def sliced(self) -> bool:
        """Whether each bit slice has its own ADC (``adc_mode="sliced"`` with ``adc_bits`` set)."""
        return self.settings.adc_bits is not None and self.settings.adc_mode == "sliced"

    @property
    def tiles(self) -> int:
        """Tiles over all mapped layers (one crossbar array each)."""
        return sum(len(layer.tiles) for layer in self.layers)

    def calibrate(self, images: torch.Tensor | None) -> None:
        """Set the DAC and ADC full scales from one clean forward of ``images`` ``[M, ...]`` (the ``adc_range``
        percentile of each layer's input magnitudes and of each tile's partial-sum magnitudes; no quantization,
        no noise). Runs in eval mode without gradients; the model's train/eval flags are restored.

        Raises:
            SettingError: (setting ``calibration_images``) when a converter is on and ``images`` is None or empty.
        """
        if not self.settings.calibrated:
            return
        if images is None or images.shape[0] == 0:
            raise SettingError("calibration_images", "a DAC or ADC range calibration needs calibration images "
                                                     "(clean inputs, e.g. 256 training images); pass "
                                                     "calibration_images")
        from neft.common.compute import eval_mode

        self._calibrating = True
        try:
            with eval_mode(self.crossbar.model), torch.no_grad(), self.applied():
                self.crossbar.model(images)
        finally:
            self._calibrating = False
        for layer in self.layers:
            layer.set_steps(self.settings.dac_bits, self.settings.adc_bits)

    @contextmanager
    def applied(self) -> Iterator[Circuit]:
        """Inside the block every mapped layer of the model runs through the circuit (its ``forward`` is
        substituted and restored afterwards; nothing is substituted when no setting is active)."""
        if not self.settings.active:
            yield self
            return
        for layer in self.layers:
            layer.module.forward = types.MethodType(self._forward_of(layer), layer.module)
        try:
            yield self
        finally:
            for layer in self.layers:
                del layer.module.forward

    @contextmanager
    def bypassed(self) -> Iterator[None]:
        """Inside the block (itself inside :meth:`applied`) the mapped layers run as plain layers again: used to
        check that the model computes the same in another memory layout, a check the converters' rounding would
        fail on float-level differences."""
        saved = [layer.module.__dict__.pop("forward", None) for layer in self.layers]
        try:
            yield
        finally:
            for layer, forward in zip(self.layers, saved):
                if forward is not None:
                    layer.module.forward = forward

    @contextmanager
    def reading(self, chip_seeds: Sequence[int] | None, start: int = 0) -> Iterator[None]:
        """Forwards inside the block read chips ``chip_seeds`` (one per chip of the pass, in stacking order) on
        images numbered from ``start``: read noise is drawn for them. Without it, forwards have no read noise."""
        self._reads = None if chip_seeds is None else (list(chip_seeds), int(start))
        try:
            yield
        finally:
            self._reads = None

    @contextmanager
    def chip(self, index: torch.Tensor) -> Iterator[None]:
        """Inside ``torch.func.vmap`` over chips: ``index`` is the (batched) position of the chip in the pass (it
        picks each chip's read noise, and the converters clip with ops that vmap batches). Any forward of the
        circuit under vmap must run inside this block."""
        self._chip_index = index
        try:
            yield
        finally:
            self._chip_index = None

    def _forward_of(self, layer: _Layer):
        def forward(module, x):
            return self._run(layer, x, module.weight, module.bias)
        return forward

    def _run(self, layer: _Layer, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """The layer's output through the circuit. The ADC works in its codes: its step is folded into each tile's
        (small) weight, so a tile's partial sums come out in ADC steps and are clipped and rounded in place, then
        added to the output times the step (four passes over them)."""
        settings = self.settings
        calibrating = self._calibrating
        dac = settings.dac_bits is not None and not calibrating
        adc = settings.adc_bits is not None and not calibrating
        if calibrating and settings.dac_bits is not None:
            layer.dac_signed = bool((x < 0).any())
            layer.dac_scale = _magnitude(x, settings.adc_range)
        if calibrating and settings.adc_bits is not None:
            layer.adc_scale = []
        out_channels = weight.shape[0]
        reads = self._reads is not None and layer.read_var is not None
        count = layer.slice_count
        parts = [weight] if count == 1 else slices(weight, layer.clean, self.crossbar.device_model).unbind(0)
        shares = [1.0] if count == 1 else [4.0 ** (j * self.crossbar.device_model.device_bits) for j in range(count)]
        fresh = not torch.is_grad_enabled()  # no autograd: partial sums are overwritten in place (less memory)
        batched = self._chip_index is not None  # inside torch.func.vmap over chips
        # channels_last weights (the Monte Carlo engine's layout on a CPU): the tiles keep that layout, or each
        # tile's convolution would reorder NCHW tensors and every op after the layer would run in NCHW
        nhwc = (layer.conv is F.conv2d and not weight.is_contiguous()
                and weight.is_contiguous(memory_format=torch.channels_last))
        if nhwc:
            x = x.contiguous(memory_format=torch.channels_last)
        total = None
        for tile in range(len(layer.tiles)):
            std = None
            xt = layer.tile_input(x, tile)
            if dac:  # per tile: a copy of the tile's inputs only, quantized
                xt = codes(xt / layer.dac_step, settings.dac_bits, layer.dac_signed, inplace=True,
                           batched=batched).mul_(layer.dac_step)
            elif len(layer.tiles) > 1:  # a dense copy of the tile's channels: convolutions read a strided slice slowly
                xt = xt.contiguous(memory_format=torch.channels_last) if nhwc else xt.clone()
            for part, (weight_part, share) in enumerate(zip(parts, shares)):
                column = tile * count + part  # one ADC per tile and slice
                step = layer.adc_step[column] if adc else 1.0  # partial sums in ADC steps
                unit = 1.0 / step
                tile_weight = layer.tile_weight(weight_part, tile)
                if nhwc:
                    tile_weight = tile_weight.contiguous(memory_format=torch.channels_last)
                partial = layer.matmul(xt, tile_weight * unit if unit != 1.0 else tile_weight)
                if reads:  # a slice's devices carry their share of the weight's read variance
                    if std is None:
                        std = layer.read_variance(xt, tile, out_channels).sqrt_()
                    noise = self._read_noise(layer.index, column, partial)
                    scale = unit * math.sqrt(share / sum(shares))
                    if not fresh:
                        partial = partial + noise * std * scale
                    elif not batched:  # one fused pass
                        partial = partial.addcmul_(noise, std, value=scale)
                    else:  # under vmap (addcmul_ has no batching rule)
                        partial = partial.add_(noise.mul_(std), alpha=scale)
                if calibrating and settings.adc_bits is not None:
                    layer.adc_scale.append(_magnitude(partial, settings.adc_range))
                if adc:
                    partial = codes(partial, settings.adc_bits, inplace=fresh, batched=batched)
                if total is None:
                    total = partial if step == 1.0 else partial.mul_(step) if fresh else partial * step
                else:
                    total = total.add_(partial, alpha=step) if fresh else total + partial * step
        if bias is not None:
            shape = (-1,) + (1,) * (total.dim() - 2) if layer.conv is not None else (-1,)
            total = total.add_(bias.reshape(shape)) if fresh else total + bias.reshape(shape)
        return total

    def _read_noise(self, layer: int, tile: int, like: torch.Tensor) -> torch.Tensor:
        """Standard normal noise shaped like one chip's partial sums ``like`` ``[B, C, *positions]`` (or ``[B, C]``);
        image ``start + b`` takes row ``(start + b) % READ_BLOCK`` of the draw of block ``(start + b) // READ_BLOCK``,
        drawn per read: output position by output position, the C columns of one read consecutive (so the noise
        lies in the channels-last order of the partial sums)."""
        chip_seeds, start = self._reads
        return self._draw(self, layer, tile, chip_seeds, start, like)


@functools.cache
def _eager_draw():
    """:func:`_draw` hidden from ``torch.compile`` (it seeds a generator per block of reads), made when the first
    circuit with read noise is built: ``torch.compiler.disable`` imports ``torch._dynamo``, about 2 CPU-seconds
    that every ``import neft`` (every ``neft`` command, every worker process) would pay otherwise."""
    return torch.compiler.disable(_draw)


def _draw(circuit: Circuit, layer: int, tile: int, chip_seeds: Sequence[int], start: int,
          like: torch.Tensor) -> torch.Tensor:
    size = like.shape[0]
    shape = (*like.shape[2:], like.shape[1]) if like.dim() > 2 else tuple(like.shape[1:])  # per read: channels last
    device = like.device
    if circuit._generator is None or circuit._generator.device != device:
        circuit._generator = torch.Generator(device=device)
    generator = circuit._generator
    draws = torch.empty((len(chip_seeds), size, *shape), device=device)
    for chip, chip_seed in enumerate(chip_seeds):
        for block in range(start // READ_BLOCK, (start + size - 1) // READ_BLOCK + 1):
            generator.manual_seed(read_seed(chip_seed, layer, tile, block))
            first, last = block * READ_BLOCK, (block + 1) * READ_BLOCK  # the images of the block
            if first >= start and last <= start + size:  # a whole block: drawn in place
                draws[chip, first - start : last - start].normal_(generator=generator)
            else:
                block_draw = torch.randn((READ_BLOCK, *shape), generator=generator, device=device)
                lo, hi = max(first, start), min(last, start + size)
                draws[chip, lo - start : hi - start] = block_draw[lo - first : hi - first]
    draws = draws.to(like.dtype)
    if like.dim() > 2:  # [K, B, *positions, C] as [K, B, C, *positions] (a channels-last view)
        draws = draws.movedim(-1, 2)
    return draws[0] if circuit._chip_index is None else draws[circuit._chip_index]
