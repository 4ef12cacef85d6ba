"""Monte Carlo robustness evaluation: many simulated programmed chips per sigma
(docs/method.md, 'Monte Carlo evaluation and metrics'; the files: docs/results.md).

Run ``r`` at sigma ``s`` is one programmed chip: one frozen perturbation of every mapped weight, drawn on the
evaluation device from the seed :func:`neft.common.seeds.run_seed` ``(seed, s, r)`` and held for the whole test set.
Deployment options (docs/method.md): a write-verified fraction of the weights programmed with a smaller residual
std (:mod:`neft.deployment.write_verify`); the crossbar circuit (:mod:`neft.chip.circuit`: tiles, DAC, ADC and read noise per read,
each image's read noise drawn from generators keyed by the chip's seed and the image's index,
:func:`neft.common.seeds.read_seed`).
This module takes tensors and returns results; run directories (checkpoint, data set, result files) are
:mod:`neft.runs`' work. The model is evaluated in eval mode (BatchNorm uses its running statistics) with no gradients; its parameters are
never modified and its train/eval mode is restored afterwards. There is no per-run model rebuild or checkpoint
reload.

How each batch is executed (memory layout, ``torch.compile``, several chips per pass with ``torch.func.vmap``) is
chosen by :class:`neft.evaluation.chip_forward.ChipForward`: on CPU one chip at a time in channels_last layout, compiled for
large evaluations; on CUDA as many chips per pass as fit in memory. Results do not depend on the chunking: each
chip's perturbation comes from its own seed.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from neft.chip import devices
from neft.chip.circuit import Circuit
from neft.chip.circuit_settings import CircuitSettings, settings_of
from neft.chip.crossbar import Crossbar, make_generator
from neft.chip.device_checks import check_sigma
from neft.chip.device_model import DeviceModel
from neft.common import distributed
from neft.common.compute import eval_mode
from neft.common.errors import MAX_SEED, SettingError, check_count, check_number
from neft.common.seeds import run_seed
from neft.deployment import fixes as chipfix
from neft.deployment import write_verify as writeverify
from neft.evaluation.chip_forward import MEMORY_FORMATS, ChipForward, choose_chips_per_pass, forward_flops
from neft.evaluation.metrics import PredictionAccumulator, accuracy_summary, ci_half_width
from neft.evaluation.precision import CHECK_CHIPS, choose_precision

__all__ = ["EvalConfig", "SettingError", "evaluate", "parse_sigmas", "PRECISIONS", "SCHEMA_VERSION"]

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
SCHEMA_VERSION = 7  # of the results dicts (docs/results.md); 2 added "label", "evaluation" and "chip_device", 3 the
# write-verify and read-noise settings (evaluation.write_verify, verify_select, verified_sigma, read_sigma) and
# device_model.read_sigma, 4 the realistic chip's settings (evaluation and device_model: quantize, stuck_off,
# stuck_on, drift_nu_mean, drift_nu_std, drift_time, drift_compensation; device_model.drift_t0); 5 the circuit
# settings (evaluation.tile_rows, dac_bits, adc_bits, adc_range) and read noise per read (each image's own draw); 6
# the per-chip fixes (evaluation.recalibrate_bn, chip_tune, chip_tune_taps, chip_tune_lr, chip_tune_batch) and
# "deployment_cost", 7 "train_circuit" (the crossbar circuit the network was trained through; run evaluations)
CHIP_SETTINGS = ("read_sigma", "quantize", "stuck_off", "stuck_on", "drift_nu_mean", "drift_nu_std", "drift_time",
                 "drift_compensation")  # EvalConfig fields that override the device model's own (None: keep it)
MAX_SIGMAS = 10_000  # sigmas in one evaluation (a start:stop:step with a tiny step is refused, not expanded)
SIGMA_DECIMALS = 6  # decimals that tell two sigmas apart (report rows; chip seeds round to 9)
COMPILE_AFTER_FLOP = 5e12  # compile="auto" on CPU: compile when the evaluation's forwards exceed this many FLOPs


def parse_sigmas(text: str | float | Iterable[float]) -> list[float]:
    """Parse ``"0,0.1,0.2"``, ``"start:stop:step"`` (stop included), one number or a list of numbers into a sorted
    list of unique sigmas.

    Raises:
        SettingError: (a ``ValueError``, setting ``sigmas``) for an empty list, a malformed string, a
            non-positive step, more than ``MAX_SIGMAS`` sigmas, a sigma outside [0, 1] or a bool
            (:func:`neft.chip.check_sigma`), or two sigmas equal to ``SIGMA_DECIMALS`` = 6 decimals (one
            point in reports) but not exactly.
    """
    if isinstance(text, (int, float)):
        text = [text]
    if isinstance(text, str):
        parts = text.strip()
        try:
            if ":" in parts:
                start, stop, step = (float(v) for v in parts.split(":"))
                if step <= 0:
                    raise ValueError
                count = int(round((stop - start) / step))
                if count >= MAX_SIGMAS:
                    raise SettingError("sigmas", f"sigmas {text!r} asks for {count + 1} sigmas; at most "
                                                 f"{MAX_SIGMAS} per evaluation (use a larger step)")
                values = [round(start + i * step, 10) for i in range(count + 1)]
            else:
                values = [float(v) for v in parts.split(",") if v.strip()]
        except ValueError:
            raise SettingError("sigmas", f"cannot read sigmas {text!r}: give a comma list like 0,0.1,0.2 or "
                                         "start:stop:step like 0:0.4:0.05") from None
    else:
        values = list(text)
    if not values:
        hint = " (start:stop:step needs start <= stop)" if isinstance(text, str) and ":" in text else ""
        raise SettingError("sigmas", f"the sigma list {text!r} is empty{hint}; give at least one sigma, e.g. 0.1 "
                                     "or 0:0.4:0.05")
    values = sorted({check_sigma(v, "sigmas") for v in values})
    for low, high in zip(values, values[1:]):  # reports key points by sigma rounded to SIGMA_DECIMALS
        if round(low, SIGMA_DECIMALS) == round(high, SIGMA_DECIMALS):
            raise SettingError("sigmas", f"sigmas {low!r} and {high!r} are the same point to {SIGMA_DECIMALS} "
                                         "decimals, where reports and chip seeds tell sigmas apart; give one of them")
    return values


@dataclass
class EvalConfig:
    """Every setting of a Monte Carlo evaluation, validated by :meth:`check` and recorded in ``results.json``
    (``evaluation``; docs/results.md). The command line (``neft evaluate``), presets (``[evaluate]``) and Python
    build the same object.

    Attributes:
        sigmas: relative device variations to evaluate (each in [0, 1], a fraction of the conductance range);
            a list, one number or ``"start:stop:step"``. None: 0 and the training sigma of a run directory.
        runs: R, Monte Carlo runs (programmed chips) per sigma, >= 2 (the maximum when ``ci_target`` is set).
        seed: base seed; run r at sigma s uses :func:`neft.common.seeds.run_seed` ``(seed, s, r)``.
        device_model: device preset name, file, dict or :class:`~neft.chip.DeviceModel`; None: the run's own
            (``RRAM1`` for :func:`evaluate`).
        batch_size: at most this many test images per forward; the test set is split into equal batches
            (``ceil(N / ceil(N / batch_size))`` images each), so a compiled forward pads the last one by little.
        test_subset: evaluate a run directory on the first N images of a seeded permutation of its test set;
            None: the full test set, whatever subset the run was trained with (results.json: ``test_set``).
        chips_per_pass: chips evaluated together with vmap, or ``"auto"``.
        ci_target: stop adding runs at a sigma once the 95 % CI half-width of the mean accuracy is below this many
            percentage points (after at least ``min_runs`` runs).
        min_runs: runs before a ``ci_target`` may stop a sigma (>= 2).
        precision: ``"auto"`` (bf16 autocast where the device computes bf16 natively and a measured check on
            this network's first chips passes, fp32 elsewhere; :mod:`neft.evaluation.precision`), or ``fp32``, ``bf16`` or
            ``fp16`` autocast for the forwards (noise is drawn in fp32). ``fp32`` gives the results of fp32
            forwards bit for bit, as does ``"auto"`` on a device without native bf16.
        memory_format: ``"auto"`` (channels_last on CPU when a dry run agrees), ``"channels_last"`` or
            ``"contiguous"``; see :class:`neft.evaluation.chip_forward.ChipForward`.
        compile: ``torch.compile`` the forward: True, False, or ``"auto"`` (on CPU when the evaluation's forwards
            exceed ``COMPILE_AFTER_FLOP`` = 5 TFLOP, where the ~20 s compile pays for itself; never on CUDA, and
            never with an active crossbar circuit, whose per-tile graph compiles for minutes). True with read noise
            per read evaluates without compilation, with one warning (docs/method.md, 'The crossbar circuit').
            Layout and compilation change float rounding only: per-run accuracies agree within one test image.
        write_verify: p, the fraction of mapped weights write-verified on every chip, in [0, 1] (selective
            write-verify, SWIM, Yan et al., DAC 2022; docs/method.md, 'Selective write-verify'). 0: none, and
            chips identical to an evaluation without these settings.
        verify_select: how the verified weights are chosen, once per network: ``"magnitude"`` (largest
            ``|w| / max|W|``), ``"random"`` (seeded by ``seed``), ``"swim"`` (second-derivative sensitivity on
            training images) or ``"swim-release"`` (the SWIM release's score, first derivative included;
            :mod:`neft.deployment.write_verify`).
        verified_sigma: residual relative variation of a verified device (like sigma, in [0, 1]); a verified
            weight gets the std of ``min(verified_sigma, sigma)``. 0: verified weights are exact.
        read_sigma: read (cycle-to-cycle) noise relative to the conductance range, in [0, 1], drawn afresh on
            every read, i.e. for every test image, on top of the chip's frozen programming noise (docs/method.md,
            'Read noise'); None: the device model's ``read_sigma`` (0 unless its file sets it).
        tile_rows: crossbar rows per tile (:class:`neft.chip.CircuitSettings`; docs/method.md, 'The crossbar
            circuit'); None: one tile per layer.
        dac_bits: input DAC bits of every mapped layer (1-32); None: ideal inputs.
        adc_bits: ADC bits of every tile's partial sums (1-32); None: ideal sums.
        adc_range: percentile of the calibration magnitudes that sets the DAC and ADC full scale, in (0, 100]
            (100 = max); the calibration images are :func:`evaluate`'s ``calibration_images``.
        adc_mode: ``"analog"`` (one ADC reads each column's analog sum) or ``"sliced"`` (one ADC per bit slice of
            the ``weight_bits``/``device_bits`` mapping, shifted and added digitally).
        quantize, stuck_off, stuck_on, drift_nu_mean, drift_nu_std, drift_time, drift_compensation: the realistic
            chip's settings (:class:`~neft.chip.DeviceModel`; docs/method.md, 'The realistic chip'), each None
            (default) to keep the device model's own: ``quantize`` the 8/2-bit-style quantized differential
            mapping, stuck rates per device in [0, 1], drift exponent mean/std >= 0, ``drift_time`` the read time
            in seconds after programming (> 0; the CLI's ``--drift-times`` writes one result file per time),
            ``drift_compensation`` global drift compensation. Stuck devices, drift and compensation need
            ``quantize``.
        recalibrate_bn: N >= 0 training images through which every chip's BatchNorm statistics are re-estimated
            before it is tested (:mod:`neft.deployment.recalibration`; docs/method.md, 'Fixes for one programmed chip'). 0: off.
        chip_tune: STEPS >= 0 optimizer steps of a tiny shared 1x1-convolution block tuned on every chip, then
            written with verification (:mod:`neft.deployment.tuned_block`). 0: off.
        chip_tune_taps: module names after which the block is inserted (outputs of one channel count); None: the
            model's own (``chip_tune_taps`` of the zoo models).
        chip_tune_lr: Adam learning rate of the block (> 0).
        chip_tune_batch: training images per tuning step (>= 1).
    """

    sigmas: list[float] | None = None
    runs: int = 1000
    seed: int = 0
    device_model: str | dict | DeviceModel | None = None
    batch_size: int = 1000
    test_subset: int | None = None
    chips_per_pass: int | str = "auto"
    ci_target: float | None = None
    min_runs: int = 30
    precision: str = "auto"
    memory_format: str = "auto"
    compile: bool | str = "auto"
    write_verify: float = 0.0
    verify_select: str = "magnitude"
    verified_sigma: float = 0.0
    read_sigma: float | None = None
    tile_rows: int | None = None
    dac_bits: int | None = None
    adc_bits: int | None = None
    adc_range: float = 100.0
    adc_mode: str = "analog"
    quantize: bool | None = None
    stuck_off: float | None = None
    stuck_on: float | None = None
    drift_nu_mean: float | None = None
    drift_nu_std: float | None = None
    drift_time: float | None = None
    drift_compensation: bool | None = None

    def chip_model(self, base: str | dict | DeviceModel | None = None) -> DeviceModel:
        """The device model chips are drawn from: ``base`` (None: ``device_model``, else ``RRAM1``) with every
        chip setting of this config that is not None (``CHIP_SETTINGS``) replacing the device model's own
        (:meth:`neft.chip.DeviceModel.with_chip`: ``quantize=False`` turns the model's realistic chip off).

        Raises:
            SettingError: an invalid chip setting or combination (e.g. stuck devices without ``quantize``).
        """
        model = devices.get(base if base is not None else self.device_model or "RRAM1")
        overrides = {name: getattr(self, name) for name in CHIP_SETTINGS if getattr(self, name) is not None}
        return model.with_chip(**overrides)
    recalibrate_bn: int = 0
    chip_tune: int = 0
    chip_tune_taps: list[str] | None = None
    chip_tune_lr: float = 1e-2
    chip_tune_batch: int = 64

    def check(self) -> EvalConfig:
        """Validate every field (parsing ``sigmas`` into a sorted list); returns self.

        Raises:
            SettingError: (a ``ValueError``) naming the bad setting and its valid values.
            FileNotFoundError: ``device_model`` names a file that does not exist.
        """
        if self.sigmas is not None:
            self.sigmas = parse_sigmas(self.sigmas)
        self.runs = check_count("runs", self.runs, 2, "the std and CI of the accuracy are undefined for one run")
        self.seed = check_count("seed", self.seed, 0, "a seed", maximum=MAX_SEED)
        self.batch_size = check_count("batch_size", self.batch_size, 1, "images per forward")
        if self.test_subset is not None:
            self.test_subset = check_count("test_subset", self.test_subset, 1, "images of the test set")
        self.min_runs = check_count("min_runs", self.min_runs, 2, "runs before a CI target may stop a sigma")
        if self.device_model is not None:
            devices.get(self.device_model)
        if not (self.chips_per_pass == "auto" or (isinstance(self.chips_per_pass, int)
                                                  and not isinstance(self.chips_per_pass, bool)
                                                  and self.chips_per_pass >= 1)):
            raise SettingError("chips_per_pass", f"chips_per_pass must be a positive integer or 'auto', "
                                                 f"got {self.chips_per_pass!r}")
        if self.ci_target is not None:
            check_number("ci_target", self.ci_target, "a positive number of percentage points (e.g. 0.5)",
                         lambda v: v > 0)
            if self.runs < self.min_runs:
                raise SettingError("runs", f"a CI target stops a sigma after at least {self.min_runs} runs; give "
                                           f"runs >= {self.min_runs} (the maximum), got {self.runs}")
        if self.precision not in ("auto", *PRECISIONS):
            raise SettingError("precision", f"unknown precision {self.precision!r}; choose one of auto, "
                                            f"{', '.join(PRECISIONS)}")
        if self.memory_format not in MEMORY_FORMATS:
            raise SettingError("memory_format", f"unknown memory_format {self.memory_format!r}; choose one of "
                                                f"{', '.join(MEMORY_FORMATS)}")
        if not any(self.compile is choice for choice in (True, False)) and self.compile != "auto":  # not 1 or 0
            raise SettingError("compile", f"compile must be True, False or 'auto', got {self.compile!r}")
        if isinstance(self.write_verify, bool) or not (isinstance(self.write_verify, (int, float))
                                                       and 0 <= self.write_verify <= 1):
            raise SettingError("write_verify", f"write_verify is the fraction of weights write-verified, a number "
                                               f"in [0, 1] (e.g. 0.05 for 5 %), got {self.write_verify!r}")
        if self.verify_select not in writeverify.SELECTIONS:
            raise SettingError("verify_select", f"unknown verify_select {self.verify_select!r}; choose one of "
                                                f"{', '.join(writeverify.SELECTIONS)}")
        self.write_verify = float(self.write_verify)
        self.verified_sigma = check_sigma(self.verified_sigma, "verified_sigma")
        if self.read_sigma is not None:
            self.read_sigma = check_sigma(self.read_sigma, "read_sigma")
        if self.device_model is not None:
            self.chip_model()
        else:  # each value on its own; the combination is checked once the device model is known
            for name in ("quantize", "drift_compensation"):
                if getattr(self, name) not in (None, True, False):
                    raise SettingError(name, f"{name} must be true or false, got {getattr(self, name)!r}")
            DeviceModel(**{**{name: getattr(self, name) for name in CHIP_SETTINGS if getattr(self, name) is not None},
                           "quantize": True})
        self.circuit_settings(0.0)
        chipfix.check_settings(self)
        return self

    def circuit_settings(self, read_sigma: float) -> CircuitSettings:
        """The checked :class:`neft.chip.CircuitSettings` of this evaluation with read noise ``read_sigma``."""
        return settings_of(self, read_sigma)

    def to_dict(self) -> dict:
        """The settings as JSON-ready values (a device model object becomes its dict)."""
        settings = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        if isinstance(self.device_model, DeviceModel):
            settings["device_model"] = self.device_model.to_dict()
        return settings


def evaluate(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    sigmas: str | float | Sequence[float] | None = None,
    config: EvalConfig | None = None,
    *,
    label: str | None = None,
    progress: bool = True,
    sensitivity_images: torch.Tensor | None = None,
    sensitivity_labels: torch.Tensor | None = None,
    fix_images: torch.Tensor | None = None,
    fix_labels: torch.Tensor | None = None,
    calibration_images: torch.Tensor | None = None,
    **settings,
) -> dict:
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
            evaluation device, required by ``recalibrate_bn`` and ``chip_tune`` (:class:`neft.deployment.fixes.ChipFixes`).
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
        were drawn from, with the config's chip settings applied (:meth:`EvalConfig.chip_model`).

    Raises:
        SettingError: (a ``ValueError``) for an invalid setting (see :class:`EvalConfig`), no sigmas, or
            ``verify_select="swim"`` with ``write_verify > 0`` and no ``sensitivity_images``, or a DAC/ADC
            without ``calibration_images``.
        TypeError: for a keyword that is not an :class:`EvalConfig` field.
        ValueError: for an empty test set, non-finite images, mismatched labels, or NaN/infinite logits (e.g.
            fp16 overflow).
    """
    unknown = set(settings) - {field.name for field in dataclasses.fields(EvalConfig)}
    if unknown:
        raise TypeError(f"evaluate() got unknown setting(s) {sorted(unknown)}; valid: "
                        f"{', '.join(field.name for field in dataclasses.fields(EvalConfig))}")
    config = dataclasses.replace(config or EvalConfig(), **settings)
    if sigmas is not None:
        config.sigmas = sigmas
    if config.sigmas is None:
        raise SettingError("sigmas", "no sigmas to evaluate; pass sigmas, e.g. [0, 0.1, 0.2]")
    config.check()
    started = time.perf_counter()
    chip_model = config.chip_model()
    circuit_settings = config.circuit_settings(chip_model.read_sigma)
    if circuit_settings.calibrated and (calibration_images is None or calibration_images.shape[0] == 0):
        raise SettingError("calibration_images", "dac_bits/adc_bits need a range calibration on clean inputs: pass "
                                                 "calibration_images (e.g. 256 training images)")
    try:
        crossbar = Crossbar(model, chip_model)
    except ValueError as error:
        if circuit_settings.active:  # name the circuit setting that needs a mapped layer
            raise SettingError(circuit_settings.names()[0], f"{circuit_settings.names()[0]} is set but {error}") \
                from None
        raise
    circuit = Circuit(crossbar, circuit_settings)
    circuit.calibrate(calibration_images)
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
            "device_model": chip_model.to_dict(), "test_size": int(labels.numel()), "deployment_cost": fixes.cost(),
            "chip_device": images.device.type, "precision": precision, "precision_check": precision_check,
            "per_sigma": per_sigma, "seconds": time.perf_counter() - started}


def _evaluate_sigmas(crossbar, circuit, images, labels, config: EvalConfig, progress: bool,
                     verified, fixes) -> tuple[list[dict], str, dict | None]:
    """The ``per_sigma`` entries of :func:`evaluate`, the precision used and its check (``config`` checked;
    ``circuit`` applied; ``verified``: the write-verify mask; ``fixes``: the per-chip fixes)."""
    model = crossbar.model
    images = images.detach()
    if images.shape[0] == 0:
        raise ValueError("the test set is empty: nothing to evaluate; check the data set and test_subset")
    if not torch.isfinite(images).all():
        bad = int((~torch.isfinite(images)).flatten(1).any(1).sum())
        raise ValueError(f"{bad} test image(s) contain NaN or infinite values; clean or drop them before evaluating")
    if labels.shape != images.shape[:1]:
        raise ValueError(f"labels {tuple(labels.shape)} must be [N] for images {tuple(images.shape)}")
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
                noisy_chips = runs * sum(_noisy(crossbar, sigma) for sigma in sigmas)
                compile = device.type == "cpu" and not circuit.settings.active and (  # per-tile graphs: minutes
                    forward_flops(model, images[:1]) * images.shape[0] * noisy_chips > COMPILE_AFTER_FLOP)
            forward = ChipForward(crossbar, images[:batch_size], chips_per_pass=chips_per_pass,
                                  batch_size=batch_size, memory_format=config.memory_format, compile=compile,
                                  circuit=circuit)
        if forward.compiled:
            bar.set_description("Monte Carlo (torch.compile: the first chip compiles)")
        images = forward.images(images)
        noisy = [sigma for sigma in sigmas if _noisy(crossbar, sigma)]
        check_config = dataclasses.replace(config, runs=min(CHECK_CHIPS, runs), ci_target=None)

        def measure(dtype):  # per-run accuracies of the first chips at the first noisy sigma, autocast to dtype
            with torch.no_grad(), _autocast(device, dtype), tqdm(disable=True) as quiet:
                quiet.total = check_config.runs
                return _evaluate_sigma(crossbar, circuit, forward, images, labels, num_classes, noisy[0],
                                       check_config, batch_size, quiet, verified, fixes)["accuracy"]["per_run"]

        precision, check = choose_precision(config.precision, device, noisy[0] if noisy else None, measure)
        with torch.no_grad(), _autocast(device, PRECISIONS[precision]):
            for sigma in sigmas:
                bar.set_postfix(sigma=sigma)
                results.append(
                    _evaluate_sigma(crossbar, circuit, forward, images, labels, num_classes, sigma, config,
                                    batch_size, bar, verified, fixes)
                )
                results[-1]["execution"] = {"chips_per_pass": forward.chips_per_pass, "memory_format": forward.layout,
                                            "compiled": forward.compiled and _noisy(crossbar, sigma)}
    return results, precision, check


def _autocast(device: torch.device, dtype: torch.dtype | None):
    """Autocast of ``device`` to ``dtype``; None: disabled (fp32 forwards)."""
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def _noisy(crossbar, sigma: float) -> bool:
    """Whether chips at ``sigma`` differ from the clean network: variation, read noise or a realistic chip."""
    return sigma > 0 or crossbar.device_model.read_sigma > 0 or crossbar.device_model.quantize


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
    runs, seed, ci_target, min_runs = config.runs, config.seed, config.ci_target, config.min_runs
    model, read_sigma = crossbar.model, crossbar.device_model.read_sigma
    started = time.perf_counter()
    device = images.device
    accumulator = PredictionAccumulator(images.shape[0], num_classes, device)
    accuracies: list[float] = []
    rank, world = distributed.rank(), distributed.world_size()
    if not _noisy(crossbar, sigma):  # every run is the clean network: one pass over the test set stands for all
        count = runs if ci_target is None else min_runs  # (std 0: a CI target is met as soon as it is checked)
        correct = 0
        for start in range(0, images.shape[0], batch_size):
            logits = model(images[start : start + batch_size]).unsqueeze(0).float()
            correct += int(accumulator.add(logits, labels[start : start + batch_size], start,
                                           copies=len(range(rank, count, world)))[0])
        accuracies = [100.0 * correct / images.shape[0]] * count
        bar.total -= runs - count
        bar.update(count)
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
            with circuit.reading(chip_seeds if read_sigma > 0 else None, start):  # each image's own reads
                correct += accumulator.add(forward(weights, x).float(), y, start)
        return distributed.gather_runs(list(zip(mine, (100.0 * correct.double() / images.shape[0]).tolist())))

    while _noisy(crossbar, sigma) and len(accuracies) < runs:
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
    accumulator.check_finite(f" at sigma {sigma:g}")
    accumulator.finish_runs(len(accuracies))
    accumulator.all_reduce()
    ekl = accumulator.ekl()
    return {
        "sigma": sigma,
        "runs": len(accuracies),
        "run_seeds": [run_seed(seed, sigma, r) for r in range(len(accuracies))],
        "accuracy": accuracy_summary(accuracies),
        "ekl": ekl,
        "ekl_x1e2": ekl * 100,
        "confidence": accumulator.confidence(),
        "seconds": time.perf_counter() - started,
    }
