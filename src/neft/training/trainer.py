"""The trainer: one loop for every objective, with checkpoints, exact resume, progress and a per-epoch log.

Recipe defaults follow the release [release] (docs/method.md, 'Training recipe'): batch 128, Adam (lr 1e-3 for
VGG8 and LeNet-5, 1e-2 for ResNet-18), no weight decay, cosine annealing over the epochs stepped per epoch.
[ours] The best epoch is chosen on the *noisy validation* accuracy (a few fixed Monte Carlo chips at the training
sigma on a split held out of the training set); ``select_on="test"`` reproduces the release's selection on the
test set.

A run directory holds ``config.json``, ``checkpoint.pt`` (best backbone, see :mod:`neft.store.checkpoint`),
``last.pt`` (everything needed to resume bit-exactly: model, IRS heads, optimiser, scheduler, RNG states) and
``train_log.csv`` (one row per epoch: learning rate, loss and its parts, accuracies, seconds).
"""

from __future__ import annotations

import contextlib
import copy
import csv
import dataclasses
import hashlib
import json
import math
import shutil
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from neft import data, models
from neft.chip import circuit, circuit_settings, devices
from neft.chip.crossbar import Crossbar, make_generator
from neft.chip.device_checks import check_sigma
from neft.common import distributed, seeds
from neft.common.compute import eval_mode, resolve_device
from neft.common.errors import MAX_SEED, SettingError, check_count, check_number
from neft.evaluation import montecarlo
from neft.store import checkpoint
from neft.store import lock as runlock
from neft.training import objectives

__all__ = ["TrainConfig", "train", "load_config", "read_config", "epochs_trained", "record", "RunExistsError"]

LOG_FIELDS = ["epoch", "lr", "loss", "train_acc", "val_acc_clean", "val_acc_noisy", "best", "seconds"]


class RunExistsError(FileExistsError):
    """The run directory already holds a run; pass overwrite=True (``--overwrite``) or resume=True (``--resume``)."""


