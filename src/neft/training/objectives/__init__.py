"""Training objectives: vanilla, noise-injection, the two Negative Feedback Training instances OVF and IRS, and
the field's other noise-injection variants RCG, Lipschitz, CorrectNet and Distill.

Each objective is a small class with one method, ``loss(model, x, y) -> (loss, logs)``; the NeFT objectives
share :func:`negative_feedback_loss` (docs/method.md, 'Negative feedback loss'); RCG, Lipschitz, CorrectNet and Distill
are :class:`NoiseInjection` with another noise, a penalty or another loss (docs/method.md, 'Other answers to device
variation'). All training-time noise is fresh per forward and drawn from the objective's own ``generator`` so a
run replays exactly from its seed.

- :mod:`~neft.training.objectives.settings`: each method's own settings, their defaults and checks;
- :mod:`~neft.training.objectives.base`: the :class:`Objective` base class;
- :mod:`~neft.training.objectives.noise`: vanilla, noise-injection and RCG;
- :mod:`~neft.training.objectives.feedback`: the negative feedback loss, OVF and IRS;
- :mod:`~neft.training.objectives.penalties`: Lipschitz and CorrectNet;
- :mod:`~neft.training.objectives.distillation`: Distill;
- this package: :data:`METHODS` by CLI name, :func:`create` and the feedback strength :func:`default_beta`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from neft.chip.device_checks import check_sigma
from neft.chip.device_model import DeviceModel
from neft.training.objectives.base import Objective
from neft.training.objectives.distillation import Distill, distillation_loss, load_teacher
from neft.training.objectives.feedback import IRS, OVF, SnapshotHead, negative_feedback_loss
from neft.training.objectives.noise import RCG, NoiseInjection, Vanilla
from neft.training.objectives.penalties import (
    CorrectNet,
    Lipschitz,
    lipschitz_penalty,
    orthogonality_penalty,
    spectral_norm,
)
from neft.training.objectives.settings import (
    CORRECTNET_LAMBDA,
    DISTILL_ALPHA,
    DISTILL_TEMPERATURE,
    LIPSCHITZ_BOUND,
    LIPSCHITZ_LAMBDA,
    METHOD_SETTINGS,
    OVF_OFFSETS,
    POWER_ITERATIONS,
    RCG_CENSOR_K,
    RCG_SCALE,
    check_beta,
    check_method_settings,
    check_setting,
    check_temperature,
    settings_of,
)

__all__ = [
    "METHODS",
    "negative_feedback_loss",
    "check_beta",
    "check_temperature",
    "check_method_settings",
    "default_beta",
    "Objective",
    "Vanilla",
    "NoiseInjection",
    "OVF",
    "IRS",
    "SnapshotHead",
    "RCG",
    "Lipschitz",
    "CorrectNet",
    "Distill",
    "spectral_norm",
    "lipschitz_penalty",
    "orthogonality_penalty",
    "distillation_loss",
    "load_teacher",
    "check_setting",
    "settings_of",
    "METHOD_SETTINGS",
    "create",
    "OVF_OFFSETS",
    "RCG_CENSOR_K",
    "RCG_SCALE",
    "LIPSCHITZ_LAMBDA",
    "LIPSCHITZ_BOUND",
    "POWER_ITERATIONS",
    "CORRECTNET_LAMBDA",
    "DISTILL_ALPHA",
    "DISTILL_TEMPERATURE",
]

# beta table [release] (docs/method.md, 'Negative feedback loss'): (model, data-set family) -> (beta OVF, beta IRS).
_BETAS = {
    ("vgg8", "mnist"): (1e-3, 1e-2),
    ("vgg8", "cifar10"): (1e-3, 1e-1),
    ("resnet18", "mnist"): (1e-4, 1e-1),
    ("resnet18", "cifar10"): (1e-1, 1e-3),
    ("resnet18", "cifar100"): (1e-1, 1e-3),
    ("resnet18", "tiny-imagenet"): (1e-2, 1e-2),
}
# [ours] data sets of the MNIST family use the paper's MNIST betas; any other pair uses the VGG8/MNIST values.
_FAMILY = {"fashion-mnist": "mnist", "mnist-5k": "mnist", "digits": "mnist"}
_FALLBACK_BETA = (1e-3, 1e-2)


def default_beta(method: str, model: str, dataset: str) -> float:
    """The feedback strength beta for ``method`` (``ovf`` or ``irs``) on a model/data-set pair.

    Paper pairs use the release's table [release] (docs/method.md, 'Negative feedback loss'); Fashion-MNIST,
    mnist-5k and digits use the MNIST row;
    any other pair falls back to beta OVF = 1e-3, beta IRS = 1e-2 (the VGG8/MNIST values) [ours].
    Methods without feedback return 0.

    Raises:
        ValueError: for an unknown method.
        TypeError: ``model`` or ``dataset`` not a name (e.g. the ``nn.Module`` itself).
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if method not in ("ovf", "irs"):
        return 0.0
    for what, name in (("model", model), ("dataset", dataset)):
        if not isinstance(name, str):
            raise TypeError(f"default_beta takes the {what}'s name (e.g. 'lenet5', 'mnist-5k'), got a "
                            f"{type(name).__name__}; the betas are tabled by name, and your own network takes the "
                            "fallback: default_beta(method, 'my-net', dataset)")
    pair = (model.lower(), _FAMILY.get(dataset.lower(), dataset.lower()))
    return _BETAS.get(pair, _FALLBACK_BETA)[0 if method == "ovf" else 1]


