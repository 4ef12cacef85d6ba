"""Presets: the TOML files ``neft reproduce`` runs (see ``configs/`` and docs/presets.md), read and checked before
any training.

A preset has three tables:

- ``[experiment]``: ``out``, ``methods`` (method names or variants such as ``"noise-injection T=4"``,
  ``"ovf beta=0"``, ``"noise-injection init=torch"``, see :mod:`neft.training.variants`), ``train_sigmas``, ``seeds``,
  and optional ``title`` and ``notes`` (a paragraph placed under the report's title);
- ``[train]``: any :class:`neft.training.trainer.TrainConfig` field except method, sigma and seed (model, dataset,
  epochs ...); ``beta_ovf`` / ``beta_irs`` override the paper's betas (docs/method.md, 'Negative feedback loss');
  settings of one method (``censor_k``, ``lipschitz_lambda``, ``teacher``, ``distill_alpha``,
  ``distill_temperature``) apply to that method's cells only, and ``teacher = "vanilla"`` gives each distill cell
  the vanilla cell of its seed as teacher (the vanilla cells then run first; with ``--shard`` they must be finished
  before the distill cells);
- ``[evaluate]``: any :class:`neft.evaluation.config.EvalConfig` field (``runs``, ``sigmas`` as a list or
  ``"start:stop:step"``, ``seed``, ``device_model``, ``test_subset``, ``ci_target``, ``batch_size``,
  ``precision``, ``chips_per_pass``, ``memory_format``, ``compile`` ...), with the same defaults as
  ``neft evaluate``, and ``sweep`` (evaluate every model at every sigma; default false = the paper's protocol,
  docs/method.md, 'Protocol': each noise-aware model at its own training sigma and the vanilla model over all
  sigmas).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover
    import tomli as tomllib

from neft import data, models
from neft.chip.device_checks import check_sigma
from neft.evaluation import EvalConfig, parse_sigmas
from neft.experiments.cells import SAME_SEED_VANILLA, _eval_config, _train_config
from neft.runs.evaluate import check_network_settings
from neft.training import TrainConfig, variants

__all__ = ["load_preset"]

_SECTIONS = {"experiment": {"out", "methods", "train_sigmas", "seeds", "title", "notes"},
             "train": {f.name for f in dataclasses.fields(TrainConfig)} - {"method", "sigma", "seed"}
             | {"beta_ovf", "beta_irs"},
             "evaluate": {f.name for f in dataclasses.fields(EvalConfig)} | {"sweep"}}


def _check_preset(preset: dict, source: str) -> dict:
    """Validate a preset's keys and values before any training; returns it with defaults filled."""
    _check_tables(preset, source)
    experiment = preset.setdefault("experiment", {})
    preset.setdefault("train", {})
    evaluate = preset.setdefault("evaluate", {})
    experiment.setdefault("methods", ["vanilla", "noise-injection", "ovf", "irs"])
    experiment.setdefault("seeds", [0])
    _check_experiment(experiment, source)
    if not isinstance(evaluate.get("sweep", False), bool):
        raise ValueError(f"{source}: [evaluate] sweep must be true or false, got {evaluate['sweep']!r}")
    _check_methods(preset, source)
    _check_train_settings(preset, source)
    try:
        evaluate["sigmas"] = parse_sigmas(evaluate.get("sigmas", experiment["train_sigmas"]))
        _eval_config(preset, experiment["methods"][0], experiment["train_sigmas"][0])
    except ValueError as error:
        raise ValueError(f"{source}: [evaluate] {getattr(error, 'setting', '')}: {error}") from None
    train_table = preset["train"]
    dataset = data.load(train_table.get("dataset", TrainConfig.dataset), train_table.get("data_dir"), test_subset=1,
                        image_size=train_table.get("image_size"))
    _check_networks(preset, dataset, source)
    return preset


def _check_networks(preset: dict, dataset: data.ImageDataset, source: str) -> None:
    """Refuse [evaluate] settings that the cells' networks cannot satisfy (e.g. ``recalibrate_bn`` for a model
    without BatchNorm, ``chip_tune_taps`` a model lacks), which the evaluation would refuse only after the first
    cell trained: each distinct network of the methods is built untrained and checked
    (:func:`neft.runs.evaluate.check_network_settings`)."""
    experiment = preset["experiment"]
    checked = set()
    for spec in experiment["methods"]:
        sigma = experiment["train_sigmas"][0]
        config = _train_config(preset, spec, sigma, experiment["seeds"][0])
        network = json.dumps([config.model, config.width, config.model_args, config.device_model], default=str)
        if network in checked:
            continue
        checked.add(network)
        model = models.create(config.model, dataset.num_classes, dataset.in_channels, config.width, config.init,
                              config.model_args)
        try:
            check_network_settings(model, _eval_config(preset, spec, sigma), dataset, config.sigma,
                                   config.device_model)
        except ValueError as error:
            raise ValueError(f"{source}: [evaluate] {getattr(error, 'setting', '')}: {error} (the {config.model} "
                             f"networks of [experiment] methods {spec!r}); every cell's evaluation would fail after "
                             "its training, so nothing was trained") from None