@dataclass
class TrainConfig:
    """Everything that defines a training run (written to ``config.json``).

    sigma and sigma_block are relative device variations (fractions of a device's conductance range, e.g. 0.1).
    ``beta=None`` takes :func:`neft.training.objectives.default_beta`; ``temperature`` is the logit divisor T of
    noise-injection (:class:`neft.training.objectives.NoiseInjection`; 1 = the paper's baseline); ``censor_k`` and
    ``rcg_scale`` (rcg: censoring point in standard deviations, training-noise magnitude), ``lipschitz_lambda``
    (lipschitz), ``correctnet_lambda`` (correctnet), ``teacher`` (distill: a run directory of the same data set),
    ``distill_alpha`` and ``distill_temperature`` (distill) set the objectives of docs/method.md, 'Other answers
    to device variation', and must stay at their defaults for other methods; ``lr=None`` takes the release's
    learning rate for the model (docs/method.md, 'Training recipe').
    ``dataset`` is a built-in name, ``folder:PATH`` or ``npz:PATH`` (:mod:`neft.data.own`; ``image_size`` resizes
    the images of those two, pixels per side). ``model`` is a zoo name or an import path of your own factory (``package.module:function`` or
    ``path/to/nets.py:function``, :mod:`neft.models.registry`; a file path is made absolute), called with
    ``num_classes``, ``in_channels`` (and ``width`` when it takes one) and the keywords of ``model_args``.
    ``tensorboard`` also writes every ``train_log.csv`` column per epoch as a TensorBoard scalar into
    ``out/tensorboard`` (needs the ``tensorboard`` package).
    ``validation`` is the fraction of training images held out for checkpoint selection (0 with
    ``select_on="test"`` reproduces the release). ``val_runs`` Monte Carlo chips give the noisy validation accuracy.
    ``tile_rows``, ``dac_bits``, ``adc_bits``, ``adc_range`` and ``adc_mode`` train with the crossbar circuit
    (:class:`neft.chip.CircuitSettings`; docs/method.md, 'The crossbar circuit'): every forward of every
    objective runs the mapped layers through it (straight-through gradients), the converter ranges are calibrated
    on the first ``CALIBRATION_IMAGES`` = 256 training images at the start of every epoch, and the noisy
    validation chips use the same circuit. All off (None) by default: training is unchanged.
    """

    model: str = "vgg8"
    model_args: dict | None = None
    width: float = 1.0
    init: str = "kaiming"
    dataset: str = "mnist-5k"
    data_dir: str | None = None
    image_size: int | None = None
    method: str = "noise-injection"
    sigma: float = 0.1
    sigma_block: float | None = None
    device_model: str | dict = "RRAM1"
    beta: float | None = None
    temperature: float = 1.0
    censor_k: float = objectives.RCG_CENSOR_K
    rcg_scale: float = objectives.RCG_SCALE
    lipschitz_lambda: float = objectives.LIPSCHITZ_LAMBDA
    correctnet_lambda: float = objectives.CORRECTNET_LAMBDA
    teacher: str | None = None
    distill_alpha: float = objectives.DISTILL_ALPHA
    distill_temperature: float = objectives.DISTILL_TEMPERATURE
    taps: list[str] | None = None
    epochs: int = 200
    batch_size: int = 128
    lr: float | None = None
    optimizer: str = "adam"
    seed: int = 0
    validation: float = 0.1
    select_on: str = "val"
    val_runs: int = 3
    train_subset: int | None = None
    test_subset: int | None = None
    device: str = "auto"
    tile_rows: int | None = None
    dac_bits: int | None = None
    adc_bits: int | None = None
    adc_range: float = 100.0
    adc_mode: str = "analog"
    tensorboard: bool = False

    def check(self) -> TrainConfig:
        """Validate every field and fill defaults (beta, lr); returns self.

        Raises:
            SettingError: (a ``ValueError``) naming the bad setting and how to fix it (a ``teacher`` without a
                checkpoint or trained on another data set included).
            FileNotFoundError: ``device_model`` names a file that does not exist.
        """
        if self.method not in objectives.METHODS:
            raise SettingError("method", f"unknown method {self.method!r}; choose one of "
                                         f"{', '.join(objectives.METHODS)}")
        self._check_model()
        if self.init not in models.INITS:
            raise SettingError("init", f"unknown init {self.init!r}; choose one of {', '.join(models.INITS)}")
        self.dataset = data.canonical_name(self.dataset)
        self.sigma = check_sigma(self.sigma)
        if self.sigma_block is not None:
            self.sigma_block = check_sigma(self.sigma_block, "sigma_block")
        devices.get(self.device_model)
        if self.beta is None:
            self.beta = objectives.default_beta(self.method, self.model, self.dataset)
        self.beta = objectives.check_beta(self.beta)
        self.temperature = objectives.check_temperature(self.temperature)
        objectives.check_method_settings(self.method, self.beta, self.temperature, self.sigma, teacher=self.teacher,
                                         **{name: getattr(self, name) for name in _OBJECTIVE_SETTINGS})
        for name in _OBJECTIVE_SETTINGS:
            setattr(self, name, float(getattr(self, name)))
        if self.teacher is not None:
            self.teacher = str(self.teacher)
            _check_teacher(self.teacher, self.dataset)
        for name, minimum in (("epochs", 1), ("batch_size", 1), ("val_runs", 1)):
            check_count(name, getattr(self, name), minimum)
        check_count("seed", self.seed, 0, "a seed", maximum=MAX_SEED)
        for name in ("train_subset", "test_subset"):
            if getattr(self, name) is not None:
                check_count(name, getattr(self, name), 1)
        if self.lr is None:
            self.lr = 1e-2 if self.model == "resnet18" else 1e-3
        check_number("lr", self.lr, "a finite number > 0 (e.g. 1e-3)", lambda v: v > 0)
        if self.optimizer not in ("adam", "sgd"):
            raise SettingError("optimizer", f"unknown optimizer {self.optimizer!r}; choose adam or sgd")
        if self.select_on not in ("val", "test"):
            raise SettingError("select_on", f"select_on must be 'val' or 'test', got {self.select_on!r}")
        check_number("validation", self.validation, "a fraction in [0, 1), above 0 when selecting on it",
                     lambda v: 0 <= v < 1 and (v > 0 or self.select_on == "test"))
        if self.taps is not None:  # the JSON form (lists, not tuples), so config.json compares equal on resume
            self.taps = json.loads(json.dumps(list(self.taps)))
            if self.taps and self.method != "irs":
                raise SettingError("taps", f"taps are the snapshot points of IRS: they apply to method 'irs', not "
                                           f"{self.method!r}; drop them or train with method irs")
        check_number("width", self.width, "a finite number > 0 (1 = the paper's network)", lambda v: v > 0)
        resolve_device(self.device)
        circuit_settings.settings_of(self)
        if self.tensorboard:
            _summary_writer()
        return self


    def _check_model(self) -> None:
        """A zoo name (lower-cased), an import path whose factory exists (file paths made absolute) or the label of
        a module passed in Python; ``model_args`` a JSON object, for import paths only."""
        if self.model_args is not None:
            if not isinstance(self.model_args, dict):
                raise SettingError("model_args", f"model_args must be a dict of keyword arguments (a JSON object "
                                                 f"such as {{\"depth\": 4}}), got {self.model_args!r}")
            try:  # the JSON form, so config.json compares equal on resume
                self.model_args = json.loads(json.dumps(self.model_args)) or None
            except (TypeError, ValueError) as error:
                raise SettingError("model_args", f"model_args must be JSON values (numbers, strings, lists, "
                                                 f"dicts): {error}") from None
        if models.registry.is_import_path(self.model):
            self.model = models.registry.normalized(self.model)
            models.registry.resolve(self.model)
            return
        if self.model_args:
            raise SettingError("model_args", f"model_args apply to import-path models, not to {self.model!r}")
        if models.registry.is_python_object(self.model):
            return
        if str(self.model).lower() not in models.MODELS:
            raise SettingError("model", f"unknown model {self.model!r}; choose one of {', '.join(models.MODELS)}, "
                                        "or an import path package.module:function or path/to/nets.py:function")
        self.model = self.model.lower()


