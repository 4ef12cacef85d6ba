"""The trainer: one loop for every objective, with checkpoints, exact resume, progress and a per-epoch log.

The settings and the recipe are :mod:`neft.training.config`'s, the run's state is built by
:mod:`neft.training.run`; each epoch trains every step (:func:`_train_epoch`), then scores the epoch on the
selection split (:mod:`neft.training.selection`), logs it (:mod:`neft.training.log`) and writes ``last.pt``
(:mod:`neft.training.resume`).

A run directory holds ``config.json``, ``checkpoint.pt`` (best backbone, see :mod:`neft.store.checkpoint`),
``last.pt`` (everything needed to resume bit-exactly: model, IRS heads, optimiser, scheduler, RNG states) and
``train_log.csv`` (one row per epoch: learning rate, loss and its parts, accuracies, seconds).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
import sys
import time
import warnings
from pathlib import Path

import torch
from tqdm.auto import tqdm

from neft import models
from neft.chip import devices
from neft.chip.circuit_settings import FIELDS
from neft.common import distributed, seeds
from neft.common.compute import first_non_finite
from neft.common.errors import check_name
from neft.store import checkpoint
from neft.store import lock as runlock
from neft.training.config import TrainConfig
from neft.training.log import EpochLog, show_epoch
from neft.training.resume import _check_resume_settings, inherit_init, load_last, restore, save_last
from neft.training.run import Run, start
from neft.training.run_directory import _check_not_teacher, config_stamp, remove_failed_start
from neft.training.selection import _accuracy

__all__ = ["train"]


def train(config: TrainConfig, out: str | Path, *, resume: bool = False, overwrite: bool = False,
          progress: bool = True, stop_after: int | None = None, model: torch.nn.Module | None = None,
          log_name: str | None = None) -> dict:
    """Train one network with ``config.method`` and write the run directory ``out``.

    Args:
        config: the run's settings (validated here; resuming, an ``init`` left None takes the run's recorded one).
        model: a network built in your own code, trained in place instead of ``config.model`` (which becomes its
            label ``python:package.module.Class``; it keeps its own init unless ``config.init`` names one), mapping
            images ``[B, C, H, W]`` to logits ``[B, num_classes]``. Evaluating or resuming the run needs the same
            module again (``evaluate_run(run, model=...)``); an import path lets ``neft evaluate`` rebuild it alone.
        out: run directory; must be new or empty unless ``resume`` or ``overwrite``.
        resume: continue from ``out/last.pt`` (bit-identical to an uninterrupted run on the same device);
            starts fresh when there is none.
        overwrite: delete an existing run directory (only one with a ``config.json``) first.
        progress: tqdm progress bars on a terminal, and one line per epoch (the only output when the output is
            not a terminal, e.g. a log file).
        log_name: prefix every line with ``[log_name]`` and draw no bars (a grid cell running beside others).
        stop_after: stop once this epoch is done (for time-limited jobs); the run stays resumable and the
            summary is written only when all ``config.epochs`` are done.

    Under ``torchrun`` (data-parallel, one process per rank) every step's batch is split over the ranks and each
    rank's loss is weighted by its share of the batch, so the step equals the single-process one; a last batch
    with fewer images than ranks is skipped. BatchNorm statistics are averaged over ranks after every epoch.

    Returns:
        Summary ``{"best_epoch", "best_val_accuracy", "best_val_kind" ("noisy", or "clean" where
        every chip is the clean network),
        "test_accuracy_clean", "clean_circuit" (None: the ideal layers, also for a run trained through
        ``"train_circuit"``), "train_circuit", "epochs", "seconds", "weights_sha256"}`` (accuracies in percent;
        the last epoch's weights' digest: equal runs, resumed runs and data-parallel ranks share it).

    Raises:
        ValueError: invalid settings (a :class:`~neft.common.errors.SettingError` names the setting), or ``resume``
            with settings that differ from the run's; RunExistsError: ``out`` holds a run and neither flag is
            given; data.DatasetNotFoundError: the data set is missing; FloatingPointError: the loss became NaN or
            infinite (the message names the epoch, step and the first layer whose output was not finite);
            :class:`~neft.store.lock.RunLockedError` (a ``FileExistsError``): another process trains or evaluates
            ``out``; OSError: ``out`` cannot be written (read-only, full disk; the message names it).
    """
    out = Path(out)
    _check_request(config, out, resume, model)
    created, stamp = not out.exists(), config_stamp(out)
    with runlock.hold(out, "neft train"):  # one writer per run directory
        try:
            run = _start(config, out, resume, overwrite, model)
            _train_epochs(run, config.epochs if stop_after is None else min(config.epochs, stop_after), progress,
                          log_name)
            return _finish(run)
        except BaseException:  # failed before its first epoch was saved: nothing half-made blocks the rerun
            if distributed.is_main() and config_stamp(out) != stamp:  # (only what this start wrote)
                remove_failed_start(out, created)
            raise


def _train_epochs(run: Run, last_epoch: int, progress: bool, log_name: str | None) -> None:
    """Train the epochs after ``run``'s last one up to ``last_epoch``, each ended (scored, logged, saved) and shown."""
    bars = progress and log_name is None and sys.stderr.isatty()
    for epoch in range(run.state["epoch"] + 1, last_epoch + 1):
        started = time.perf_counter()
        totals = _train_epoch(run, epoch, bars)
        row = _end_epoch(run, epoch, totals, started)
        if progress and distributed.is_main():
            show_epoch(row, run.config, run.objective.parts, run.selection, log_name, bars)


