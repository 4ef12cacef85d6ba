"""Objectives of one forward: vanilla (no variation), noise-injection (one perturbed forward at sigma, the paper's
"W/ Noise" baseline) and RCG (noise-injection with right-censored Gaussian noise; docs/method.md, 'RCG').
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from neft.training.objectives.base import Objective, _accuracy, _ce
from neft.training.objectives.settings import RCG_CENSOR_K, RCG_SCALE, check_setting, check_temperature


class Vanilla(Objective):
    """Plain cross-entropy without any variation (the paper's "W/O Noise" model)."""

    name = "vanilla"
    parts = ("ce",)

    def loss(self, model, x, y):
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        return loss, {"acc": _accuracy(logits, y), "ce": float(loss.detach())}


class NoiseInjection(Objective):
    """Noise-injection training, the paper's "W/ Noise" baseline: cross-entropy of one perturbed forward at sigma
    (the paper's "W/ Noise" model), optionally with a logit temperature T: ``loss = CE(z / T, y)``.

    T = 1 (default) is the paper's baseline. T = N + 1 (4 for OVF's three oriented forwards) is the ablation that
    gives the backbone logits the same 1 / (N + 1) scaling as the negative feedback loss without any feedback
    term: OVF with beta = 0 computes exactly this loss (the README's Results section measures both).

    Args:
        temperature: T > 0, a logit divisor (dimensionless).
        Other arguments as :class:`Objective`.

    Raises:
        ValueError: for a temperature that is not a finite number > 0.
    """

    name = "noise-injection"
    parts = ("ce",)

    def __init__(self, temperature: float = 1.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.temperature = check_temperature(temperature)

    def loss(self, model, x, y):
        logits = self.noisy_forward(model, x, self.sigma)
        return F.cross_entropy(logits / self.temperature, y), {"acc": _accuracy(logits, y), "ce": _ce(logits, y)}


class RCG(NoiseInjection):
    """Noise-injection with right-censored Gaussian weight noise (RCG; Yan et al., "Improving Realistic
    Worst-Case Performance of NVCiM DNN Accelerators through Training with Right-Censored Gaussian Noise", ICCAD
    2023; docs/method.md, 'RCG'): each perturbation is drawn as in noise-injection, then every element above
    ``+censor_k`` standard deviations of its weight is set to ``+censor_k`` std, ``dW = std(w) * min(z, k)``,
    ``z ~ N(0, 1)`` (:meth:`neft.chip.device_model.DeviceModel.sample`), and multiplied by ``rcg_scale``,
    ``dW = rcg_scale * std(w) * min(z, k)``: the authors train with a noise magnitude of its own, searched at a
    fixed k (docs/method.md, 'RCG'; :mod:`neft.experiments.rcg_search`), while validation and evaluation chips stay at
    the device's sigma. The loss is cross-entropy of that forward.

    Args:
        censor_k: k >= 0, in standard deviations of each weight's noise (default :data:`RCG_CENSOR_K` = 1).
        rcg_scale: training-noise magnitude > 0 as a multiple of the std at the training sigma (default
            :data:`RCG_SCALE` = 1, tied to it: bit for bit the draw without a scale).
        Other arguments as :class:`NoiseInjection` (temperature 1).

    Raises:
        SettingError: (a ``ValueError``) for a censor_k that is not a finite number >= 0 or an rcg_scale that is
            not a finite number > 0.
    """

    name = "rcg"

    def __init__(self, censor_k: float = RCG_CENSOR_K, rcg_scale: float = RCG_SCALE, **kwargs) -> None:
        super().__init__(**kwargs)
        self.censor_k = check_setting("censor_k", censor_k)
        self.rcg_scale = check_setting("rcg_scale", rcg_scale)

    def noisy_forward(self, model: nn.Module, x: torch.Tensor, sigma: float) -> torch.Tensor:
        """Forward with a fresh right-censored perturbation of every mapped weight at ``sigma``, times
        ``rcg_scale`` (on a realistic chip, its whole deviation from the clean weights, at sigma 0 too)."""
        crossbar = self.crossbar(model)
        if self.rcg_scale == 1:
            return crossbar.forward(x, sigma=sigma, generator=self.generator, censor_k=self.censor_k)
        chip = crossbar.sample_chip(sigma, self.generator, censor_k=self.censor_k)
        weights = set(crossbar.names)  # the chip's other entries (drift compensation factors) are not deviations
        return crossbar.forward(x, chip={name: self.rcg_scale * dw if name in weights else dw
                                         for name, dw in chip.items()})