def _summary_writer():
    """``torch.utils.tensorboard.SummaryWriter``, or a SettingError saying how to install the package."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise SettingError("tensorboard", "tensorboard=True needs the tensorboard package: pip install tensorboard "
                                          "(or neft[tensorboard]); train_log.csv has the same numbers") from None
    return SummaryWriter


def load_config(run_dir: str | Path) -> TrainConfig:
    """The :class:`TrainConfig` a run directory was trained with (its ``config.json``; settings added in later
    versions take their defaults), unchecked.

    Raises:
        FileNotFoundError: ``run_dir`` has no ``config.json``.
        ValueError: its ``config.json`` is damaged (:func:`read_config`).
    """
    if not (Path(run_dir) / "config.json").is_file():
        raise FileNotFoundError(f"{str(run_dir)!r} has no config.json, so it is no neft run to resume; start it "
                                "with `neft train --out ...` and its settings")
    saved = read_config(run_dir)
    return TrainConfig(**{f.name: saved[f.name] for f in dataclasses.fields(TrainConfig) if f.name in saved})


_OBJECTIVE_SETTINGS = tuple(objectives.METHOD_SETTINGS)  # censor_k, lipschitz_lambda, distill_alpha, ...


def _check_teacher(teacher: str, dataset: str) -> None:
    """Refuse a distillation teacher that is no trained run, or one trained on another data set."""
    try:
        trained_on = checkpoint.load_checkpoint(teacher)[1]["dataset"]
    except (FileNotFoundError, ValueError) as error:
        raise SettingError("teacher", f"teacher {teacher!r} is not a trained run ({error}); train the teacher "
                                      f"first, e.g. `neft train --method vanilla --out {teacher}`") from None
    if trained_on != dataset:
        raise SettingError("teacher", f"teacher {teacher!r} was trained on {trained_on}, this run trains on "
                                      f"{dataset}; give a teacher run of the same data set")
    planned, trained = _planned_epochs(teacher), epochs_trained(teacher)
    if planned and trained is not None and trained < planned:
        raise SettingError("teacher", f"teacher {teacher!r} trained {trained} of its {planned} epochs (training "
                                      f"stopped early); finish it first: `neft train --resume --out {teacher}`")


def _planned_epochs(run_dir: str) -> int | None:
    """The ``epochs`` of a run directory's config.json (None for a checkpoint file or a run without one)."""
    return read_config(run_dir).get("epochs") if (Path(run_dir) / "config.json").is_file() else None


def _check_not_teacher(config: TrainConfig, out: Path) -> None:
    """Refuse a run directory ``out`` that is, or holds, the run's own distillation teacher (replacing it with
    overwrite would delete the teacher)."""
    if config.teacher is None:
        return
    teacher, target = Path(config.teacher).resolve(), out.resolve()
    if teacher == target or target in teacher.parents:
        raise SettingError("teacher", f"the run directory {str(out)!r} is (or holds) the teacher {config.teacher!r};"
                                      " give the distilled run its own directory (--out)")


def _warn_vanilla_chip(config: TrainConfig) -> None:
    """Say (``UserWarning``) that vanilla's steps never read the realistic chip of its device model (quantized
    mapping, stuck devices, drift, read noise; docs/method.md, 'Training against the chip'): it only shapes the
    noisy validation chips that select the checkpoint at sigma > 0, and has no effect at sigma 0."""
    chip = devices.get(config.device_model)
    named = (["quantize"] if chip.quantize else []) + (["read_sigma"] if chip.read_sigma > 0 else [])
    if config.method != "vanilla" or not named:
        return
    use = (f"it only shapes the noisy validation chips at sigma {config.sigma:g} that select the checkpoint"
           if config.sigma > 0 else "at sigma 0 there is no noisy validation either, so it has no effect here")
    warnings.warn(f"vanilla trains the clean network: its steps never read the device model's chip "
                  f"({', '.join(named)}); {use}. Train a noise-aware method against the chip, or evaluate the "
                  "vanilla network on it with neft evaluate", UserWarning, stacklevel=3)


