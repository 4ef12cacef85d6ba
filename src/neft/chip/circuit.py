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
  The noise of image i comes from generators keyed by (chip seed, layer, tile, block of
  :data:`~neft.chip.read_noise.READ_BLOCK` images holding i) (:func:`neft.common.seeds.read_seed`), so it depends
  neither on the batch size nor on chips per pass.

* **IR drop** (``wire_resistance``): each tile computes with the effective conductances of its arrays under wire
  resistance (:mod:`neft.chip.ir_drop`), once per chip, layer and tile per forward.
* **ADC errors** (``adc_offset``, ``adc_gain``, ``adc_inl``, ``adc_mismatch``): each ADC of the chip being read has
  its own offset, gain, nonlinearity and SAR mismatch, drawn per chip (:mod:`neft.chip.adc_circuit`).

Rounding uses straight-through estimators (the gradient of a rounding is that of the identity inside the range,
0 where clipped), so a network can be trained with the periphery. Layers are rerouted by substituting the mapped
modules' ``forward`` inside :meth:`Circuit.applied` (the stored parameters are untouched, and ``functional_call``,
``torch.func.vmap`` over chips and ``torch.compile`` see ordinary torch operations); with every option off
nothing is substituted and results are bit-identical.

The settings are :mod:`neft.chip.circuit_settings`, the converters :mod:`neft.chip.converters`, one layer's tiles and
read-noise variances :mod:`neft.chip.circuit_layer`, the read-noise draws :mod:`neft.chip.read_noise`; this module
runs the layers through them.
"""

from __future__ import annotations

import functools
import math
import types
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F

from neft.chip import effects, ir_drop
from neft.chip import periphery_hooks as hooks
from neft.chip.adc_circuit import AdcCircuit
from neft.chip.circuit_layer import CircuitLayer
from neft.chip.circuit_settings import CALIBRATION_IMAGES, CircuitSettings
from neft.chip.converters import calibration_magnitude, codes, slices
from neft.chip.crossbar import MAPPED_LAYER_TYPES, Crossbar, make_generator
from neft.chip.device_model import DeviceModel
from neft.chip.output_noise import OutputNoise
from neft.chip.periphery import managed_output
from neft.chip.periphery_setup import alpha_buffer, check_layers, chip_hooks
from neft.chip.read_noise import ReadNoise
from neft.common.compute import eval_mode
from neft.common.errors import SettingError
from neft.common.seeds import calibration_seed

__all__ = ["Circuit", "calibration_sample"]


def calibration_sample(dataset, seed: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, dict]:
    """The training images that calibrate the converter ranges of a run or an evaluation with seed ``seed``, and
    their record (docs/method.md, 'The crossbar circuit', step 5).

    They are the first ``CALIBRATION_IMAGES`` = 256 (or all, when fewer) of a permutation of ``dataset``'s
    ``"train"`` split drawn from ``make_generator(calibration_seed(seed))`` (:mod:`neft.common.seeds`), preprocessed
    without augmentation: a class-mixed sample whatever the order the images are stored in (a class-sorted folder
    or npz would give one class's images first).

    Args:
        dataset: a :class:`neft.data.ImageDataset`.
        seed: the run's or the evaluation's seed.
        device: where the images go.

    Returns:
        ``(images, record)``: float32 ``[M, C, S, S]`` on ``device``, and ``{"split": "train", "images": M,
        "seed": s}``: the images are the first M of ``torch.randperm(train size, generator=make_generator(s))``.
    """
    drawn = calibration_seed(seed)
    images = next(dataset.batches("train", CALIBRATION_IMAGES, shuffle=True, generator=make_generator(drawn),
                                  device=device))[0]
    return images, {"split": "train", "images": int(images.shape[0]), "seed": drawn}


class Circuit:
    """Runs the crossbar-mapped layers of ``crossbar.model`` as the crossbar circuit would.

    Args:
        crossbar: the model and its mapped weights (:class:`~neft.chip.crossbar.Crossbar`); read-noise stds are
            ``crossbar.device_model.std(w, read_sigma)`` of its clean weights at construction.
        settings: the :class:`CircuitSettings` (checked here).
        generator: draws training forwards' output noise (reseeded every step by the trainer); None: torch's own.

    Usage: :meth:`calibrate` once (when a DAC or ADC is on), then run the model inside :meth:`applied`; give the
    chips and the first image index of each batch with :meth:`reading` for read noise.

    Raises:
        SettingError: for invalid settings, or an active setting on a model whose mapped weights include recurrent or
            attention weights (the circuit runs Conv/Linear layers only).
    """

    def __init__(self, crossbar: Crossbar, settings: CircuitSettings, generator: torch.Generator | None = None) -> None:
        self.crossbar, self.settings = crossbar, settings.check()
        count = crossbar.device_model.devices_per_weight if self.sliced else 1
        self.layers = _mapped_layers(crossbar, self.settings, count)
        self._reads: tuple[Sequence[int], int] | None = None
        self._calls: dict[int, int] = {}  # each mapped layer's calls in the model's current forward
        self._chip_index: torch.Tensor | None = None
        self._calibrating = False
        self._noise = ReadNoise() if self.settings.reads else None
        self._adc = AdcCircuit.of(self.settings)  # the ADCs' own errors, drawn per chip; None: ideal ADCs
        _check_layers(self.settings, self.layers, crossbar)
        self._out_noise = OutputNoise(generator)
        self._hooks = chip_hooks(self.settings, self.layers, crossbar.names)

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

        A full scale of 0 (only zeros read: an all-zero input, a tile of zero weights) reads 0, never NaN.

        Raises:
            SettingError: (setting ``calibration_images``) when a converter is on and ``images`` is None or empty;
                (``adc_range``) and FloatingPointError: :meth:`CircuitLayer.check_ranges`.
        """
        if not self.settings.calibrated:
            return
        if images is None or images.shape[0] == 0:
            raise SettingError("calibration_images", "a DAC or ADC range calibration needs calibration images "
                                                     "(clean inputs, e.g. 256 training images); pass "
                                                     "calibration_images")
        self._calibrating = True
        try:
            with eval_mode(self.crossbar.model), torch.no_grad(), self.applied():
                self.crossbar.model(images)
        finally:
            self._calibrating = False
        _set_steps(self.layers, self.crossbar.names, self.settings)

    @contextmanager
    def applied(self) -> Iterator[Circuit]:
        """Inside the block every mapped layer runs through the circuit (``forward`` substituted; none if off)."""
        if not self.settings.active:
            yield self
            return
        for layer in self.layers:
            layer.module.forward = types.MethodType(self._forward_of(layer), layer.module)
            alpha_buffer(layer.module, self._hooks.compensate_outputs)
        hooks.install(self.crossbar.model, self._hooks)  # the model's chips follow the periphery's mapping
        counting = self.crossbar.model.register_forward_pre_hook(lambda *_: self._calls.clear())  # calls per forward
        try:
            yield self
        finally:
            counting.remove()
            hooks.remove(self.crossbar.model)
            for layer in self.layers:
                del layer.module.forward
                alpha_buffer(layer.module, False)

    @contextmanager
    def bypassed(self) -> Iterator[None]:
        """Inside the block (itself inside :meth:`applied`) the mapped layers run as plain layers again: to check a
        memory layout, which the converters' rounding would fail on float-level differences."""
        saved = [layer.module.__dict__.pop("forward", None) for layer in self.layers]
        try:
            yield
        finally:
            for layer, forward in zip(self.layers, saved):
                if forward is not None:
                    layer.module.forward = forward

    @contextmanager
    def reading(self, chip_seeds: Sequence[int] | None, start: int = 0) -> Iterator[None]:
        """Forwards inside the block read chips ``chip_seeds`` (one per chip of the pass, in order) on images from
        ``start``: their read noise and their ADCs' errors are drawn. Without it: no read noise, ideal ADCs."""
        self._reads, self._calls = None if chip_seeds is None else (list(chip_seeds), int(start)), {}
        if self._adc is not None and chip_seeds is not None:  # drawn here, outside torch.func.vmap over the chips
            self._adc.prepare(self._reads[0], self.layers)
        try:
            yield
        finally:
            self._reads = None

    @contextmanager
    def chip(self, index: torch.Tensor) -> Iterator[None]:
        """Inside ``torch.func.vmap`` over chips: ``index`` is the (batched) position of the chip in the pass (it
        picks each chip's noise per read; the converters clip with ops vmap batches). Forwards under vmap need it."""
        self._chip_index = index
        try:
            yield
        finally:
            self._chip_index = None

    def _forward_of(self, layer: CircuitLayer):
        def forward(module, x):
            return self._run(layer, x, module.weight, module.bias)
        return forward

    def _run(self, layer: CircuitLayer, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None):
        """The layer's output through the circuit (:func:`_layer_output`; with a periphery setting
        :func:`neft.chip.periphery.managed_output`), with read noise and the chips' own ADCs
        (:mod:`neft.chip.adc_circuit`) when reading chips (ideal ADCs otherwise: training, clean forwards)."""
        call = self._calls[layer.index] = self._calls.get(layer.index, -1) + 1  # this forward's call of the layer
        noise = (functools.partial(self._read_noise, call=call)
                 if self._reads is not None and layer.read_var is not None else None)
        if self.settings.managed:
            return managed_output(layer, x, weight, bias, self.settings, self._calibrating, noise,
                                  functools.partial(self._output_noise, call=call),
                                  batched=self._chip_index is not None)
        convert = (functools.partial(self._adc.read, chip_seeds=self._reads[0], chip_index=self._chip_index)
                   if self._reads is not None and self._adc is not None else None)  # the read chips' own ADCs
        return _layer_output(layer, x, weight, bias, self.settings, self.crossbar.device_model, self._calibrating,
                             noise, batched=self._chip_index is not None, convert=convert)

    def _read_noise(self, layer: int, tile: int, like: torch.Tensor, call: int = 0) -> torch.Tensor:
        """Standard normal noise like a tile's partial sums ``like`` for the chips and images of :meth:`reading`."""
        chip_seeds, start = self._reads
        return self._noise(layer, tile, chip_seeds, start, like, self._chip_index, call)

    def _output_noise(self, layer: int, tile: int, attempt: int, like: torch.Tensor, call: int = 0):
        """Output noise of read ``attempt`` of a tile in the layer's call ``call`` (:mod:`neft.chip.output_noise`)."""
        return self._out_noise(layer, tile, attempt, self._reads, like, self._chip_index,
                               self.layers[0].module.training, call)


def _check_layers(settings: CircuitSettings, layers: list[CircuitLayer], crossbar: Crossbar) -> None:
    """The periphery's checks of the mapped layers (:func:`neft.chip.periphery_setup.check_layers`) and, with IR
    drop, a warning for every tile beyond the fast approximation (:func:`neft.chip.ir_drop.check_validity`)."""
    if settings.wire_resistance > 0:
        ir_drop.check_validity(layers, settings.wire_resistance, crossbar.device_model, crossbar.names)
    check_layers(settings, layers, crossbar)


def _set_steps(layers: list[CircuitLayer], names: Sequence[str], settings: CircuitSettings) -> None:
    """Every layer's converter steps from its calibrated full scales (:meth:`CircuitLayer.set_steps`), once
    :meth:`CircuitLayer.check_ranges` passes."""
    for layer in layers:
        layer.check_ranges(names[layer.index], settings.adc_range)
        layer.set_steps(settings.dac_bits, settings.adc_bits)


def _mapped_layers(crossbar: Crossbar, settings: CircuitSettings, slice_count: int) -> list[CircuitLayer]:
    """The crossbar-mapped ``nn.Conv1d/2d/3d`` and ``nn.Linear`` weights of ``crossbar`` as the circuit runs them,
    with read-noise stds ``crossbar.device_model.std(w, read_sigma)`` of their clean weights when read noise is on.

    Raises:
        SettingError: naming the first active setting when a mapped weight belongs to another module (recurrent or
            attention weights get device effects only).
    """
    modules = dict(crossbar.model.named_modules())
    read = settings.read_sigma
    layers = []
    for index, name in enumerate(crossbar.names):
        owner, _, attribute = name.rpartition(".")
        module = modules[owner]
        if not (isinstance(module, MAPPED_LAYER_TYPES) and attribute == "weight"):
            if settings.active:
                setting = settings.names()[0]
                raise SettingError(setting, f"{setting} is set, but the crossbar circuit (tiles, DAC, ADC, read "
                                            f"noise per read) runs nn.Conv1d/2d/3d and nn.Linear layers only, "
                                            f"and {name!r} belongs to a {type(module).__name__}: leave the "
                                            "circuit settings off for this model (a chip preset such as "
                                            "aihwkit-inference sets them: give every one of them at its default)")
            continue  # recurrent / attention weights: device effects only
        std = _read_std(crossbar.device_model, module.weight.detach(), read, settings.read_1f)
        layers.append(CircuitLayer(index, module, std, settings.tile_rows, slice_count,
                                   settings.tile_split))
    return layers


def _read_std(model: DeviceModel, weight: torch.Tensor, read_sigma: float, read_1f: bool) -> torch.Tensor | None:
    """Per-weight std of the noise drawn per read: ``model.std(weight, read_sigma)`` and the 1/f read noise of the
    weight's devices (:func:`neft.chip.effects.read_1f_std`) added in variance; None without either."""
    std = model.std(weight, read_sigma) if read_sigma > 0 else None
    if read_1f:
        noise = effects.read_1f_std(model, weight)
        std = noise if std is None else torch.hypot(std, noise)
    return std


def _layer_output(layer: CircuitLayer, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                  settings: CircuitSettings, device_model: DeviceModel, calibrating: bool,
                  noise: Callable[[int, int, torch.Tensor], torch.Tensor] | None, batched: bool,
                  convert: Callable[[CircuitLayer, int, torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """The output of ``layer`` (weight ``weight``, bias ``bias``) on ``x`` through the circuit ``settings``: per tile,
    the DAC input (:func:`_tile_input`), each bit slice's partial sums with read noise ``noise(layer, column,
    partial)`` (None: no read noise), digitised by the ADC, then shifted and added. The ADC works in its codes:
    its step is folded into each tile's (small) weight, so a tile's partial sums come out in ADC steps and are
    clipped and rounded in place, then added to the output times the step (four passes over them).
    ``calibrating``: record the converters' full scales instead of converting; ``batched``: inside
    ``torch.func.vmap`` over chips; ``convert(layer, column, partial)``: the chip's own ADCs (None: ideal ones).
    With ``wire_resistance`` each tile computes with its IR-dropped weight (:func:`neft.chip.ir_drop.layer_tile`)."""
    if calibrating:
        layer.calibrate_input(x, settings)
    adc = settings.adc_bits is not None and not calibrating
    out_channels = weight.shape[0]
    count = layer.slice_count
    parts = [weight] if count == 1 else slices(weight, layer.clean, device_model).unbind(0)
    shares = [1.0] if count == 1 else [4.0 ** (j * device_model.device_bits) for j in range(count)]
    fresh = not torch.is_grad_enabled()  # no autograd: partial sums are overwritten in place (less memory)
    # channels_last weights (the Monte Carlo engine's layout on a CPU): the tiles keep that layout, or each
    # tile's convolution would reorder NCHW tensors and every op after the layer would run in NCHW
    nhwc = (layer.conv is F.conv2d and not weight.is_contiguous()
            and weight.is_contiguous(memory_format=torch.channels_last))
    if nhwc:
        x = x.contiguous(memory_format=torch.channels_last)
    total = None
    for tile in range(len(layer.tiles)):
        std = None
        xt = _tile_input(layer, x, tile, settings.dac_bits if not calibrating else None, nhwc, batched)
        for part, (weight_part, share) in enumerate(zip(parts, shares)):
            column = tile * count + part  # one ADC per tile and slice
            step = layer.adc_step[column] if adc else 1.0  # partial sums in ADC steps
            unit = 1.0 / step if step else 0.0  # a zero range (step 0) reads 0
            tile_weight = layer.tile_weight(weight_part, tile)
            if settings.wire_resistance > 0:
                tile_weight = ir_drop.layer_tile(layer, tile, part, tile_weight, settings.wire_resistance, device_model)
            if nhwc:
                tile_weight = tile_weight.contiguous(memory_format=torch.channels_last)
            partial = layer.matmul(xt, tile_weight * unit if unit != 1.0 else tile_weight)
            if noise is not None:  # a slice's devices carry their share of the weight's read variance
                if std is None:
                    std = layer.read_variance(xt, tile, out_channels).sqrt_()
                scale = unit * math.sqrt(share / sum(shares))
                partial = _add_read_noise(partial, noise(layer.index, column, partial), std, scale, fresh, batched)
            if calibrating and settings.adc_bits is not None:
                layer.adc_scale.append(calibration_magnitude(partial, settings.adc_range))
            if adc:
                partial = (codes(partial, settings.adc_bits, inplace=fresh, batched=batched) if convert is None
                           else convert(layer, column, partial))
            total = _accumulate(total, partial, step, fresh)
    if bias is not None:
        shape = (-1,) + (1,) * (total.dim() - 2) if layer.conv is not None else (-1,)
        total = total.add_(bias.reshape(shape)) if fresh else total + bias.reshape(shape)
    return total


def _tile_input(layer: CircuitLayer, x: torch.Tensor, tile: int, dac_bits: int | None, nhwc: bool,
                batched: bool) -> torch.Tensor:
    """The tile's input: quantized by the DAC of ``dac_bits`` (a copy of the tile's inputs only; None: no DAC), or
    a dense copy of the tile's channels when the layer has several tiles (convolutions read a strided slice
    slowly)."""
    xt = layer.tile_input(x, tile)
    if dac_bits is not None:
        step = layer.dac_step
        if not step:  # a zero range: the DAC reads 0
            return torch.zeros_like(xt)
        return codes(xt / step, dac_bits, layer.dac_signed, inplace=True, batched=batched).mul_(step)
    if len(layer.tiles) > 1:
        return xt.contiguous(memory_format=torch.channels_last) if nhwc else xt.clone()
    return xt


def _accumulate(total: torch.Tensor | None, partial: torch.Tensor, step: float, fresh: bool) -> torch.Tensor:
    """``total + partial * step`` (``partial * step`` when ``total`` is None), in place when no gradient is wanted
    (``fresh``)."""
    if total is None:
        return partial if step == 1.0 else partial.mul_(step) if fresh else partial * step
    return total.add_(partial, alpha=step) if fresh else total + partial * step


def _add_read_noise(partial: torch.Tensor, noise: torch.Tensor, std: torch.Tensor, scale: float, fresh: bool,
                    batched: bool) -> torch.Tensor:
    """``partial + noise * std * scale``: in place in one fused pass when no gradient is wanted (``fresh``), in
    place in two under ``torch.func.vmap`` (``addcmul_`` has no batching rule there)."""
    if not fresh:
        return partial + noise * std * scale
    if not batched:
        return partial.addcmul_(noise, std, value=scale)
    return partial.add_(noise.mul_(std), alpha=scale)