def _check_request(config: TrainConfig, out: Path, resume: bool, model: torch.nn.Module | None) -> None:
    """Everything :func:`train` checks before it takes the run directory's lock: the settings (a module handed in
    Python names the model; resuming, an unset ``init`` takes the run's), that ``out`` is no teacher of the run,
    and a resume's settings against the run's."""
    if model is not None:
        config.model = models.registry.python_object_name(model)
    if resume:
        inherit_init(config, out)
    config.check()
    check_name("out", str(out), "the run directory")
    _check_not_teacher(config, out)
    if distributed.is_main():
        _warn_vanilla_chip(config)
    if resume:
        _check_resume_settings(config, out)


def _start(config: TrainConfig, out: Path, resume: bool, overwrite: bool, given: torch.nn.Module | None) -> Run:
    """Start the run (:func:`neft.training.run.start`), continue it from ``last.pt`` when resuming, and open its
    log with the rows of the epochs already done."""
    run, resuming = start(config, out, resume, overwrite, given)
    if resuming:
        restore(run, load_last(out))
        if distributed.is_main():  # where it goes on from, said before the work
            extended = run.state.get("extended", [{}])[-1].get("after_epoch") == run.state["epoch"]
            print(f"resuming {str(out)!r} after epoch {run.state['epoch']} of {config.epochs}"
                  + (f" (extended from {run.state['extended'][-1]['from_epochs']} epochs)" if extended else ""),
                  file=sys.stderr)
    if distributed.is_main():
        run.log = EpochLog.open(out, run.fields, run.state["epoch"], config.tensorboard)
    return run


def _warn_vanilla_chip(config: TrainConfig) -> None:
    """Say (``UserWarning``) that vanilla's steps never read the realistic chip of its device model (quantized
    mapping, stuck devices, drift, read noise; docs/method.md, 'Training against the chip'): it only shapes the
    noisy validation chips that select the checkpoint. With a crossbar circuit on, the steps do read through the
    circuit (converters, output noise), and the warning says so."""
    if config.method != "vanilla":
        return
    chip = config.chip()  # its device model and circuit, read once
    device = chip.device_model
    named = (["quantize"] if device.quantize else []) + (["read_sigma"] if device.read_sigma > 0 else [])
    if not named:
        return
    trains = (f"vanilla trains through the crossbar circuit ({chip.circuit.label().strip()}) on the clean weights"
              if chip.circuit.active else "vanilla trains the clean network")
    warnings.warn(f"{trains}: its steps never read the device model's chip ({', '.join(named)}); it only shapes "
                  "the noisy validation chips that select the checkpoint. Train a noise-aware method against the "
                  "chip, or evaluate the vanilla network on it with neft evaluate", UserWarning, stacklevel=3)




