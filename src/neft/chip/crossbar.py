"""Model-agnostic weight perturbation: run any ``nn.Module`` as if its weights were programmed on NVM devices.

Noise lives outside the model (docs/method.md, 'Noise timing'): a perturbed forward is
``torch.func.functional_call(model, {name: w + dW}, x)``. Stored parameters are never modified, gradients reach
the clean weights exactly as through ``w + dW``, and hooks on the model's modules still fire.

Which weights are on the crossbar is a rule (docs/method.md, 'Which weights are mapped'): the ``weight`` of every
``nn.Conv1d/2d/3d`` (any groups or dilation) and ``nn.Linear``, the weight matrices of ``nn.LSTM``, ``nn.GRU`` and
``nn.RNN`` (``weight_ih_l*``, ``weight_hh_l*``, ``weight_hr_l*``, each direction) and the input projections of
``nn.MultiheadAttention`` (``in_proj_weight``, or ``q_proj_weight``/``k_proj_weight``/``v_proj_weight``; its
``out_proj`` is an ``nn.Linear``): each is a matrix-vector product on the chip. Biases and normalisation layers
stay digital. ``functional_call`` substitutes the recurrent layers' flat weights and the attention projections
at every forward, like any parameter.

Noise timing (docs/method.md, 'Noise timing'): :meth:`Crossbar.forward` without a chip draws a fresh perturbation
on every call (training); :meth:`Crossbar.sample_chip` draws one frozen perturbation (one programmed chip) that
:meth:`Crossbar.forward` can reuse for any number of batches (Monte Carlo evaluation).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase
from typing import NamedTuple

import torch
import torch.nn.utils.parametrize
from torch import nn
from torch.func import functional_call

from neft.chip import devices
from neft.chip import effects as chip
from neft.chip.device_checks import check_sigma
from neft.chip.device_model import DeviceModel
from neft.chip.periphery_hooks import hooks_of
from neft.chip.tile_draws import cached_mapping, draw_chip

__all__ = ["Crossbar", "MAPPED_LAYER_TYPES", "MATRIX_LAYER_TYPES", "ParameterPlacement", "layer_weights",
           "mapped_weight_names", "make_generator", "written_weight_error"]

MAPPED_LAYER_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)  # one ``weight`` each
MATRIX_LAYER_TYPES = (nn.RNNBase, nn.MultiheadAttention)  # several weight matrices each (see layer_weights)
_MAPPED_TEXT = "nn.Conv1d/2d/3d, nn.Linear, nn.LSTM/GRU/RNN and nn.MultiheadAttention"

Chip = dict[str, torch.Tensor]
_NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


class ParameterPlacement(NamedTuple):
    """One row of :meth:`Crossbar.summary`: a parameter, its shape, its number of values and where it lives
    (``"crossbar"`` or ``"digital: <reason>"``)."""

    name: str
    shape: tuple[int, ...]
    count: int
    placement: str


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatchcase(name, pattern) for pattern in patterns)


def layer_weights(module: nn.Module) -> list[str]:
    """The local names of the crossbar weights of one layer: ``["weight"]`` for Conv/Linear; the weight matrices of
    an RNN/LSTM/GRU (every layer, direction and projection) and the input projection(s) of a MultiheadAttention
    (``in_proj_weight``, or ``q_proj_weight``, ``k_proj_weight``, ``v_proj_weight``); none for other modules."""
    if isinstance(module, MAPPED_LAYER_TYPES):
        return ["weight"]
    if isinstance(module, MATRIX_LAYER_TYPES):
        return [name for name, p in module.named_parameters(recurse=False) if "weight" in name and p.dim() == 2]
    return []


def mapped_weight_names(
    model: nn.Module, include: Iterable[str] | None = None, exclude: Iterable[str] | None = None
) -> list[str]:
    """Names (as in ``model.named_parameters()``) of the weights stored on the crossbar.

    A weight shared by several layers (tied weights) is one set of devices: it is listed once, under the name
    ``named_parameters()`` gives it, and ``functional_call`` passes its perturbed value to every layer that shares it;
    it is mapped when any mapped layer uses it, whichever module (e.g. an ``nn.Embedding`` tied to the output
    ``nn.Linear``) was registered first.

    Args:
        model: any module.
        include: optional shell-style patterns of module names (e.g. ``"features.*"``); when given only
            matching layers are mapped.
        exclude: optional patterns of module names left digital (e.g. ``"classifier.2"``).

    Mapped are the layers of the module docstring's rule (Conv/Linear ``weight``, the recurrent weight matrices
    of ``nn.LSTM``/``GRU``/``RNN``, the input projections of ``nn.MultiheadAttention``; :func:`layer_weights`).
    A conv/linear layer whose forward computes its weight from other tensors (pruning, weight or spectral
    normalisation) cannot be mapped as a plain ``weight`` and is refused; weights of other shapes that stay
    digital (e.g. an ``nn.Embedding`` or a bare ``nn.Parameter`` used in a matmul) get one warning naming them.

    Raises:
        ValueError: if no weight is mapped (the model has no mapped layer or the patterns exclude them all),
            or a selected layer's weight is pruned or parametrized (the message names the layer and the fix).
    """
    include, exclude = list(include or []), list(exclude or [])
    parameters = dict(model.named_parameters())  # a weight shared by several layers appears once, by its first name
    selected = [(module_name, module) for module_name, module in model.named_modules()
                if layer_weights(module)
                and (not include or _matches(module_name, include)) and not _matches(module_name, exclude)]
    for module_name, module in selected:
        reason = _derived_weight(module) if isinstance(module, MAPPED_LAYER_TYPES) else None
        if reason:
            raise ValueError(f"layer {module_name or type(module).__name__!r} computes its weight at every forward "
                             f"({reason}), so neft cannot put that weight on the crossbar: {_REMOVE[reason]} "
                             "before mapping the model")
    first_name = {id(p): name for name, p in parameters.items()}  # a tied weight by whichever name came first
    names = list(dict.fromkeys(first_name[id(weight)] for _, module in selected for local in layer_weights(module)
                               if id(weight := getattr(module, local)) in first_name))
    digital = [name for name, p in parameters.items() if p.dim() >= 2 and name not in names
               and not any(fnmatchcase(name, f"{m}.*") for m in _excluded(model, include, exclude))]
    if digital and names:
        warnings.warn(f"{len(digital)} matrix-shaped parameter(s) of {type(model).__name__} stay digital (not on "
                      f"the crossbar, no variation): {', '.join(digital[:6])}{' ...' if len(digital) > 6 else ''}; "
                      f"neft maps the weights of {_MAPPED_TEXT} only", UserWarning, stacklevel=3)
    if not names:
        raise ValueError(
            f"{type(model).__name__} has no crossbar-mapped weight: neft perturbs the weights of {_MAPPED_TEXT} "
            f"layers (include={include or None}, exclude={exclude or None}); check the model or the patterns"
        )
    return names


_REMOVE = {
    "pruned or spectral_norm, from weight_orig": "call torch.nn.utils.prune.remove(layer, 'weight') (or "
                                                 "torch.nn.utils.remove_spectral_norm(layer))",
    "parametrized, e.g. parametrizations.weight_norm or spectral_norm": "call torch.nn.utils.parametrize."
                                                                        "remove_parametrizations(layer, 'weight')",
    "legacy weight_norm, from weight_g and weight_v": "call torch.nn.utils.remove_weight_norm(layer)",
}


def _derived_weight(module: nn.Module) -> str | None:
    """Why ``module.weight`` is computed from other tensors at each forward, or None for a plain parameter."""
    if torch.nn.utils.parametrize.is_parametrized(module, "weight"):
        return "parametrized, e.g. parametrizations.weight_norm or spectral_norm"
    if hasattr(module, "weight_orig"):
        return "pruned or spectral_norm, from weight_orig"
    if hasattr(module, "weight_g") and hasattr(module, "weight_v"):
        return "legacy weight_norm, from weight_g and weight_v"
    return None


def _excluded(model: nn.Module, include: list[str], exclude: list[str]) -> list[str]:
    """Names of mapped-type layers the user chose to leave digital with include/exclude patterns."""
    return [name for name, module in model.named_modules() if layer_weights(module)
            and ((include and not _matches(name, include)) or _matches(name, exclude))]


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` (e.g. ``"cpu"``, ``"cuda"``) seeded with ``seed`` (an int).

    A seed replays the same chip only on the same device type: CPU and CUDA generators draw different numbers
    from one seed, so chip ``seed`` drawn on a GPU differs from chip ``seed`` drawn on a CPU (results.json
    records where its chips were drawn). The generator may live on another device than the weights it perturbs:
    :meth:`Crossbar.sample_chip` then draws on the generator's device and moves the noise to the weights, which
    gives the generator device's chip but costs a copy of every weight per draw; for training noise on a GPU,
    ``make_generator(seed, "cuda")`` is faster.

    Raises:
        RuntimeError: (torch's) for a device this torch build cannot use, e.g. ``"cuda"`` without CUDA.
    """
    generator = torch.Generator(device=torch.device(device))
    generator.manual_seed(int(seed))
    return generator


