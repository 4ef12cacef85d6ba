"""Selective write-verify: which crossbar-mapped weights are write-verified when a chip is programmed
(docs/method.md, 'Selective write-verify').

Source: Yan, Hu and Shi, *SWIM: Selective Write-Verify for Computing-in-Memory Neural Accelerators*, DAC 2022
(arXiv 2202.08395) and the authors' release (github.com/MariusAnje/SWIM). Write-verify (program, read back,
reprogram until the conductance is within tolerance) leaves a verified device with a small residual variation but
costs programming time per device, so only a fraction p of the weights is verified. The fraction is chosen once
per network, globally across layers, as the p x (number of mapped weights) weights with the highest score:

* ``magnitude``: ``|w| / max|W|``, the weight's conductance level within its layer (the release's magnitude
  baseline, computed on per-layer normalised weights);
* ``random``: uniform random scores from a generator seeded by :func:`neft.common.seeds.verify_seed`;
* ``swim``: the second-order sensitivity ``H_ii * std_i^2`` (:func:`swim_sensitivity`): the expected increase of
  the training loss when weight i alone varies with its programming std;
* ``swim-release``: the score of the authors' release (its default ``--method SM``, :func:`release_score`):
  ``alpha * |H_ii m^2 + 2 g_i m| + |w_i| / m`` with ``m`` the layer's max|W|, ``g`` the first derivative of the
  training loss and ``alpha = 1e6``.

Fractions are nested: the weights verified at p are also verified at any larger p (same scores).
"""

from __future__ import annotations

import torch
from torch.func import functional_call, jacrev, vmap
from torch.nn import functional as F

from neft.chip.crossbar import Crossbar, make_generator
from neft.common.compute import eval_mode
from neft.common.errors import SettingError
from neft.common.seeds import verify_seed

__all__ = ["SELECTIONS", "RELEASE_ALPHA", "verification_mask", "verification_scores", "swim_sensitivity",
           "gauss_newton_diagonal", "release_score"]

SELECTIONS = ("magnitude", "random", "swim", "swim-release")
RELEASE_ALPHA = 1e6  # weight of the derivative term in the release's score (MariusAnje/SWIM, --alpha default)
_JACOBIAN_FLOATS = 2**24  # per-image Jacobian entries held at once by swim_sensitivity (64 MiB in fp32)


