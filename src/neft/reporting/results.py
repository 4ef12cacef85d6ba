"""Results files (``results.json``, docs/results.md): loading them from files and run directories, checking
that each is a result an evaluation can produce, and telling which two are the same evaluation.

Accuracy is Top-1 in percent, its error is the 95 % CI half-width ``1.96*std/sqrt(R)`` over R programmed chips,
EKL is the expected KL divergence reported as x1e-2 nats and confidence is the mean max softmax probability
(a fraction in [0, 1]), all as defined in docs/method.md, 'Monte Carlo evaluation and metrics'.
"""

from __future__ import annotations

import json
import math
import statistics
import warnings
from collections.abc import Sequence
from pathlib import Path

from neft.common.errors import check_name
from neft.reporting.result_fields import check_fields

__all__ = ["load_results", "check_result", "same_evaluation", "training_sigma", "accuracy_at", "RUN_FILES"]

RUN_FILES = ("config", "summary", "train_log")  # a run directory's own files: config.json, summary.json, train_log.csv

REQUIRED_KEYS = ("test_size", "per_sigma")
REQUIRED_POINT_KEYS = ("sigma", "runs", "accuracy", "ekl_x1e2", "confidence")
REQUIRED_ACCURACY_KEYS = ("mean", "std", "ci95", "min")


def _bad(path: Path, field: str, problem: str) -> ValueError:
    return ValueError(f"{path}: field {field} {problem}; this is not a result an evaluation writes (edited or "
                      "damaged?): re-evaluate the run (neft evaluate RUN --overwrite) or fix the field")


def _number(path: Path, field: str, value, low: float | None = None, high: float | None = None,
            integer: bool = False) -> None:
    """Refuse a results-file value that is not a finite number (an integer when ``integer``) in [low, high]."""
    kind = "an integer" if integer else "a finite number"
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)) or not math.isfinite(value):
        raise _bad(path, field, f"is {value!r}, not {kind}")
    if (low is not None and value < low) or (high is not None and value > high):
        where = f">= {low:g}" if high is None else f"in [{low:g}, {high:g}]"
        raise _bad(path, field, f"is {value!r}, outside {where}")


def check_result(result, path: str | Path = "a result") -> dict:
    """Return ``result`` after checking it is a results dict an evaluation can produce (docs/results.md): every
    field of the type its table gives (:func:`neft.reporting.result_fields.check_fields`: a string, an integer, a
    finite number, an object, ..., null only where the table allows it), a non-empty ``per_sigma`` list; per
    point a sigma in [0, 1], runs >= 1, accuracies (mean, min, percentiles, per-run values) in [0, 100] %, std and
    CI half-widths >= 0, EKL >= 0 and confidence in [0, 1]; a ``test_size`` >= 1 and a ``train_sigma`` (when
    present) in [0, 1]; a ``label`` (when not null) that is a line of printable text; an accuracy ``mean`` and
    ``std`` that agree with the ``per_run`` list (when stored) to float rounding. Booleans and NaN are no numbers.

    Raises:
        ValueError: naming ``path`` and the first bad field, e.g. ``per_sigma[0].accuracy.mean``.
    """
    path = Path(str(path))
    if not isinstance(result, dict):
        raise ValueError(f"{path}: not a neft results file (expected a JSON object)")
    missing = [key for key in REQUIRED_KEYS if key not in result]
    if missing:
        raise ValueError(f"{path}: not a neft results file (missing keys: {', '.join(missing)})")
    check_fields(result, path, _bad)
    _number(path, "test_size", result["test_size"], 1, integer=True)
    if result.get("train_sigma") is not None:
        _number(path, "train_sigma", result["train_sigma"], 0, 1)
    _check_label(path, result.get("label"))
    points = result["per_sigma"]
    if not isinstance(points, list) or not points:
        raise _bad(path, "per_sigma", "is empty or not a list: no sigma was evaluated, so there is nothing to report")
    for index, point in enumerate(points):
        where = f"per_sigma[{index}]"
        if not isinstance(point, dict):
            raise _bad(path, where, "is not an object")
        missing = [key for key in REQUIRED_POINT_KEYS if key not in point]
        accuracy = point.get("accuracy")
        if isinstance(accuracy, dict):
            missing += [f"accuracy.{key}" for key in REQUIRED_ACCURACY_KEYS if key not in accuracy]
        elif "accuracy" in point:
            raise _bad(path, f"{where}.accuracy", "is not an object")
        if missing:
            raise ValueError(f"{path}: not a neft results file (missing keys in {where}: {', '.join(missing)})")
        _number(path, f"{where}.sigma", point["sigma"], 0, 1)
        _number(path, f"{where}.runs", point["runs"], 1, integer=True)
        for key in ("mean", "min", "p1", "p5", "p10"):
            if key in accuracy:
                _number(path, f"{where}.accuracy.{key}", accuracy[key], 0, 100)
        for key in ("std", "ci95", "ci99"):
            if key in accuracy:
                _number(path, f"{where}.accuracy.{key}", accuracy[key], 0)
        for run, value in enumerate(accuracy.get("per_run", [])):
            _number(path, f"{where}.accuracy.per_run[{run}]", value, 0, 100)
        if "per_run" in accuracy and len(accuracy["per_run"]) != point["runs"]:
            raise _bad(path, f"{where}.accuracy.per_run", f"has {len(accuracy['per_run'])} values for "
                                                          f"{point['runs']} runs")
        _check_per_run(path, f"{where}.accuracy", accuracy)
        _number(path, f"{where}.ekl_x1e2", point["ekl_x1e2"], 0)
        if "ekl" in point:
            _number(path, f"{where}.ekl", point["ekl"], 0)
        _number(path, f"{where}.confidence", point["confidence"], 0, 1)
    return result