def _prepare_out(out: Path, resume: bool, overwrite: bool) -> bool:
    """Create the run directory; True when resuming from ``last.pt``."""
    if resume and (out / "last.pt").is_file():
        return True
    if resume and (out / "checkpoint.pt").is_file():  # a fresh start would replace the trained network
        raise RunExistsError(f"cannot resume {str(out)!r}: it has no last.pt (removed, or the run predates it), so "
                             "it would start from epoch 1 and replace its checkpoint.pt; start it afresh with "
                             "overwrite=True (--overwrite), or train into another directory (--out)")
    if out.exists() and any(out.iterdir()) and not resume:
        if not overwrite:
            raise RunExistsError(f"run directory {str(out)!r} already exists; continue it with resume=True "
                                 "(--resume), replace it with overwrite=True (--overwrite), or choose another "
                                 "directory (--out)")
        if not (out / "config.json").is_file():
            raise RunExistsError(f"{str(out)!r} is not a neft run directory (no config.json); refusing to delete it")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return False


def _validation_size(config: TrainConfig) -> int | float:
    """Images held out for selection: the fraction of the training images used (of ``train_subset`` if given)."""
    if config.select_on == "test":
        return 0
    if config.train_subset is None:
        return config.validation
    return max(1, round(config.validation * config.train_subset))


def _accuracy(model, dataset, split, device, batch_size=1000) -> float:
    """Clean top-1 accuracy (percent) of ``model`` in eval mode on ``split``."""
    correct = 0
    with torch.no_grad(), eval_mode(model):
        for x, y in dataset.batches(split, batch_size, device=device):
            correct += int((model(x).argmax(1) == y).sum())
    return 100.0 * correct / dataset.size(split)


def _noisy_accuracy(model, images, labels, config, calibration_images=None) -> float:
    """Mean accuracy (percent) over ``val_runs`` fixed Monte Carlo chips at the training sigma on the preprocessed
    selection split ``images`` ``[N, C, H, W]`` and ``labels`` ``[N]`` (with the run's circuit, its ranges
    calibrated on ``calibration_images``)."""
    result = montecarlo.evaluate(model, images, labels, [config.sigma], runs=max(2, config.val_runs),
                                 seed=config.seed, device_model=config.device_model, progress=False,
                                 compile=False,  # a compile per epoch would cost more than it saves
                                 calibration_images=calibration_images,
                                 **{name: getattr(config, name) for name in circuit_settings.FIELDS})
    return result["per_sigma"][0]["accuracy"]["mean"]


def train(config: TrainConfig, out: str | Path, *, resume: bool = False, overwrite: bool = False,
          progress: bool = True, stop_after: int | None = None, model: torch.nn.Module | None = None,
          log_name: str | None = None) -> dict:
    """Train one network with ``config.method`` and write the run directory ``out``.

    Args:
        config: the run's settings (validated here).
        model: a network built in your own code, trained in place instead of ``config.model`` (which becomes its
            label ``python:package.module.Class``; ``init`` is not applied). It must map the data set's images
            ``[B, C, H, W]`` to logits ``[B, num_classes]``. Evaluating or resuming the run needs the same module
            again (``evaluate_run(run, model=...)``); an import path (``config.model = "pkg.mod:fn"``) lets
            ``neft evaluate`` rebuild it alone.
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
        Summary ``{"best_epoch", "best_val_accuracy", "best_val_kind" ("noisy", or "clean" at sigma 0),
        "test_accuracy_clean", "epochs", "seconds",
        "weights_sha256"}`` (accuracies in percent; the digest of the last epoch's weights: equal runs, resumed
        runs and data-parallel ranks share it).

    Raises:
        ValueError: invalid settings (a :class:`~neft.common.errors.SettingError` names the setting), or ``resume``
            with settings that differ from the run's; RunExistsError: ``out`` holds a run and neither flag is
            given; data.DatasetNotFoundError: the data set is missing; FloatingPointError: the loss became NaN or
            infinite (the message names the epoch, step and the first layer whose output was not finite);
            :class:`~neft.store.lock.RunLockedError` (a ``FileExistsError``): another process trains or evaluates
            ``out``; OSError: ``out`` cannot be written (read-only, full disk; the message names it).
    """
    if model is not None:
        config.model = models.registry.python_object_name(model)
    config.check()
    out = Path(out)
    _check_not_teacher(config, out)
    if distributed.is_main():
        _warn_vanilla_chip(config)
    if resume:
        _check_resume_settings(config, out)
    with runlock.hold(out, "neft train"):  # one writer per run directory
        run = _Run.start(config, out, resume, overwrite, model)
        last_epoch = config.epochs if stop_after is None else min(config.epochs, stop_after)
        bars = progress and log_name is None and sys.stderr.isatty()
        for epoch in range(run.state["epoch"] + 1, last_epoch + 1):
            started = time.perf_counter()
            totals = run.train_epoch(epoch, bars)
            row = run.select_and_save(epoch, totals, started)
            if progress and distributed.is_main():
                parts = "".join(f" {part} {row[part]:.4f}" for part in run.objective.parts)
                noisy = f"  noisy@{config.sigma:g} {row['val_acc_noisy']:.2f}%" if config.sigma else ""  # sigma 0: clean
                line = (f"{f'[{log_name}] ' if log_name else ''}epoch {epoch}/{config.epochs}: loss {row['loss']:.4f}"
                        f"{f' ({parts.strip()})' if parts else ''}  train {row['train_acc']:.2f}%  {run.select_split} "
                        f"clean {row['val_acc_clean']:.2f}%{noisy}"
                        f"{'  *best' if row['best'] else ''}")
                if bars:
                    tqdm.write(line)
                else:
                    print(line, flush=True)
        return run.finish()


