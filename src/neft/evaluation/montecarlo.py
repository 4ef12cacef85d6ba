"""Monte Carlo robustness evaluation: many simulated programmed chips per sigma
(docs/method.md, 'Monte Carlo evaluation and metrics'; the files: docs/results.md).

Run ``r`` at sigma ``s`` is one programmed chip: one frozen perturbation of every mapped weight, drawn on the
evaluation device from the seed :func:`neft.common.seeds.run_seed` ``(seed, s, r)`` and held for the whole test set.
Deployment options (docs/method.md): a write-verified fraction of the weights programmed with a smaller residual
std (:mod:`neft.deployment.write_verify`); the crossbar circuit (:mod:`neft.chip.circuit`: tiles, DAC, ADC and read
noise per read, each image's read noise drawn from generators keyed by the chip's seed and the image's index,
:func:`neft.common.seeds.read_seed`).
This module takes tensors and returns results; run directories (checkpoint, data set, result files) are
:mod:`neft.runs`' work. The model is evaluated in eval mode (BatchNorm uses its running statistics) with no
gradients; its parameters are never modified and its train/eval mode is restored afterwards. There is no per-run
model rebuild or checkpoint reload. The settings are an :class:`neft.evaluation.config.EvalConfig`.

How each batch is executed (memory layout, ``torch.compile``, several chips per pass with ``torch.func.vmap``) is
chosen by :class:`neft.evaluation.chip_forward.ChipForward`: on CPU one chip at a time in channels_last layout,
compiled for large evaluations; on CUDA as many chips per pass as fit in memory. Results do not depend on the
chunking: each chip's perturbation comes from its own seed.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import sys
import time
from collections.abc import Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from neft.chip.chip_presets import replace_given
from neft.chip.circuit import Circuit
from neft.chip.crossbar import Crossbar, make_generator
from neft.chip.device_checks import warn_read_before_t0
from neft.chip.settings import ChipSettings
from neft.common import distributed
from neft.common.compute import eval_mode
from neft.common.errors import SettingError, check_name
from neft.common.seeds import run_seed
from neft.deployment import fixes as chipfix
from neft.deployment import write_verify as writeverify
from neft.evaluation.chip_forward import ChipForward, choose_chips_per_pass, forward_flops
from neft.evaluation.config import PRECISIONS, EvalConfig
from neft.evaluation.metrics import PredictionAccumulator, accuracy_summary, ci_half_width
from neft.evaluation.non_finite import non_finite_cause
from neft.evaluation.precision import CHECK_CHIPS, choose_precision

__all__ = ["evaluate", "check_network", "SCHEMA_VERSION"]

SCHEMA_VERSION = 8  # of the results dicts; docs/results.md, 'schema_version', says what each version added
COMPILE_AFTER_FLOP = 5e12  # compile="auto" on CPU: compile when the evaluation's forwards exceed this many FLOPs


def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
             sigmas: str | float | Sequence[float] | None = None, config: EvalConfig | None = None, *,
             label: str | None = None, progress: bool = True, sensitivity_images: torch.Tensor | None = None,
             sensitivity_labels: torch.Tensor | None = None, fix_images: torch.Tensor | None = None,
             fix_labels: torch.Tensor | None = None, calibration_images: torch.Tensor | None = None,
             **settings) -> dict:
    """Monte Carlo evaluation of ``model`` under device variation at each sigma.

    Args:
        model: a trained ``nn.Module`` on the evaluation device (never modified; its train/eval flags restored).
        images: preprocessed test inputs ``[N, ...]`` (e.g. ``[N, C, H, W]``) on the evaluation device (N >= 1).
        labels: class indices ``[N]`` on the same device.
        sigmas: relative device variations to evaluate (overrides ``config.sigmas``; one of them is required).
        config: the settings (:class:`EvalConfig`); ``settings`` keywords override its fields, e.g.
            ``evaluate(model, x, y, [0.1], runs=100, device_model="RRAM4")``.
        label: the name reports give this network (:func:`neft.reporting.labels.result_label`; None: "network").
        progress: show a tqdm bar over runs.
        sensitivity_images: preprocessed training inputs ``[M, ...]`` on the evaluation device, required by
            ``verify_select="swim"`` (its sensitivity, :func:`neft.deployment.write_verify.swim_sensitivity`) and
            ``"swim-release"``, and unused otherwise; e.g. 1024 training images.
        sensitivity_labels: their class indices ``[M]``, required by ``verify_select="swim-release"``.
        fix_images, fix_labels: preprocessed training images ``[N, ...]`` and their classes ``[N]`` on the
            evaluation device, required by ``recalibrate_bn`` and ``chip_tune``
            (:class:`neft.deployment.fixes.ChipFixes`).
        calibration_images: clean inputs ``[M, ...]`` on the evaluation device that calibrate the DAC and ADC
            ranges (:meth:`neft.chip.circuit.Circuit.calibrate`), required when ``dac_bits`` or ``adc_bits`` is set;
            e.g. 256 training images.

    Returns:
        A results dict that :func:`neft.reporting.report.write_report` accepts (docs/results.md): ``{"schema_version",
        "label", "evaluation": config.to_dict(), "device_model": {...}, "test_size", "chip_device" ("cpu" or
        "cuda": chips replay from their seeds on the same device type), "deployment_cost" (what each chip's
        deployment options cost, :meth:`neft.deployment.fixes.ChipFixes.cost`), "seconds", "per_sigma": [{"sigma",
        "runs", "run_seeds", "accuracy": accuracy_summary(...), "ekl" (nats), "ekl_x1e2", "confidence",
        "seconds", "execution": {"chips_per_pass", "memory_format", "compiled"}}, ...]}``; accuracies in
        percent, one ``per_sigma`` entry per sigma, ascending. ``device_model`` is the device model the chips
        were drawn from, with the config's chip settings applied (:meth:`EvalConfig.chip`).

    Raises:
        SettingError: (a ``ValueError``) for an invalid setting (see :class:`EvalConfig`), a ``label`` that is not a
            line of printable text (:func:`~neft.common.errors.check_name`), no sigmas, or
            ``verify_select="swim"`` with ``write_verify > 0`` and no ``sensitivity_images``, or a DAC/ADC
            without ``calibration_images``.
        TypeError: for a keyword that is not an :class:`EvalConfig` field.
        ValueError: for an empty test set, non-finite images, mismatched labels, or NaN/infinite logits (e.g.
            fp16 overflow).
    """
    if label is not None:
        check_name("label", label, "the name reports give this network")
    config = _checked_config(config, sigmas, settings)
    return _evaluate_checked(model, images, labels, config, label=label, progress=progress,
                             sensitivity_images=sensitivity_images, sensitivity_labels=sensitivity_labels,
                             fix_images=fix_images, fix_labels=fix_labels, calibration_images=calibration_images)


def _evaluate_checked(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, config: EvalConfig, *,
                      label: str | None, progress: bool, sensitivity_images: torch.Tensor | None,
                      sensitivity_labels: torch.Tensor | None, fix_images: torch.Tensor | None,
                      fix_labels: torch.Tensor | None, calibration_images: torch.Tensor | None) -> dict:
    """:func:`evaluate` with its settings checked (``config``): the network mapped to chips, the write-verified
    weights chosen and the per-chip fixes prepared once, then every sigma evaluated; returns the results dict."""
    started = time.perf_counter()
    chip = config.chip()
    warn_read_before_t0(chip.device_model)
    crossbar, circuit = _mapped_network(model, chip, calibration_images)
    verified = None
    if config.write_verify > 0:  # one selection per network, shared by every chip
        scores = writeverify.verification_scores(crossbar, config.verify_select, seed=config.seed,
                                                 sensitivity_images=sensitivity_images,
                                                 sensitivity_labels=sensitivity_labels)
        verified = writeverify.verification_mask(scores, config.write_verify)
    fixes = chipfix.ChipFixes(crossbar, config, fix_images, fix_labels, verified)
    with circuit.applied(), fixes.installed():
        per_sigma, precision, precision_check = _evaluate_sigmas(crossbar, circuit, images, labels, config, progress,
                                                                 verified, fixes)
    return {"schema_version": SCHEMA_VERSION, "label": label, "evaluation": config.to_dict(),
            "device_model": chip.device_model.to_dict(), "test_size": int(labels.numel()),
            "deployment_cost": fixes.cost(),
            "chip_device": images.device.type, "precision": precision, "precision_check": precision_check,
            "per_sigma": per_sigma, "seconds": time.perf_counter() - started}


def check_network(model: nn.Module, config: EvalConfig, *, fix_images: torch.Tensor | None = None,
                  fix_labels: torch.Tensor | None = None, calibration_images: torch.Tensor | None = None,
                  **_unused) -> None:
    """The checks :func:`evaluate` makes of ``model`` before its Monte Carlo work, without that work: the network
    mapped to ``config``'s chip (its circuit calibrated), the per-chip fixes prepared and the tuned block inserted
    once. For refusing, before a network is trained, evaluation settings that its evaluation could only refuse
    (e.g. ``recalibrate_bn`` for a model without BatchNorm, tuned-block taps it lacks).

    Args:
        model: the network, trained or not (its weights do not matter; never modified).
        config: checked settings (:meth:`EvalConfig.check`).
        fix_images, fix_labels, calibration_images: as :func:`evaluate` would get them (other keywords of
            :func:`evaluate`, e.g. ``sensitivity_images``, are accepted and unused).

    Raises:
        SettingError: naming the setting the network cannot satisfy.
    """
    with eval_mode(model), torch.no_grad():
        crossbar, _ = _mapped_network(model, config.chip(), calibration_images)
        with chipfix.ChipFixes(crossbar, config, fix_images, fix_labels).installed():
            pass


def _checked_config(config: EvalConfig | None, sigmas, settings: dict) -> EvalConfig:
    """The checked settings of :func:`evaluate`: a copy of ``config`` (None: the defaults) with the ``settings``
    keywords and ``sigmas`` (when given) replacing its fields.

    Raises:
        TypeError: for a keyword that is not an :class:`EvalConfig` field.
        SettingError: for no sigmas or an invalid setting.
    """
    unknown = set(settings) - {field.name for field in dataclasses.fields(EvalConfig)}
    if unknown:
        raise TypeError(f"evaluate() got unknown setting(s) {sorted(unknown)}; valid: "
                        f"{', '.join(field.name for field in dataclasses.fields(EvalConfig))}")
    config = replace_given(config or EvalConfig(), **settings)
    if sigmas is not None:
        config.sigmas = sigmas
    if config.sigmas is None:
        raise SettingError("sigmas", "no sigmas to evaluate; pass sigmas, e.g. [0, 0.1, 0.2]")
    return config.check()


def _mapped_network(model: nn.Module, chip: ChipSettings,
                    calibration_images: torch.Tensor | None) -> tuple[Crossbar, Circuit]:
    """The crossbar mapping of ``model`` on ``chip`` and its circuit, calibrated on ``calibration_images``.

    Raises:
        SettingError: a DAC/ADC without ``calibration_images``, or a circuit setting for a network without mapped
            layers.
    """
    circuit_settings = chip.circuit
    if circuit_settings.calibrated and (calibration_images is None or calibration_images.shape[0] == 0):
        raise SettingError("calibration_images", "dac_bits/adc_bits need a range calibration on clean inputs: pass "
                                                 "calibration_images (e.g. 256 training images)")
    try:
        crossbar = Crossbar(model, chip.device_model)
    except ValueError as error:
        if circuit_settings.active:  # name the circuit setting that needs a mapped layer
            raise SettingError(circuit_settings.names()[0], f"{circuit_settings.names()[0]} is set but {error}") \
                from None
        raise
    circuit = Circuit(crossbar, circuit_settings)
    circuit.calibrate(calibration_images)
    return crossbar, circuit


def _evaluate_sigmas(crossbar, circuit, images, labels, config: EvalConfig, progress: bool,
                     verified, fixes) -> tuple[list[dict], str, dict | None]:
    """The ``per_sigma`` entries of :func:`evaluate`, the precision used and its check (``config`` checked;
    ``circuit`` applied; ``verified``: the write-verify mask; ``fixes``: the per-chip fixes)."""
    model = crossbar.model
    images = images.detach()
    _check_test_set(images, labels)
    sigmas, runs, batch_size = config.sigmas, config.runs, config.batch_size
    device = images.device
    batch_size = math.ceil(images.shape[0] / math.ceil(images.shape[0] / batch_size))
    chips_per_pass, compile = config.chips_per_pass, config.compile
    results = []
    bar = tqdm(total=runs * len(sigmas), desc="Monte Carlo", unit="chip", disable=not progress, leave=False)
    with eval_mode(model), contextlib.closing(bar):  # every module gets its own train/eval flag back
        with torch.no_grad():
            num_classes = model(images[:1]).shape[-1]
            if labels.numel() and not 0 <= int(labels.min()) <= int(labels.max()) < num_classes:
                raise ValueError(f"labels must be class indices in [0, {num_classes - 1}] for a model with "
                                 f"{num_classes} outputs, got {int(labels.min())}..{int(labels.max())}")
            if chips_per_pass == "auto":
                chips_per_pass = choose_chips_per_pass(crossbar, images[:batch_size], runs, config.memory_format)
            if compile == "auto":
                noisy_chips = runs * sum(_noisy(circuit, sigma, fixes) for sigma in sigmas)
                compile = device.type == "cpu" and not circuit.settings.active and (  # per-tile graphs: minutes
                    forward_flops(model, images[:1]) * images.shape[0] * noisy_chips > COMPILE_AFTER_FLOP)
            forward = ChipForward(crossbar, images[:batch_size], chips_per_pass=chips_per_pass,
                                  batch_size=batch_size, memory_format=config.memory_format, compile=compile,
                                  circuit=circuit)
        if forward.compiled:
            bar.set_description("Monte Carlo (torch.compile: the first chip compiles)")
        images = forward.images(images)
        noisy = [sigma for sigma in sigmas if _noisy(circuit, sigma, fixes)]
        check_config = replace_given(config, runs=min(CHECK_CHIPS, runs), ci_target=None)

        def measure(dtype):  # per-run accuracies of the first chips at the first noisy sigma, autocast to dtype
            with torch.no_grad(), _autocast(device, dtype), tqdm(disable=True) as quiet:
                quiet.total = check_config.runs
                return _evaluate_sigma(crossbar, circuit, forward, images, labels, num_classes, noisy[0],
                                       check_config, batch_size, quiet, verified, fixes)["accuracy"]["per_run"]

        precision, check = choose_precision(config.precision, device, noisy[0] if noisy else None, measure,
                                            forward.chips_per_pass)
        with torch.no_grad():
            for sigma in sigmas:
                bar.set_postfix(sigma=sigma)
                started = time.perf_counter()
                clean = config.precision == "auto" and not _noisy(circuit, sigma, fixes)  # read exactly, in fp32
                with _autocast(device, None if clean else PRECISIONS[precision]):
                    results.append(
                        _evaluate_sigma(crossbar, circuit, forward, images, labels, num_classes, sigma, config,
                                        batch_size, bar, verified, fixes)
                    )
                if progress and sigma == (noisy or [None])[0] and len(noisy) > 1:  # the cost, said early
                    _say_estimate(sigma, results[-1]["runs"], time.perf_counter() - started, runs * (len(noisy) - 1))
                results[-1]["execution"] = {"chips_per_pass": forward.chips_per_pass, "memory_format": forward.layout,
                                            "compiled": forward.compiled and _noisy(circuit, sigma, fixes)}
    return results, precision, check


def _say_estimate(sigma: float, chips: int, seconds: float, left: int) -> None:
    """Print to stderr how long the first noisy sigma's ``chips`` took and the estimated time of the ``left``
    chips still to come (at most: a CI target may stop a sigma early)."""
    eta = seconds / chips * left
    text = f"{eta / 60:.1f} min" if eta >= 60 else f"{eta:.0f} s"
    tqdm.write(f"Monte Carlo: {chips} chips at sigma {sigma:g} took {seconds:.1f} s ({seconds / chips:.3g} s per "
               f"chip); about {text} more for the remaining {left} chips", file=sys.stderr)


def _check_test_set(images: torch.Tensor, labels: torch.Tensor) -> None:
    """Refuse an empty test set, non-finite images and labels that are not ``[N]`` for images ``[N, ...]``.

    Raises:
        ValueError: naming what is wrong.
    """
    if images.shape[0] == 0:
        raise ValueError("the test set is empty: nothing to evaluate; check the data set and test_subset")
    if not torch.isfinite(images).all():
        bad = int((~torch.isfinite(images)).flatten(1).any(1).sum())
        raise ValueError(f"{bad} test image(s) contain NaN or infinite values; clean or drop them before evaluating")
    if labels.shape != images.shape[:1]:
        raise ValueError(f"labels {tuple(labels.shape)} must be [N] for images {tuple(images.shape)}")


def _autocast(device: torch.device, dtype: torch.dtype | None):
    """Autocast of ``device`` to ``dtype``; None: disabled (fp32 forwards)."""
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def _noisy(circuit, sigma: float, fixes) -> bool:
    """Whether chips at ``sigma`` differ from the clean network: variation, noise per read, ADC errors drawn per chip,
    a realistic chip or a per-chip fix (``fixes`` active: every chip is fixed, at sigma 0 too, so a fixed curve has
    no unfixed point)."""
    model, settings = circuit.crossbar.device_model, circuit.settings
    return sigma > 0 or model.read_sigma > 0 or settings.reads or settings.adc_errors or model.quantize or fixes.active


def _ci_stop(accuracies: list[float], done: int, min_runs: int, ci_target: float) -> int | None:
    """The first run count n in ``(done, len(accuracies)]``, n >= ``min_runs``, at which the 95 % CI half-width of
    ``accuracies[:n]`` is below ``ci_target``; None if there is none. Checking every count (not every round) makes
    a CI target stop at the same run whatever the chips per pass and the number of processes."""
    values = torch.tensor(accuracies, dtype=torch.float64)
    for n in range(max(done + 1, min_runs), len(accuracies) + 1):
        if ci_half_width(values[:n].std().item(), n) < ci_target:
            return n
    return None


def _evaluate_sigma(crossbar, circuit, forward, images, labels, num_classes, sigma, config, batch_size, bar,
                    verified, fixes) -> dict:
    """All runs at one sigma; see :func:`evaluate`."""
    started = time.perf_counter()
    accumulator = PredictionAccumulator(images.shape[0], num_classes, images.device)
    if _noisy(circuit, sigma, fixes):
        accuracies, accumulator = _programmed_runs(crossbar, circuit, forward, images, labels, sigma, config,
                                                   batch_size, bar, verified, fixes, accumulator)
    else:
        accuracies = _clean_runs(crossbar.model, images, labels, config, batch_size, bar, accumulator)
    accumulator.check_finite(f" at sigma {sigma:g}",
                             lambda: non_finite_cause(crossbar, circuit, images, batch_size, sigma))
    accumulator.finish_runs(len(accuracies))
    accumulator.all_reduce()
    ekl = accumulator.ekl()
    return {
        "sigma": sigma,
        "runs": len(accuracies),
        "run_seeds": [run_seed(config.seed, sigma, r) for r in range(len(accuracies))],
        "accuracy": accuracy_summary(accuracies),
        "ekl": ekl,
        "ekl_x1e2": ekl * 100,
        "confidence": accumulator.confidence(),
        "seconds": time.perf_counter() - started,
    }


def _clean_runs(model, images, labels, config, batch_size, bar, accumulator) -> list[float]:
    """The runs at a sigma where every chip is the clean network: one pass over the test set stands for all of them
    (``runs``, or ``min_runs`` with a CI target: std 0 meets it as soon as it is checked); their accuracies."""
    runs, ci_target, min_runs = config.runs, config.ci_target, config.min_runs
    rank, world = distributed.rank(), distributed.world_size()
    count = runs if ci_target is None else min_runs
    correct = 0
    for start in range(0, images.shape[0], batch_size):
        logits = model(images[start : start + batch_size]).unsqueeze(0).float()
        correct += int(accumulator.add(logits, labels[start : start + batch_size], start,
                                       copies=len(range(rank, count, world)))[0])
    bar.total -= runs - count
    bar.update(count)
    return [100.0 * correct / images.shape[0]] * count


def _programmed_runs(crossbar, circuit, forward, images, labels, sigma, config, batch_size, bar, verified, fixes,
                     accumulator) -> tuple[list[float], PredictionAccumulator]:
    """The runs at a noisy sigma, ``chips_per_pass`` chips per process in each round, until ``runs`` or the CI
    target (:func:`_ci_stop`); their accuracies and the accumulator holding exactly their predictions."""
    runs, seed, ci_target, min_runs = config.runs, config.seed, config.ci_target, config.min_runs
    reads = circuit.settings.reads or circuit.settings.adc_errors  # the chip's reads and its ADCs' own errors
    device = images.device
    accuracies: list[float] = []
    rank, world = distributed.rank(), distributed.world_size()

    def programmed_chips(first: int, last: int) -> list[float]:
        """Evaluate chips ``first .. last - 1`` (this rank's share) into the accumulator; all ranks' accuracies."""
        mine = list(range(first, last))[rank::world]  # runs of this rank (all runs for one process)
        chip_seeds = [run_seed(seed, sigma, r) for r in mine]
        chips = [crossbar.sample_chip(sigma, make_generator(s, device), verified, config.verified_sigma)
                 for s in chip_seeds]
        fixed = [fixes.extras(crossbar.perturbed_weights(chip), s, sigma) for chip, s in zip(chips, chip_seeds)]
        weights = [forward.weights({**crossbar.perturbed_weights(chip), **extra}) for chip, extra in zip(chips, fixed)]
        correct = torch.zeros(len(mine), dtype=torch.int64, device=device)
        for start in range(0, images.shape[0] if mine else 0, batch_size):
            x, y = images[start : start + batch_size], labels[start : start + batch_size]
            with circuit.reading(chip_seeds if reads else None, start):  # each image's own reads
                correct += accumulator.add(forward(weights, x).float(), y, start)
        return distributed.gather_runs(list(zip(mine, (100.0 * correct.double() / images.shape[0]).tolist())))

    while len(accuracies) < runs:
        done = len(accuracies)
        round_size = min(forward.chips_per_pass * world, runs - done)
        before = copy.deepcopy(accumulator) if ci_target is not None else None
        new = programmed_chips(done, done + round_size)
        bar.set_description("Monte Carlo", refresh=False)
        bar.update(round_size)
        stop = None if ci_target is None else _ci_stop(accuracies + new, done, min_runs, ci_target)
        if stop is not None and stop < done + round_size:  # the target was met inside this round: the same run
            accumulator = before  # count as with one chip per pass and one process, so chips past it are undone
            programmed_chips(done, stop)
        accuracies += new[: (stop or done + round_size) - done]
        if stop is not None:
            bar.total -= runs - len(accuracies)
            break
    return accuracies, accumulator
