"""The RCG authors' search of the training-noise magnitude (docs/method.md, 'RCG: the authors' search').

Yan et al. (ICCAD 2023; their code, MariusAnje/CIM_CW ``search_SG.py``) hold the censoring point fixed and search
the magnitude of the training noise with a bounded interval search: a few iterations, several training runs per
candidate, each candidate scored by a worst-case measure. neft searches :class:`neft.training.objectives.RCG`'s
``rcg_scale`` in ``[low, high]`` by golden-section search (each new point shrinks the interval by the golden
ratio, 0.618), trains ``seeds`` networks per point, and scores a point by the mean over its seeds of a low
percentile (``p1`` or ``p5``) of the Monte Carlo accuracy over ``val_chips`` programmed chips at the training
sigma, on each run's **validation** split (the test set stays out of the choice). The authors score with a
PGD-style worst-case weight attack instead; neft uses the realistic worst case over random chips that RCG's paper
optimises.

Every network is an ordinary run directory ``out/scale{S}-seed{N}-{KEY}`` (resumable: finished runs are reused),
``KEY`` a digest of the search's other training settings (:func:`settings_key`), so a search with other settings
never reuses or relabels an earlier search's networks and scores; ``out/search.json`` / ``out/search.csv`` list
each point with its per-seed scores.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import math
from pathlib import Path

from neft import data
from neft.chip.chip_presets import replace_given
from neft.chip.circuit import calibration_sample
from neft.common.compute import resolve_device
from neft.common.errors import SettingError, check_count
from neft.store import checkpoint
from neft.training import TrainConfig, train
from neft.training.selection import _validation_size, chip_accuracy

__all__ = ["SCORES", "search", "settings_key"]

SCORES = ("p1", "p5")  # percentiles of the Monte Carlo accuracy over validation chips (metrics.accuracy_summary)
_GOLDEN = (math.sqrt(5) - 1) / 2


def _check(base: TrainConfig, low: float, high: float, points: int, seeds, score: str, val_chips: int) -> list[int]:
    """Refuse bad search settings before any training; returns the seeds as a list."""
    if base.method != "rcg":
        raise SettingError("method", f"the search trains rcg networks; got method {base.method!r}")
    for name, value in (("low", low), ("high", high)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise SettingError(name, f"{name} must be a finite training-noise scale > 0 (e.g. 0.5), got {value!r}")
    if high <= low:
        raise SettingError("high", f"high ({high:g}) must be larger than low ({low:g})")
    check_count("points", points, 2, "the golden-section search starts from two points")
    seeds = list(seeds)
    if not seeds:
        raise SettingError("seeds", "give at least one training seed per point, e.g. 0,1,2")
    for seed in seeds:
        check_count("seeds", seed, 0, "a seed is a non-negative integer")
    if score not in SCORES:
        raise SettingError("score", f"score must be one of {', '.join(SCORES)} (percentile of the accuracy over "
                                    f"validation chips), got {score!r}")
    check_count("val_chips", val_chips, 2, "percentiles over chips need at least two")
    for scale in (low, high):
        replace_given(base, rcg_scale=scale).check()
    return seeds


def settings_key(base: TrainConfig) -> str:
    """The first 8 hex digits of the SHA-256 of the training settings every network of a search shares: all
    :class:`TrainConfig` fields, checked (defaults filled in), but ``rcg_scale`` and ``seed`` (set per network) and
    where a run computes (``device``, ``data_dir``, ``tensorboard``).

    Raises:
        SettingError: an invalid setting of ``base``.
    """
    checked = dataclasses.asdict(replace_given(base).check())
    shared = {name: value for name, value in checked.items()
              if name not in {"rcg_scale", "seed"} | checkpoint.WHERE_SETTINGS}
    return hashlib.sha256(json.dumps(shared, sort_keys=True, default=str).encode()).hexdigest()[:8]


def _score_run(config: TrainConfig, run_dir: Path, score: str, val_chips: int, progress: bool) -> dict:
    """Train (or reuse) one network and score it on its validation split; cached in ``validation.json``."""
    cache = run_dir / "validation.json"
    if cache.is_file():
        cached = json.loads(cache.read_text())
        if cached.get("chips") == val_chips:
            return cached
    if not (run_dir / "summary.json").is_file():
        train(config, run_dir, resume=True, progress=progress)
    device = resolve_device(config.device)
    model = checkpoint.load(run_dir, map_location=device)
    dataset = data.load(config.dataset, config.data_dir, validation=_validation_size(config), seed=config.seed,
                        train_subset=config.train_subset, test_subset=1)
    images, labels = dataset.splits["val"]
    checked = replace_given(config).check()  # the chip the network trained for, a chip preset's circuit included
    calibration = calibration_sample(dataset, config.seed, device)[0] if checked.chip().circuit.calibrated else None
    accuracy = chip_accuracy(model, dataset.preprocess(images).to(device), labels.to(device), checked, val_chips,
                             calibration)
    entry = {"chips": val_chips, "mean": accuracy["mean"], "p1": accuracy["p1"], "p5": accuracy["p5"]}
    cache.write_text(json.dumps(entry, indent=1))
    return entry


def search(base: TrainConfig, out: str | Path, *, low: float = 0.5, high: float = 2.5, points: int = 5,
           seeds=(0, 1, 2), score: str = "p5", val_chips: int = 50, progress: bool = True) -> dict:
    """Golden-section search of rcg's training-noise scale at ``base.censor_k`` (module docstring).

    Args:
        base: the training settings of every network (method ``rcg``; its ``rcg_scale`` and ``seed`` are set by
            the search); the validation chips are drawn at ``base.sigma`` with ``base.device_model``.
        out: folder for the run directories and ``search.json`` / ``search.csv``.
        low, high: the interval of scales searched, 0 < low < high (training-noise magnitude as a multiple of the
            std at the training sigma; the authors' SG noise at th = 1 is about 1.5, docs/method.md).
        points: scales trained and scored in all (>= 2: two interior golden points, then one per shrink step).
        seeds: training seeds per point (>= 1).
        score: ``"p1"`` or ``"p5"``, the percentile (percent accuracy) of the validation chips scored.
        val_chips: Monte Carlo chips per network on its validation split (>= 2).
        progress: progress bars while training.

    Returns:
        ``{"settings" (with ``key``, :func:`settings_key`), "points": [{"scale", "runs" (the run directories'
        names in ``out``, one per seed), "scores", "score", "val_mean"}, ...] (in the order trained), "best":
        {"scale", "score"}}``, also written to ``out/search.json``; scales rounded to 4 significant digits.

    Raises:
        SettingError: (a ``ValueError``) naming a bad setting, before any training.
    """
    seeds = _check(base, low, high, points, seeds, score, val_chips)
    key = settings_key(base)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    scored: dict[float, dict] = {}

    def evaluate(scale: float) -> float:
        scale = float(f"{scale:.4g}")
        if scale not in scored:
            names = [f"scale{scale:g}-seed{seed}-{key}" for seed in seeds]
            runs = [_score_run(replace_given(base, rcg_scale=scale, seed=seed), out / name, score, val_chips,
                               progress) for seed, name in zip(seeds, names)]
            scored[scale] = {"scale": scale, "runs": names, "scores": [run[score] for run in runs],
                             "score": sum(run[score] for run in runs) / len(runs),
                             "val_mean": sum(run["mean"] for run in runs) / len(runs)}
        return scored[scale]["score"]

    a, b = float(low), float(high)
    c, d = b - _GOLDEN * (b - a), a + _GOLDEN * (b - a)
    fc, fd = evaluate(c), evaluate(d)
    for _ in range(points - 2):
        if fc >= fd:  # the maximum lies in [a, d]
            b, d, fd = d, c, fc
            c = b - _GOLDEN * (b - a)
            fc = evaluate(c)
        else:  # ... in [c, b]
            a, c, fc = c, d, fd
            d = a + _GOLDEN * (b - a)
            fd = evaluate(d)
    best = max(scored.values(), key=lambda point: point["score"])
    summary = {"settings": {"train": dataclasses.asdict(base), "key": key, "low": low, "high": high,
                            "points": points, "seeds": seeds, "score": score, "val_chips": val_chips},
               "points": list(scored.values()), "best": {"scale": best["scale"], "score": best["score"]}}
    (out / "search.json").write_text(json.dumps(summary, indent=1))
    _write_csv(out / "search.csv", list(scored.values()), score, seeds)
    return summary


def _write_csv(path: Path, points: list[dict], score: str, seeds: list[int]) -> None:
    """``search.csv``: one row per scored point, by scale: its score, validation mean and per-seed scores."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["scale", f"score_{score}", "val_mean", *[f"{score}_seed{seed}" for seed in seeds]])
        for point in sorted(points, key=lambda p: p["scale"]):
            writer.writerow([point["scale"], f"{point['score']:.3f}", f"{point['val_mean']:.3f}",
                             *[f"{v:.3f}" for v in point["scores"]]])
