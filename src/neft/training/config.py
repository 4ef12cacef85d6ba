"""The settings of a training run: :class:`TrainConfig` and its checks, the ``config.json`` a run directory holds
(:func:`read_config`, :func:`load_config`) and what it records beside the settings (:func:`record`).

Recipe defaults follow the release [release] (docs/method.md, 'Training recipe'): batch 128, Adam (lr 1e-3 for
VGG8 and LeNet-5, 1e-2 for ResNet-18), no weight decay, cosine annealing over the epochs stepped per epoch.
[ours] The best epoch is chosen on the *noisy validation* accuracy (a few fixed Monte Carlo chips at the training
sigma on a split held out of the training set); ``select_on="test"`` reproduces the release's selection on the
test set.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from neft import data, models
from neft.chip.chip_presets import apply_chip_preset, naming_preset, remember, remember_given
from neft.chip.circuit_settings import CircuitFields
from neft.chip.device_checks import check_sigma
from neft.chip.settings import ChipSettings
from neft.common.compute import resolve_device
from neft.common.errors import MAX_SEED, SettingError, check_count, check_number
from neft.store import checkpoint
from neft.training import objectives
from neft.training.log import _summary_writer, epochs_trained

__all__ = ["TrainConfig", "load_config", "read_config", "record"]


@remember_given
@dataclass
class TrainConfig(CircuitFields):
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
    the images of those two, pixels per side). ``model`` is a zoo name or an import path of your own factory
    (``package.module:function`` or ``path/to/nets.py:function``, :mod:`neft.models.registry`; a file path is made
    absolute), called with ``num_classes``, ``in_channels`` (and ``width`` when it takes one) and the keywords of
    ``model_args``.
    ``init`` (:data:`neft.models.INITS`) left None takes :func:`neft.models.default_init` in :meth:`check`: the
    release's ``"kaiming"`` for the zoo, ``"own"`` (the network as your code initialised it) for an import path or a
    module handed to ``train(config, model=...)``; ``config.json`` records the value used.
    ``tensorboard`` also writes every ``train_log.csv`` column per epoch as a TensorBoard scalar into
    ``out/tensorboard`` (needs the ``tensorboard`` package). ``validation`` is the fraction of training images held out
    for checkpoint selection (0 with ``select_on="test"`` reproduces the release). ``val_runs`` Monte Carlo chips (at
    least 2 are read) give the noisy validation accuracy. The circuit fields (``tile_rows`` ...
    ``drift_compensation_at``, :class:`neft.chip.circuit_settings.CircuitSettings`; docs/method.md, 'The crossbar
    circuit') train through the circuit: every forward of every objective runs the mapped layers through it
    (straight-through gradients, IR drop differentiable, output noise drawn afresh), converter ranges are recalibrated
    every epoch on 256 training images (:func:`neft.chip.circuit.calibration_sample`, recorded in config.json), and the
    noisy validation chips read the same circuit with each ADC's own errors (training steps: ideal ADCs). All off by
    default.
    """

    model: str = "vgg8"
    model_args: dict | None = None
    width: float = 1.0
    init: str | None = None
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
    tensorboard: bool = False

    def chip(self) -> ChipSettings:
        """The chip this network trains against (:meth:`neft.chip.settings.ChipSettings.of`): ``device_model``
        (a preset, file or dict, the command line's chip flags already applied) and the crossbar circuit of
        ``tile_rows`` ... ``adc_mode``, the same object evaluation uses.

        Raises:
            SettingError: an unknown device model or an invalid circuit setting, naming it.
            FileNotFoundError: ``device_model`` names a file that does not exist.
        """
        return ChipSettings.of(self)

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
        _check_model(self)
        if self.init is None:  # the zoo: the release's Kaiming init; your own network: its own
            self.init = models.default_init(self.model)
        if self.init not in models.INITS:
            raise SettingError("init", f"unknown init {self.init!r}; choose one of {', '.join(models.INITS)}")
        self.dataset = data.canonical_name(self.dataset)
        self.sigma = check_sigma(self.sigma)
        if self.sigma_block is not None:
            self.sigma_block = check_sigma(self.sigma_block, "sigma_block")
        filled = apply_chip_preset(self)  # a chip preset's circuit (docs/method.md, 'The periphery')
        with naming_preset(self.device_model, filled):
            self.chip()  # the device model and the crossbar circuit, checked together
        if self.beta is None:
            self.beta = objectives.default_beta(self.method, self.model, self.dataset)
        self.beta = objectives.check_beta(self.beta)
        self.temperature = objectives.check_temperature(self.temperature)
        objectives.check_method_settings(self.method, self.beta, self.temperature, self.sigma, teacher=self.teacher,
                                         taps=self.taps, sigma_block=self.sigma_block,
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
        check_number("width", self.width, "a finite number > 0 (1 = the paper's network)", lambda v: v > 0)
        resolve_device(self.device)
        if self.tensorboard:
            _summary_writer()
        return self


def _check_model(config: TrainConfig) -> None:
    """A zoo name (lower-cased), an import path whose factory exists (file paths made absolute) or the label of
    a module passed in Python; ``model_args`` a JSON object, for import paths only."""
    if config.model_args is not None:
        if not isinstance(config.model_args, dict):
            raise SettingError("model_args", f"model_args must be a dict of keyword arguments (a JSON object "
                                             f"such as {{\"depth\": 4}}), got {config.model_args!r}")
        try:  # the JSON form, so config.json compares equal on resume
            config.model_args = json.loads(json.dumps(config.model_args)) or None
        except (TypeError, ValueError) as error:
            raise SettingError("model_args", f"model_args must be JSON values (numbers, strings, lists, "
                                             f"dicts): {error}") from None
    if models.registry.is_import_path(config.model):
        config.model = models.registry.normalized(config.model)
        models.registry.resolve(config.model)
        return
    if config.model_args:
        raise SettingError("model_args", f"model_args apply to import-path models, not to {config.model!r}")
    if models.registry.is_python_object(config.model):
        return
    if str(config.model).lower() not in models.MODELS:
        raise SettingError("model", f"unknown model {config.model!r}; choose one of {', '.join(models.MODELS)}, "
                                    "or an import path package.module:function or path/to/nets.py:function")
    config.model = config.model.lower()


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
    config = TrainConfig(**{f.name: saved[f.name] for f in dataclasses.fields(TrainConfig) if f.name in saved})
    remember(config, saved)  # the recorded circuit is the run's own: no chip preset refills it
    return config


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


RECORDED = "recorded"  # config.json key of what a run measured at its start, beside its settings


def record(config: TrainConfig, dataset: data.ImageDataset, calibration: dict | None = None) -> dict:
    """What ``config.json`` records beside the settings: the model's source file and digest (import paths), the
    distillation teacher's checkpoint digest (checked on resume), the data set's shape and normalisation
    (per-channel mean/std of pixel values in [0, 1]) and the converters' ``calibration`` sample (the record of
    :func:`neft.chip.circuit.calibration_sample`; None without a DAC or ADC)."""
    return {
        "model_source": (models.registry.describe(config.model) if models.registry.is_import_path(config.model)
                         else None),
        "teacher": ({"path": config.teacher, "sha256": checkpoint.digest(config.teacher)} if config.teacher
                    else None),
        "dataset": {"name": dataset.name, "num_classes": dataset.num_classes, "in_channels": dataset.in_channels,
                    "image_size": dataset.image_size, "mean": list(dataset.mean), "std": list(dataset.std),
                    "classes": list(dataset.classes) if dataset.classes else None, "split": dataset.split},
        "calibration": calibration,
    }
