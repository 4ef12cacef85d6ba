"""Two conventions of aihwkit 1.2's PCM chip that depart from the devices' physics, as realistic-chip options
(docs/method.md, 'Conductance-dependent device laws', 'aihwkit 1.2 conventions'); ``PCM-aihwkit`` sets both so that
its chips equal aihwkit's ``PCMLikeNoiseModel`` chips as shipped.

* ``clip_g_max = False``: conductances are clamped only at ``g_min`` (level 0), never at ``g_max``, after
  programming, drift and 1/f read noise (aihwkit ``PCMLikeNoiseModel.apply_programming_noise_to_conductance`` and
  ``apply_drift_noise_to_conductance`` clamp at 0 only). The default ``True`` clips to ``[g_min, g_max]``, the
  device's range (CrossSim 3.2 ``clip_and_mask`` does too).
* ``drift_of = "resplit"``: drift and 1/f read noise act on the **re-split programmed weight**, not on the
  programmed devices (aihwkit 1.2 ``BaseNoiseModel.apply_drift_noise``, which ``drift_weights`` calls: it converts
  the programmed weights ``W_p`` back to conductances with a new scale ``g_max / max|W_p|`` of the layer, the net
  weight on the device of its sign, the other at 0). The default ``"devices"`` drifts each programmed device.

Pure functions of tensors; the checks are :func:`neft.chip.device_checks.check_device_model`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from neft.chip import mapping

if TYPE_CHECKING:
    from neft.chip.device_model import DeviceModel

__all__ = ["upper_clip", "resplit", "DRIFT_OF"]

DRIFT_OF = ("devices", "resplit")  # the values of DeviceModel.drift_of


def upper_clip(model: DeviceModel) -> int | None:
    """The highest conductance a step clips to, in level units: ``T = 2**device_bits - 1`` (``g_max``), or None
    (no upper clip) with ``clip_g_max = False`` (aihwkit 1.2 clamps at 0 only)."""
    return 2 ** model.device_bits - 1 if model.clip_g_max else None


def resplit(model: DeviceModel, programmed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The programmed pair re-split as aihwkit 1.2's ``drift_weights`` re-splits it before drift and 1/f noise.

    With ``d = from_conductances(programmed)`` the programmed weight in level units (one device per sign,
    ``devices_per_weight == 1``) and ``m = max|d|`` over the layer, the weight goes onto the device of its sign
    at ``|d| * T / m`` levels (``T`` at ``g_max``: aihwkit's new scale ``g_max / max|W_p|``) and the other device
    at exactly 0 levels (aihwkit's ``g_min``; the programmed idle device's error enters only through ``d``).

    Args:
        model: the device model (``device_bits`` gives ``T``).
        programmed: programmed conductances ``[2, 1, *shape]`` in level units (rows ``G+``, ``G-``).

    Returns:
        ``(conductances, unit)``: the re-split conductances ``[2, 1, *shape]`` in level units, and the 0-d
        weight levels per conductance level, ``m / T`` (so ``from_conductances(G(t)) * unit`` is the read weight in
        levels, aihwkit's ``(g+(t) - g-(t)) / s'``; ``unit`` is 0 and the conductances 0 for an all-zero ``d``).

    Source: aihwkit 1.2 ``aihwkit/inference/noise/base.py`` (``apply_drift_noise``) with
    ``SinglePairConductanceConverter`` (``aihwkit/inference/converter/conductance.py``).
    """
    top = 2 ** model.device_bits - 1
    d = mapping.from_conductances(programmed, model.device_bits)
    m = d.abs().max()
    scale = torch.where(m > 0, top / torch.where(m > 0, m, torch.ones_like(m)), torch.zeros_like(m))
    net = d * scale
    split = torch.stack([net.clamp(min=0), net.neg().clamp_(min=0)]).unsqueeze(1)
    return split, m / top