def _check_label(path: Path, label) -> None:
    """Refuse a ``label`` (when not null) that is not a line of printable text (:func:`check_name`): a line break
    would split report.md's table row, an escape sequence reach the terminal."""
    if label is not None:
        try:
            check_name("label", label, "the name reports give this result")
        except ValueError as error:
            raise _bad(path, "label", f"is {label!r}, not a line of printable text ({error})") from None


def _check_per_run(path: Path, where: str, accuracy: dict) -> None:
    """Refuse an accuracy ``mean`` or ``std`` (sample std, ddof = 1) that is not the one of its ``per_run`` values
    (:func:`neft.evaluation.metrics.accuracy_summary` computes both from them; results pooled over training seeds
    too, from the pooled chips), beyond float rounding: 1e-6 relative, or 1e-9 % absolute."""
    values = accuracy.get("per_run")
    if not values:
        return
    expected = {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}
    for key, value in expected.items():
        if key in accuracy and not math.isclose(accuracy[key], value, rel_tol=1e-6, abs_tol=1e-9):
            raise _bad(path, f"{where}.{key}", f"is {accuracy[key]!r}, but the {key} of its per_run values is "
                                               f"{value!r}")


def _read_results_file(path: Path) -> dict:
    try:
        result = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not a neft results file (invalid JSON: {error})") from None
    return check_result(result, path)


def accuracy_at(path: str | Path, sigma: float) -> tuple[float, float] | None:
    """``(mean, p5)`` accuracy (percent) over the chips of the results file ``path`` at ``sigma`` (within 1e-9),
    the file checked as :func:`load_results` does; None when the file does not exist or holds no point at
    ``sigma`` (a grid's cell not evaluated yet). docs/results.md gives the fields.

    Raises:
        ValueError: ``path`` is not a valid results file.
    """
    path = Path(path)
    if not path.is_file():
        return None
    for point in _read_results_file(path)["per_sigma"]:
        if abs(point["sigma"] - sigma) < 1e-9:
            return point["accuracy"]["mean"], point["accuracy"]["p5"]
    return None


