"""What a network asks of the chip per inference, read off one traced forward (docs/method.md, 'What a chip costs'):
each crossbar-mapped layer's fan-in, outputs, reads per inference and programmed levels, and each digital layer's
operations.

A forward of one zero image through the model with a hook on every module records each module's input and output
shapes. A mapped ``nn.Conv1d/2d/3d`` or ``nn.Linear`` weight is a matrix of ``fan_in = weight[0].numel()`` rows
(input channels per group times kernel positions, as :mod:`neft.chip.circuit_layer` tiles it) and ``outputs =
weight.shape[0]`` columns (a grouped convolution: one such array set of ``outputs / groups`` columns per group,
each on its own inputs), read once per output position: ``reads = output.numel() / outputs`` (a convolution's
output positions, 1 for a linear layer on one image; summed over the calls of a module called more than once, its
arrays programmed once). Digital layers are counted in operations of the periphery:
BatchNorm / LayerNorm / GroupNorm one multiply and one add per output element (the affine normalisation with its
statistics folded in); ReLU-like activations one comparison (an add) per element, other activations one multiply and
one add (a piecewise-linear unit); max pooling ``window - 1`` comparisons per output, average pooling ``window - 1``
adds and one multiply; a Conv/Linear left digital (``exclude``) one multiply and one add per MAC. Operations written
as functions in a model's ``forward`` (``F.relu``) have no module and are not counted.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from neft.chip import mapping
from neft.chip.crossbar import MAPPED_LAYER_TYPES, mapped_weight_names
from neft.chip.device_model import DeviceModel

__all__ = ["MappedLayer", "DigitalLayer", "network_layers", "level_sum"]

_NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)
_COMPARE = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.Hardtanh, nn.Threshold, nn.PReLU)
_ACTIVATIONS = (nn.Sigmoid, nn.Tanh, nn.GELU, nn.SiLU, nn.ELU, nn.Softmax, nn.Hardswish, nn.Hardsigmoid, nn.Mish,
                nn.Softplus, nn.LogSoftmax)
_MAX_POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
              nn.AdaptiveMaxPool3d)
_AVG_POOLS = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
              nn.AdaptiveAvgPool3d)


@dataclass(frozen=True)
class MappedLayer:
    """One crossbar-mapped weight as the cost model sees it.

    Attributes:
        name: the weight's name (``features.0.0.weight``).
        fan_in: crossbar rows R (input channels per group times kernel positions).
        outputs: outputs O (output channels or features).
        reads: crossbar reads per inference P (output positions of a convolution, 1 for a linear layer; summed
            over the calls of a module called more than once).
        bias: whether the layer adds a bias (one digital add per output).
        level_sum: sum of the programmed level units (0 .. 2**device_bits - 1) over every device of the layer
            (:func:`level_sum`).
        groups: a grouped convolution's groups, each its own arrays of ``fan_in`` rows and ``outputs / groups``
            columns read side by side on its own inputs (1: one matrix).
    """

    name: str
    fan_in: int
    outputs: int
    reads: int
    bias: bool
    level_sum: float
    groups: int = 1

    def __post_init__(self) -> None:
        if self.groups < 1 or self.outputs % self.groups:
            raise ValueError(f"{self.name}: groups ({self.groups}) must be >= 1 and divide the outputs "
                             f"({self.outputs})")


@dataclass(frozen=True)
class DigitalLayer:
    """One digital layer: its module name, its kind (``"batchnorm"``, ``"activation"``, ``"pooling"``,
    ``"digital matmul"``) and its operations per inference (``adds``, ``mults``)."""

    name: str
    kind: str
    adds: int
    mults: int


_HISTOGRAM_LEVELS = 2 ** 16  # up to this many levels, level_sum counts them in one histogram


def level_sum(weight: torch.Tensor, device_model: DeviceModel) -> float:
    """The sum over a weight's devices of their programmed levels: the weight quantized to ``weight_bits`` levels
    of its max|W| and split into ``weight_bits / device_bits`` digits on a differential pair
    (:mod:`neft.chip.mapping`; a positive weight's digits on ``G+``, its ``G-`` devices at level 0, a negative weight
    the other way round), so the sum is that of the digits of ``|q|``. 0 for an empty or all-zero weight.

    Raises:
        ValueError: a weight holding NaN or infinite values."""
    if weight.numel() == 0:
        return 0.0
    bits, k = device_model.weight_bits, device_model.device_bits
    top, base = mapping.magnitude_levels(bits), 2 ** k
    with torch.no_grad():
        # float64 beyond float32's 24-bit mantissa: the top levels would round to a power of two
        w = weight.detach().to(torch.float64 if top >= 2 ** 24 else torch.float32).abs()
        w_max = w.amax()
        if not torch.isfinite(w_max):
            raise ValueError(f"a weight of shape {list(weight.shape)} holds NaN or infinite values: no chip can be "
                             "programmed with it; check the network's weights")
        if not w_max > 0:
            return 0.0
        # the level of |w| is round(|w| / max|W| * L), as neft.chip.mapping.quantize
        levels = w.div_(w_max).mul_(top).round_().to(torch.int32 if top <= _HISTOGRAM_LEVELS else torch.int64)
        if top <= _HISTOGRAM_LEVELS:  # one histogram pass, then the digit sums of the L + 1 levels
            values = torch.arange(top + 1, device=levels.device)
            digits = torch.zeros_like(values)
            while bool(values.any()):
                digits += values % base
                values = values.div(base, rounding_mode="floor")
            return float((torch.bincount(levels.flatten(), minlength=top + 1) * digits).sum())
        # base-2**k digits summed one digit position at a time (a few passes: 2**23 levels of an analog device)
        total = 0
        while bool(levels.any()):
            total += int((levels % base).sum())
            levels = levels.div_(base, rounding_mode="floor")
    return float(total)


def _window(module: nn.Module, inputs: torch.Tensor, output: torch.Tensor) -> int:
    """Input elements per output element of a pooling layer (its kernel size, or the adaptive window)."""
    kernel = getattr(module, "kernel_size", None)
    if kernel is not None:
        return math.prod(kernel) if isinstance(kernel, (tuple, list)) else kernel ** (output.dim() - 2)
    return max(1, inputs.numel() // max(1, output.numel()))


def _digital(name: str, module: nn.Module, inputs: torch.Tensor, output: torch.Tensor) -> DigitalLayer | None:
    """The digital operations of one leaf module on one image, or None when it computes nothing (containers,
    ``Flatten``, ``Dropout``, modules of unknown kinds)."""
    n = output.numel()
    if isinstance(module, _NORMS):
        return DigitalLayer(name, "batchnorm", n, n)
    if isinstance(module, _COMPARE):
        return DigitalLayer(name, "activation", n, 0)
    if isinstance(module, _ACTIVATIONS):
        return DigitalLayer(name, "activation", n, n)
    if isinstance(module, _MAX_POOLS):
        return DigitalLayer(name, "pooling", n * (_window(module, inputs, output) - 1), 0)
    if isinstance(module, _AVG_POOLS):
        return DigitalLayer(name, "pooling", n * (_window(module, inputs, output) - 1), n)
    if isinstance(module, MAPPED_LAYER_TYPES):  # left digital by include/exclude
        macs = n * math.prod(module.weight.shape[1:])
        return DigitalLayer(name, "digital matmul", macs + (n if module.bias is not None else 0), macs)
    return None


def _add_read(mapped: dict[str, MappedLayer], weight: str, module: nn.Module, output: torch.Tensor,
              levels: float) -> None:
    """Record one call of the mapped ``module`` (weight ``weight``) that produced ``output``: a new layer, or the
    reads of a module called again (or of a tied weight) added to its layer, programmed once."""
    outputs = module.weight.shape[0]
    reads = output.numel() // outputs if outputs else 0
    if weight in mapped:
        mapped[weight] = dataclasses.replace(mapped[weight], reads=mapped[weight].reads + reads)
    else:
        mapped[weight] = MappedLayer(weight, math.prod(module.weight.shape[1:]), outputs, reads,
                                     module.bias is not None, levels, getattr(module, "groups", 1))


def network_layers(model: nn.Module, input_shape: tuple[int, ...], device_model: DeviceModel,
                   include: Iterable[str] | None = None,
                   exclude: Iterable[str] | None = None) -> tuple[list[MappedLayer], list[DigitalLayer]]:
    """The mapped and the digital layers of ``model`` on one input of ``input_shape`` (without the batch axis, e.g.
    ``(3, 32, 32)``), in forward order.

    Args:
        model: any module (not modified; run once in eval mode without gradients on one image of zeros; flags
            restored).
        device_model: gives ``weight_bits`` and ``device_bits`` of the programmed levels.
        include, exclude: module-name patterns of the mapped layers (:func:`neft.chip.crossbar.mapped_weight_names`).

    Raises:
        ValueError: the model has no mapped weight, or the input shape does not fit the model.
    """
    names = set(mapped_weight_names(model, include, exclude))
    # by the parameter itself: a weight shared by several modules (tied) is one matrix that every module using it reads
    weights = {id(p): name for name, p in model.named_parameters() if name in names}
    levels = {name: level_sum(p, device_model) for name, p in model.named_parameters() if name in names}
    mapped, digital, handles = {}, [], []

    def record(name: str, module: nn.Module):
        def hook(_, args, output):
            inputs = args[0] if args and isinstance(args[0], torch.Tensor) else output
            weight = weights.get(id(module.weight)) if isinstance(module, MAPPED_LAYER_TYPES) else None
            if weight is not None:
                _add_read(mapped, weight, module, output, levels[weight])
            elif not list(module.children()) and isinstance(output, torch.Tensor):
                layer = _digital(name, module, inputs, output)
                if layer is not None:
                    digital.append(layer)
        return hook

    for name, module in model.named_modules():
        handles.append(module.register_forward_hook(record(name, module)))
    first = next(iter(model.parameters()), None)
    like = {"device": first.device, "dtype": first.dtype if first.is_floating_point() else None} if first is not None \
        else {}
    flags = {module: module.training for module in model.modules()}
    try:
        model.eval()
        with torch.no_grad():  # one image of zeros: cheaper than meta tensors, whose kernels take seconds to load
            model(torch.zeros((1, *input_shape), **like))
    except RuntimeError as error:
        raise ValueError(f"the model cannot run on one input of shape {list(input_shape)} (channels, height, "
                         f"width): {str(error).splitlines()[0]}; give the input size the model takes (neft cost "
                         "--image-size, --in-channels)") from error
    finally:
        for module, training in flags.items():
            module.train(training)
        for handle in handles:
            handle.remove()
    return list(mapped.values()), digital