def _check_tables(preset: dict, source: str) -> None:
    """Refuse unknown tables and unknown keys in them."""
    unknown_sections = set(preset) - set(_SECTIONS)
    if unknown_sections:
        raise ValueError(f"{source}: unknown table(s) {sorted(unknown_sections)}; use {sorted(_SECTIONS)}")
    for section, keys in _SECTIONS.items():
        unknown = set(preset.get(section, {})) - keys
        if unknown:
            raise ValueError(f"{source}: unknown key(s) {sorted(unknown)} in [{section}]; valid: {sorted(keys)}")


def _check_experiment(experiment: dict, source: str) -> None:
    """Check the [experiment] lists: methods, training sigmas and seeds non-empty, seeds integers >= 0, sigmas valid,
    and no two values naming the same cell folder."""
    examples = {"methods": 'methods = ["vanilla", "ovf"]', "train_sigmas": "train_sigmas = [0.1, 0.2]",
                "seeds": "seeds = [0, 1, 2]"}
    for key, example in examples.items():
        if not experiment.get(key) or not isinstance(experiment[key], list):
            raise ValueError(f"{source}: [experiment] {key} is empty, missing or not a list; give a list of at "
                             f"least one value, e.g. {example}")
    bad_seeds = [seed for seed in experiment["seeds"]
                 if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0]
    if bad_seeds:
        raise ValueError(f"{source}: [experiment] seeds must be integers >= 0, got {bad_seeds}")
    for key in ("seeds", "train_sigmas"):  # two values naming one cell folder would share (and reuse) it
        for index, value in enumerate(experiment[key]):
            if key == "train_sigmas":
                try:
                    check_sigma(value, "sigma")
                except ValueError as error:
                    raise ValueError(f"{source}: [experiment] train_sigmas: {error}") from None
            folder = f"-seed{value}" if key == "seeds" else f"-s{value:g}"  # as cell_name() spells it
            same = [v for v in experiment[key][:index] if f"{v:g}" == f"{value:g}"]
            if same:
                raise ValueError(f"{source}: [experiment] {key} lists {same[0]!r} and {value!r}, which name the same "
                                 f"cell folders (*{folder}); give each value once")


def _check_methods(preset: dict, source: str) -> None:
    """Check the [experiment] methods: each a valid variant, each once, and IRS taps only with an irs variant."""
    experiment = preset["experiment"]
    for spec in experiment["methods"]:
        try:
            variants.parse(spec)
        except ValueError as error:
            raise ValueError(f"{source}: [experiment] methods: {error}") from None
    if len({variants.directory_name(spec) for spec in experiment["methods"]}) < len(experiment["methods"]):
        raise ValueError(f"{source}: [experiment] methods lists a variant twice: {experiment['methods']}")
    if preset["train"].get("taps") and not any(variants.parse(spec)[0] == "irs" for spec in experiment["methods"]):
        raise ValueError(f"{source}: [train] taps are the snapshot points of IRS, but [experiment] methods has no "
                         "irs variant; drop taps or add \"irs\"")


def _check_train_settings(preset: dict, source: str) -> None:
    """Check the training settings of every (training sigma, variant) with the first seed, and that no two variants
    train the same networks; with ``teacher = "vanilla"`` the teacher itself is checked once the vanilla cell is
    trained."""
    experiment, train_table = preset["experiment"], preset["train"]
    for sigma in experiment["train_sigmas"]:
        made: dict[str, str] = {}
        for spec in experiment["methods"]:
            try:
                config = json.dumps(dataclasses.asdict(
                    _train_config(preset, spec, sigma, experiment["seeds"][0]).check()))
            except ValueError as error:
                setting = getattr(error, "setting", None)
                if setting == "teacher" and train_table.get("teacher") == SAME_SEED_VANILLA:
                    if "vanilla" not in experiment["methods"]:
                        raise ValueError(f"{source}: [train] teacher = \"vanilla\" needs \"vanilla\" in "
                                         "[experiment] methods (each seed's vanilla cell is its teacher)") from None
                    # the teacher is checked once the vanilla cell is trained; the settings already were
                    config = json.dumps(dataclasses.asdict(_train_config(preset, spec, sigma, experiment["seeds"][0])))
                else:
                    where = ("[experiment] train_sigmas" if setting == "sigma" else
                             f"[train] {setting}" if setting in train_table else f"[experiment] methods {spec!r}")
                    hint = ("; in a preset, set [train] teacher = \"vanilla\" (each seed's vanilla cell teaches) or a "
                            "trained run directory" if setting == "teacher" and "teacher" not in train_table else "")
                    raise ValueError(f"{source}: {where}: {error}{hint}") from None
            if config in made:
                raise ValueError(f"{source}: [experiment] methods {made[config]!r} and {spec!r} train the same "
                                 "networks; list each variant once")
            made[config] = spec


def load_preset(path: str | Path) -> dict:
    """Read and validate a TOML preset (unknown keys, empty lists, bad values and a missing data set fail here).

    Raises:
        FileNotFoundError: no such file, or the data set is missing.
        ValueError: a parse error, unknown key or invalid value (the message names it).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"preset {str(path)!r} not found; see configs/ for examples")
    try:
        preset = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"cannot parse {str(path)!r}: {error}") from None
    preset.setdefault("experiment", {}).setdefault("out", f"runs/{path.stem}")
    return _check_preset(preset, str(path))
