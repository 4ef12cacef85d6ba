"""Noise-injection plus a weight penalty: Lipschitz (on each mapped layer's spectral norm above a bound;
docs/method.md, 'Lipschitz') and CorrectNet (the orthogonality penalty of the NeFT authors' baseline;
docs/method.md, 'CorrectNet').
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch.nn import functional as F

from neft.training.objectives.noise import NoiseInjection
from neft.training.objectives.settings import (
    CORRECTNET_LAMBDA,
    LIPSCHITZ_BOUND,
    LIPSCHITZ_LAMBDA,
    POWER_ITERATIONS,
    check_setting,
)


def spectral_norm(weight: torch.Tensor, iterations: int = POWER_ITERATIONS) -> torch.Tensor:
    """Largest singular value of a weight as its crossbar stores it, ``W.reshape(out, -1)`` (a convolution's
    ``[out, in, kh, kw]`` becomes ``[out, in * kh * kw]``), by ``iterations`` power iterations from a fixed
    start vector (seeded, so a run replays exactly; no state kept between calls).

    Differentiable: returns ``u^T W v`` with the converged singular vectors ``u``, ``v`` detached, whose gradient
    ``u v^T`` is the gradient of sigma_max (Miyato et al., "Spectral Normalization for GANs", ICLR 2018).

    Args:
        weight: ``[out, in]`` (Linear) or ``[out, in, *kernel]`` (Conv1d/2d/3d), any real dtype.
        iterations: power iterations (>= 1); the estimate approaches sigma_max from below.

    Returns:
        Scalar tensor (weight units), 0 for an all-zero weight.
    """
    matrix = weight.reshape(weight.shape[0], -1)
    with torch.no_grad():
        start = torch.Generator().manual_seed(0)
        v = F.normalize(torch.randn(matrix.shape[1], generator=start).to(matrix), dim=0)
        for _ in range(iterations):
            v = F.normalize(matrix.T @ F.normalize(matrix @ v, dim=0), dim=0)
        u = F.normalize(matrix @ v, dim=0)
    return u @ matrix @ v


def lipschitz_penalty(weights: Iterable[torch.Tensor], bound: float = LIPSCHITZ_BOUND,
                      iterations: int = POWER_ITERATIONS) -> torch.Tensor:
    """``sum_l relu(sigma_max(W_l) - bound)^2`` over ``weights`` (docs/method.md, 'Lipschitz'): zero while every
    layer's spectral norm (:func:`spectral_norm`, conv weights reshaped to ``[out, in * kh * kw]``) is at most
    ``bound``, so that no layer amplifies the errors that reach it.

    Args:
        weights: the crossbar-mapped weights, e.g. ``Crossbar(model).weights().values()``.
        bound: the spectral norm each layer may reach without penalty (default 1).
        iterations: power iterations per estimate.

    Returns:
        Scalar tensor, differentiable with respect to the weights.
    """
    return sum((F.relu(spectral_norm(w, iterations) - bound) ** 2 for w in weights), torch.zeros(()))


class Lipschitz(NoiseInjection):
    """Noise-injection plus a penalty on the Lipschitz bound of the mapped layers, in the spirit of CorrectNet's
    training half (Eldebiky et al., "CorrectNet: Robustness Enhancement of Analog In-Memory Computing for Neural
    Networks by Error Suppression and Compensation", DATE 2023, Sec. III; docs/method.md, 'Lipschitz'; the
    paper's exact regulariser was not available to us, this is neft's spectral-norm form):

        loss = CE(z_noisy, y) + lipschitz_lambda * sum_l relu(sigma_max(W_l) - 1)^2

    over the clean crossbar-mapped weights ``W_l`` (:func:`lipschitz_penalty`).

    Args:
        lipschitz_lambda: penalty weight >= 0 (default :data:`LIPSCHITZ_LAMBDA`; 0 is noise-injection).
        bound: per-layer spectral norm without penalty (default 1).
        iterations: power iterations per estimate and step.
        Other arguments as :class:`NoiseInjection` (temperature 1).

    Raises:
        SettingError: (a ``ValueError``) for a lipschitz_lambda that is not a finite number >= 0.
    """

    name = "lipschitz"

    def __init__(self, lipschitz_lambda: float = LIPSCHITZ_LAMBDA, bound: float = LIPSCHITZ_BOUND,
                 iterations: int = POWER_ITERATIONS, **kwargs) -> None:
        super().__init__(**kwargs)
        self.lipschitz_lambda = check_setting("lipschitz_lambda", lipschitz_lambda)
        self.bound, self.iterations = float(bound), int(iterations)

    parts = ("ce", "penalty")

    def loss(self, model, x, y):
        loss, logs = super().loss(model, x, y)
        penalty = self.lipschitz_lambda * lipschitz_penalty(self.crossbar(model).weights().values(), self.bound,
                                                            self.iterations).to(loss.device)
        return loss + penalty, {**logs, "penalty": float(penalty.detach())}


def orthogonality_penalty(weights: Iterable[torch.Tensor]) -> torch.Tensor:
    """``sum_l ||W_l^T W_l - I||_F^2`` over ``weights`` (docs/method.md, 'CorrectNet'), each weight viewed as a
    stack of matrices over its last two dimensions, ``w.reshape(-1, a, b)``: a Linear weight ``[out, in]`` is one
    matrix (``W^T W`` is ``[in, in]``), a convolution weight ``[out, in, kh, kw]`` is ``out * in`` matrices
    ``[kh, kw]`` (``W^T W`` is ``[kw, kw]``), one per kernel; ``I`` is the ``b x b`` identity. This is the form of
    the NeFT authors' CorrectNet baseline (their training code, function ``correct_net``).

    Args:
        weights: the crossbar-mapped weights, e.g. ``Crossbar(model).weights().values()``, each at least 2-D.

    Returns:
        Scalar tensor (squared weight units), differentiable with respect to the weights.
    """
    total = torch.zeros(())
    for w in weights:
        matrices = w.reshape(-1, *w.shape[-2:])
        gram = matrices.transpose(-2, -1) @ matrices
        eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
        total = total + ((gram - eye) ** 2).sum().to(total.device)
    return total


class CorrectNet(NoiseInjection):
    """The CorrectNet baseline of the NeFT paper (Qin et al., arXiv 2305.14561, its "CorrectNet" curves;
    docs/method.md, 'CorrectNet'): noise-injection plus the orthogonality penalty of the NeFT authors' own
    CorrectNet implementation, their stand-in for CorrectNet's training half (Eldebiky et al., DATE 2023):

        loss = CE(z_noisy, y) + correctnet_lambda * sum_l ||W_l^T W_l - I||_F^2

    over the clean crossbar-mapped weights (:func:`orthogonality_penalty`). No feedback term (beta 0).

    Args:
        correctnet_lambda: penalty weight >= 0 (default :data:`CORRECTNET_LAMBDA` = 5e-4, the authors' value; 0 is
            noise-injection).
        Other arguments as :class:`NoiseInjection` (temperature 1).

    Raises:
        SettingError: (a ``ValueError``) for a correctnet_lambda that is not a finite number >= 0.
    """

    name = "correctnet"

    def __init__(self, correctnet_lambda: float = CORRECTNET_LAMBDA, **kwargs) -> None:
        super().__init__(**kwargs)
        self.correctnet_lambda = check_setting("correctnet_lambda", correctnet_lambda)

    def loss(self, model, x, y):
        loss, logs = super().loss(model, x, y)
        penalty = orthogonality_penalty(self.crossbar(model).weights().values())
        return loss + self.correctnet_lambda * penalty.to(loss.device), logs
