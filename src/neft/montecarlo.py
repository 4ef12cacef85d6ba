"""Monte Carlo robustness evaluation: many simulated programmed chips per sigma
(docs/method.md, 'Monte Carlo evaluation and metrics'; the files: docs/results.md).

Run ``r`` at sigma ``s`` is one programmed chip: one frozen perturbation of every mapped weight, drawn on the
evaluation device from the seed :func:`neft.variation.run_seed` ``(seed, s, r)`` and held for the whole test set.
The model is evaluated in eval mode (BatchNorm uses its running statistics) with no gradients; its parameters are
never modified and its train/eval mode is restored afterwards. There is no per-run model rebuild or checkpoint
reload.

How each batch is executed (memory layout, ``torch.compile``, several chips per pass with ``torch.func.vmap``) is
chosen by :class:`neft.chip_forward.ChipForward`: on CPU one chip at a time in channels_last layout, compiled for
large evaluations; on CUDA as many chips per pass as fit in memory. Results do not depend on the chunking: each
chip's perturbation comes from its own seed.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from . import checkpoint, data, devices, distributed, report
from .chip_forward import ChipForward, choose_chips_per_pass, forward_flops
from .compute import eval_mode, resolve_device
from .devices import DeviceModel, check_sigma
from .metrics import PredictionAccumulator, accuracy_summary, ci_half_width
from .variation import Crossbar, make_generator, run_seed

__all__ = ["evaluate", "evaluate_run", "parse_sigmas", "PRECISIONS"]

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
COMPILE_AFTER_FLOP = 5e12  # compile="auto" on CPU: compile when the evaluation's forwards exceed this many FLOPs


def parse_sigmas(text: str | float | Iterable[float]) -> list[float]:
    """Parse ``"0,0.1,0.2"``, ``"start:stop:step"`` (stop included), one number or a list of numbers into a sorted
    list of unique sigmas.

    Raises:
        ValueError: for an empty list, a malformed string, a non-positive step or a negative sigma.
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
                values = [round(start + i * step, 10) for i in range(count + 1)]
            else:
                values = [float(v) for v in parts.split(",") if v.strip()]
        except ValueError:
            raise ValueError(
                f"cannot read sigmas {text!r}: give a comma list like 0,0.1,0.2 or start:stop:step like 0:0.4:0.05"
            ) from None
    else:
        values = list(text)
    if not values:
        hint = " (start:stop:step needs start <= stop)" if isinstance(text, str) and ":" in text else ""
        raise ValueError(f"the sigma list {text!r} is empty{hint}; give at least one sigma, e.g. 0.1 or 0:0.4:0.05")
    return sorted({check_sigma(v) for v in values})


