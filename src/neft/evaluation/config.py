"""The settings of a Monte Carlo evaluation: :class:`EvalConfig`, its checks and :func:`parse_sigmas`
(docs/method.md, 'Monte Carlo evaluation and metrics'; recorded in ``results.json`` as ``evaluation``,
docs/results.md).

:func:`neft.evaluation.montecarlo.evaluate` runs an evaluation with these settings; the command line
(``neft evaluate``), presets (``[evaluate]``) and Python build the same object.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass

import torch

from neft.chip.chip_presets import apply_chip_preset, naming_preset, remember_given
from neft.chip.circuit_settings import CircuitFields, settings_of
from neft.chip.device_checks import check_sigma, check_time
from neft.chip.device_model import DeviceModel
from neft.chip.settings import EFFECTS, ChipSettings
from neft.common.errors import MAX_SEED, SettingError, check_count, check_number
from neft.deployment import fixes as chipfix
from neft.deployment import write_verify as writeverify
from neft.evaluation.chip_forward import MEMORY_FORMATS

__all__ = ["EvalConfig", "SettingError", "parse_sigmas", "PRECISIONS"]

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
MAX_SIGMAS = 10_000  # sigmas in one evaluation (a start:stop:step with a tiny step is refused, not expanded)
SIGMA_DECIMALS = 6  # decimals that tell two sigmas apart (report rows; chip seeds round to 9)


def parse_sigmas(text: str | float | Iterable[float]) -> list[float]:
    """Parse ``"0,0.1,0.2"``, ``"start:stop:step"`` (stop included), one number or a list of numbers into a sorted
    list of unique sigmas.

    Raises:
        SettingError: (a ``ValueError``, setting ``sigmas``) for an empty list, a malformed string, a
            non-positive step, more than ``MAX_SIGMAS`` sigmas, a sigma outside [0, 1] or a bool
            (:func:`neft.chip.device_checks.check_sigma`), or two sigmas equal to ``SIGMA_DECIMALS`` = 6 decimals (one
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


@remember_given
@dataclass
class EvalConfig(CircuitFields):
    """Every setting of a Monte Carlo evaluation, validated by :meth:`check` and recorded in ``results.json``
    (``evaluation``; docs/results.md). The command line (``neft evaluate``), presets (``[evaluate]``) and Python
    build the same object.

    Attributes:
        sigmas: relative device variations to evaluate (each in [0, 1], a fraction of the conductance range);
            a list, one number or ``"start:stop:step"``. None: 0 and the training sigma of a run directory.
        runs: R, Monte Carlo runs (programmed chips) per sigma, >= 2 (the maximum when ``ci_target`` is set).
        seed: base seed; run r at sigma s uses :func:`neft.common.seeds.run_seed` ``(seed, s, r)``.
        device_model: device preset name, file, dict or :class:`~neft.chip.device_model.DeviceModel`; None: the run's
            own (``RRAM1`` for :func:`evaluate`).
        batch_size: at most this many test images per forward; the test set is split into equal batches
            (``ceil(N / ceil(N / batch_size))`` images each), so a compiled forward pads the last one by little.
        test_subset: evaluate a run directory on the first N images of a seeded permutation of its test set;
            None: the full test set, whatever subset the run was trained with (results.json: ``test_set``); N at
            least the test set's size evaluates the full test set (recorded as None).
        chips_per_pass: chips evaluated together with vmap, or ``"auto"``.
        ci_target: stop adding runs at a sigma once the 95 % CI half-width of the mean accuracy is below this many
            percentage points (after at least ``min_runs`` runs).
        min_runs: runs before a ``ci_target`` may stop a sigma (>= 2).
        precision: ``"auto"`` (bf16 autocast where the device computes bf16 natively and a measured check on
            this network's first chips passes, fp32 elsewhere and at every sigma where each chip is the clean
            network, which is then read exactly; :mod:`neft.evaluation.precision`), or ``fp32``,
            ``bf16`` or ``fp16`` autocast for the forwards (noise is drawn in fp32). ``fp32`` gives the results of
            fp32 forwards bit for bit, as does ``"auto"`` on a device without native bf16.
        memory_format: ``"auto"`` (channels_last on CPU when a dry run agrees), ``"channels_last"`` or
            ``"contiguous"``; see :class:`neft.evaluation.chip_forward.ChipForward`.
        compile: ``torch.compile`` the forward: True, False, or ``"auto"`` (on CPU when the evaluation's forwards
            exceed :data:`~neft.evaluation.montecarlo.COMPILE_AFTER_FLOP` = 5 TFLOP, where the ~20 s compile pays
            for itself; never on CUDA, and never with an active crossbar circuit, whose per-tile graph compiles for
            minutes). True with read noise per read evaluates without compilation, with one warning
            (docs/method.md, 'The crossbar circuit').
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
        tile_rows, dac_bits, adc_bits, adc_range, adc_mode, wire_resistance, adc_offset, adc_gain, adc_inl,
            adc_mismatch, out_noise, input_management, bound_management, out_bound, weight_scaling, converter_codes,
            drift_compensation_at: the crossbar circuit (tiles of ``tile_rows`` rows, DAC and ADC bits, the
            percentile of the calibration magnitudes that sets their full scale, analog or bit-sliced ADCs, IR drop,
            each ADC's own errors, the periphery), each as :class:`neft.chip.circuit_settings.CircuitSettings`
            documents it (docs/method.md, 'The crossbar circuit', 'IR drop', 'Converter circuits', 'The
            periphery'); all off by default. The calibration images are :func:`evaluate`'s ``calibration_images``.
        quantize, stuck_off, stuck_on, drift_nu_mean, drift_nu_std, drift_time, drift_compensation: the realistic
            chip's settings (:class:`~neft.chip.device_model.DeviceModel`; docs/method.md, 'The realistic chip'), each
            None (default) to keep the device model's own: ``quantize`` the 8/2-bit-style quantized differential
            mapping, stuck rates per device in [0, 1], drift exponent mean/std >= 0, ``drift_time`` the read time
            in seconds after programming (> 0; the CLI's ``--drift-times`` writes one result file per time),
            ``drift_compensation`` global drift compensation. Stuck devices, drift and compensation need
            ``quantize``.
        recalibrate_bn: N >= 0 training images through which every chip's BatchNorm statistics are re-estimated
            before it is tested (:mod:`neft.deployment.recalibration`; docs/method.md, 'Fixes for one programmed
            chip'). 0: off.
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
    quantize: bool | None = None
    stuck_off: float | None = None
    stuck_on: float | None = None
    drift_nu_mean: float | None = None
    drift_nu_std: float | None = None
    drift_time: float | None = None
    drift_compensation: bool | None = None
    recalibrate_bn: int = 0
    chip_tune: int = 0
    chip_tune_taps: list[str] | None = None
    chip_tune_lr: float = 1e-2
    chip_tune_batch: int = 64

    def chip(self, base: str | dict | DeviceModel | None = None) -> ChipSettings:
        """The chip of this evaluation (:meth:`neft.chip.settings.ChipSettings.of`): ``base`` (None:
        ``device_model``, else ``RRAM1``) with every device-effect setting that is not None
        (:data:`neft.chip.settings.EFFECTS`) replacing the device model's own (``quantize=False`` turns the
        model's realistic chip off), and the circuit with the resulting read noise.

        Raises:
            SettingError: an invalid chip setting or combination (e.g. stuck devices without ``quantize``).
        """
        return ChipSettings.of(self, base)

    def check(self) -> EvalConfig:
        """Validate every field (parsing ``sigmas`` into a sorted list); returns self.

        Raises:
            SettingError: (a ``ValueError``) naming the bad setting and its valid values.
            FileNotFoundError: ``device_model`` names a file that does not exist.
        """
        if self.sigmas is not None:
            self.sigmas = parse_sigmas(self.sigmas)
        _check_runs(self)
        _check_execution(self)
        _check_write_verify(self)
        _check_chip_settings(self)
        chipfix.check_settings(self)
        return self

    def to_dict(self) -> dict:
        """The settings as JSON-ready values (a device model object becomes its dict)."""
        settings = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        if isinstance(self.device_model, DeviceModel):
            settings["device_model"] = self.device_model.to_dict()
        return settings


def _check_runs(config: EvalConfig) -> None:
    """Check (and normalise) the runs, their seed, images and device model, chips per pass and CI target."""
    config.runs = check_count("runs", config.runs, 2, "the std and CI of the accuracy are undefined for one run")
    config.seed = check_count("seed", config.seed, 0, "a seed", maximum=MAX_SEED)
    config.batch_size = check_count("batch_size", config.batch_size, 1, "images per forward")
    if config.test_subset is not None:
        config.test_subset = check_count("test_subset", config.test_subset, 1, "images of the test set")
    config.min_runs = check_count("min_runs", config.min_runs, 2, "runs before a CI target may stop a sigma")
    if not (config.chips_per_pass == "auto" or (isinstance(config.chips_per_pass, int)
                                                and not isinstance(config.chips_per_pass, bool)
                                                and config.chips_per_pass >= 1)):
        raise SettingError("chips_per_pass", f"chips_per_pass must be a positive integer or 'auto', "
                                             f"got {config.chips_per_pass!r}")
    if config.ci_target is not None:
        check_number("ci_target", config.ci_target, "a positive number of percentage points (e.g. 0.5)",
                     lambda v: v > 0)
        if config.runs < config.min_runs:
            raise SettingError("runs", f"a CI target stops a sigma after at least {config.min_runs} runs; give "
                                       f"runs >= {config.min_runs} (the maximum), got {config.runs}")


def _check_execution(config: EvalConfig) -> None:
    """Check how the forwards execute: ``precision``, ``memory_format`` and ``compile``."""
    if config.precision not in ("auto", *PRECISIONS):
        raise SettingError("precision", f"unknown precision {config.precision!r}; choose one of auto, "
                                        f"{', '.join(PRECISIONS)}")
    if config.memory_format not in MEMORY_FORMATS:
        raise SettingError("memory_format", f"unknown memory_format {config.memory_format!r}; choose one of "
                                            f"{', '.join(MEMORY_FORMATS)}")
    if not any(config.compile is choice for choice in (True, False)) and config.compile != "auto":  # not 1 or 0
        raise SettingError("compile", f"compile must be True, False or 'auto', got {config.compile!r}")


def _check_write_verify(config: EvalConfig) -> None:
    """Check (and normalise) the write-verify settings: ``write_verify``, ``verify_select``, ``verified_sigma``."""
    if isinstance(config.write_verify, bool) or not (isinstance(config.write_verify, (int, float))
                                                     and 0 <= config.write_verify <= 1):
        raise SettingError("write_verify", f"write_verify is the fraction of weights write-verified, a number "
                                           f"in [0, 1] (e.g. 0.05 for 5 %), got {config.write_verify!r}")
    if config.verify_select not in writeverify.SELECTIONS:
        raise SettingError("verify_select", f"unknown verify_select {config.verify_select!r}; choose one of "
                                            f"{', '.join(writeverify.SELECTIONS)}")
    config.write_verify = float(config.write_verify)
    config.verified_sigma = check_sigma(config.verified_sigma, "verified_sigma")


def _check_chip_settings(config: EvalConfig) -> None:
    """Check (and normalise) ``read_sigma``, the realistic chip's settings and the circuit: as one chip
    (:meth:`EvalConfig.chip`) when the device model is known, else each device effect on its own and the circuit
    (the combination is checked once a run's device model is known)."""
    if config.read_sigma is not None:
        config.read_sigma = check_sigma(config.read_sigma, "read_sigma")
    filled = apply_chip_preset(config)  # a chip preset's circuit (docs/method.md, 'The periphery')
    if config.device_model is not None:
        with naming_preset(config.device_model, filled):
            config.chip()
        return
    for name in ("quantize", "drift_compensation"):
        if getattr(config, name) not in (None, True, False):
            raise SettingError(name, f"{name} must be true or false, got {getattr(config, name)!r}")
    effects = {name: getattr(config, name) for name in EFFECTS if getattr(config, name) is not None}
    if "drift_time" in effects:  # a read time: whether the devices drift then is the run's model's to say
        config.drift_time = check_time(effects.pop("drift_time"), "drift_time")
    DeviceModel(**{**effects, "quantize": True})
    settings_of(config)
