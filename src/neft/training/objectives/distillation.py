"""Noise-injection with knowledge distillation from a clean teacher (docs/method.md, 'Distill'): the loss, the
teacher's loading and checks, and the objective.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from neft.common.errors import SettingError
from neft.store import checkpoint
from neft.training.objectives.base import _accuracy, _ce
from neft.training.objectives.noise import NoiseInjection
from neft.training.objectives.settings import DISTILL_ALPHA, DISTILL_TEMPERATURE, check_setting


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, target: torch.Tensor,
                      alpha: float, temperature: float) -> torch.Tensor:
    """Knowledge distillation loss (Hinton et al., 2015; the form Zhou et al., "Noisy Machines", 2020, train
    noisy students with):

        loss = (1 - alpha) * CE(z_s, y) + alpha * T^2 * KL(softmax(z_t / T) || softmax(z_s / T))

    Args:
        student_logits: ``z_s``, ``[B, C]``.
        teacher_logits: ``z_t``, ``[B, C]`` (used as given; detach it for a frozen teacher).
        target: class indices ``[B]``.
        alpha: weight of the distillation term, in [0, 1].
        temperature: ``T`` > 0; ``T^2`` keeps the soft term's gradients on the scale of the hard term's.

    Returns:
        Scalar mean loss (nats; the KL divergence is summed over classes and averaged over the batch).
    """
    soft = _soft_kl(student_logits, teacher_logits, temperature)
    return (1 - alpha) * F.cross_entropy(student_logits, target) + alpha * temperature ** 2 * soft


def _soft_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(softmax(z_t / T) || softmax(z_s / T)), summed over classes, mean over the batch (nats)."""
    return F.kl_div(F.log_softmax(student_logits / temperature, dim=1),
                    F.log_softmax(teacher_logits / temperature, dim=1), reduction="batchmean", log_target=True)


def load_teacher(teacher: str | Path | nn.Module, sample_input: torch.Tensor, num_classes: int) -> nn.Module:
    """The frozen teacher network of :class:`Distill`: a run directory (or ``checkpoint.pt``) loaded with
    :func:`neft.store.checkpoint.load` on ``sample_input``'s device, or a module used as given; returned in eval mode
    with ``requires_grad`` off. Its architecture may differ from the student's.

    Args:
        teacher: run directory, checkpoint file or ``nn.Module``.
        sample_input: one input batch ``[B, ...]`` of the student's data, to check the teacher reads it.
        num_classes: classes the student predicts.

    Raises:
        SettingError: (a ``ValueError``, setting ``teacher``) when there is no readable checkpoint, or the teacher
            does not read these inputs or predicts another number of classes (a run of another data set).
    """
    if not isinstance(teacher, nn.Module):
        try:
            teacher = checkpoint.load(teacher, map_location=sample_input.device)
        except (FileNotFoundError, ValueError) as error:
            raise SettingError("teacher", f"teacher {str(teacher)!r} is not a trained run ({error}); train the "
                                          f"teacher first, e.g. `neft train --method vanilla --out {teacher}`"
                               ) from None
    teacher.eval().requires_grad_(False)
    try:
        with torch.no_grad():
            classes = teacher(sample_input[:1]).shape[-1]
    except RuntimeError as error:
        raise SettingError("teacher", f"the teacher cannot read this data set's images {list(sample_input.shape[1:])} "
                                      f"({' '.join(str(error).split())[:120]}); give a teacher trained on the same "
                                      "data set") from None
    if classes != num_classes:
        raise SettingError("teacher", f"the teacher predicts {classes} classes, the student {num_classes}; give a "
                                      "teacher trained on the same data set")
    return teacher


class Distill(NoiseInjection):
    """Noise-injection with knowledge distillation from a clean teacher (Zhou et al., "Noisy Machines:
    Understanding noisy neural networks and enhancing robustness to analog hardware errors using distillation",
    2020; docs/method.md, 'Distill'): the student's forward is perturbed as in noise-injection, the
    teacher's is clean (no noise, eval mode, no gradient, never updated), and the loss is
    :func:`distillation_loss` of the two.

    Args:
        teacher: the teacher network (:func:`load_teacher`); never part of the optimiser or the checkpoints.
        distill_alpha: weight of the distillation term in [0, 1] (default :data:`DISTILL_ALPHA`).
        distill_temperature: softmax temperature > 0 (default :data:`DISTILL_TEMPERATURE`).
        Other arguments as :class:`NoiseInjection` (temperature 1).

    Raises:
        SettingError: (a ``ValueError``) for an alpha outside [0, 1] or a temperature that is not finite > 0.
    """

    name = "distill"
    parts = ("ce", "kl")

    def __init__(self, teacher: nn.Module, distill_alpha: float = DISTILL_ALPHA,
                 distill_temperature: float = DISTILL_TEMPERATURE, **kwargs) -> None:
        super().__init__(**kwargs)
        self.teacher = teacher.eval().requires_grad_(False)
        self.distill_alpha = check_setting("distill_alpha", distill_alpha)
        self.distill_temperature = check_setting("distill_temperature", distill_temperature)

    def loss(self, model, x, y):
        logits = self.noisy_forward(model, x, self.sigma)
        with torch.no_grad():
            teacher_logits = self.teacher(x)
        loss = distillation_loss(logits, teacher_logits, y, self.distill_alpha, self.distill_temperature)
        kl = self.distill_temperature ** 2 * float(_soft_kl(logits.detach(), teacher_logits, self.distill_temperature))
        return loss, {"acc": _accuracy(logits, y), "ce": _ce(logits, y), "kl": kl}
