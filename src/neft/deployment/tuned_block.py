"""A tiny shared block tuned on one programmed chip (docs/method.md, 'Fixes for one programmed chip').

Source: Qin, Yan, Pan, Wen, Hu and Shi, *Tiny Shared Block for Efficient DNN Deployment on NVCIM Accelerators*,
arXiv 2406.06544, 2024 (TSB). The backbone is programmed once; a tiny block of 1x1 convolutions whose weights are
shared by all its insertion points is then fine-tuned against that chip's actual variation, and only the block is
written with write-verify. No code was published; neft's block is its own reading of the paper's description:

* one ``C x C`` 1x1 convolution without bias, added as a residual branch after each chosen tap (a module whose
  output has C channels): ``y = x + conv1x1(x)``; every insertion point uses the same weight;
* the weight starts at zero, so the untuned network is exactly the backbone;
* on each chip it is trained for ``steps`` Adam steps on batches of training images (drawn from the chip's own
  seed), the chip's backbone frozen (its perturbed weights and BatchNorm statistics held fixed, eval mode);
* then it is written to the chip with verification: a write-verified device keeps the residual variation
  ``min(verified_sigma, sigma)`` (0: no programming error), and a realistic chip quantizes it and gives it its
  stuck devices and drift (:func:`neft.chip.crossbar.written_weight_error`), drawn from the chip's seed.

The block lives on the model only while :func:`installed` is active: its weight as the model's own parameter
``neft_chip_block_weight`` (not a submodule, so a container such as ``nn.Sequential``, which runs its submodules in
order, never runs the block as a layer) and one forward hook per tap; ``functional_call`` passes each chip's tuned
weight under that name.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from neft.common.errors import SettingError

__all__ = ["WEIGHT", "SharedBlock", "default_taps", "installed", "tune"]

WEIGHT = "neft_chip_block_weight"  # the block weight's parameter name on the model while installed


class SharedBlock(nn.Module):
    """``y = x + conv1x1(x)`` with one ``[C, C, 1, 1]`` weight, initialised to zero (the identity).

    Input and output ``[B, C, H, W]``; ``weight`` (``[C, C, 1, 1]``) replaces the block's own for one call (the
    chip's weight that ``functional_call`` put on the model).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(channels, channels, 1, 1))

    def forward(self, x: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        return x + F.conv2d(x, self.weight if weight is None else weight)


def default_taps(model: nn.Module) -> tuple[str, ...]:
    """The model's declared insertion points (``chip_tune_taps``, e.g. LeNet-5's ``features.1``), or ``()``."""
    return tuple(getattr(model, "chip_tune_taps", ()))


def _channels(model: nn.Module, taps: Sequence[str], example: torch.Tensor) -> int:
    """The common channel count of the taps' outputs (one dry run on ``example[:1]``)."""
    modules = dict(model.named_modules())
    unknown = [tap for tap in taps if tap not in modules or not tap]
    if unknown:
        raise SettingError("chip_tune_taps", f"chip_tune_taps {unknown} are not modules of {type(model).__name__}; "
                                             "give module names whose outputs are [B, C, H, W] feature maps, e.g. "
                                             "features.1 (see `neft layers`)")
    shapes = {}

    def record(tap):
        def hook(_module, _inputs, output):
            shapes.setdefault(tap, getattr(output, "shape", ()))
        return hook

    hooks = [modules[tap].register_forward_hook(record(tap)) for tap in taps]
    try:
        with torch.no_grad():
            model(example[:1])
    finally:
        for hook in hooks:
            hook.remove()
    bad = {tap: tuple(shapes[tap]) if tap in shapes else None for tap in taps
           if tap not in shapes or len(shapes[tap]) != 4}
    if bad:
        raise SettingError("chip_tune_taps", f"the tuned block needs [B, C, H, W] outputs at every tap; got {bad} "
                                             "(None: the forward never calls that module)")
    channels = {shapes[tap][1] for tap in taps}
    if len(channels) != 1:
        raise SettingError("chip_tune_taps", f"one block is shared by all taps, so their outputs need the same "
                                             f"channel count; got {({tap: shapes[tap][1] for tap in taps})}")
    return channels.pop()


@contextmanager
def installed(model: nn.Module, taps: Sequence[str], example: torch.Tensor) -> Iterator[SharedBlock]:
    """Insert a zero :class:`SharedBlock` after each tap of ``model`` inside the block; removed afterwards.

    Args:
        model: any network, ``nn.Sequential`` included (its own parameters untouched; for the duration it gains the
            parameter :data:`WEIGHT`, the block's weight, and one forward hook per tap that runs the block on the
            tap's output with the model's current :data:`WEIGHT`; the block is no submodule, so no container runs
            it as a layer).
        taps: module names whose outputs ``[B, C, H, W]`` share one channel count C.
        example: an input batch ``[B, ...]`` on the model's device, for one dry run that finds C.

    Raises:
        SettingError: (setting ``chip_tune_taps``) for no taps, an unknown module, a non-4-D output or taps of
            different channel counts.
    """
    if not taps:
        raise SettingError("chip_tune_taps", f"{type(model).__name__} declares no insertion points for the tuned "
                                             "block; give chip_tune_taps (CLI --chip-tune-taps), e.g. features.1")
    channels = _channels(model, taps, example)
    parameter = next(model.parameters())
    block = SharedBlock(channels).to(device=parameter.device, dtype=parameter.dtype)
    model.register_parameter(WEIGHT, block.weight)
    modules = dict(model.named_modules())
    hooks = [modules[tap].register_forward_hook(lambda _m, _i, out: block(out, getattr(model, WEIGHT)))
             for tap in taps]
    try:
        yield block
    finally:
        for hook in hooks:
            hook.remove()
        delattr(model, WEIGHT)


def tune(model: nn.Module, weights: Mapping[str, torch.Tensor], images: torch.Tensor, labels: torch.Tensor,
         steps: int, *, batch_size: int, lr: float, generator: torch.Generator) -> torch.Tensor:
    """The block weight tuned for one chip: ``steps`` Adam steps from zero on the cross-entropy of the chip's
    forward, batches of ``batch_size`` training images drawn with replacement from ``generator`` (a CPU
    generator), the backbone frozen.

    Args:
        model: the network with the block :func:`installed`, in eval mode.
        weights: the chip's frozen perturbed weights (and BatchNorm statistics) for ``functional_call``.
        images, labels: training images ``[N, ...]`` and their classes ``[N]`` on the model's device.
        steps: optimizer steps (>= 0; 0 returns the zero block).
        batch_size: images per step; lr: Adam's learning rate.

    Returns:
        The tuned weight ``[C, C, 1, 1]`` (detached), not yet written to the chip.
    """
    weight = torch.zeros_like(getattr(model, WEIGHT)).requires_grad_(True)
    optimizer = torch.optim.Adam([weight], lr=lr)
    frozen = {name: w.detach() for name, w in weights.items()}
    with torch.enable_grad(), torch.autocast(images.device.type, enabled=False):
        for _ in range(steps):
            index = torch.randint(len(images), (batch_size,), generator=generator).to(images.device)
            logits = functional_call(model, {**frozen, WEIGHT: weight}, (images[index],))
            loss = F.cross_entropy(logits.float(), labels[index])
            (weight.grad,) = torch.autograd.grad(loss, [weight])  # no gradient reaches the model's own parameters
            optimizer.step()
    return weight.detach()
