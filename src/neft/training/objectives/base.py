"""The objective base class: device model, training sigma, noise generator and the cached crossbar every noisy
forward runs through; and the batch accuracy and cross-entropy that every objective logs.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from neft.chip import devices
from neft.chip.crossbar import Crossbar
from neft.chip.device_checks import check_sigma
from neft.chip.device_model import DeviceModel
from neft.training.objectives.settings import check_beta


def _accuracy(logits: torch.Tensor, target: torch.Tensor) -> float:
    """Top-1 accuracy of a batch in percent, like every accuracy neft reports."""
    return 100.0 * float((logits.argmax(dim=1) == target).float().mean())


def _ce(logits: torch.Tensor, target: torch.Tensor) -> float:
    """Cross-entropy (nats) of a batch of logits, for the logs only (no gradient)."""
    return float(F.cross_entropy(logits.detach(), target))


class Objective:
    """Base class: holds the device model, training sigma and noise generator.

    Args:
        device_model: device preset name, file or :class:`~neft.chip.device_model.DeviceModel` (default RRAM1).
        sigma: training relative device variation (>= 0).
        beta: feedback strength (NeFT objectives only).
        generator: ``torch.Generator`` for training noise (on the model's device); ``None`` uses torch's global RNG.

    Subclasses implement ``loss(model, x, y) -> (loss, logs)`` where ``x`` is ``[B, ...]``, ``y`` is ``[B]``,
    ``loss`` a scalar tensor and ``logs`` a dict of floats (``acc``: batch accuracy of the backbone forward in
    percent; IRS adds ``head1_acc`` ... in percent) holding the loss parts named in ``parts`` (nats): ``ce`` the
    cross-entropy CE(z, y) of the backbone's logits (before any temperature), ``feedback`` what the negative
    feedback term adds to the loss (OVF, IRS), ``penalty`` the weighted Lipschitz penalty, ``kl`` the
    distillation term T^2 KL (docs/method.md); ``neft train`` logs them per epoch in train_log.csv.
    ``modules()`` returns extra trainable modules (IRS heads) that are never part of the deployed model.
    """

    name = "objective"
    parts: tuple[str, ...] = ()

    def __init__(
        self,
        device_model: DeviceModel | str = "RRAM1",
        sigma: float = 0.0,
        beta: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> None:
        self.device_model = devices.get(device_model)
        self.sigma = check_sigma(sigma)
        self.beta = check_beta(beta)
        self.generator = generator
        self._crossbars: dict[int, Crossbar] = {}

    def crossbar(self, model: nn.Module) -> Crossbar:
        """The cached :class:`~neft.chip.crossbar.Crossbar` of ``model`` with this objective's device model."""
        key = id(model)
        if key not in self._crossbars:
            self._crossbars[key] = Crossbar(model, self.device_model)
        return self._crossbars[key]

    def noisy_forward(self, model: nn.Module, x: torch.Tensor, sigma: float) -> torch.Tensor:
        """Forward with a fresh perturbation of every mapped weight at ``sigma``."""
        return self.crossbar(model).forward(x, sigma=sigma, generator=self.generator)

    def modules(self) -> nn.ModuleList:
        """Extra trainable modules (none by default)."""
        return nn.ModuleList()

    def distribute(self, wrap) -> None:
        """Run the extra modules through ``wrap`` (e.g. ``DistributedDataParallel``) from now on (no-op here)."""

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError
