"""Training objectives: vanilla, noise-injection, the two Negative Feedback Training instances OVF and IRS, and
the field's other noise-injection variants RCG, Lipschitz, CorrectNet and Distill.

Each objective is a small class with one method, ``loss(model, x, y) -> (loss, logs)``; the NeFT objectives
share :func:`negative_feedback_loss` (docs/method.md, 'Negative feedback loss'); RCG, Lipschitz, CorrectNet and Distill are
:class:`NoiseInjection` with another noise, a penalty or another loss (docs/method.md, 'Other answers to device
variation'). All training-time noise is fresh per forward and drawn from the objective's own ``generator`` so a
run replays exactly from its seed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from neft.chip import devices
from neft.chip.crossbar import Crossbar
from neft.chip.device_checks import MAX_SIGMA, check_sigma
from neft.chip.device_model import DeviceModel
from neft.common.compute import eval_mode
from neft.common.errors import SettingError, check_number
from neft.models import default_taps, init_weights
from neft.store import checkpoint

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
OVF_OFFSETS = (0.15, 0.10, 0.05)  # sigma offsets of the oriented forwards, weights 1, 0.1, 0.01 (docs/method.md, 'OVF')
# [ours] defaults of the other answers to device variation (docs/method.md, 'Other answers to device variation')
RCG_CENSOR_K = 1.0  # RCG: draws above +k std are set to +k std
RCG_SCALE = 1.0  # RCG: training-noise magnitude as a multiple of the std at the training sigma (1: tied to it)
LIPSCHITZ_LAMBDA = 0.1  # Lipschitz: weight of the spectral-norm penalty
LIPSCHITZ_BOUND = 1.0  # Lipschitz: per-layer spectral norm above which the penalty acts (no error amplification)
POWER_ITERATIONS = 20  # Lipschitz: power iterations per spectral-norm estimate
CORRECTNET_LAMBDA = 5e-4  # CorrectNet baseline of the NeFT paper: weight of the orthogonality penalty [authors' code]
DISTILL_ALPHA = 0.9  # Distill: weight of the distillation term
DISTILL_TEMPERATURE = 4.0  # Distill: softmax temperature of teacher and student
# setting -> (the method it applies to, its default, what a valid value is, the check) [ours]
METHOD_SETTINGS = {
    "censor_k": ("rcg", RCG_CENSOR_K, "a finite number >= 0 (standard deviations above which draws are censored)",
                 lambda v: v >= 0),
    "rcg_scale": ("rcg", RCG_SCALE, "a finite number > 0 (the training noise's magnitude as a multiple of the std "
                                    "at the training sigma)", lambda v: v > 0),
    "lipschitz_lambda": ("lipschitz", LIPSCHITZ_LAMBDA, "a finite number >= 0 (weight of the penalty)",
                         lambda v: v >= 0),
    "correctnet_lambda": ("correctnet", CORRECTNET_LAMBDA, "a finite number >= 0 (weight of the orthogonality "
                                                            "penalty)", lambda v: v >= 0),
    "distill_alpha": ("distill", DISTILL_ALPHA, "a number in [0, 1] (weight of the distillation term)",
                      lambda v: 0 <= v <= 1),
    "distill_temperature": ("distill", DISTILL_TEMPERATURE, "a finite number > 0 (softmax temperature)",
                            lambda v: v > 0),
}


def default_beta(method: str, model: str, dataset: str) -> float:
    """The feedback strength beta for ``method`` (``ovf`` or ``irs``) on a model/data-set pair.

    Paper pairs use the release's table [release] (docs/method.md, 'Negative feedback loss'); Fashion-MNIST,
    mnist-5k and digits use the MNIST row;
    any other pair falls back to beta OVF = 1e-3, beta IRS = 1e-2 (the VGG8/MNIST values) [ours].
    Methods without feedback return 0.

    Raises:
        ValueError: for an unknown method.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if method not in ("ovf", "irs"):
        return 0.0
    pair = (model.lower(), _FAMILY.get(dataset.lower(), dataset.lower()))
    return _BETAS.get(pair, _FALLBACK_BETA)[0 if method == "ovf" else 1]


def check_beta(beta: float) -> float:
    """Return ``beta`` as a float after checking it is a finite feedback strength >= 0 (docs/method.md,
    'Negative feedback loss').

    Raises:
        SettingError: (a ``ValueError``) for a negative, NaN, infinite or float32-overflowing beta, or a bool.
    """
    return check_number("beta", beta, "a finite number >= 0 (feedback strength, e.g. 1e-3)", lambda v: v >= 0)


def check_temperature(temperature: float) -> float:
    """Return ``temperature`` as a float after checking it is a finite logit temperature > 0.

    Raises:
        SettingError: (a ``ValueError``) for a zero, negative, NaN, infinite or float32-overflowing temperature,
            or a bool.
    """
    return check_number("temperature", temperature, "a finite number > 0 (logit divisor, 1 = plain "
                        "cross-entropy)", lambda v: v > 0)


def check_setting(setting: str, value: float) -> float:
    """Return ``value`` as a float after checking it is valid for ``setting``, one of ``censor_k`` (>= 0,
    standard deviations), ``rcg_scale`` (> 0), ``lipschitz_lambda`` (>= 0), ``correctnet_lambda`` (>= 0),
    ``distill_alpha`` (in [0, 1]) or ``distill_temperature`` (> 0); all finite.

    Raises:
        SettingError: (a ``ValueError``) naming the setting, for a value that is not a finite number in range.
        KeyError: for another setting name.
    """
    _, _, valid, ok = METHOD_SETTINGS[setting]
    return check_number(setting, value, valid, ok)


def settings_of(method: str, config: dict) -> dict:
    """``{"censor_k", "rcg_scale", "lipschitz_lambda", "correctnet_lambda", "distill_alpha", "distill_temperature",
    "teacher"}``
    (every :data:`METHOD_SETTINGS` name and ``teacher``) of a run's
    ``config.json`` dict as ``method`` used them: the config's value (its default when the config predates the
    setting) for the settings of ``method``, None for those of other methods (what ``results.json`` records)."""
    settings = {name: (config.get(name, default) if owner == method else None)
                for name, (owner, default, *_) in METHOD_SETTINGS.items()}
    return {**settings, "teacher": config.get("teacher") if method == "distill" else None}


def check_method_settings(method: str, beta: float, temperature: float, sigma: float = 0.0, *,
                          teacher=None, **settings: float) -> None:
    """Check that ``beta``, ``temperature`` and the ``settings`` (``censor_k``, ``rcg_scale``, ``lipschitz_lambda``,
    ``correctnet_lambda``, ``distill_alpha``, ``distill_temperature``, each checked by :func:`check_setting`) mean
    something for ``method``: a beta other than 0 only for the negative feedback methods (ovf, irs), a
    temperature other than 1 only for noise-injection (OVF and IRS already divide their logits by N + 1), each of
    the other settings only at its default unless ``method`` is the one it belongs to (``censor_k`` and
    ``rcg_scale``: rcg, ``lipschitz_lambda``: lipschitz, ``correctnet_lambda``: correctnet, ``distill_*``:
    distill); a ``teacher`` for distill and for distill only; and that OVF's largest oriented sigma,
    ``sigma + 0.15``, stays within :data:`neft.chip.device_checks.MAX_SIGMA`.

    Raises:
        SettingError: (a ``ValueError``) naming the setting and the methods it applies to.
    """
    for setting, value in settings.items():
        owner, default = METHOD_SETTINGS[setting][:2]
        if check_setting(setting, value) != default and method != owner:
            raise SettingError(setting, f"{setting} applies to {owner} only, not {method!r}")
    if (teacher is not None) != (method == "distill"):
        raise SettingError("teacher", "distill needs a teacher: the run directory of a network trained without "
                                      "noise, e.g. `neft train --method vanilla --out runs/teacher`" if teacher is None
                           else f"teacher applies to distill only, not {method!r}")
    if temperature != 1.0 and method != "noise-injection":
        raise SettingError("temperature", f"temperature applies to noise-injection only, not {method!r} (OVF and "
                                          "IRS divide their logits by N + 1 already)")
    if beta != 0 and method not in ("ovf", "irs"):
        raise SettingError("beta", f"beta (the negative feedback strength) applies to ovf and irs only, "
                                   f"not {method!r}")
    if method == "ovf" and sigma + max(OVF_OFFSETS) > MAX_SIGMA:
        raise SettingError("sigma", f"OVF trains with oriented forwards at sigma + {max(OVF_OFFSETS):g}, which must "
                                    f"stay <= {MAX_SIGMA:g}; sigma {sigma:g} is too large for OVF (at most "
                                    f"{MAX_SIGMA - max(OVF_OFFSETS):g})")


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


