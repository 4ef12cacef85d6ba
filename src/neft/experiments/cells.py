"""The cells of a preset's grid (docs/presets.md): which (variant, training sigma, seed) cells a preset holds, the
run directory name of each, and each cell's training and evaluation settings.

Each grid cell (method, training sigma, seed) is one run directory ``out/METHOD-sSIGMA-seedSEED``. Settings of one
method in ``[train]`` apply to that method's cells only; ``teacher = "vanilla"`` gives each distill cell the vanilla
cell of its seed as teacher. The vanilla cells are evaluated over every sigma, the others at their own training
sigma, or over every sigma with ``sweep`` (docs/method.md, 'Protocol').
"""

from __future__ import annotations

from pathlib import Path

from neft.evaluation import EvalConfig
from neft.training import TrainConfig, objectives, variants

__all__ = ["cell_name", "SAME_SEED_VANILLA"]


def cell_name(spec: str, sigma: float, seed: int) -> str:
    """Run directory name of one grid cell, e.g. ``ovf-s0.35-seed0`` or ``ovf_beta=0-s0.35-seed0``."""
    return f"{variants.directory_name(spec)}-s{sigma:g}-seed{seed}"


# [train] settings that belong to one method: the other methods' cells ignore them
_METHOD_SETTINGS = {name: owner for name, (owner, *_) in objectives.METHOD_SETTINGS.items()}
_METHOD_SETTINGS["teacher"] = "distill"
_METHOD_SETTINGS["taps"] = "irs"  # the IRS snapshot points
SAME_SEED_VANILLA = "vanilla"  # [train] teacher = "vanilla": each distill cell learns from the vanilla cell of its seed


def _train_config(preset: dict, spec: str, sigma: float, seed: int, out: Path | None = None) -> TrainConfig:
    """The TrainConfig of one cell: the [train] table (settings of other methods dropped), the preset's betas, then
    the variant's own settings. ``teacher = "vanilla"`` becomes the vanilla cell of the same seed under ``out``
    (None while the preset is only being checked)."""
    method, overrides = variants.parse(spec)
    table = {key: value for key, value in preset["train"].items() if _METHOD_SETTINGS.get(key, method) == method}
    betas = {"ovf": table.pop("beta_ovf", None), "irs": table.pop("beta_irs", None)}
    if method in betas and betas[method] is not None:
        table["beta"] = betas[method]
    if table.get("teacher") == SAME_SEED_VANILLA:
        table["teacher"] = str(out / cell_name("vanilla", 0.0, seed)) if out is not None else None
    table.update(overrides)
    return TrainConfig(method=method, sigma=0.0 if method == "vanilla" else sigma, seed=seed, **table)


def _teacher_cells(preset: dict) -> list[tuple[str, float, int]]:
    """The vanilla cells that distill cells learn from (``teacher = "vanilla"``): they run before the others."""
    if preset["train"].get("teacher") != SAME_SEED_VANILLA:
        return []
    return [cell for cell in _cells(preset) if _is_vanilla(cell[0])]


def _is_vanilla(spec: str) -> bool:
    return variants.parse(spec)[0] == "vanilla"


def _cells(preset: dict) -> list[tuple[str, float, int]]:
    """(variant, training sigma, seed) of every grid cell; vanilla once per seed (it trains without variation)."""
    experiment = preset["experiment"]
    cells = []
    for seed in experiment["seeds"]:
        for spec in experiment["methods"]:
            for sigma in [0.0] if _is_vanilla(spec) else experiment["train_sigmas"]:
                cells.append((spec, float(sigma), int(seed)))
    return cells


def _eval_sigmas(preset: dict, spec: str, sigma: float) -> list[float]:
    evaluate = preset["evaluate"]
    if _is_vanilla(spec):  # swept, and always at sigma 0, where it is compared over seeds
        return sorted(set(evaluate["sigmas"]) | {0.0})
    if evaluate.get("sweep", False):  # always the training sigma too: the comparison over seeds is made there
        return sorted(set(evaluate["sigmas"]) | {sigma})
    return [sigma]


def _eval_config(preset: dict, spec: str, sigma: float) -> EvalConfig:
    """The checked evaluation settings of one cell: the [evaluate] table with the cell's sigmas."""
    table = {key: value for key, value in preset["evaluate"].items() if key != "sweep"}
    return EvalConfig(**{**table, "sigmas": _eval_sigmas(preset, spec, sigma)}).check()
