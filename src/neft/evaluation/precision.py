"""``precision="auto"``: bf16 autocast for Monte Carlo evaluation only where the device computes bf16 natively, and
only after a measured check on the evaluation's own network (docs/method.md, 'Precision of the evaluation').

bf16 autocast roughly doubles the chip-images/s of a CPU with native bf16 instructions (AVX-512 BF16 or AMX) and
of CUDA GPUs with bf16 units, but where bf16 is emulated (an AVX2-only CPU) it is several times slower than fp32.
So ``"auto"`` resolves to ``"fp32"`` unless :func:`native_bf16` says the device has it; then the first
:data:`CHECK_CHIPS` chips at the evaluation's first noisy sigma are evaluated in fp32 and in bf16 from the same
seeds (:func:`check_bf16`), and bf16 is kept only if

* the bf16 mean accuracy lies inside the fp32 95 % confidence interval of the mean, and
* no chip's bf16 accuracy differs from its fp32 accuracy by more than :data:`RUN_TOLERANCE` percentage points.

Otherwise the whole evaluation runs in fp32 (with one warning saying why). The device noise itself is always
drawn in fp32; autocast only changes the precision of the convolutions and matmuls.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from neft.evaluation.metrics import accuracy_summary

__all__ = ["native_bf16", "cpu_has_native_bf16", "check_bf16", "choose_precision", "CHECK_CHIPS", "RUN_TOLERANCE"]

CHECK_CHIPS = 8  # chips evaluated in both precisions by the check [ours]
RUN_TOLERANCE = 1.0  # percentage points: the largest per-chip accuracy difference bf16 vs fp32 the check accepts [ours]
CPUINFO = Path("/proc/cpuinfo")
_CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # x86 flags of native bf16 dot products (AVX-512 BF16, AMX)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively: one of the flags ``avx512_bf16`` or ``amx_bf16`` in
    ``/proc/cpuinfo`` (False where that file cannot be read, e.g. not Linux)."""
    try:
        text = CPUINFO.read_text()
    except OSError:
        return False
    flags = {flag for line in text.splitlines() if line.startswith("flags") for flag in line.split(":", 1)[1].split()}
    return any(flag in flags for flag in _CPU_FLAGS)


def native_bf16(device: torch.device | str) -> bool:
    """Whether ``device`` computes bf16 natively: a CPU with :func:`cpu_has_native_bf16`, or a CUDA device that
    supports bf16 without emulation (compute capability 8.0 or newer). False for any other device type."""
    device = torch.device(device)
    if device.type == "cpu":
        return cpu_has_native_bf16()
    if device.type == "cuda":
        with torch.cuda.device(device):
            return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    return False


def check_bf16(fp32: Sequence[float], bf16: Sequence[float], sigma: float,
               tolerance: float = RUN_TOLERANCE) -> dict:
    """Compare per-chip accuracies of the same chips in fp32 and bf16.

    Args:
        fp32: accuracies (percent) of K >= 2 chips in fp32.
        bf16: accuracies (percent) of the same K chips, in the same order, under bf16 autocast.
        sigma: the relative device variation of those chips (recorded only).
        tolerance: the largest accepted ``|bf16 - fp32|`` of one chip, in percentage points.

    Returns:
        ``{"sigma", "chips", "fp32_mean", "fp32_ci95", "bf16_mean", "max_chip_difference", "tolerance",
        "passed", "reason"}`` (accuracies and differences in percentage points; ``reason``: a sentence saying why
        bf16 was kept or not).

    Raises:
        ValueError: for fewer than 2 chips or lists of different lengths.
    """
    if len(fp32) != len(bf16):
        raise ValueError(f"the check needs the same chips in both precisions, got {len(fp32)} and {len(bf16)}")
    reference = accuracy_summary(fp32)
    bf16_mean = sum(bf16) / len(bf16)
    worst = max(abs(a - b) for a, b in zip(fp32, bf16))
    inside = abs(bf16_mean - reference["mean"]) <= reference["ci95"]
    passed = inside and worst <= tolerance
    where = f"on {len(fp32)} chips at sigma {sigma:g}"
    if passed:
        reason = (f"bf16 kept: {where} its mean {bf16_mean:.2f} % lies inside the fp32 interval "
                  f"{reference['mean']:.2f} +- {reference['ci95']:.2f} % and no chip differs by more than "
                  f"{tolerance:g} points (largest {worst:.2f})")
    elif not inside:
        reason = (f"fp32 used: {where} the bf16 mean {bf16_mean:.2f} % lies outside the fp32 95 % interval "
                  f"{reference['mean']:.2f} +- {reference['ci95']:.2f} %")
    else:
        reason = (f"fp32 used: {where} one chip's bf16 accuracy differs from fp32 by {worst:.2f} points, more "
                  f"than the tolerance of {tolerance:g}")
    return {"sigma": sigma, "chips": len(fp32), "fp32_mean": reference["mean"], "fp32_ci95": reference["ci95"],
            "bf16_mean": bf16_mean, "max_chip_difference": worst, "tolerance": tolerance, "passed": passed,
            "reason": reason}


def choose_precision(precision: str, device: torch.device, sigma: float | None,
                     measure: Callable[[torch.dtype | None], list[float]],
                     chips_per_pass: int = 1) -> tuple[str, dict | None]:
    """The precision an evaluation runs in, and the check's record.

    Args:
        precision: the setting: ``"auto"``, or ``"fp32"``/``"bf16"``/``"fp16"`` (returned as they are, but on a
            CPU with several chips per pass).
        device: the evaluation device.
        sigma: the first sigma with noise (the check runs there); None when every chip is the clean network.
        measure: ``measure(dtype)`` -> accuracies (percent) of the first :data:`CHECK_CHIPS` chips at ``sigma``
            under autocast to ``dtype`` (None: fp32), from the evaluation's own seeds.
        chips_per_pass: chips evaluated together (``torch.func.vmap`` when > 1). CPU autocast does not reach the
            matmuls of vmap's batching rules (they run in fp32; functorch's vmap-autocast tests skip the CPU), so
            on a CPU several chips per pass are fp32, recorded as such: ``"auto"`` without a check, a lower
            precision asked for with one ``RuntimeWarning``.

    Returns:
        ``(precision used, check)``: ``check`` is :func:`check_bf16`'s dict when the check ran, else None.
        A failed check warns once (``RuntimeWarning``) with its reason.
    """
    if chips_per_pass > 1 and device.type == "cpu" and precision != "fp32":
        if precision != "auto":
            warnings.warn(f"precision {precision}: CPU autocast does not reach the {chips_per_pass} chips evaluated "
                          "together under torch.func.vmap, which compute in fp32; recorded as fp32 (chips_per_pass "
                          f"1 evaluates in {precision})", RuntimeWarning, stacklevel=3)
        return "fp32", None
    if precision != "auto" or sigma is None or not native_bf16(device):
        return ("fp32" if precision == "auto" else precision), None
    check = check_bf16(measure(None), measure(torch.bfloat16), sigma, tolerance=RUN_TOLERANCE)
    if not check["passed"]:
        warnings.warn(f"precision auto: {check['reason']}", RuntimeWarning, stacklevel=3)
    return ("bf16" if check["passed"] else "fp32"), check