def _accuracy(logits: torch.Tensor, target: torch.Tensor) -> float:
    """Top-1 accuracy of a batch in percent, like every accuracy neft reports."""
    return 100.0 * float((logits.argmax(dim=1) == target).float().mean())


def _ce(logits: torch.Tensor, target: torch.Tensor) -> float:
    """Cross-entropy (nats) of a batch of logits, for the logs only (no gradient)."""
    return float(F.cross_entropy(logits.detach(), target))


def _feedback_logs(logits: torch.Tensor, feedback: Sequence[torch.Tensor], loss: torch.Tensor,
                   target: torch.Tensor) -> dict[str, float]:
    """Loss parts of the negative feedback loss: ``ce`` = CE(z, y) of the backbone logits, and ``feedback`` =
    loss - CE(z / (N + 1), y), what the feedback term adds to the loss (0 at beta = 0)."""
    scaled = _ce(logits / (len(feedback) + 1), target)
    return {"ce": _ce(logits, target), "feedback": float(loss.detach()) - scaled}


class Objective:
    """Base class: holds the device model, training sigma and noise generator.

    Args:
        device_model: device preset name, file or :class:`~neft.chip.DeviceModel` (default RRAM1).
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
            raise ValueError(f"IRS heads read [B, F], [B, C, L] or [B, C, H, W] features, got shape [B, {feature_shape}]")
        self.pool = pools[len(feature_shape)]
        features = feature_shape[0] * (pool ** (len(feature_shape) - 1))
        self.mlp = nn.Sequential(nn.Flatten(), nn.Linear(features, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, num_classes))
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


class RCG(NoiseInjection):
    """Noise-injection with right-censored Gaussian weight noise (RCG; Yan et al., "Improving Realistic
    Worst-Case Performance of NVCiM DNN Accelerators through Training with Right-Censored Gaussian Noise", ICCAD
    2023; docs/method.md, 'RCG'): each perturbation is drawn as in noise-injection, then every element above
    ``+censor_k`` standard deviations of its weight is set to ``+censor_k`` std, ``dW = std(w) * min(z, k)``,
    ``z ~ N(0, 1)`` (:meth:`neft.chip.DeviceModel.sample`), and multiplied by ``rcg_scale``,
    ``dW = rcg_scale * std(w) * min(z, k)``: the authors train with a noise magnitude of its own, searched at a
    fixed k (docs/method.md, 'RCG'; :mod:`neft.experiments.rcg_search`), while validation and evaluation chips stay at the
    device's sigma. The loss is cross-entropy of that forward.

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
        ``rcg_scale``."""
        crossbar = self.crossbar(model)
        if self.rcg_scale == 1 or sigma == 0:
            return crossbar.forward(x, sigma=sigma, generator=self.generator, censor_k=self.censor_k)
        chip = crossbar.sample_chip(sigma, self.generator, censor_k=self.censor_k)
        return crossbar.forward(x, chip={name: self.rcg_scale * dw for name, dw in chip.items()})


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
    return F.kl_div(F.log_softmax(student_logits / temperature, dim=1), F.log_softmax(teacher_logits / temperature, dim=1),
                    reduction="batchmean", log_target=True)


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
                                          f"teacher first, e.g. `neft train --method vanilla --out {teacher}`") from None
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
    ``lipschitz_lambda`` by :class:`Lipschitz`, ``correctnet_lambda`` by :class:`CorrectNet`, ``teacher`` (a run directory or module,
    :func:`load_teacher`), ``distill_alpha`` and
    ``distill_temperature`` by :class:`Distill`.

    Raises:
        ValueError: for an unknown method, invalid sigma/beta/temperature or IRS taps, a temperature other
            than 1 for a method other than noise-injection (OVF and IRS already divide by N + 1), a beta other
            than 0 for a method other than ovf/irs, another method's setting away from its default, distill
            without a teacher (:func:`check_method_settings`; a :class:`~neft.common.errors.SettingError` names the
            setting), or a teacher that is no trained run of this data set (:func:`load_teacher`).
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    check_method_settings(method, check_beta(beta), check_temperature(temperature), check_sigma(sigma),
                          censor_k=censor_k, rcg_scale=rcg_scale, lipschitz_lambda=lipschitz_lambda,
                          correctnet_lambda=correctnet_lambda, teacher=teacher,
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
