"""Run directories: Monte Carlo evaluation of a trained run and its result files (docs/results.md).

:func:`evaluate_run` reads what ``neft train`` wrote (checkpoint, data set, device model), hands tensors to the
engine (:func:`neft.montecarlo.evaluate`) and writes ``{name}.json``, ``{name}.csv`` and the accuracy-vs-sigma plot
back into the run directory. ``neft evaluate RUN_DIR`` is this function.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import torch

from . import checkpoint, data, devices, distributed, objectives, report
from .circuit import CALIBRATION_IMAGES
from .compute import resolve_device
from .errors import SettingError
from .montecarlo import EvalConfig, evaluate
from .seeds import verify_seed
from .variation import make_generator

__all__ = ["evaluate_run", "output_paths", "SENSITIVITY_IMAGES"]

SENSITIVITY_IMAGES = 1024  # training images (a seeded draw) for verify_select="swim" (neft.writeverify)


def output_paths(run_dir: str | Path, name: str = "results") -> list[Path]:
    """``[{name}.json, {name}.csv, plot]`` in ``run_dir``; the plot is ``accuracy_vs_sigma.png`` for the default
    name and ``{name}_accuracy_vs_sigma.png`` otherwise.

    Raises:
        SettingError: ``name`` is not a plain file name (has a ``/`` or starts with ``.``).
    """
    if not name or name.startswith(".") or Path(name).name != name:
        raise SettingError("name", f"name {name!r} must be a plain file name without '/' or a leading '.', "
                                   "e.g. results_rram4")
    run_dir = Path(run_dir)
    plot = "accuracy_vs_sigma.png" if name == "results" else f"{name}_accuracy_vs_sigma.png"
    return [run_dir / f"{name}.json", run_dir / f"{name}.csv", run_dir / plot]


def _trained_normalisation(dataset: data.ImageDataset, stats: dict | None) -> data.ImageDataset:
    """``dataset`` normalised with the mean/std the network was trained with; a warning when the training split
    now gives other numbers (the data set's files changed since training)."""
    if not stats or (tuple(stats["mean"]), tuple(stats["std"])) == (dataset.mean, dataset.std):
        return dataset
    warnings.warn(f"the training split of {dataset.name} now has mean {dataset.mean} and std {dataset.std}, the run "
                  f"was trained with {tuple(stats['mean'])} and {tuple(stats['std'])}: its files changed since "
                  "training; evaluating with the trained normalisation", UserWarning, stacklevel=3)
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
        run_dir: a directory written by ``neft train`` (:func:`neft.train.train`).
        config: evaluation settings (:class:`neft.montecarlo.EvalConfig`); ``settings`` keywords override its
            fields, e.g. ``evaluate_run(run, sigmas="0:0.4:0.1", runs=100)``. ``sigmas=None`` evaluates 0 and the
            training sigma; ``device_model=None`` the device model the run was trained with; ``test_subset=None``
            the full test set. ``write_verify > 0`` with ``verify_select="swim"`` computes the sensitivity on
            ``SENSITIVITY_IMAGES`` = 1024 training images (a draw seeded by ``seed``, no augmentation);
            ``dac_bits``/``adc_bits`` calibrate their ranges on the first ``CALIBRATION_IMAGES`` = 256 training
            images (:meth:`neft.circuit.Circuit.calibrate`).
        data_dir: folder holding the data set (default: the run's, then ``$NEFT_DATA``, then /usr/share/datasets).
        device: torch device to evaluate on: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``.
        name: base name of the result files, so several evaluations of one run can coexist.
        label: the name reports give this result (default: the run's method variant, e.g. ``ovf beta=0``).
        overwrite: replace existing result files of the same name.
        progress: show a tqdm bar over runs.
        model: the module to load the trained weights into (:func:`neft.checkpoint.load_checkpoint`); needed only
            for a run whose network was handed to :func:`neft.train.train` in Python.

    Returns:
        The results dict (the ``results.json`` schema, every field in docs/results.md; accuracy in percent).

    Raises:
        FileNotFoundError: no checkpoint in ``run_dir`` or a missing data set.
        FileExistsError: one of the three result files exists and ``overwrite`` is False.
        SettingError: (a ``ValueError``) an invalid setting (see :class:`~neft.montecarlo.EvalConfig`) or a
            ``name`` that is not a plain file name.
    """
    run_dir = Path(run_dir)
    config = dataclasses.replace(config or EvalConfig(), **settings)
    outputs = output_paths(run_dir, name)
    compute = distributed.setup(resolve_device(device))

    def prepare():
        config.check()
        for path in outputs:
            if path.exists() and not overwrite:
                raise FileExistsError(f"{str(path)!r} already exists; replace it with overwrite=True "
                                      "(--overwrite) or keep both with another name (--name)")
        network, meta = checkpoint.load_checkpoint(run_dir, map_location=compute, model=model)
        chosen = dataclasses.replace(config, sigmas=config.sigmas if config.sigmas is not None else [0.0, meta["sigma"]],
                                     device_model=devices.get(config.device_model or meta["device_model"]))
        dataset = data.load(meta["dataset"], data_dir or meta["config"].get("data_dir"), seed=config.seed,
                            test_subset=config.test_subset, image_size=meta["config"].get("image_size"))
        dataset = _trained_normalisation(dataset, meta.get("dataset_stats"))
        return network, meta, chosen.check(), dataset

    model, meta, chosen, dataset = distributed.agree(prepare)
    images = torch.cat([x for x, _ in dataset.batches("test", chosen.batch_size, device=compute)])
    labels = dataset.splits["test"][1].to(compute)
    sensitivity_images = None
    if chosen.write_verify > 0 and chosen.verify_select == "swim":  # SWIM's second derivatives on training images
        sensitivity_images = next(dataset.batches("train", SENSITIVITY_IMAGES, shuffle=True, device=compute,
                                                  generator=make_generator(verify_seed(chosen.seed))))[0]
    calibration_images = None
    if chosen.dac_bits is not None or chosen.adc_bits is not None:  # converter ranges from clean training images
        calibration_images = next(dataset.batches("train", CALIBRATION_IMAGES, device=compute))[0]
    evaluation = evaluate(model, images, labels, config=chosen, label=meta.get("label") if label is None else label,
                          progress=progress and distributed.is_main(), sensitivity_images=sensitivity_images,
                          calibration_images=calibration_images)
    results = {
        **evaluation,
        "run": str(run_dir), "model": meta["model"]["name"], "width": meta["model"]["width"],
        "dataset": meta["dataset"], "num_classes": meta["model"]["num_classes"], "method": meta["method"],
        "train_sigma": meta["sigma"], "train_seed": meta["seed"], "beta": meta["beta"],
        "train_device_model": meta["device_model"],
        "temperature": meta.get("temperature", 1.0), **objectives.settings_of(meta["method"], meta["config"]),
        "init": meta["config"].get("init", "kaiming"),
        "epochs": meta["config"].get("epochs"), "train_subset": meta["config"].get("train_subset"),
        "seed": chosen.seed, "runs": chosen.runs, "ci_target": chosen.ci_target,
        "versions": checkpoint.versions(),
        **({"model_source": {**meta["model"]["source"], "changed": meta["model"]["source_changed"]},
            "model_args": meta["model"].get("args")} if meta["model"].get("source") else {}),
    }
    if not distributed.is_main():
        return results
    report.write_csv(report.comparison_rows([results]), outputs[1])
    report.plot([results], outputs[2], title=f"{report.result_label(results)} ({run_dir.name})")
    partial = outputs[0].with_suffix(".json.tmp")  # written last and whole: a results.json marks a finished evaluation
    partial.write_text(json.dumps(results, indent=1))
    partial.replace(outputs[0])
    return results
