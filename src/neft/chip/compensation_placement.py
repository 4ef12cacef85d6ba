"""Where global drift compensation acts (docs/method.md, 'The periphery'): on the weights (neft's default: the
chip's weights are scaled by ``alpha``, before the ADC) or on the digitised outputs (aihwkit's placement:
``aihwkit/simulator/tiles/inference.py`` multiplies the tile's digital output by the compensation factor, the
``alpha`` of ``ForwardBackwardPassIOManaged::forwardVector``'s ``out_scale``).

With ``drift_compensation_at="outputs"`` a chip is drawn twice from the same generator state, with the device
model's compensation (the weights' placement, :func:`neft.chip.effects.sample`) and without it (the drifted
conductances); the chip keeps the drifted weights, and the factor ``alpha`` that the device model's compensation
applied to that layer (``<W_c, W_d> / <W_d, W_d>``, exact as ``W_c = alpha W_d``) travels with the chip as a buffer
:data:`ALPHA` of each mapped module, which :func:`neft.chip.periphery.managed_output` multiplies the layer's
digital output by (before the bias). With ideal converters both placements give the same layer outputs; with an
ADC they differ: the uncompensated (drifted, smaller) sums use fewer ADC codes and the output noise is not scaled
along.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch

from neft.chip.device_model import DeviceModel

__all__ = ["ALPHA", "alpha_key", "outputs_compensated"]

ALPHA = "neft_drift_alpha"  # the buffer of a mapped module that holds its chip's compensation factor


def alpha_key(name: str) -> str:
    """The chip entry of the compensation factor of mapped weight ``name`` (``"conv1.weight"`` ->
    ``"conv1.neft_drift_alpha"``)."""
    return f"{name.rpartition('.')[0]}.{ALPHA}".lstrip(".")


def outputs_compensated(device_model: DeviceModel, weights: dict[str, torch.Tensor],
                        draw: Callable[[DeviceModel], dict[str, torch.Tensor]],
                        generator: torch.Generator | None) -> dict[str, torch.Tensor]:
    """One chip for compensation on the outputs: ``{name: dW}`` of the drifted, uncompensated chip and
    ``{alpha_key(name): alpha}`` (0-d tensors) per layer, the factor the device model's compensation gives it.

    Args:
        device_model: the chip's device model (``quantize`` and ``drift_compensation`` on).
        weights: the clean mapped weights ``{name: w}`` the chip is drawn for.
        draw: ``draw(model)`` draws the chip ``{name: dW}`` of ``model`` from ``generator`` (as
            :meth:`neft.chip.crossbar.Crossbar.sample_chip` does).
        generator: the chip's generator (None: torch's default CPU generator); it is rewound for the second draw
            (compensation draws no random numbers) and left as after one draw.
    """
    generator = generator if generator is not None else torch.default_generator
    start = generator.get_state()
    compensated = draw(device_model)
    generator.set_state(start)
    # without compensation: every drift_compensation* field at its default (e.g. the readout, which needs it on)
    off = {field.name: field.default for field in dataclasses.fields(device_model)
           if field.name.startswith("drift_compensation")}
    drifted = draw(dataclasses.replace(device_model, **off))
    chip = dict(drifted)
    for name, w in weights.items():
        now, then = w + drifted[name], w + compensated[name]
        power = now.square().sum()
        chip[alpha_key(name)] = torch.where(power > 0, (now * then).sum() / power.clamp_min(1e-30),
                                            torch.ones_like(power))
    return chip