def _sample(device_model: DeviceModel, weight: torch.Tensor, sigma: float,
            generator: torch.Generator | None, censor_k: float | None = None,
            verified_scale: torch.Tensor | None = None, mappings: dict | None = None,
            name: str = "") -> torch.Tensor:
    """``device_model.sample`` (or, with ``quantize``, :func:`neft.chip.effects.sample`) drawn on ``generator``'s device
    (torch refuses a generator of another device type) and returned on ``weight``'s device; no copy when both share
    a device. ``mappings`` caches each layer's :func:`neft.chip.effects.map_layer` while its weights are unchanged."""
    draw_on = weight.device if generator is None else generator.device
    if device_model.quantize:
        scale = None if verified_scale is None else verified_scale.to(draw_on)
        w = weight.to(draw_on)
        mapped = cached_mapping(device_model, mappings, name, weight, draw_on, w)
        return chip.sample(device_model, w, sigma, generator, censor_k, scale, mapped).to(weight.device)
    return device_model.sample(weight.to(draw_on), sigma, generator, censor_k).to(weight.device)


def written_weight_error(device_model: DeviceModel, weight: torch.Tensor, sigma: float,
                         generator: torch.Generator | None, verified_sigma: float) -> torch.Tensor:
    """The error ``dW`` of one extra weight written to a chip with write-verify (e.g. the tuned block of
    :mod:`neft.deployment.tuned_block`): every device verified, as a verified weight of
    :meth:`Crossbar.sample_chip`. The programming variation is ``min(verified_sigma, sigma)``; a realistic-chip
    ``device_model`` (``quantize``) also quantizes the weight onto its differential pairs and gives it the chip's
    stuck devices, drift at ``drift_time`` and drift compensation (:func:`neft.chip.effects.sample`, with their own
    draws from ``generator``), which verification does not remove.

    Args:
        device_model: the chip's device model (its effects applied).
        weight: the weight as tuned, any Conv/Linear shape.
        sigma: the chip's relative device variation; verified_sigma: a verified device's residual, both in [0, 1].
        generator: draws on its device (None: torch's global RNG).

    Returns:
        ``dW`` shaped like ``weight``, on its device, detached; zeros for a Gaussian device model at residual 0.

    Raises:
        SettingError: an invalid sigma or verified_sigma.
    """
    sigma = check_sigma(sigma)
    residual = min(check_sigma(verified_sigma, "verified_sigma"), sigma)
    with torch.no_grad():
        if device_model.quantize:
            scale = torch.full_like(weight, residual / sigma if sigma else 1.0)
            return _sample(device_model, weight, sigma, generator, verified_scale=scale)
        if residual == 0:
            return torch.zeros_like(weight)
        return _sample(device_model, weight, residual, generator)