def read_config(run_dir: str | Path) -> dict:
    """The ``config.json`` of a run directory as a dict.

    Raises:
        FileNotFoundError: there is none.
        ValueError: it is damaged (not a JSON object); the message names the file.
    """
    path = Path(run_dir) / "config.json"
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"no config.json in {str(run_dir)!r}: not a run directory written by "
                                "neft train") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{str(path)!r} is damaged (invalid JSON: {error}); restore it or retrain the run "
                         "with overwrite=True (--overwrite)") from None
    if not isinstance(config, dict):
        raise ValueError(f"{str(path)!r} is damaged (not a JSON object); restore it or retrain the run")
    return config


def _check_resume_settings(config: TrainConfig, out: Path) -> None:
    """Refuse to resume ``out`` with settings other than those it was started with (the message names each
    differing value), or when the source file of its import-path model changed since."""
    if not (out / "config.json").is_file():
        return
    recorded = read_config(out)
    # settings added in later versions take their defaults when an older config.json lacks them
    saved = {**dataclasses.asdict(TrainConfig()), **recorded}
    saved.pop(RECORDED, None)
    current = dataclasses.asdict(config)
    pinned = recorded.get(RECORDED, {}).get("teacher")
    if pinned and config.teacher:  # the teacher is pinned by its checkpoint's digest, wherever it now lies
        now = checkpoint.digest(config.teacher)
        if now != pinned["sha256"]:
            raise ValueError(f"cannot resume {str(out)!r}: its teacher {config.teacher!r} is not the network it "
                             f"started from (checkpoint sha256 {pinned['sha256'][:12]}... then, {now[:12]}... now: "
                             "retrained or replaced); restore that teacher or train a new run")
        current["teacher"] = saved.get("teacher")  # same digest: another spelling or location of the same teacher
    changed = sorted(k for k in saved.keys() | current.keys()
                     if k not in checkpoint.WHERE_SETTINGS and saved.get(k) != current.get(k))
    if changed:
        values = "; ".join(f"{k}: {saved.get(k)!r} in the run, {current.get(k)!r} given" for k in changed)
        raise ValueError(f"cannot resume {str(out)!r} with different settings ({', '.join(changed)}): {values}; "
                         "give only the run (--resume --out RUN) or the original settings, or another run directory")
    source = recorded.get(RECORDED, {}).get("model_source")
    if source and models.registry.describe(config.model)["sha256"] != source["sha256"]:
        raise ValueError(f"cannot resume {str(out)!r}: the model source {source['file']} changed since the run "
                         f"was trained (sha256 {source['sha256'][:12]}... in the run, "
                         f"{models.registry.describe(config.model)['sha256'][:12]}... now); restore the file or "
                         "train a new run")


RECORDED = "recorded"  # config.json key of what a run measured at its start, beside its settings


def record(config: TrainConfig, dataset: data.ImageDataset) -> dict:
    """What ``config.json`` records beside the settings: the model's source file and digest (import paths), the
    distillation teacher's checkpoint digest (checked on resume) and the data set's shape and normalisation
    (per-channel mean/std of pixel values in [0, 1])."""
    return {
        "model_source": (models.registry.describe(config.model) if models.registry.is_import_path(config.model)
                         else None),
        "teacher": ({"path": config.teacher, "sha256": checkpoint.digest(config.teacher)} if config.teacher
                    else None),
        "dataset": {"name": dataset.name, "num_classes": dataset.num_classes, "in_channels": dataset.in_channels,
                    "image_size": dataset.image_size, "mean": list(dataset.mean), "std": list(dataset.std),
                    "classes": list(dataset.classes) if dataset.classes else None},
    }