def _train_epoch(run: Run, epoch: int, progress: bool) -> dict[str, float]:
    """One pass over the training split; returns the loss and logged accuracies (%) averaged over its images."""
    config, dataset = run.config, run.dataset
    rank, world = distributed.rank(), distributed.world_size()
    if run.circuit is not None:
        run.circuit.calibrate(run.calibration)  # converter ranges of this epoch's weights
    run.model.train()
    totals: dict[str, float] = {}
    images = 0
    bar = tqdm(dataset.batches("train", config.batch_size, shuffle=True, train=True,
                               generator=run.data_generator, device=run.device, shard=(rank, world)),
               total=math.ceil(dataset.size("train") / config.batch_size),
               disable=not (progress and distributed.is_main()), leave=False,
               desc=f"{config.method} epoch {epoch}/{config.epochs}", unit="batch")
    for index, (x, y) in enumerate(bar):
        in_step = min(config.batch_size, dataset.size("train") - index * config.batch_size)  # over all ranks
        if in_step < world:  # a last batch smaller than the rank count would leave a rank with no image
            continue
        run.noise_generator.manual_seed(seeds.step_seed(config.seed, rank, run.state["step"]))
        run.state["step"] += 1
        with run.circuit.applied() if run.circuit is not None else contextlib.nullcontext():
            loss, logs = run.objective.loss(run.net, x, y)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the training loss became {float(loss.detach())} at epoch {epoch}, step "
                                     f"{run.state['step']} (batch {index + 1} of the epoch): "
                                     f"{_non_finite_origin(run, x)}")
        run.optimizer.zero_grad(set_to_none=True)
        # DDP averages the ranks' gradients; weighting each rank's mean loss by its share of the step's images
        # makes that average the gradient of the mean over all of them, even when the shares are unequal
        (loss * (world * len(y) / in_step) if world > 1 else loss).backward()
        run.optimizer.step()
        images += len(y)  # each step's mean loss and accuracy weighted by its images: a short last batch counts less
        for key, value in {"loss": loss.item(), **logs}.items():
            totals[key] = totals.get(key, 0.0) + value * len(y)
        bar.set_postfix(loss=f"{totals['loss'] / images:.3f}", acc=f"{totals['acc'] / images:.1f}")
    distributed.average_buffers_(run.model)  # BatchNorm statistics: one set for all ranks
    return {key: value / images for key, value in totals.items()}


def _end_epoch(run: Run, epoch: int, totals: dict[str, float], started: float) -> dict:
    """Score the epoch on the selection split, keep the best checkpoint, log the epoch and save ``last.pt``;
    returns the log row (accuracies in percent)."""
    state, main = run.state, distributed.is_main()
    lr = run.optimizer.param_groups[0]["lr"]
    run.scheduler.step()
    clean, noisy = run.selection.score(run.model, run.dataset, run.config, run.device, run.calibration)
    improved = noisy > state["best"]
    if improved:
        state.update(best=noisy, best_epoch=epoch)
    if improved and main:
        run.selection.save_best(run.out, run.model, epoch, noisy)
    state["epoch"] = epoch
    state["seconds"] += time.perf_counter() - started
    row = {"epoch": epoch, "lr": lr, "loss": totals["loss"], "train_acc": totals["acc"], "val_acc_clean": clean,
           "val_acc_noisy": noisy, "best": int(improved), "seconds": round(time.perf_counter() - started, 3),
           **{key: totals[key] for key in run.fields if key.startswith("head") or key in run.objective.parts}}
    if main:
        run.log.write(row)
        save_last(run)
    return row


