"""Why an evaluation's logits are NaN or infinite (docs/method.md, 'Monte Carlo evaluation and metrics'): the network
itself, the crossbar circuit, fp16 precision or the chips, found by clean forwards of the test images so that the
error names the actual cause instead of a list of guesses.
"""

from __future__ import annotations

import torch

from neft.chip.circuit import Circuit
from neft.chip.crossbar import Crossbar
from neft.common.compute import first_non_finite

__all__ = ["non_finite_cause"]


def non_finite_cause(crossbar: Crossbar, circuit: Circuit, images: torch.Tensor, batch_size: int,
                     sigma: float) -> str:
    """The cause of non-finite logits of the chips at ``sigma`` and the fix to try, as a sentence.

    Runs ``crossbar.model`` (inside ``circuit.applied()``, as the engine does) clean on ``images`` ``[N, ...]`` in
    batches of ``batch_size``: in fp32 without the circuit (the network itself: its weights or a layer overflow), in
    fp32 through the circuit without read noise (the circuit), under the autocast in force when it is fp16 (fp16
    overflow); when all are finite, the chips at ``sigma`` on ``crossbar.device_model`` are the cause (with drift,
    a read time far below ``drift_t0`` is named).
    """
    device = images.device.type
    fp16 = torch.is_autocast_enabled(device) and torch.get_autocast_dtype(device) == torch.float16
    with torch.autocast(device, enabled=False):
        with circuit.bypassed():
            layer = _first_bad(crossbar.model, images, batch_size)
        if layer is not None:
            return (f"the network itself gives them on its clean weights (no chip, no circuit; first at "
                    f"{layer}): check its weights")
        if circuit.settings.active:
            layer = _first_bad(crossbar.model, images, batch_size)
            if layer is not None:
                return (f"the crossbar circuit ({circuit.settings.label().strip()}) gives them on the clean weights "
                        f"(first at {layer}), whose plain forward is finite: check the circuit settings")
    if fp16 and _first_bad(crossbar.model, images, batch_size) is not None:
        return "under fp16 precision the clean logits overflow: evaluate with precision fp32 or bf16"
    model = crossbar.device_model
    drift = (f"; the chip drifts: a read time (drift_time {model.drift_time:g} s) far below drift_t0 "
             f"({model.drift_t0:g} s) scales conductances by (t/t0)^-nu" if model.drifts and model.drift_time
             else "")
    precision = "; under fp16 the chips' larger logits may overflow: try precision fp32 or bf16" if fp16 else ""
    return (f"the clean network is finite, so the chips at sigma {sigma:g} of device model {model.name!r} give them "
            f"(their perturbed weights make a layer overflow){drift}{precision}")


def _first_bad(model: torch.nn.Module, images: torch.Tensor, batch_size: int) -> str | None:
    """:func:`first_non_finite` over the batches of ``images``: the first batch's first non-finite module."""
    for start in range(0, images.shape[0], batch_size):
        layer = first_non_finite(model, images[start:start + batch_size])
        if layer is not None:
            return layer
    return None