def evaluate(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    sigmas: Sequence[float],
    *,
    runs: int = 1000,
    seed: int = 0,
    device_model: DeviceModel | str = "RRAM1",
    batch_size: int = 1000,
    chips_per_pass: int | str = "auto",
    ci_target: float | None = None,
    min_runs: int = 30,
    precision: str = "fp32",
    memory_format: str = "auto",
    compile: bool | str = "auto",
    progress: bool = True,
) -> list[dict]:
    """Monte Carlo evaluation of ``model`` under device variation at each sigma.

    Args:
        model: a trained ``nn.Module`` on the evaluation device.
        images: preprocessed test inputs ``[N, ...]`` (e.g. ``[N, C, H, W]``) on the evaluation device (N >= 1).
        labels: class indices ``[N]`` on the same device.
        sigmas: relative device variations to evaluate (each >= 0).
        runs: R, Monte Carlo runs (programmed chips) per sigma, >= 2 (the maximum when ``ci_target`` is set).
        seed: base seed; run r at sigma s uses ``run_seed(seed, s, r)`` (recorded as ``run_seeds``).
        device_model: device preset, file or :class:`~neft.devices.DeviceModel`.
        batch_size: at most this many test images per forward; the test set is split into equal batches
            (``ceil(N / ceil(N / batch_size))`` images each), so a compiled forward pads the last one by little.
        chips_per_pass: chips evaluated together with vmap, or ``"auto"``.
        ci_target: stop adding runs at a sigma once the 95 % CI half-width of the mean accuracy is below this many
            percentage points (after at least ``min_runs`` runs).
        precision: ``fp32`` (default), ``bf16`` or ``fp16`` autocast for the forwards (noise is drawn in fp32).
        memory_format: ``"auto"`` (channels_last on CPU when a dry run agrees), ``"channels_last"`` or
            ``"contiguous"``; see :class:`neft.chip_forward.ChipForward`.
        compile: ``torch.compile`` the forward: True, False, or ``"auto"`` (on CPU when the evaluation's forwards
            exceed ``COMPILE_AFTER_FLOP`` = 5 TFLOP, where the ~20 s compile pays for itself; never on CUDA).
            Layout and compilation change float rounding only: per-run accuracies agree within one test image.
        progress: show a tqdm bar over runs.

    Returns:
        One dict per sigma (ascending): ``{"sigma", "runs", "run_seeds", "accuracy": accuracy_summary(...),
        "ekl" (nats), "ekl_x1e2", "confidence", "seconds", "execution": {"chips_per_pass", "memory_format",
        "compiled"}}``; accuracies in percent.

    Raises:
        ValueError: for an empty test set, non-finite images, mismatched labels, runs < 2, invalid sigma,
            precision, batch size, chunk size, memory format or compile setting, or NaN/infinite logits (e.g. fp16
            overflow).
    """
    images = images.detach()
    if images.shape[0] == 0:
        raise ValueError("the test set is empty: nothing to evaluate; check the data set and --test-subset")
    if not torch.isfinite(images).all():
        bad = int((~torch.isfinite(images)).flatten(1).any(1).sum())
        raise ValueError(f"{bad} test image(s) contain NaN or infinite values; clean or drop them before evaluating")
    if labels.shape != images.shape[:1]:
        raise ValueError(f"labels {tuple(labels.shape)} must be [N] for images {tuple(images.shape)}")
    if runs < 2:
        raise ValueError(f"runs must be >= 2 (the std and CI of the accuracy are undefined for one run), got {runs}")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    sigmas = parse_sigmas(sigmas)
    crossbar = Crossbar(model, device_model)
    device = images.device
    if ci_target is not None and not (math.isfinite(ci_target) and ci_target > 0):
        raise ValueError(f"ci_target must be a positive number of percentage points (e.g. 0.5), got {ci_target}")
    if ci_target is not None and runs < min_runs:
        raise ValueError(f"a CI target stops a sigma after at least {min_runs} runs; give runs >= {min_runs} "
                         f"(the maximum), got {runs}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    batch_size = math.ceil(images.shape[0] / math.ceil(images.shape[0] / batch_size))
    if not (chips_per_pass == "auto"
            or (isinstance(chips_per_pass, int) and not isinstance(chips_per_pass, bool) and chips_per_pass >= 1)):
        raise ValueError(f"chips_per_pass must be a positive integer or 'auto', got {chips_per_pass!r}")
    if compile not in (True, False, "auto"):
        raise ValueError(f"compile must be True, False or 'auto', got {compile!r}")
    dtype = PRECISIONS[precision]
    results = []
    bar = tqdm(total=runs * len(sigmas), desc="Monte Carlo", unit="chip", disable=not progress, leave=False)
    with eval_mode(model), contextlib.closing(bar):  # every module gets its own train/eval flag back
        with torch.no_grad():
            num_classes = model(images[:1]).shape[-1]
            if labels.numel() and not 0 <= int(labels.min()) <= int(labels.max()) < num_classes:
                raise ValueError(f"labels must be class indices in [0, {num_classes - 1}] for a model with "
                                 f"{num_classes} outputs, got {int(labels.min())}..{int(labels.max())}")
            if chips_per_pass == "auto":
                chips_per_pass = choose_chips_per_pass(crossbar, images[:batch_size], runs, memory_format)
            if compile == "auto":
                noisy_chips = runs * sum(sigma > 0 for sigma in sigmas)
                compile = device.type == "cpu" and (
                    forward_flops(model, images[:1]) * images.shape[0] * noisy_chips > COMPILE_AFTER_FLOP)
            forward = ChipForward(crossbar, images[:batch_size], chips_per_pass=chips_per_pass,
                                  batch_size=batch_size, memory_format=memory_format, compile=compile)
        if forward.compiled:
            bar.set_description("Monte Carlo (torch.compile: the first chip compiles)")
        images = forward.images(images)
        with torch.no_grad(), torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            for sigma in sigmas:
                bar.set_postfix(sigma=sigma)
                results.append(
                    _evaluate_sigma(model, crossbar, forward, images, labels, num_classes, sigma, runs, seed,
                                    batch_size, ci_target, min_runs, bar)
                )
                results[-1]["execution"] = {"chips_per_pass": chips_per_pass, "memory_format": forward.layout,
                                            "compiled": forward.compiled and sigma > 0}
    return results


def _evaluate_sigma(model, crossbar, forward, images, labels, num_classes, sigma, runs, seed, batch_size, ci_target,
                    min_runs, bar) -> dict:
    """All runs at one sigma; see :func:`evaluate`."""
    started = time.perf_counter()
    device = images.device
    accumulator = PredictionAccumulator(images.shape[0], num_classes, device)
    accuracies: list[float] = []
    rank, world = distributed.rank(), distributed.world_size()
    if sigma == 0:  # every run is the clean network: one pass over the test set stands for all of them
        count = runs if ci_target is None else min_runs  # (std 0: a CI target is met as soon as it is checked)
        correct = 0
        for start in range(0, images.shape[0], batch_size):
            logits = model(images[start : start + batch_size]).unsqueeze(0).float()
            correct += int(accumulator.add(logits, labels[start : start + batch_size], start,
                                           copies=len(range(rank, count, world)))[0])
        accuracies = [100.0 * correct / images.shape[0]] * count
        bar.total -= runs - count
        bar.update(count)
    while sigma > 0 and len(accuracies) < runs:
        done = len(accuracies)
        round_size = min(forward.chips_per_pass * world, runs - done)
        mine = list(range(done, done + round_size))[rank::world]  # runs of this rank (all runs for one process)
        chips = [crossbar.sample_chip(sigma, make_generator(run_seed(seed, sigma, r), device)) for r in mine]
        weights = [forward.weights(crossbar.perturbed_weights(chip)) for chip in chips]
        correct = torch.zeros(len(mine), dtype=torch.int64, device=device)
        for start in range(0, images.shape[0] if mine else 0, batch_size):
            x, y = images[start : start + batch_size], labels[start : start + batch_size]
            correct += accumulator.add(forward(weights, x).float(), y, start)
        local = list(zip(mine, (100.0 * correct.double() / images.shape[0]).tolist()))
        accuracies += distributed.gather_runs(local)
        bar.set_description("Monte Carlo", refresh=False)
        bar.update(round_size)
        if ci_target is not None and len(accuracies) >= min_runs:
            std = torch.tensor(accuracies, dtype=torch.float64).std().item()
            if ci_half_width(std, len(accuracies)) < ci_target:
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


def evaluate_run(
    run_dir: str | Path,
    *,
    sigmas: str | Sequence[float] | None = None,
    runs: int = 1000,
    seed: int = 0,
    device_model: str | None = None,
    data_dir: str | None = None,
    test_subset: int | None = None,
    batch_size: int = 1000,
    chips_per_pass: int | str = "auto",
    ci_target: float | None = None,
    precision: str = "fp32",
    memory_format: str = "auto",
    compile: bool | str = "auto",
    device: str = "auto",
    name: str = "results",
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Monte Carlo evaluation of a trained run directory; writes ``{name}.json``, ``{name}.csv`` and
    ``{name}_accuracy_vs_sigma.png`` (``accuracy_vs_sigma.png`` for the default name) into it.

    Args:
        run_dir: a directory written by ``neft train``.
        sigmas: sigmas to evaluate (list or ``"start:stop:step"``); default: 0 and the training sigma.
        device_model: default: the device model the run was trained with.
        test_subset: evaluate on the first N images of a seeded permutation of the test set (quick looks).
        Other arguments as :func:`evaluate`.

    Returns:
        The results dict (``results.json`` schema, every field in docs/results.md; accuracy in percent).

    Raises:
        FileNotFoundError: no checkpoint in ``run_dir`` or a missing data set.
        FileExistsError: one of the three result files exists and ``overwrite`` is False.
        ValueError: invalid settings (see :func:`evaluate`) or a --name that is not a plain file name.
    """
    run_dir = Path(run_dir)
    target = run_dir / f"{name}.json"
    outputs = [target, run_dir / f"{name}.csv",
               run_dir / ("accuracy_vs_sigma.png" if name == "results" else f"{name}_accuracy_vs_sigma.png")]
    compute = distributed.setup(resolve_device(device))

    def prepare():
        if not name or name.startswith(".") or Path(name).name != name:
            raise ValueError(f"--name {name!r} must be a plain file name without '/' or a leading '.', e.g. results_rram4")
        for path in outputs:
            if path.exists() and not overwrite:
                raise FileExistsError(f"{str(path)!r} already exists; pass --overwrite to replace it or --name to keep both")
        model, meta = checkpoint.load_checkpoint(run_dir, map_location=compute)
        if runs < 2:
            raise ValueError(f"runs must be >= 2 (the std and CI of the accuracy are undefined for one run), got {runs}")
        chosen = parse_sigmas(sigmas if sigmas is not None else [0.0, meta["sigma"]])
        chip_model = devices.get(device_model if device_model is not None else meta["device_model"])
        dataset = data.load(meta["dataset"], data_dir or meta["config"].get("data_dir"), seed=seed,
                            test_subset=test_subset)
        return model, meta, chosen, chip_model, dataset

    model, meta, chosen, chip_model, dataset = distributed.agree(prepare)
    images = torch.cat([x for x, _ in dataset.batches("test", batch_size, device=compute)])
    labels = dataset.splits["test"][1].to(compute)
    started = time.perf_counter()
    per_sigma = evaluate(model, images, labels, chosen, runs=runs, seed=seed, device_model=chip_model,
                         batch_size=batch_size, chips_per_pass=chips_per_pass, ci_target=ci_target,
                         precision=precision, memory_format=memory_format, compile=compile,
                         progress=progress and distributed.is_main())
    results = {
        "schema_version": 1,
        "run": str(run_dir), "model": meta["model"]["name"], "width": meta["model"]["width"],
        "dataset": meta["dataset"], "num_classes": meta["model"]["num_classes"], "method": meta["method"],
        "train_sigma": meta["sigma"], "train_seed": meta["seed"], "beta": meta["beta"],
        "temperature": meta.get("temperature", 1.0), "init": meta["config"].get("init", "kaiming"),
        "epochs": meta["config"].get("epochs"), "train_subset": meta["config"].get("train_subset"),
        "device_model": chip_model.to_dict(), "seed": seed, "runs": runs,
        "ci_target": ci_target, "precision": precision, "test_size": int(labels.numel()), "per_sigma": per_sigma,
        "seconds": time.perf_counter() - started, "versions": checkpoint.versions(),
    }
    if not distributed.is_main():
        return results
    rows = report.comparison_rows([results])
    report.write_csv(rows, outputs[1])
    report.plot([results], outputs[2], title=f"{results['method']} ({run_dir.name})")
    partial = target.with_suffix(".json.tmp")  # written last and whole: a results.json marks a finished evaluation
    partial.write_text(json.dumps(results, indent=1))
    partial.replace(target)
    return results