def _finish(run: Run) -> dict:
    """Test the best checkpoint on clean weights; write ``summary.json`` once every epoch is done."""
    distributed.barrier()  # rank 0 has written the checkpoint
    own = copy.deepcopy(run.model) if models.registry.is_python_object(run.config.model) else None
    best = checkpoint.load(run.out, map_location=run.device, model=own)
    summary = {"best_epoch": run.state["best_epoch"], "best_val_accuracy": run.state["best"],
               "best_val_kind": run.selection.kind,
               "test_accuracy_clean": _accuracy(best, run.dataset, "test", run.device),
               # the clean accuracies are the ideal layers', never through the circuit the run trained through
               "clean_circuit": None, "train_circuit": {name: getattr(run.config, name) for name in FIELDS},
               "epochs": run.state["epoch"], "seconds": run.state["seconds"],
               "weights_sha256": _digest(run.model)}
    if run.state["epoch"] == run.config.epochs and distributed.is_main():
        (run.out / "summary.json").write_text(json.dumps(summary, indent=2))
    if run.log is not None:
        run.log.close()
    return summary


def _non_finite_origin(run: Run, x: torch.Tensor) -> str:
    """Where a non-finite training loss comes from, with the fix to try: non-finite input images, non-finite
    weights, the first module whose clean forward is not finite, the crossbar circuit, or (the clean forward being
    finite) the training chips and the objective. The learning rate is named only once an optimiser step was taken
    (before the first one the weights are the initial ones), the training sigma only when it is above 0."""
    if not torch.isfinite(x).all():
        bad = int((~torch.isfinite(x)).flatten(1).any(1).sum())
        return f"{bad} image(s) of this batch contain NaN or infinite values; clean the data set"
    config, stepped = run.config, run.state["step"] > 1  # the counter already holds this step
    lr = "lower the learning rate (lr)"
    broken = [name for name, p in run.model.named_parameters() if not torch.isfinite(p).all()]
    if broken:
        named = f"{', '.join(broken[:3])}{' ...' if len(broken) > 3 else ''}"
        return (f"the weights of {named} are no longer finite (the optimiser's updates diverged); {lr}" if stepped
                else f"the weights of {named} are not finite before the first step: check the network's weights")
    layer = first_non_finite(run.model, x)
    if layer is not None:
        where = f"the clean forward (no chip, no circuit) first overflows at {layer}"
        return (f"{where}; {lr}" if stepped else f"{where} before the first step: the network as built overflows "
                                                 "on these images; check its initialisation (init) and its layers")
    if run.circuit is not None:
        with run.circuit.applied():
            layer = first_non_finite(run.model, x)
        if layer is not None:
            return (f"the crossbar circuit ({run.circuit.settings.label().strip()}) first gives NaN or infinite "
                    f"values at {layer} on the clean weights, whose plain forward is finite: check the "
                    "circuit settings (tile_rows, dac_bits, adc_bits, adc_range)")
    fixes = ([f"lower the training sigma (sigma {config.sigma:g})"] if config.sigma > 0 else []) + ([lr] if stepped
                                                                                                   else [])
    chip = f"chips drawn from device model {devices.get(config.device_model).name!r} at sigma {config.sigma:g}"
    return (f"the clean forward is finite{' also through the crossbar circuit' if run.circuit else ''}, so "
            f"{config.method}'s training {chip if config.sigma > 0 else 'objective'} gives it: "
            f"{' or '.join(fixes) if fixes else f'check the settings of {config.method}'}")


def _digest(model: torch.nn.Module) -> str:
    """SHA-256 of the model's state_dict tensors (CPU bytes, in key order)."""
    digest = hashlib.sha256()
    for name, value in model.state_dict().items():
        digest.update(name.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