def load_results(paths: Sequence[str | Path] | str | Path) -> list[dict]:
    """Load Monte Carlo results (docs/results.md, 'results.json') from results files and/or run directories.

    A directory contributes every result file of its run (:func:`_results_files`): ``results.json`` and every
    other ``NAME.json`` an evaluation wrote (``neft evaluate --name NAME``: other device models, write-verify
    sweeps, read noise; ``results.json`` first, then by name). Evaluations that are
    the same computation (:func:`same_evaluation`, e.g. the fraction-0 file of two write-verify sweeps, or
    ``results.json`` at sigmas 0, 0.1, 0.2 and a write-verify sweep's fraction 0 at sigma 0.1) count once: the
    first one found, with the points of the others at sigmas it lacks added. A single path is accepted as well as
    a sequence. Results are returned as stored (accuracy in %), each checked by :func:`check_result`.

    Raises:
        FileNotFoundError: a path does not exist or a directory holds no results file (naming the JSON files it
            holds that are no results).
        ValueError: a file is not valid JSON or is not a result an evaluation writes (the message names the
            file and the field).
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    files = []
    for path in map(Path, paths):
        if path.is_dir():
            files += _results_files(path)
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"{path} does not exist (run `neft evaluate RUN_DIR` to create results.json)")
    results, first, checkpoints = [], {}, {}
    for file in dict.fromkeys(files):  # a file named twice (its directory and itself) counts once
        result = _read_results_file(file)
        if file.parent not in checkpoints:  # one read of a run's checkpoint for all its results files
            checkpoints[file.parent] = _checkpoint_epoch(file.parent)
        _warn_if_stale(file, result, checkpoints[file.parent])
        key = same_evaluation(result)
        if key is None or key not in first:
            results.append(result)
            first.setdefault(key, result)
        else:  # the same evaluation at other sigmas: its new points join the first one's
            _add_points(first[key], result)
    return results


def _checkpoint_epoch(folder: Path) -> int | None:
    """The ``epoch`` of ``folder/checkpoint.pt`` (a run directory's kept network; an extension under way already
    updates it, while ``summary.json`` is written at the end), None without a neft checkpoint there."""
    import torch

    checkpoint = folder / "checkpoint.pt"
    if not checkpoint.is_file():
        return None
    try:
        return torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True).get("epoch")
    except (OSError, RuntimeError, ValueError, AttributeError):  # not neft's checkpoint: loading it says why
        return None


def _warn_if_stale(path: Path, result: dict, current: int | None) -> None:
    """Warn (``UserWarning``) when results file ``path`` of a run directory was evaluated on a checkpoint the run
    no longer holds: its ``checkpoint_epoch`` is not ``current``, the epoch of the run's ``checkpoint.pt``
    (:func:`_checkpoint_epoch`; the run was trained further with ``neft train --resume --epochs N`` and kept a
    later epoch)."""
    epoch = result.get("checkpoint_epoch")
    if epoch is not None and current is not None and current != epoch:
        warnings.warn(f"{path} was evaluated on the checkpoint of epoch {epoch}, but the run's checkpoint is now "
                      f"that of epoch {current} (trained further with --resume): its numbers are not the run's; "
                      f"evaluate the run again (neft evaluate {path.parent} --overwrite, with the same --name)",
                      UserWarning, stacklevel=3)


def _results_files(folder: Path) -> list[Path]:
    """The results files in ``folder``, ``results.json`` first, then by name: every ``*.json`` but the run's own
    files (``RUN_FILES``) and hidden ones (unfinished writes) that is named ``results*.json``, sits beside the
    ``NAME.csv`` every evaluation writes with it, or holds ``per_sigma`` (other JSON files, e.g. a device model
    file or ``neft rcg-search``'s ``validation.json``, are left out).

    Raises:
        FileNotFoundError: ``folder`` holds no results file.
    """
    found, others = [], []
    for file in sorted(folder.glob("*.json"), key=lambda file: (file.name != "results.json", file.name)):
        if file.name.startswith(".") or file.stem.lower() in RUN_FILES:
            continue
        (found if _is_results_file(file) else others).append(file)
    if not found:
        skipped = f" ({', '.join(file.name for file in others)} {'holds' if len(others) == 1 else 'hold'} no results)" \
            if others else ""
        raise FileNotFoundError(f"no results file in {folder}{skipped}: run `neft evaluate {folder}` first")
    return found


def _is_results_file(file: Path) -> bool:
    """Whether ``file`` (a ``*.json`` in a run directory) is meant as a results file: checked, then, in full."""
    if file.name.startswith("results") or file.with_suffix(".csv").is_file():
        return True
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "per_sigma" in data


def _add_points(into: dict, result: dict) -> None:
    """Add to ``into`` the points of ``result`` (the same evaluation, :func:`same_evaluation`) at sigmas ``into``
    lacks, keeping ``per_sigma`` and ``evaluation.sigmas`` ascending."""
    have = {round(point["sigma"], 6) for point in into["per_sigma"]}
    into["per_sigma"] = sorted(into["per_sigma"] + [point for point in result["per_sigma"]
                                                    if round(point["sigma"], 6) not in have],
                               key=lambda point: point["sigma"])
    into["evaluation"]["sigmas"] = [point["sigma"] for point in into["per_sigma"]]


_HOW_NOT_WHAT = ("chips_per_pass", "memory_format", "compile", "batch_size",  # change rounding only (docs/results.md)
                 "sigmas")  # which points are evaluated, not their values


def same_evaluation(result: dict) -> str | None:
    """A key equal for two results that are the same computation: the same run, label, device model and
    evaluation settings, where the write-verify selection and residual do not count when nothing is verified
    (``write_verify`` 0) and the execution settings (chips per pass, layout, compile, batch size) and the list of
    evaluated sigmas never count (chip ``r`` at sigma ``s`` depends on the seed, ``s`` and ``r`` only,
    :func:`neft.common.seeds.run_seed`, so two such evaluations agree at every sigma both evaluated).
    None for a result without ``run`` and ``evaluation`` (e.g. straight from
    :func:`neft.evaluation.montecarlo.evaluate`)."""
    if "run" not in result or "evaluation" not in result:
        return None
    evaluation = {key: value for key, value in result["evaluation"].items() if key not in _HOW_NOT_WHAT}
    if not evaluation.get("write_verify"):
        evaluation.pop("verify_select", None)
        evaluation.pop("verified_sigma", None)
    return json.dumps([result["run"], result.get("label"), result.get("device_model"), evaluation], sort_keys=True,
                      default=str)


def training_sigma(result: dict) -> float | None:
    """The sigma a network was trained at, as every report shows it: 0 for vanilla, which trains without variation
    whatever its config said (its run's ``sigma`` only chose its best epoch); None when not recorded."""
    return 0.0 if result.get("method") == "vanilla" else result.get("train_sigma")
