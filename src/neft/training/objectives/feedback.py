"""Negative Feedback Training (docs/method.md, 'Negative Feedback Training'): the negative feedback loss and its
two instances, OVF (oriented forwards at higher sigmas) and IRS (snapshot heads on intermediate feature maps).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn import functional as F

from neft.chip.crossbar import Crossbar
from neft.chip.device_checks import check_sigma
from neft.common.compute import eval_mode
from neft.models import default_taps, init_weights
from neft.training.objectives.base import Objective, _accuracy, _ce
from neft.training.objectives.settings import OVF_OFFSETS, check_beta


def negative_feedback_loss(
    backbone_logits: torch.Tensor, feedback_logits: Sequence[torch.Tensor], beta: float, target: torch.Tensor
) -> torch.Tensor:
    """Cross-entropy of the negative-feedback logits (docs/method.md, 'Negative feedback loss'):

        z_nf = (z - beta * sum_{i=1}^{N} 10^-(i-1) * z_i) / (N + 1),    loss = CE(z_nf, y)

    Args:
        backbone_logits: ``z``, ``[B, C]``.
        feedback_logits: ``z_1 .. z_N``, each ``[B, C]``, strongest feedback first. Nothing is detached.
        beta: feedback strength >= 0.
        target: class indices ``[B]``.

    Returns:
        Scalar mean loss (nats).

    Raises:
        ValueError: for a negative or non-finite beta.
    """
    check_beta(beta)
    feedback = sum((10.0 ** -i) * z for i, z in enumerate(feedback_logits))
    z_nf = (backbone_logits - beta * feedback) / (len(feedback_logits) + 1)
    return F.cross_entropy(z_nf, target)


def _without_feedback(backbone_logits: torch.Tensor, terms: int, target: torch.Tensor) -> torch.Tensor:
    """:func:`negative_feedback_loss` at beta = 0 without the N feedback logits: ``CE(z / (N + 1), y)``.

    The feedback enters that loss only as ``0 * z_i``, so its forwards add nothing to the loss or to any gradient:
    OVF and IRS with beta 0 skip them and get the same loss and backbone gradients bit for bit (IRS heads then get
    no gradient instead of zeros). ``backbone_logits``: ``[B, C]``; ``terms``: N; ``target``: ``[B]``.
    """
    return F.cross_entropy(backbone_logits / (terms + 1), target)


def _feedback_logs(logits: torch.Tensor, feedback: Sequence[torch.Tensor], loss: torch.Tensor,
                   target: torch.Tensor) -> dict[str, float]:
    """Loss parts of the negative feedback loss: ``ce`` = CE(z, y) of the backbone logits, and ``feedback`` =
    loss - CE(z / (N + 1), y), what the feedback term adds to the loss (0 at beta = 0)."""
    scaled = _ce(logits / (len(feedback) + 1), target)
    return {"ce": _ce(logits, target), "feedback": float(loss.detach()) - scaled}


class OVF(Objective):
    """Oriented Variational Forward (docs/method.md, 'OVF'): the backbone forward at sigma plus oriented forwards of the
    same network at sigma + 0.15, + 0.10, + 0.05 (feedback weights 1, 0.1, 0.01), each with its own perturbation of
    every mapped layer, all in training mode, combined by :func:`negative_feedback_loss`. With beta = 0 the oriented
    forwards are skipped (their term is 0; the loss is noise-injection's with T = 4, bit for bit, and one step costs
    one forward instead of four); their training-mode BatchNorm statistics updates are skipped with them."""

    name = "ovf"
    parts = ("ce", "feedback")

    def loss(self, model, x, y):
        logits = self.noisy_forward(model, x, self.sigma)
        logs = {"acc": _accuracy(logits, y)}
        if self.beta == 0:
            return _without_feedback(logits, len(OVF_OFFSETS), y), {**logs, "ce": _ce(logits, y), "feedback": 0.0}
        oriented = [self.noisy_forward(model, x, self.sigma + offset) for offset in OVF_OFFSETS]
        loss = negative_feedback_loss(logits, oriented, self.beta, y)
        return loss, {**logs, **_feedback_logs(logits, oriented, loss, y)}


class SnapshotHead(nn.Module):
    """IRS snapshot head (docs/method.md, 'IRS'): adaptive average pool to ``pool x pool`` -> flatten ->
    Linear(C*pool*pool, 512) -> ReLU -> Linear(512, classes); Kaiming-normal (fan_out) weights, zero biases.

    Input: a feature map ``[B, C, H, W]`` (``[B, C, L]`` pools to ``pool``; ``[B, F]`` is used as is).
    Output: logits ``[B, classes]``.
    """

    def __init__(self, feature_shape: Sequence[int], pool: int, num_classes: int, hidden: int = 512) -> None:
        super().__init__()
        pools = {1: nn.Identity(), 2: nn.AdaptiveAvgPool1d(pool), 3: nn.AdaptiveAvgPool2d(pool)}
        if len(feature_shape) not in pools:
            raise ValueError(f"IRS heads read [B, F], [B, C, L] or [B, C, H, W] features, got shape "
                             f"[B, {feature_shape}]")
        self.pool = pools[len(feature_shape)]
        features = feature_shape[0] * (pool ** (len(feature_shape) - 1))
        self.mlp = nn.Sequential(nn.Flatten(), nn.Linear(features, hidden), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, num_classes))
        init_weights(self)

    @property
    def in_features(self) -> int:
        return self.mlp[1].in_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.pool(features))


@contextmanager
def _capture(model: nn.Module, names: Sequence[str]):
    """Collect the outputs of the named modules during forwards inside the block, in ``names`` order.

    Each output is cloned when captured: a later in-place operation of the forward (``ReLU(inplace=True)`` after
    a tapped convolution) would otherwise change what the snapshot head reads. A module returning a tuple (an
    ``nn.LSTM``'s ``(output, state)``, ``nn.MultiheadAttention``'s ``(output, weights)``) is read by its first
    element.
    """
    modules = dict(getattr(model, "module", model).named_modules())  # DistributedDataParallel wraps the model
    outputs: dict[str, torch.Tensor] = {}

    def keep(name, out):
        outputs[name] = (out[0] if isinstance(out, tuple) else out).clone()

    handles = [modules[name].register_forward_hook(lambda _m, _i, out, name=name: keep(name, out)) for name in names]
    try:
        yield outputs
    finally:
        for handle in handles:
            handle.remove()


class IRS(Objective):
    """Intermediate Representation Snapshot (docs/method.md, 'IRS').

    Snapshot heads read intermediate feature maps through forward hooks on named modules (the backbone continues
    unchanged); their logits, earliest first with weights 1, 0.1, 0.01, 0.001, are the feedback terms of
    :func:`negative_feedback_loss`. Head weights are perturbed with their own ``sigma_block`` under the
    state-independent RRAM1 device. Head input sizes come from a dry run of ``model`` on ``sample_input``.
    With beta = 0 the heads do not enter the loss and are not run (no snapshots, no head forwards; their
    accuracies are logged as NaN, and they stay as initialised, as they did with zero gradients before).

    Args:
        model: the backbone (only inspected; hooks are attached during each loss call and removed after).
        sample_input: one input batch ``[B, ...]`` (``B >= 1``) for the dry run.
        num_classes: logits per head.
        taps: ``(module name, pool size)`` pairs or bare module names (pool 4); default: the model's ``irs_taps``.
        sigma_block: heads' sigma (default: the backbone sigma).

    Raises:
        ValueError: when no taps are given and the model declares none, a tap names no module, or a tapped
            module is never called by the forward.
    """

    name = "irs"
    parts = ("ce", "feedback")

    def __init__(
        self,
        model: nn.Module,
        sample_input: torch.Tensor,
        num_classes: int,
        taps: Sequence[str | tuple[str, int]] | None = None,
        sigma_block: float | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.sigma_block = self.sigma if sigma_block is None else check_sigma(sigma_block, "sigma_block")
        taps = taps if taps else default_taps(model)
        if not taps:
            raise ValueError(
                f"{type(model).__name__} declares no IRS snapshot points; pass taps=['module.name', ...] "
                "(--taps on the command line) naming intermediate modules"
            )
        self.taps = [(tap, 4) if isinstance(tap, str) else (str(tap[0]), int(tap[1])) for tap in taps]
        known = dict(model.named_modules())
        missing = [name for name, _ in self.taps if name not in known]
        if missing:
            raise ValueError(f"IRS taps {missing} name no module of {type(model).__name__}; valid names include "
                             f"{[n for n in known if n][:12]}")
        names = [name for name, _ in self.taps]
        with torch.no_grad(), eval_mode(model), _capture(model, names) as outputs:
            model(sample_input[:1])
        unused = [name for name in names if name not in outputs]
        if unused:
            raise ValueError(f"IRS taps {unused} are modules that {type(model).__name__}'s forward never calls; "
                             "tap modules the forward runs (see `neft layers` for the zoo models' taps)")
        device = sample_input.device
        self.heads = nn.ModuleList(
            SnapshotHead(tuple(outputs[name].shape[1:]), pool, num_classes).to(device) for name, pool in self.taps
        )
        self._head_crossbars = [Crossbar(head, "RRAM1") for head in self.heads]

    def modules(self) -> nn.ModuleList:
        return self.heads

    def distribute(self, wrap) -> None:
        self._head_crossbars = [Crossbar(wrap(head), "RRAM1") for head in self.heads]

    def loss(self, model, x, y):
        names = [name for name, _ in self.taps]
        if self.beta == 0:
            logits = self.noisy_forward(model, x, self.sigma)
            logs = {"acc": _accuracy(logits, y), "ce": _ce(logits, y), "feedback": 0.0,
                    **{f"head{i + 1}_acc": math.nan for i in range(len(names))}}
            return _without_feedback(logits, len(names), y), logs
        with _capture(model, names) as outputs:
            logits = self.noisy_forward(model, x, self.sigma)
        feedback = [
            crossbar.forward(outputs[name], sigma=self.sigma_block, generator=self.generator)
            for crossbar, name in zip(self._head_crossbars, names)
        ]
        loss = negative_feedback_loss(logits, feedback, self.beta, y)
        logs = {"acc": _accuracy(logits, y), **_feedback_logs(logits, feedback, loss, y)}
        logs.update({f"head{i + 1}_acc": _accuracy(z, y) for i, z in enumerate(feedback)})
        return loss, logs