def _draw_chip(model: DeviceModel, weights: dict[str, torch.Tensor], sigma: float, generator, censor_k, verified,
               scale: float, mappings: dict) -> Chip:
    """The chip ``{name: dW}`` of :meth:`Crossbar.sample_chip` for ``weights`` under ``model`` (verified weights'
    programming std scaled by ``scale``)."""
    with torch.no_grad():
        if model.quantize:  # the verified devices' programming std is scaled (neft.chip.effects)
            return {name: _sample(model, w, sigma, generator, censor_k,
                                  None if name not in (verified or {}) else
                                  torch.where(verified[name], scale, 1.0).to(w.dtype), mappings, name)
                    for name, w in weights.items()}
        drawn = {name: _sample(model, w, sigma, generator, censor_k) for name, w in weights.items()}
        for name, mask in (verified or {}).items():
            drawn[name] = torch.where(mask, drawn[name] * scale, drawn[name])
        return drawn


class Crossbar:
    """The crossbar-mapped weights of a model and how to run the model with them perturbed.

    Args:
        model: any ``nn.Module``; it is never modified.
        device_model: a :class:`~neft.chip.device_model.DeviceModel`, a preset name (``"RRAM1"``) or a file path.
        include, exclude: module-name patterns, see :func:`mapped_weight_names`.

    Raises:
        ValueError: if the model has no mapped weight or the device model is unknown.

    Example:
        >>> crossbar = Crossbar(my_model, "RRAM1")
        >>> logits = crossbar.forward(x, sigma=0.1)                 # fresh chip (training)
        >>> chip = crossbar.sample_chip(0.1, make_generator(0))     # one programmed chip (evaluation)
        >>> logits = crossbar.forward(x, chip=chip)
    """

    def __init__(
        self,
        model: nn.Module,
        device_model: DeviceModel | str = "RRAM1",
        include: Iterable[str] | None = None,
        exclude: Iterable[str] | None = None,
    ) -> None:
        self.model = model
        self.device_model = devices.get(device_model)
        self.names = mapped_weight_names(model, include, exclude)
        self._mappings: dict = {}  # realistic chips: each layer's quantized mapping while its weights are unchanged

    def weights(self) -> dict[str, torch.Tensor]:
        """The current clean mapped weights, ``{name: parameter}`` (live parameters, gradients flow)."""
        params = dict(self.model.named_parameters())
        return {name: params[name] for name in self.names}

    def summary(self) -> list[ParameterPlacement]:
        """Where every parameter of the model lives, in ``named_parameters()`` order: one
        :class:`ParameterPlacement` ``(name, shape, count, placement)`` each, ``placement`` being ``"crossbar"``
        for a mapped weight (perturbed by device variation) or ``"digital: <reason>"`` (exact, no variation)."""
        modules = dict(self.model.named_modules())
        rows = []
        for name, parameter in self.model.named_parameters():
            owner = modules.get(name.rpartition(".")[0])
            if name in self.names:
                placement = "crossbar"
            elif owner is not None and name.rpartition(".")[2] in layer_weights(owner):
                placement = "digital: layer left off by the include/exclude patterns"
            elif isinstance(owner, MAPPED_LAYER_TYPES + MATRIX_LAYER_TYPES):
                placement = "digital: bias, added by the digital periphery after the crossbar"
            elif isinstance(owner, _NORM_TYPES):
                placement = "digital: normalisation parameter, applied by the digital periphery"
            else:
                placement = (f"digital: parameter of {type(owner).__name__ if owner is not None else 'the model'}; "
                             f"neft maps the weights of {_MAPPED_TEXT} only")
            rows.append(ParameterPlacement(name, tuple(parameter.shape), parameter.numel(), placement))
        return rows

    def sample_chip(self, sigma: float, generator: torch.Generator | None = None,
                    verified: Mapping[str, torch.Tensor] | None = None, verified_sigma: float = 0.0,
                    censor_k: float | None = None) -> Chip:
        """Draw one frozen perturbation of every mapped weight (one programmed chip).

        Args:
            sigma: relative device variation (fraction of a device's conductance range), >= 0.
            generator: ``torch.Generator`` (None: torch's global RNG of the weights' device); layers are drawn
                in model order. On another device than the weights, each layer is drawn on the generator's
                device from a copy of the weight there and moved back: the chip the same generator gives to the
                same weights on the generator's device.
            verified: write-verified weights (selective write-verify, SWIM, Yan et al., DAC 2022;
                docs/method.md, 'Selective write-verify'): ``{name: bool tensor shaped like the weight}`` on the
                weights' device (:func:`neft.deployment.write_verify.verification_mask`); a name it lacks has none.
                The chip is drawn as without it, then each verified entry is scaled to the std of
                ``min(verified_sigma, sigma)`` (the std is proportional to sigma, :meth:`DeviceModel.std`).
            verified_sigma: residual relative variation of a verified device, in [0, 1] (0: verified weights
                are exact).
            censor_k: right-censor every draw at ``+censor_k`` standard deviations (:meth:`DeviceModel.sample`;
                the RCG objective's training noise); None: the plain Gaussian.

        With a realistic-chip device model (``quantize``) every layer is drawn by :func:`neft.chip.effects.sample`:
        quantized levels on a differential pair, programming variation (verified weights' devices with the
        scaled std), stuck devices, drift and frozen 1/f read noise at the model's ``drift_time``, drift compensation.

        Returns:
            ``{name: dW}`` with each ``dW`` shaped like its weight, detached.

        Raises:
            ValueError: for invalid sigma or verified_sigma (a :class:`~neft.common.errors.SettingError`) or non-finite
                weights.
        """
        sigma = check_sigma(sigma)
        scale = min(check_sigma(verified_sigma, "verified_sigma"), sigma) / sigma if sigma else 1.0
        weights, columns = self.weights(), None
        hooks = hooks_of(self.model)  # the periphery of a circuit applied to the model (neft.chip.periphery_hooks)
        if hooks is not None and hooks.column_scales is not None:  # each column's devices span its own max |W|
            columns = {name: hooks.column_scales(name, w) for name, w in weights.items()}
            weights = {name: (w / columns[name]).detach() for name, w in weights.items()}

        if hooks is not None and hooks.per_unit:  # per tile, compensation factors (neft.chip.tile_draws)
            scales = {name: torch.where(mask, scale, 1.0).to(weights[name].dtype)
                      for name, mask in (verified or {}).items()}
            drawn = draw_chip(self.device_model, weights, sigma, generator, censor_k, scales, hooks, columns,
                              self._mappings)
        else:
            drawn = _draw_chip(self.device_model, weights, sigma, generator, censor_k, verified, scale,
                               self._mappings)
        return drawn if columns is None else {name: dW * columns[name] if name in columns else dW
                                              for name, dW in drawn.items()}

    def perturbed_weights(self, chip: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``{name: w + dW}``, differentiable with respect to the clean weights ``w``, and a chip's drift compensation
        factors when it carries them (:mod:`neft.chip.compensation_placement`)."""
        weights = {name: w + chip[name] for name, w in self.weights().items()}
        return weights if len(chip) == len(weights) else {**chip, **weights}

    def forward(
        self,
        x: torch.Tensor,
        sigma: float | None = None,
        generator: torch.Generator | None = None,
        chip: Mapping[str, torch.Tensor] | None = None,
        censor_k: float | None = None,
    ) -> torch.Tensor:
        """Run the model on ``x`` with perturbed mapped weights.

        Give either ``sigma`` (a fresh perturbation is drawn from ``generator`` for this call: training-time
        noise, docs/method.md, 'Noise timing') or ``chip`` (a frozen perturbation from :meth:`sample_chip`).
        sigma = 0 runs the clean model and returns bit-identical outputs (unless the device model is a realistic
        chip, ``quantize``: its chips differ from the clean weights at sigma 0 too).

        Args:
            x: model input, e.g. ``[B, C, H, W]``.
            censor_k: with ``sigma``, right-censor the fresh draw at ``+censor_k`` standard deviations
                (:meth:`DeviceModel.sample`); None (default): the plain Gaussian.

        Returns:
            The model's output for ``x``.

        Raises:
            ValueError: if neither or both of ``sigma`` and ``chip`` are given, or sigma is invalid.
        """
        if (sigma is None) == (chip is None):
            raise ValueError("give exactly one of sigma= (fresh perturbation) or chip= (frozen perturbation)")
        if chip is None:
            if check_sigma(sigma) == 0 and not self.device_model.quantize:
                return self.model(x)
            chip = self.sample_chip(sigma, generator, censor_k=censor_k)
        return functional_call(self.model, self.perturbed_weights(chip), (x,))