def swim_sensitivity(crossbar: Crossbar, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """SWIM's second-derivative sensitivity of every mapped weight: ``H_ii * std_i^2``.

    ``H_ii`` is the diagonal of the Gauss-Newton matrix of the mean cross-entropy over ``images``, computed
    exactly per image: with ``p`` the softmax of the logits ``z`` and ``J = dz/dw``,
    ``H_ii = mean_x sum_c p_c (J_ci - sum_k p_k J_ki)^2`` (the Fisher information with labels drawn from the
    model, so no labels are needed). For networks whose logits are linear in each single weight (linear and
    convolution layers with ReLU, max- or average-pooling, eval-mode BatchNorm, residual additions) this is the
    exact diagonal of the Hessian of the loss. ``std_i`` is the programming std of weight i per unit sigma,
    :meth:`~neft.chip.DeviceModel.std` ``(W, 1)`` (in weight units; state-dependent for state-dependent device
    models), so ``H_ii * std_i^2 * sigma^2 / 2`` is the expected loss increase when weight i alone is perturbed
    at sigma (second-order Taylor expansion at a trained minimum, SWIM Sec. 3). The ranking does not depend on
    sigma.

    Deviation from the authors' release (docs/method.md): the release propagates a diagonal approximation of the
    second derivative (Becker-LeCun style: the output Hessian's diagonal ``p (1 - p)``, squared Jacobians, no cross
    terms) through the whole training set; neft computes the exact Gauss-Newton diagonal on the given images.

    Args:
        crossbar: the network (``crossbar.model``; its train/eval flags are restored) and its device model.
        images: preprocessed training inputs ``[M, ...]`` (M >= 1) on the model's device; per-image Jacobians
            are held for at most ``2**24`` floats at a time.

    Returns:
        ``{name: sensitivity}``, each shaped like its weight, float32, >= 0, in loss units per unit sigma^2.

    Raises:
        ValueError: for an empty ``images``.
        RuntimeError: (torch's) for a model ``torch.func`` cannot differentiate per image (e.g. data-dependent
            control flow).
    """
    return {name: h * crossbar.device_model.std(w.detach(), 1.0).float() ** 2
            for (name, w), h in zip(crossbar.weights().items(), gauss_newton_diagonal(crossbar, images).values())}


def gauss_newton_diagonal(crossbar: Crossbar, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """``H_ii`` of :func:`swim_sensitivity`: the exact Gauss-Newton diagonal of the mean cross-entropy over
    ``images`` ``[M, ...]`` with respect to every mapped weight, ``{name: tensor shaped like the weight}``,
    float32, >= 0 (loss units per squared weight unit). Raises as :func:`swim_sensitivity`."""
    if not len(images):
        raise ValueError("swim_sensitivity needs at least one training image")
    weights = {name: w.detach() for name, w in crossbar.weights().items()}
    model = crossbar.model

    def logits(params, x):
        z = functional_call(model, params, (x.unsqueeze(0),)).squeeze(0).float()
        return z, z

    def per_image(params, x):
        jacobian, z = jacrev(logits, has_aux=True)(params, x)
        p = torch.softmax(z, -1)
        result = {}
        for name, j in jacobian.items():  # j: [C, *w.shape]
            pc = p.view(-1, *[1] * (j.dim() - 1))
            result[name] = (pc * (j - (pc * j).sum(0)) ** 2).sum(0)
        return result

    total = {name: torch.zeros_like(w, dtype=torch.float32) for name, w in weights.items()}
    with eval_mode(model), torch.no_grad():  # torch.func differentiates inside; no graph for the other parameters
        classes = model(images[:1]).shape[-1]
        chunk = max(1, _JACOBIAN_FLOATS // (classes * sum(w.numel() for w in weights.values())))
        for start in range(0, len(images), chunk):
            for name, h in vmap(per_image, in_dims=(None, 0))(weights, images[start:start + chunk]).items():
                total[name] += h.sum(0)
    return {name: total[name] / len(images) for name in weights}


def release_score(crossbar: Crossbar, images: torch.Tensor, labels: torch.Tensor,
                  alpha: float = RELEASE_ALPHA) -> dict[str, torch.Tensor]:
    """The selection score of the SWIM authors' release (github.com/MariusAnje/SWIM, ``--method SM``, its default;
    docs/method.md, 'Selective write-verify'): with the weights normalised by their layer's max|W| = m, the
    release adds twice the first derivative of the loss to its second derivative, takes the magnitude, scales it
    by ``alpha`` and adds the normalised weight magnitude:

        score_i = alpha * | H_ii m^2 + 2 g_i m | + |w_i| / m

    ``g`` is the gradient of the mean cross-entropy over ``(images, labels)`` and ``H_ii`` the exact Gauss-Newton
    diagonal of :func:`swim_sensitivity` (in place of the release's layer-by-layer approximation); ``m^2`` and
    ``m`` turn derivatives with respect to ``w`` into derivatives with respect to ``w / m``.

    Args:
        crossbar: the network and its device model (the score does not use the device model).
        images: training inputs ``[M, ...]`` on the model's device.
        labels: their class indices ``[M]``.
        alpha: weight of the derivative term (default :data:`RELEASE_ALPHA` = 1e6, the release's default).

    Returns:
        ``{name: score}``, each shaped like its weight, float32, >= 0.

    Raises:
        ValueError: for empty ``images`` or labels that do not match them.
    """
    if labels is None or labels.shape != images.shape[:1]:
        raise ValueError(f"release_score needs one label per training image, got labels "
                         f"{None if labels is None else tuple(labels.shape)} for images {tuple(images.shape)}")
    weights = {name: w.detach().requires_grad_(True) for name, w in crossbar.weights().items()}
    with eval_mode(crossbar.model):
        loss = F.cross_entropy(functional_call(crossbar.model, weights, (images,)).float(), labels)
    gradients = torch.autograd.grad(loss, list(weights.values()))
    hessian = gauss_newton_diagonal(crossbar, images)
    scores = {}
    for (name, w), g in zip(weights.items(), gradients):
        m = w.detach().abs().amax().clamp_min(torch.finfo(w.dtype).tiny).float()
        scores[name] = alpha * (hessian[name] * m ** 2 + 2 * g.float() * m).abs() + w.detach().abs().float() / m
    return scores


def verification_scores(crossbar: Crossbar, select: str, *, seed: int = 0,
                        sensitivity_images: torch.Tensor | None = None,
                        sensitivity_labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The score of every mapped weight under a selection rule (module docstring); higher is verified first.

    Args:
        crossbar: the network and its device model.
        select: ``"magnitude"``, ``"random"``, ``"swim"`` or ``"swim-release"``.
        seed: base seed of ``random`` (:func:`neft.common.seeds.verify_seed`; drawn on the CPU, so the same weights on
            any device).
        sensitivity_images: training inputs ``[M, ...]`` for ``swim`` (see :func:`swim_sensitivity`) and
            ``swim-release`` (:func:`release_score`).
        sensitivity_labels: their class indices ``[M]``, for ``swim-release`` (its first derivative).

    Returns:
        ``{name: score}``, each shaped like its weight, on the weights' device.

    Raises:
        SettingError: (setting ``verify_select``) for an unknown rule, ``swim`` without ``sensitivity_images``
            or ``swim-release`` without both ``sensitivity_images`` and ``sensitivity_labels``.
    """
    weights = {name: w.detach() for name, w in crossbar.weights().items()}
    if select == "magnitude":
        return {name: w.abs() / w.abs().amax().clamp_min(torch.finfo(w.dtype).tiny) for name, w in weights.items()}
    if select == "random":
        generator = make_generator(verify_seed(seed))
        return {name: torch.rand(w.shape, generator=generator).to(w.device) for name, w in weights.items()}
    if select == "swim-release":
        if sensitivity_images is None or sensitivity_labels is None:
            raise SettingError("verify_select", "verify_select='swim-release' ranks weights by the release's score "
                                                "on labelled training data: pass sensitivity_images= and "
                                                "sensitivity_labels= (neft evaluate and runs.evaluate_run pass the "
                                                "run's)")
        return release_score(crossbar, sensitivity_images, sensitivity_labels)
    if select == "swim":
        if sensitivity_images is None:
            raise SettingError("verify_select", "verify_select='swim' ranks weights by their second-derivative "
                                                "sensitivity on training data: pass sensitivity_images=<training "
                                                "images> (neft evaluate and runs.evaluate_run pass the run's)")
        return swim_sensitivity(crossbar, sensitivity_images)
    raise SettingError("verify_select", f"unknown verify_select {select!r}; choose one of {', '.join(SELECTIONS)}")


def verification_mask(scores: dict[str, torch.Tensor], fraction: float) -> dict[str, torch.Tensor]:
    """The write-verified weights: the ``round(fraction * N)`` highest ``scores`` of all N mapped weights,
    globally across layers (ties broken by ``torch.topk``).

    Args:
        scores: ``{name: score}`` from :func:`verification_scores`.
        fraction: p, the fraction of weights verified, in [0, 1].

    Returns:
        ``{name: bool tensor}`` shaped like each weight, True where verified (for
        :meth:`neft.Crossbar.sample_chip`'s ``verified``).
    """
    flat = torch.cat([s.flatten().float() for s in scores.values()])
    chosen = torch.zeros_like(flat, dtype=torch.bool)
    chosen[flat.topk(round(fraction * flat.numel())).indices] = True
    parts = chosen.split([s.numel() for s in scores.values()])
    return {name: part.view(s.shape) for (name, s), part in zip(scores.items(), parts)}