METHODS = {"vanilla": Vanilla, "noise-injection": NoiseInjection, "ovf": OVF, "irs": IRS, "rcg": RCG,
           "lipschitz": Lipschitz, "correctnet": CorrectNet, "distill": Distill}


def create(
    method: str,
    model: nn.Module,
    sample_input: torch.Tensor,
    num_classes: int,
    *,
    sigma: float,
    beta: float = 0.0,
    device_model: DeviceModel | str = "RRAM1",
    generator: torch.Generator | None = None,
    sigma_block: float | None = None,
    taps: Sequence[str | tuple[str, int]] | None = None,
    temperature: float = 1.0,
    censor_k: float = RCG_CENSOR_K,
    rcg_scale: float = RCG_SCALE,
    lipschitz_lambda: float = LIPSCHITZ_LAMBDA,
    correctnet_lambda: float = CORRECTNET_LAMBDA,
    teacher: str | Path | nn.Module | None = None,
    distill_alpha: float = DISTILL_ALPHA,
    distill_temperature: float = DISTILL_TEMPERATURE,
) -> Objective:
    """Build an objective by CLI name: ``vanilla``, ``noise-injection``, ``ovf``, ``irs``, ``rcg``,
    ``lipschitz``, ``correctnet`` or ``distill``.

    ``sample_input`` (``[B, ...]``) and ``num_classes`` are used by IRS and Distill, ``sigma_block`` and ``taps``
    by IRS only; ``temperature`` (the logit divisor T of the noise-injection ablation, see
    :class:`NoiseInjection`) by noise-injection only; ``censor_k`` and ``rcg_scale`` by :class:`RCG`,
    ``lipschitz_lambda`` by :class:`Lipschitz`, ``correctnet_lambda`` by :class:`CorrectNet`, ``teacher`` (a run
    directory or module, :func:`load_teacher`), ``distill_alpha`` and ``distill_temperature`` by :class:`Distill`.

    Raises:
        ValueError: for an unknown method, invalid sigma/beta/temperature or IRS taps, a temperature other
            than 1 for a method other than noise-injection (OVF and IRS already divide by N + 1), a beta other
            than 0 for a method other than ovf/irs, another method's setting away from its default (``taps`` and
            ``sigma_block`` given to a method other than IRS), distill
            without a teacher (:func:`check_method_settings`; a :class:`~neft.common.errors.SettingError` names the
            setting), or a teacher that is no trained run of this data set (:func:`load_teacher`).
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    check_method_settings(method, check_beta(beta), check_temperature(temperature), check_sigma(sigma),
                          taps=taps, sigma_block=sigma_block, censor_k=censor_k, rcg_scale=rcg_scale,
                          lipschitz_lambda=lipschitz_lambda, correctnet_lambda=correctnet_lambda, teacher=teacher,
                          distill_alpha=distill_alpha, distill_temperature=distill_temperature)
    common = dict(device_model=device_model, sigma=sigma, beta=beta, generator=generator)
    if method == "irs":
        return IRS(model, sample_input, num_classes, taps=taps, sigma_block=sigma_block, **common)
    if method == "noise-injection":
        return NoiseInjection(temperature=temperature, **common)
    if method == "rcg":
        return RCG(censor_k=censor_k, rcg_scale=rcg_scale, **common)
    if method == "lipschitz":
        return Lipschitz(lipschitz_lambda=lipschitz_lambda, **common)
    if method == "correctnet":
        return CorrectNet(correctnet_lambda=correctnet_lambda, **common)
    if method == "distill":
        return Distill(load_teacher(teacher, sample_input, num_classes), distill_alpha=distill_alpha,
                       distill_temperature=distill_temperature, **common)
    return METHODS[method](**common)
