"""Run directories: Monte Carlo evaluation of a trained run and its result files (docs/results.md).

:func:`evaluate_run` reads what ``neft train`` wrote (checkpoint, data set, device model), hands tensors to the
engine (:func:`neft.evaluation.montecarlo.evaluate`) and writes ``{name}.json``, ``{name}.csv`` and the
accuracy-vs-sigma plot back into the run directory. ``neft evaluate RUN_DIR`` is this function.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import warnings
from pathlib import Path

import torch

from neft import data, reporting
from neft.chip import devices
from neft.chip.chip_presets import chip_preset, replace_given
from neft.chip.circuit import calibration_sample
from neft.chip.circuit_settings import FIELDS as CIRCUIT_FIELDS
from neft.chip.circuit_settings import CircuitSettings, settings_of
from neft.chip.crossbar import make_generator
from neft.common import distributed
from neft.common.compute import resolve_device
from neft.common.errors import SettingError, check_name
from neft.common.seeds import fix_seed, verify_seed
from neft.evaluation import EvalConfig, evaluate
from neft.evaluation.montecarlo import check_network
from neft.reporting.results import RUN_FILES
from neft.store import checkpoint
from neft.store import lock as runlock
from neft.training import epochs_trained, objectives

__all__ = ["evaluate_run", "UnfinishedRunWarning", "CircuitMismatchWarning", "output_paths", "sweep_names",
           "check_outputs", "SENSITIVITY_IMAGES", "FIX_IMAGES", "check_network_settings", "finished_points"]

SENSITIVITY_IMAGES = 1024  # training images (a seeded draw) for verify_select="swim" (neft.deployment.write_verify)
FIX_IMAGES = 4096  # training images (a seeded draw) the per-chip fixes draw from (more if recalibrate_bn asks)


def output_paths(run_dir: str | Path, name: str = "results") -> list[Path]:
    """``[{name}.json, {name}.csv, plot]`` in ``run_dir``; the plot is ``accuracy_vs_sigma.png`` for the default
    name and ``{name}_accuracy_vs_sigma.png`` otherwise.

    Raises:
        SettingError: ``name`` is not a plain file name (has a ``/``, starts with ``.``, or holds a line break or
            other control character, :func:`~neft.common.errors.check_name`) or is one of the run's own files
            (``config``, ``summary``, ``train_log``), which no evaluation may replace.
    """
    check_name("name", name, "the results file name, e.g. results_rram4")
    if name.startswith(".") or Path(name).name != name:
        raise SettingError("name", f"name {name!r} must be a plain file name without '/' or a leading '.', "
                                   "e.g. results_rram4")
    if name.lower() in RUN_FILES:
        raise SettingError("name", f"name {name!r} would replace the run's own {name}.json/.csv (written by neft "
                                   "train, even with overwrite); choose another, e.g. results_rram4")
    run_dir = Path(run_dir)
    plot = "accuracy_vs_sigma.png" if name == "results" else f"{name}_accuracy_vs_sigma.png"
    return [run_dir / f"{name}.json", run_dir / f"{name}.csv", run_dir / plot]


class UnfinishedRunWarning(UserWarning):
    """A run directory is evaluated before its training finished (fewer epochs in train_log.csv than planned)."""


_SWEEP_SUFFIXES = {"write_verify": "wv", "drift_time": "t"}  # result-file name suffix of each swept setting


def sweep_names(name: str, **axes: list) -> list[tuple[str, dict]]:
    """The result files of a sweep: ``(base name, {setting: value})`` for every combination of the swept values,
    e.g. ``sweep_names("results", write_verify=[0, 0.05], drift_time=[None])`` -> ``[("results_wv0",
    {...}), ("results_wv0.05", {...})]``; a setting with several values adds ``_wv{fraction:g}`` (write_verify)
    or ``_t{seconds:g}`` (drift_time) to ``name``.

    Raises:
        SettingError: naming the swept setting, for two of its values that would write the same file (a value
            given twice, or two that agree to 6 significant digits), or a ``name`` that is not a plain file name.
    """
    for setting, values in axes.items():
        seen: dict[str, object] = {}
        for value in values if len(values) > 1 else []:
            text = f"{value:g}"
            if text in seen:
                raise SettingError(setting, f"the {setting} values {seen[text]!r} and {value!r} would both write "
                                            f"{name}_{_SWEEP_SUFFIXES[setting]}{text}.json; give each value once")
            seen[text] = value
    points = []
    for values in itertools.product(*axes.values()):
        suffix = "".join(f"_{_SWEEP_SUFFIXES[setting]}{value:g}" for setting, value in zip(axes, values)
                         if len(axes[setting]) > 1)
        output_paths(".", name + suffix)
        points.append((name + suffix, dict(zip(axes, values))))
    return points


def check_outputs(run_dir: str | Path, names: list[str], overwrite: bool = False) -> None:
    """Refuse, before any Monte Carlo work, result files that exist (unless ``overwrite``) or cannot be written.

    Raises:
        FileExistsError: one of the files of :func:`output_paths` exists and ``overwrite`` is False.
        SettingError: a ``name`` that is not a plain file name.
    """
    for name in names:
        for path in output_paths(run_dir, name):
            if path.exists() and not overwrite:
                raise FileExistsError(f"{str(path)!r} already exists; replace it with overwrite=True "
                                      "(--overwrite) or keep both with another name (--name)")


def finished_points(run_dir: str | Path, sweep: dict[str, EvalConfig], label: str | None = None) -> list[str]:
    """The points of a sweep (``{name: settings}``, :func:`sweep_names`) that an earlier run of the same sweep
    finished: all three result files of the name exist and its ``{name}.json`` records the same evaluation settings
    (resolved as :func:`evaluate_run` resolves them), the same number of trained epochs of the run and, when
    ``label`` is given, that label. An interrupted sweep keeps these and evaluates only the others; a point made
    with other settings is not finished (its files block the sweep unless overwritten)."""
    finished = []
    for name, config in sweep.items():
        outputs = output_paths(run_dir, name)
        if not all(path.is_file() for path in outputs):
            continue
        try:
            saved = json.loads(outputs[0].read_text())
            wanted = json.loads(json.dumps(_resolved(config, saved["train_sigma"],
                                                     saved["train_device_model"]).to_dict()))
        except (OSError, ValueError, KeyError, TypeError):  # unreadable or another schema: not this sweep's point
            continue
        if (saved.get("evaluation") == wanted and saved.get("epochs_trained") == epochs_trained(run_dir)
                and (label is None or saved.get("label") == label)):
            finished.append(name)
    return finished


def _trained_normalisation(dataset: data.ImageDataset, stats: dict | None) -> data.ImageDataset:
    """``dataset`` normalised with the mean/std the network was trained with: the data set's own (then a warning
    when the training split now gives other numbers: the data set's files changed since training), or the one
    stated when its weights were imported (``stats["normalisation"]`` ``"none"`` or ``"given"``,
    :mod:`neft.data.normalisation`)."""
    if not stats or (tuple(stats["mean"]), tuple(stats["std"])) == (dataset.mean, dataset.std):
        return dataset
    if stats.get("normalisation", "dataset") == "dataset":
        warnings.warn(f"the training split of {dataset.name} now has mean {dataset.mean} and std {dataset.std}, the "
                      f"run was trained with {tuple(stats['mean'])} and {tuple(stats['std'])}: its files changed "
                      "since training; evaluating with the trained normalisation", UserWarning, stacklevel=3)
    return dataclasses.replace(dataset, mean=tuple(stats["mean"]), std=tuple(stats["std"]))


def evaluate_run(
    run_dir: str | Path,
    config: EvalConfig | None = None,
    *,
    data_dir: str | None = None,
    device: str = "auto",
    name: str = "results",
    label: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
    model: torch.nn.Module | None = None,
    **settings,
) -> dict:
    """Monte Carlo evaluation of a trained run directory; writes ``{name}.json``, ``{name}.csv`` and the plot
    (:func:`output_paths`) into it.

    Args:
        run_dir: a directory written by ``neft train`` (:func:`neft.training.trainer.train`).
        config: evaluation settings (:class:`neft.evaluation.montecarlo.EvalConfig`); ``settings`` keywords override its
            fields, e.g. ``evaluate_run(run, sigmas="0:0.4:0.1", runs=100)``. ``sigmas=None`` evaluates 0 and the
            training sigma; ``device_model=None`` the device model the run was trained with; ``test_subset=None``
            the full test set. ``write_verify > 0`` with ``verify_select="swim"`` (or ``"swim-release"``)
            computes the sensitivity on ``SENSITIVITY_IMAGES`` = 1024 training images (a draw seeded by ``seed``,
            no augmentation); ``recalibrate_bn`` / ``chip_tune`` draw on ``FIX_IMAGES`` = 4096 training images
            (a draw seeded by ``seed``, no augmentation; at least ``recalibrate_bn``).
            ``test_subset=None`` (or one at least the test set's size, with a warning) evaluates on the **full test
            set**, also for a run trained with a ``test_subset`` (results.json: ``test_set``, ``test_size``).
            ``dac_bits``/``adc_bits`` calibrate their ranges on ``CALIBRATION_IMAGES`` = 256 training images, a
            shuffled draw seeded by ``seed`` (:func:`neft.chip.circuit.calibration_sample`, recorded as
            ``calibration``; :meth:`neft.chip.circuit.Circuit.calibrate`).
        data_dir: folder holding the data set (default: the run's, then ``$NEFT_DATA``, then /usr/share/datasets).
        device: torch device to evaluate on: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``.
        name: base name of the result files, so several evaluations of one run can coexist.
        label: the name reports give this result (default: the run's method variant, e.g. ``ovf beta=0``).
        overwrite: replace existing result files of the same name.
        progress: show a tqdm bar over runs.
        model: the module to load the trained weights into (:func:`neft.store.checkpoint.load_checkpoint`); needed only
            for a run whose network was handed to :func:`neft.training.trainer.train` in Python.

    Returns:
        The results dict (the ``results.json`` schema, every field in docs/results.md; accuracy in percent), with
        ``epochs`` (planned), ``epochs_trained`` (done, from train_log.csv) and ``checkpoint_epoch`` (the epoch
        evaluated). A run that trained fewer epochs than planned is evaluated with an
        :class:`UnfinishedRunWarning`.

    Raises:
        FileNotFoundError: no checkpoint in ``run_dir`` or a missing data set.
        FileExistsError: one of the three result files exists and ``overwrite`` is False;
            :class:`~neft.store.lock.RunLockedError` another process is training or evaluating ``run_dir``.
        OSError: ``run_dir`` cannot be written (checked before the Monte Carlo work), or a write failed (full
            disk); no partial result file is left behind (:func:`neft.store.lock.disk_error` names the folder).
        SettingError: (a ``ValueError``) an invalid setting (see :class:`~neft.evaluation.montecarlo.EvalConfig`), a
            ``name`` that is not a plain file name, or a data set whose classes are not those the run was trained
            with (:func:`neft.data.check_classes`: a class folder renamed, removed or added since).
    """
    run_dir = Path(run_dir)
    config = replace_given(config or EvalConfig(), **settings)
    _check_request(run_dir, config, name, label)
    with runlock.hold(run_dir, "neft evaluate"):  # one writer per run directory
        return _evaluate_run(run_dir, config, data_dir, device, name, label, overwrite, progress, model)


def _check_request(run_dir: Path, config: EvalConfig, name: str, label: str | None) -> None:
    """Refuse, before the run directory is locked, a bad ``label``, ``name`` or setting, or a folder that holds no
    run.

    Raises:
        SettingError: a ``label`` that is not a non-empty line of text, a ``name`` that is not a plain file name, or
            an invalid setting.
        FileNotFoundError: no checkpoint in ``run_dir``.
    """
    if label is not None:
        check_name("label", label, "the name reports give this result")
    output_paths(run_dir, name)
    config.check()
    checkpoint.checkpoint_path(run_dir)  # no lock file beside a folder that holds no run


def _evaluate_run(run_dir: Path, config: EvalConfig, data_dir, device, name, label, overwrite, progress,
                  model) -> dict:
    """:func:`evaluate_run` once the run directory's lock is held."""
    outputs = output_paths(run_dir, name)
    compute = distributed.setup(resolve_device(device))

    def prepare():
        check_outputs(run_dir, [name], overwrite)
        if distributed.is_main():
            runlock.check_writable(run_dir)  # before the Monte Carlo work, not after it
        network, meta = checkpoint.load_checkpoint(run_dir, map_location=compute, model=model)
        chosen = _resolved(config, meta["sigma"], meta["device_model"])
        dataset = data.load(meta["dataset"], data_dir or meta["config"].get("data_dir"), seed=config.seed,
                            image_size=meta["config"].get("image_size"))
        data.check_classes(dataset, meta.get("dataset_stats"), f"run {run_dir}")
        dataset = _trained_normalisation(dataset, meta.get("dataset_stats"))
        chosen = _whole_test_set(chosen, dataset)
        return network, meta, chosen, data.with_test_subset(dataset, chosen.test_subset, config.seed)

    model, meta, chosen, dataset = distributed.agree(prepare)
    planned, trained = meta["config"].get("epochs"), epochs_trained(run_dir)
    if distributed.is_main() and trained is not None and planned and trained < planned:
        warnings.warn(f"{run_dir} trained {trained} of its {planned} epochs (training stopped early): evaluating "
                      f"the best checkpoint so far (epoch {meta.get('epoch')}); finish it with `neft train --resume "
                      f"--out {run_dir}` for the final network", UnfinishedRunWarning, stacklevel=2)
    if distributed.is_main():
        _warn_other_circuit(run_dir, meta["config"], chosen)
    images = torch.cat([x for x, _ in dataset.batches("test", chosen.batch_size, device=compute)])
    labels = dataset.splits["test"][1].to(compute)
    drawn, calibration = _training_images(dataset, chosen, compute)
    evaluation = evaluate(model, images, labels, config=chosen, label=meta.get("label") if label is None else label,
                          progress=progress and distributed.is_main(), **drawn)
    results = {**_results_record(evaluation, run_dir, meta, chosen, planned, trained, dataset),
               "calibration": calibration}
    if distributed.is_main():
        label, chip = reporting.result_label(results), reporting.evaluated_chip(results)
        where = "" if label.endswith(f"evaluated on {chip})") else f", evaluated on {chip}"
        _write_outputs(results, outputs, f"{label} ({run_dir.name}{where})")
    return results


class CircuitMismatchWarning(UserWarning):
    """A run trained through the crossbar circuit is evaluated without it, or through another one."""


def _whole_test_set(chosen: EvalConfig, dataset: data.ImageDataset) -> EvalConfig:
    """``chosen`` with ``test_subset`` None when it is at least the size of ``dataset``'s full test split: the full
    test set is evaluated and recorded as such (``test_set`` ``"full"``), with a warning (main rank) that says so."""
    size = dataset.size("test")
    if chosen.test_subset is None or chosen.test_subset < size:
        return chosen
    if distributed.is_main():
        warnings.warn(f"test_subset={chosen.test_subset} is at least the {size} images of the {dataset.name} test "
                      "set: evaluating the full test set", stacklevel=5)
    return replace_given(chosen, test_subset=None)


def _warn_other_circuit(run_dir: Path, trained: dict, chosen: EvalConfig) -> None:
    """Say (:class:`CircuitMismatchWarning`) that a run trained through the crossbar circuit (its config.json's
    ``tile_rows`` ... ``adc_mode``) is evaluated without it or through another one: its numbers are then those of
    another chip than it learnt on, and its labels say ``trained on X, evaluated on Y``."""
    default = CircuitSettings()
    train = CircuitSettings(**{name: trained.get(name, getattr(default, name)) for name in CIRCUIT_FIELDS})
    evaluated = CircuitSettings(**{name: getattr(chosen, name) for name in CIRCUIT_FIELDS})
    differ = [name for name in CIRCUIT_FIELDS if getattr(train, name) != getattr(evaluated, name)]
    if not train.label() or not differ:
        return
    flags = " ".join(f"--{name.replace('_', '-')} {getattr(train, name)}" for name in differ)
    warnings.warn(f"{run_dir} was trained through the crossbar circuit{train.label()} and is evaluated "
                  f"{'through' + evaluated.label() if evaluated.label() else 'without it'}: its accuracy is that of "
                  f"another chip than it learnt on (labels say so); evaluate with {flags} for the chip it was "
                  "trained for", CircuitMismatchWarning, stacklevel=4)


def _resolved(config: EvalConfig, train_sigma: float, train_device_model) -> EvalConfig:
    """``config`` as :func:`evaluate_run` runs it for a network trained at ``train_sigma`` on ``train_device_model``
    (a name, file or dict): ``sigmas`` None becomes 0 and the training sigma, ``device_model`` None the trained
    one (a chip preset's with the preset's circuit); checked.

    Raises:
        SettingError: an invalid setting.
    """
    sigmas = config.sigmas if config.sigmas is not None else [0.0, train_sigma]
    model = config.device_model or train_device_model  # a chip preset by name: its circuit comes with it
    model = model if chip_preset(model) else devices.get(model)
    return replace_given(config, sigmas=sigmas, device_model=model).check()


def check_network_settings(model: torch.nn.Module, config: EvalConfig, dataset: data.ImageDataset,
                           train_sigma: float, train_device_model) -> None:
    """Refuse, before a network is trained, evaluation settings that :func:`evaluate_run` of its run could only
    refuse after the training: ``config`` resolved for the run (:func:`_resolved`) and checked against ``model``
    (trained or not) with the training images of ``dataset`` the evaluation would use
    (:func:`neft.evaluation.montecarlo.check_network`), on the CPU.

    Raises:
        SettingError: naming the setting, e.g. ``recalibrate_bn`` for a model without BatchNorm or
            ``chip_tune_taps`` that the model lacks.
    """
    chosen = _resolved(config, train_sigma, train_device_model)
    drawn, _ = _training_images(dataset, chosen, torch.device("cpu"))
    check_network(model, chosen, **drawn)


def _training_images(dataset: data.ImageDataset, chosen: EvalConfig,
                     compute: torch.device) -> tuple[dict, dict | None]:
    """The training images the evaluation's options draw on, as keywords of
    :func:`neft.evaluation.montecarlo.evaluate` (None where an option is off): SWIM's sensitivity images and labels
    (``SENSITIVITY_IMAGES``, a draw seeded by the verify seed), the converters' calibration images (
    ``CALIBRATION_IMAGES``, a draw seeded by the calibration seed, :func:`neft.chip.circuit.calibration_sample`) and
    the per-chip fixes' images and labels (``FIX_IMAGES`` or ``recalibrate_bn``, a draw seeded by the fix seed); and
    the calibration sample's record (None without a DAC or ADC)."""
    sensitivity_images = sensitivity_labels = None
    if chosen.write_verify > 0 and chosen.verify_select.startswith("swim"):  # SWIM's derivatives on training images
        sensitivity_images, sensitivity_labels = next(dataset.batches(
            "train", SENSITIVITY_IMAGES, shuffle=True, device=compute,
            generator=make_generator(verify_seed(chosen.seed))))
    calibration_images = calibration = None
    if settings_of(chosen).calibrated:  # converter ranges from clean training images
        calibration_images, calibration = calibration_sample(dataset, chosen.seed, compute)
    fix_images = fix_labels = None
    if chosen.recalibrate_bn or chosen.chip_tune:  # the per-chip fixes' training images (neft.deployment.fixes)
        fix_images, fix_labels = next(dataset.batches(
            "train", max(FIX_IMAGES, chosen.recalibrate_bn), shuffle=True, device=compute,
            generator=make_generator(fix_seed(chosen.seed))))
    return {"sensitivity_images": sensitivity_images, "sensitivity_labels": sensitivity_labels,
            "calibration_images": calibration_images, "fix_images": fix_images, "fix_labels": fix_labels}, calibration


def _results_record(evaluation: dict, run_dir: Path, meta: dict, chosen: EvalConfig, planned: int | None,
                    trained: int | None, dataset: data.ImageDataset) -> dict:
    """The results dict of :func:`evaluate_run`: the evaluation's fields and the run's (network, data set and the
    normalisation its images were given, how it was trained and for how many epochs, the evaluation's seed and
    runs, library versions)."""
    return {
        **evaluation,
        "run": str(run_dir), "model": meta["model"]["name"], "width": meta["model"]["width"],
        "dataset": meta["dataset"], "num_classes": meta["model"]["num_classes"], "method": meta["method"],
        "normalisation": {"source": (meta.get("dataset_stats") or {}).get("normalisation", "dataset"),
                          "mean": list(dataset.mean), "std": list(dataset.std)},
        "train_sigma": 0.0 if meta["method"] == "vanilla" else meta["sigma"],  # vanilla trains without variation
        "train_seed": meta["seed"], "beta": meta["beta"],
        "train_device_model": meta["device_model"],
        "train_circuit": {name: meta["config"].get(name, getattr(CircuitSettings(), name)) for name in CIRCUIT_FIELDS},
        "temperature": meta.get("temperature", 1.0), **objectives.settings_of(meta["method"], meta["config"]),
        "init": meta["config"].get("init", "kaiming"), "teacher_sha256": meta.get("teacher_sha256"),
        "epochs": planned, "epochs_trained": trained, "checkpoint_epoch": meta.get("epoch"),
        "train_subset": meta["config"].get("train_subset"),
        "test_set": "full" if chosen.test_subset is None else "subset",
        "seed": chosen.seed, "runs": chosen.runs, "ci_target": chosen.ci_target,
        "versions": checkpoint.versions(),
        **({"model_source": {**meta["model"]["source"], "changed": meta["model"]["source_changed"]},
            "model_args": meta["model"].get("args")} if meta["model"].get("source") else {}),
    }


def _write_outputs(results: dict, outputs: list[Path], title: str) -> None:
    """Write the CSV, the plot and then the JSON of :func:`output_paths` all or none
    (:func:`neft.store.lock.staged_writes`): a results.json marks a finished evaluation, and a failed write (full
    disk) leaves no file behind that would block the same command's rerun."""
    with runlock.staged_writes() as stage:
        reporting.write_csv(reporting.comparison_rows([results]), stage(outputs[1]))
        reporting.plot([results], stage(outputs[2]), title=title)
        stage(outputs[0]).write_text(json.dumps(results, indent=1))