@dataclass
class _Run:
    """The live state of one training run: data, model, objective, optimiser, counters and files."""

    config: TrainConfig
    out: Path
    device: torch.device
    dataset: data.ImageDataset
    model: torch.nn.Module
    net: torch.nn.Module  # the model, wrapped for data-parallel training when there are several ranks
    objective: objectives.Objective
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    noise_generator: torch.Generator
    data_generator: torch.Generator
    state: dict
    fields: list[str]
    metadata: dict
    selection: tuple[torch.Tensor, torch.Tensor]
    circuit: circuit.Circuit | None  # the crossbar circuit the objective trains with (None: off)
    calibration: torch.Tensor | None  # the training images that calibrate its converter ranges
    writer: object | None = None  # a TensorBoard SummaryWriter (config.tensorboard, main rank)

    @property
    def select_split(self) -> str:
        """The split that chooses the best epoch: ``"val"`` or ``"test"``."""
        return "val" if self.config.select_on == "val" else "test"

    @classmethod
    def start(cls, config: TrainConfig, out: Path, resume: bool, overwrite: bool,
              given: torch.nn.Module | None = None) -> _Run:
        """Load the data, build model, objective and optimiser, prepare ``out`` and restore ``last.pt``."""
        device = distributed.setup(resolve_device(config.device))
        main = distributed.is_main()
        dataset = distributed.agree(lambda: data.load(
            config.dataset, config.data_dir, validation=_validation_size(config), seed=config.seed,
            train_subset=config.train_subset, test_subset=config.test_subset, image_size=config.image_size))
        torch.manual_seed(config.seed)
        model = (given if given is not None else models.create(
            config.model, dataset.num_classes, dataset.in_channels, config.width, config.init,
            config.model_args)).to(device)
        sample = dataset.preprocess(dataset.splits["train"][0][:2].to(device))
        if config.model not in models.MODELS:  # your own network: logits of the right shape before any file exists
            models.registry.check_output(model, sample, dataset.num_classes, repr(config.model))
        noise_generator = make_generator(0, device)  # reseeded every step from (seed, rank, step)
        objective = objectives.create(
            config.method, model, sample, dataset.num_classes, sigma=config.sigma, beta=config.beta,
            device_model=config.device_model, generator=noise_generator, sigma_block=config.sigma_block,
            taps=config.taps, temperature=config.temperature, teacher=config.teacher,
            **{name: getattr(config, name) for name in _OBJECTIVE_SETTINGS},
        )
        recorded = record(config, dataset)
        # the run directory is checked (and, to overwrite it, cleared) only once every setting was accepted
        resuming = distributed.agree(lambda: _prepare_out(out, resume, overwrite) if main
                                     else resume and (out / "last.pt").is_file())
        if main:  # only once the objective accepted its settings: a bad tap leaves no half-made run behind
            (out / "config.json").write_text(json.dumps({**dataclasses.asdict(config), RECORDED: recorded}, indent=2))
        net = model
        if distributed.world_size() > 1:  # gradients of the backbone and IRS heads averaged over ranks
            def wrap(module):
                return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)

            net = wrap(model)
            objective.distribute(wrap)
        params = list(model.parameters()) + list(objective.modules().parameters())
        optimizer = (torch.optim.Adam(params, lr=config.lr) if config.optimizer == "adam"
                     else torch.optim.SGD(params, lr=config.lr, momentum=0.9))
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
        split = "val" if config.select_on == "val" else "test"
        run = cls(
            config=config, out=out, device=device, dataset=dataset, model=model, net=net, objective=objective,
            optimizer=optimizer, scheduler=scheduler, noise_generator=noise_generator,
            data_generator=make_generator(config.seed + 2, "cpu"),
            state={"epoch": 0, "step": 0, "best": -1.0, "best_epoch": 0, "seconds": 0.0},
            fields=(LOG_FIELDS[:3] + list(objective.parts) + LOG_FIELDS[3:5]
                    + [f"head{i + 1}_acc" for i in range(len(objective.modules()))] + LOG_FIELDS[5:]),
            metadata={
                "model": {"name": config.model, "num_classes": dataset.num_classes,
                          "in_channels": dataset.in_channels, "width": config.width, "args": config.model_args,
                          "source": recorded["model_source"]},
                "dataset": dataset.name, "dataset_stats": recorded["dataset"], "method": config.method,
                "teacher_sha256": (recorded["teacher"] or {}).get("sha256"),
                "sigma": config.sigma,
                "sigma_block": config.sigma_block, "beta": config.beta, "temperature": config.temperature,
                "device_model": devices.get(config.device_model).to_dict(), "seed": config.seed,
                "config": dataclasses.asdict(config),
            },
            selection=(torch.cat([x for x, _ in dataset.batches(split, 1000, device=device)]),  # preprocessed once
                       dataset.splits[split][1].to(device)),
            circuit=(circuit.Circuit(Crossbar(model, config.device_model), circuit_settings.settings_of(config))
                     if circuit_settings.settings_of(config).active else None),
            calibration=(next(dataset.batches("train", circuit_settings.CALIBRATION_IMAGES, device=device))[0]
                         if circuit_settings.settings_of(config).calibrated else None),
        )
        if resuming:
            try:
                saved = torch.load(out / "last.pt", map_location="cpu", weights_only=True)
            except Exception as error:  # noqa: BLE001 - a truncated or damaged file, whatever torch says
                raise ValueError(f"{str(out / 'last.pt')!r} is truncated or damaged ({type(error).__name__}): "
                                 "this run cannot continue from it; start it afresh with overwrite=True "
                                 "(--overwrite), after copying its checkpoint.pt elsewhere to keep that "
                                 "network") from None
            run.restore(saved)
        if main:
            _truncate_log(out / "train_log.csv", run.fields, run.state["epoch"])
            run.writer = _summary_writer()(log_dir=str(out / "tensorboard")) if config.tensorboard else None
        return run

    def restore(self, saved: dict) -> None:
        """Continue from a ``last.pt`` dict: weights, IRS heads, optimiser, scheduler, data order, counters.

        Raises:
            ValueError: ``last.pt`` is another run's: its recorded settings differ from this run's, or it holds
                another network's weights (another architecture or width).
        """
        # a last.pt written before it recorded its settings has none: then its weights' shapes tell
        values = checkpoint.settings_changes(saved.get("config", {}), dataclasses.asdict(self.config), "last.pt",
                                             "this run")
        if values:
            raise ValueError(f"{str(self.out / 'last.pt')!r} belongs to another run ({values}); start this "
                             "one afresh with overwrite=True (--overwrite), or resume the run it came from")
        mismatch = checkpoint.state_dict_mismatch(self.model.state_dict(), saved["model"])
        if mismatch:
            raise ValueError(f"{str(self.out / 'last.pt')!r} does not fit {self.config.model!r} (width "
                             f"{self.config.width:g}): {mismatch}; it belongs to another run: start this one "
                             "afresh with overwrite=True (--overwrite), or resume the run it came from")
        self.model.load_state_dict(saved["model"])
        self.objective.modules().load_state_dict(saved["heads"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        self.data_generator.set_state(saved["data_rng"])
        self.state = saved["state"]

    def train_epoch(self, epoch: int, progress: bool) -> dict[str, float]:
        """One pass over the training split; returns the mean loss and logged accuracies (%) over its steps."""
        config, dataset = self.config, self.dataset
        rank, world = distributed.rank(), distributed.world_size()
        if self.circuit is not None:
            self.circuit.calibrate(self.calibration)  # converter ranges of this epoch's weights
        self.model.train()
        totals: dict[str, float] = {}
        steps = 0
        bar = tqdm(dataset.batches("train", config.batch_size, shuffle=True, train=True,
                                   generator=self.data_generator, device=self.device, shard=(rank, world)),
                   total=math.ceil(dataset.size("train") / config.batch_size),
                   disable=not (progress and distributed.is_main()), leave=False,
                   desc=f"{config.method} epoch {epoch}/{config.epochs}", unit="batch")
        for index, (x, y) in enumerate(bar):
            in_step = min(config.batch_size, dataset.size("train") - index * config.batch_size)  # over all ranks
            if in_step < world:  # a last batch smaller than the rank count would leave a rank with no image
                continue
            self.noise_generator.manual_seed(seeds.step_seed(config.seed, rank, self.state["step"]))
            self.state["step"] += 1
            with self.circuit.applied() if self.circuit is not None else contextlib.nullcontext():
                loss, logs = self.objective.loss(self.net, x, y)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"the training loss became {float(loss)} at epoch {epoch}, step "
                                         f"{self.state['step']} (batch {index + 1} of the epoch): "
                                         f"{_non_finite_origin(self.model, x)}")
            self.optimizer.zero_grad(set_to_none=True)
            # DDP averages the ranks' gradients; weighting each rank's mean loss by its share of the step's images
            # makes that average the gradient of the mean over all of them, even when the shares are unequal
            (loss * (world * len(y) / in_step) if world > 1 else loss).backward()
            self.optimizer.step()
            steps += 1
            for key, value in {"loss": loss.item(), **logs}.items():
                totals[key] = totals.get(key, 0.0) + value
            bar.set_postfix(loss=f"{totals['loss'] / steps:.3f}", acc=f"{totals['acc'] / steps:.1f}")
        distributed.average_buffers_(self.model)  # BatchNorm statistics: one set for all ranks
        return {key: value / steps for key, value in totals.items()}

    def select_and_save(self, epoch: int, totals: dict[str, float], started: float) -> dict:
        """Score the epoch on the selection split, keep the best checkpoint, log the epoch and save ``last.pt``;
        returns the log row (accuracies in percent)."""
        config, state, main = self.config, self.state, distributed.is_main()
        lr = self.optimizer.param_groups[0]["lr"]
        self.scheduler.step()
        clean = _accuracy(self.model, self.dataset, self.select_split, self.device)
        noisy = _noisy_accuracy(self.model, *self.selection, config, self.calibration) if config.sigma > 0 else clean
        improved = noisy > state["best"]
        if improved:
            state.update(best=noisy, best_epoch=epoch)
        if improved and main:
            checkpoint.save(self.out / "checkpoint.pt", self.model,
                            {**self.metadata, "epoch": epoch, "val_accuracy": noisy, "selected_on": self.select_split})
        state["epoch"] = epoch
        state["seconds"] += time.perf_counter() - started
        row = {"epoch": epoch, "lr": lr, "loss": totals["loss"], "train_acc": totals["acc"], "val_acc_clean": clean,
               "val_acc_noisy": noisy, "best": int(improved), "seconds": round(time.perf_counter() - started, 3),
               **{key: totals[key] for key in self.fields if key.startswith("head") or key in self.objective.parts}}
        if main:
            _append_log(self.out / "train_log.csv", self.fields, row)
            if self.writer is not None:
                for key, value in row.items():
                    if key != "epoch":
                        self.writer.add_scalar(key, value, epoch)
                self.writer.flush()
            checkpoint.write({"config": dataclasses.asdict(config),  # whose last.pt this is (checked on resume)
                              "model": self.model.state_dict(), "heads": self.objective.modules().state_dict(),
                              "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                              "data_rng": self.data_generator.get_state(), "state": state}, self.out / "last.pt")
        return row

    def finish(self) -> dict:
        """Test the best checkpoint on clean weights; write ``summary.json`` once every epoch is done."""
        distributed.barrier()  # rank 0 has written the checkpoint
        own = copy.deepcopy(self.model) if models.registry.is_python_object(self.config.model) else None
        best = checkpoint.load(self.out, map_location=self.device, model=own)
        summary = {"best_epoch": self.state["best_epoch"], "best_val_accuracy": self.state["best"],
                   "best_val_kind": "noisy" if self.config.sigma > 0 else "clean",
                   "test_accuracy_clean": _accuracy(best, self.dataset, "test", self.device),
                   "epochs": self.state["epoch"], "seconds": self.state["seconds"],
                   "weights_sha256": _digest(self.model)}
        if self.state["epoch"] == self.config.epochs and distributed.is_main():
            (self.out / "summary.json").write_text(json.dumps(summary, indent=2))
        if self.writer is not None:
            self.writer.close()
        return summary


def epochs_trained(run_dir: str | Path) -> int | None:
    """How many epochs a run directory has trained: the last epoch of its ``train_log.csv`` (None without one).
    Fewer than its ``config.json`` ``epochs`` means training stopped early (``stop_after``, an interruption)."""
    path = Path(run_dir) / "train_log.csv"
    if not path.is_file():
        return None
    with path.open() as file:
        epochs = [int(row["epoch"]) for row in csv.DictReader(file) if (row.get("epoch") or "").isdigit()]
    return max(epochs, default=0)


def _non_finite_origin(model: torch.nn.Module, x: torch.Tensor) -> str:
    """Where a non-finite loss comes from: non-finite input images, weights, or the first module whose clean
    forward output is not finite; with the fix to try."""
    if not torch.isfinite(x).all():
        bad = int((~torch.isfinite(x)).flatten(1).any(1).sum())
        return f"{bad} image(s) of this batch contain NaN or infinite values; clean the data set"
    broken = [name for name, p in model.named_parameters() if not torch.isfinite(p).all()]
    if broken:
        return (f"the weights of {', '.join(broken[:3])}{' ...' if len(broken) > 3 else ''} are no longer finite; "
                "lower the learning rate (lr) or the training sigma (sigma)")
    first: list[str] = []

    def check(name):
        def hook(_module, _inputs, output):
            if not first and isinstance(output, torch.Tensor) and not torch.isfinite(output).all():
                first.append(name)
        return hook

    hooks = [m.register_forward_hook(check(name)) for name, m in model.named_modules() if name]
    try:
        with torch.no_grad(), eval_mode(model):
            model(x)
    finally:
        for hook in hooks:
            hook.remove()
    where = (f"the clean forward first overflows at layer {first[0]!r}" if first
             else "the clean forward is finite, so the noisy forwards overflow")
    return f"{where}; lower the learning rate (lr) or the training sigma (sigma)"


def _digest(model: torch.nn.Module) -> str:
    """SHA-256 of the model's state_dict tensors (CPU bytes, in key order)."""
    digest = hashlib.sha256()
    for name, value in model.state_dict().items():
        digest.update(name.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _truncate_log(path: Path, fields: list[str], epochs_done: int) -> None:
    """Start ``train_log.csv`` afresh, keeping only rows of epochs already done (for resume)."""
    rows = []
    if path.is_file() and epochs_done:
        with path.open() as file:
            rows = [row for row in csv.DictReader(file) if int(row["epoch"]) <= epochs_done]
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def _append_log(path: Path, fields: list[str], row: dict) -> None:
    with path.open("a", newline="") as file:
        csv.DictWriter(file, fieldnames=fields).writerow(row)
