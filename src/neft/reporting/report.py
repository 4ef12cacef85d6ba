"""Comparison reports from Monte Carlo results: tables, CSV and plots (fields and units: docs/results.md).

Input is the ``results.json`` that Monte Carlo evaluation writes into each run directory (one trained network).
Accuracy is Top-1 in percent, its error is the 95 % CI half-width ``1.96*std/sqrt(R)`` over R programmed chips,
EKL is the expected KL divergence reported as x1e-2 nats and confidence is the mean max softmax probability
(a fraction in [0, 1]), all as defined in docs/method.md, 'Monte Carlo evaluation and metrics'.

Protocol (docs/method.md, 'Protocol'): every evaluated sigma of every result is a point; a noise-aware method
trained at several sigmas, each tested at its own sigma, therefore forms one line over sigma, like the paper's
accuracy-versus-sigma results.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from neft.chip.circuit_settings import FIELDS, CircuitSettings
from neft.evaluation import metrics
from neft.reporting import chip_plots as chip_report
from neft.training import objectives, variants

__all__ = ["load_results", "check_result", "same_evaluation", "result_label", "comparison_rows", "write_verify_curves", "plot_write_verify", "markdown_table", "write_csv", "plot", "write_report", "seed_comparison",
           "seed_sections", "findings"]

METHOD_ORDER = ("vanilla", "noise-injection", "ovf", "irs", "rcg", "lipschitz", "correctnet", "distill")
ROW_KEYS = ("method", "train_sigma", "sigma", "mean", "ci95", "std", "min", "p1", "p5", "ekl_x1e2", "confidence", "runs", "run",
            "seeds", "seed_mean", "seed_ci95", "device_model", "write_verify", "verify_select",
            *chip_report.CHIP_COLUMNS, *chip_report.CIRCUIT_COLUMNS)
REQUIRED_KEYS = ("test_size", "per_sigma")
REQUIRED_POINT_KEYS = ("sigma", "runs", "accuracy", "ekl_x1e2", "confidence")
REQUIRED_ACCURACY_KEYS = ("mean", "std", "ci95", "min")
PLOT_NAME = "accuracy_vs_sigma.png"
RUN_FILES = ("config", "summary", "train_log")  # a run directory's own files: config.json, summary.json, train_log.csv
LEGEND_INCHES_PER_CHARACTER = 0.068  # matplotlib's "small" legend font (8.33 pt DejaVu Sans), an average width
MIN_SEEDS = 3  # seeds below which a t-interval over seeds (t = 12.7 at 2 seeds) cannot resolve a difference


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
    """Return ``result`` after checking it is a results dict an evaluation can produce (docs/results.md): a
    non-empty ``per_sigma`` list; per point a sigma in [0, 1], runs >= 1, accuracies (mean, min, percentiles,
    per-run values) in [0, 100] %, std and CI half-widths >= 0, EKL >= 0 and confidence in [0, 1]; a
    ``test_size`` >= 1 and a ``train_sigma`` (when present) in [0, 1]. Booleans and NaN are no numbers.

    Raises:
        ValueError: naming ``path`` and the first bad field, e.g. ``per_sigma[0].accuracy.mean``.
    """
    path = Path(str(path))
    if not isinstance(result, dict):
        raise ValueError(f"{path}: not a neft results file (expected a JSON object)")
    missing = [key for key in REQUIRED_KEYS if key not in result]
    if missing:
        raise ValueError(f"{path}: not a neft results file (missing keys: {', '.join(missing)})")
    _number(path, "test_size", result["test_size"], 1, integer=True)
    if result.get("train_sigma") is not None:
        _number(path, "train_sigma", result["train_sigma"], 0, 1)
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
        _number(path, f"{where}.ekl_x1e2", point["ekl_x1e2"], 0)
        if "ekl" in point:
            _number(path, f"{where}.ekl", point["ekl"], 0)
        _number(path, f"{where}.confidence", point["confidence"], 0, 1)
    return result


def _read_results_file(path: Path) -> dict:
    try:
        result = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not a neft results file (invalid JSON: {error})") from None
    return check_result(result, path)


def load_results(paths: Sequence[str | Path] | str | Path) -> list[dict]:
    """Load Monte Carlo results (docs/results.md, 'results.json') from results files and/or run directories.

    A directory contributes every result file of its run: ``results.json`` and each ``results*.json`` (other
    device models, write-verify sweeps, read noise; ``results.json`` first, then by name). Evaluations that are
    the same computation (:func:`same_evaluation`, e.g. the fraction-0 file of two write-verify sweeps) count
    once, the first one found. A single path is accepted as well as a sequence. Results are returned as stored
    (accuracy in %), each checked by :func:`check_result`.

    Raises:
        FileNotFoundError: a path does not exist or a directory holds no results file.
        ValueError: a file is not valid JSON or is not a result an evaluation writes (the message names the
            file and the field).
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    files = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(path.glob("results*.json"), key=lambda file: (file.name != "results.json", file.name))
            if not found:
                raise FileNotFoundError(f"no results.json in {path}: run `neft evaluate {path}` first")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"{path} does not exist (run `neft evaluate RUN_DIR` to create results.json)")
    results, seen = [], set()
    for file in dict.fromkeys(files):  # a file named twice (its directory and itself) counts once
        result = _read_results_file(file)
        key = same_evaluation(result)
        if key is None or key not in seen:
            results.append(result)
        seen.add(key)
    return results


_HOW_NOT_WHAT = ("chips_per_pass", "memory_format", "compile", "batch_size")  # change rounding only (docs/results.md)


def same_evaluation(result: dict) -> str | None:
    """A key equal for two results that are the same computation: the same run, label, device model and
    evaluation settings, where the write-verify selection and residual do not count when nothing is verified
    (``write_verify`` 0) and the execution settings (chips per pass, layout, compile, batch size) never count.
    None for a result without ``run`` and ``evaluation`` (e.g. straight from :func:`neft.evaluation.montecarlo.evaluate`)."""
    if "run" not in result or "evaluation" not in result:
        return None
    evaluation = {key: value for key, value in result["evaluation"].items() if key not in _HOW_NOT_WHAT}
    if not evaluation.get("write_verify"):
        evaluation.pop("verify_select", None)
        evaluation.pop("verified_sigma", None)
    return json.dumps([result["run"], result.get("label"), result.get("device_model"), evaluation], sort_keys=True,
                      default=str)


def _method_rank(method: str) -> tuple[int, str]:
    name = method.lower()
    return (METHOD_ORDER.index(name) if name in METHOD_ORDER else len(METHOD_ORDER), name)


def _has_duplicates(keys: list) -> bool:
    return len(keys) != len(set(keys))


def _sort_key(*values) -> tuple:
    """Sort key tolerating None (e.g. a vanilla run stored without a training sigma): None sorts first."""
    return tuple((value is not None, value or 0) for value in values)


def result_label(result: dict) -> str:
    """The name a result goes by in tables and plots: its ``label`` when set (``neft evaluate --label``,
    ``evaluate(..., label=...)``, ``write_report(..., labels=...)``), else its method variant
    (:func:`neft.training.variants.label`, e.g. ``ovf beta=0``), else ``"network"`` for a result without a method; then
    its deployment options (:func:`_deployment`), e.g. ``noise-injection wv=5% swim``."""
    return _base_label(result) + _deployment(result)


def _base_label(result: dict, show_init: bool = False) -> str:
    """:func:`result_label` without the deployment options (``show_init``: see :func:`neft.training.variants.label`)."""
    if result.get("label"):
        return str(result["label"])
    return variants.label(result, show_init) if result.get("method") else "network"


def _deployment(result: dict, chip: bool = True) -> str:
    """Label suffix for the deployment options of an evaluation: `` wv=5% magnitude`` (write-verified fraction
    and selection, plus ``verified_sigma=..`` when not 0), `` read_sigma=0.02``, `` bn=256`` (BatchNorm
    recalibrated on 256 images per chip), `` tune=100`` (the block tuned 100 steps per chip), with ``chip`` the
    realistic chip's non-default settings (:func:`neft.reporting.chip_plots.chip_label`, e.g. `` q8/2 stuck 1%+1% t=1y
    comp``) and the crossbar circuit's (:meth:`neft.chip.CircuitSettings.label`, e.g. `` tile=128 adc=6b
    sliced``); empty without them."""
    evaluation, suffix = result.get("evaluation", {}), ""
    if evaluation.get("write_verify"):
        suffix += f" wv={100 * evaluation['write_verify']:g}% {evaluation['verify_select']}"
        suffix += f" verified_sigma={evaluation['verified_sigma']:g}" if evaluation.get("verified_sigma") else ""
    read_sigma = result.get("device_model", {}).get("read_sigma", 0.0)
    suffix += f" read_sigma={read_sigma:g}" if read_sigma else ""
    suffix += f" bn={evaluation['recalibrate_bn']}" if evaluation.get("recalibrate_bn") else ""
    suffix += f" tune={evaluation['chip_tune']}" if evaluation.get("chip_tune") else ""
    suffix += chip_report.chip_label(result) if chip else ""
    circuit = {name: evaluation[name] for name in FIELDS if name in evaluation}  # `` tile=128 adc=6b``
    return suffix + (CircuitSettings(**circuit).label() if circuit else "")


def _setting_columns(result: dict) -> dict:
    """The CSV columns of what sets one network's results apart besides its chip (``chip_report.chip_columns``:
    read noise, quantization, stuck devices, drift): device model, fraction write-verified and its selection
    (empty when nothing is verified)."""
    evaluation = result.get("evaluation", {})
    fraction = evaluation.get("write_verify") or 0.0
    return {"device_model": _device_name(result), "write_verify": fraction,
            "verify_select": evaluation.get("verify_select", "") if fraction else ""}


def _device_name(result: dict) -> str:
    return result.get("device_model", {}).get("name", "?")


def _labels(results: list[dict]) -> list[tuple[str, tuple]]:
    """(label, sort key) per result: :func:`result_label` (variant labels name the init only when the results mix
    inits), grown only as far as needed to keep (label, sigma) unique: by the device model when the clashing
    results were evaluated under different ones, then by the training sigma, then by the training seed."""
    names = _names(results)
    labelled = []
    for result, name in zip(results, names):
        group = [r for r, v in zip(results, names) if v == name]
        points = [(_device_name(r), r.get("train_sigma"), r.get("train_seed"), p["sigma"])
                  for r in group for p in r["per_sigma"]]
        device = _device_name(result)
        if _has_duplicates([sigma for *_, sigma in points]) and not _has_duplicates([(d, s) for d, _, _, s in points]):
            name = f"{name} ({device})"
            labelled.append((name, (name,)))
            continue
        train_sigma, train_seed = result.get("train_sigma"), result.get("train_seed")
        if not _has_duplicates([sigma for *_, sigma in points]):
            labelled.append((name, (name,)))
        elif not _has_duplicates([(ts, sigma) for _, ts, _, sigma in points]):
            labelled.append((f"{name} (sigma_train={train_sigma})", (name, *_sort_key(train_sigma))))
        else:
            label = f"{name} (sigma_train={train_sigma}, seed={train_seed})"
            labelled.append((label, (name, *_sort_key(train_sigma, train_seed))))
    return labelled


def _names(results: list[dict]) -> list[str]:
    """:func:`result_label` of each result, where variant labels name the init only when the results mix inits
    (:func:`neft.training.variants.labels`)."""
    show_init = variants.mixed_inits(results)
    # a chip shared by several results is named once, in the report's setup and the plot legend
    chip = len(results) == 1 or len({chip_report.chip_label(r) for r in results}) > 1
    return [_base_label(r, show_init) + _deployment(r, chip) for r in results]


def comparison_rows(results: list[dict]) -> list[dict]:
    """One row per (method label, evaluated sigma) over all results, following docs/method.md, 'Protocol'.

    Row keys: ``method`` (label), ``train_sigma``, ``sigma`` (relative device variation), ``mean``, ``ci95``,
    ``std``, ``min`` (Top-1 accuracy in %, CI95 a half-width over chips), ``ekl_x1e2`` (EKL in 1e-2 nats),
    ``confidence`` (mean max softmax probability, fraction), ``runs`` (Monte Carlo runs), ``run`` (run directory),
    and for results pooled over training seeds ``seeds`` (T), ``seed_mean`` and ``seed_ci95`` (mean of the T
    per-seed MC means and its 95 % t-interval half-width, :func:`neft.evaluation.metrics.seed_interval`; empty otherwise).

    The label is the method name, extended with ``(sigma_train=..)`` only when the same method has several
    training sigmas whose points would share a sigma, and further with the training seed when that is still
    ambiguous. Rows are sorted by method (vanilla, noise-injection, ovf, irs, then others alphabetically), label,
    then sigma.

    Raises:
        ValueError: two results still give the same (label, sigma), e.g. one results file loaded twice.
    """
    rows = []
    for result, (label, label_key) in zip(results, _labels(results)):
        for point in result["per_sigma"]:
            accuracy = point["accuracy"]
            row = {
                "method": label,
                "train_sigma": result.get("train_sigma"),
                "sigma": round(float(point["sigma"]), 6),
                "mean": accuracy["mean"],
                "ci95": accuracy["ci95"],
                "std": accuracy["std"],
                "min": accuracy["min"],
                "p1": accuracy.get("p1", ""),
                "p5": accuracy.get("p5", ""),
                "ekl_x1e2": point["ekl_x1e2"],
                "confidence": point["confidence"],
                "runs": point["runs"],
                "run": result.get("run", ""),
                "seeds": point.get("over_seeds", {}).get("seeds", ""),
                "seed_mean": point.get("over_seeds", {}).get("mean", ""),
                "seed_ci95": point.get("over_seeds", {}).get("half_width", ""),
                **_setting_columns(result),
                **chip_report.chip_columns(result),
            }
            # by method, then numerically by what sets results apart (write-verify 1 %, 5 %, 10 %), then label
            order = (_base_label(result), row["device_model"], row["verify_select"], row["write_verify"] or 0.0,
                     row["read_sigma"] or 0.0, row["drift_time"] or 0.0)
            rows.append(((_method_rank(result.get("method") or label), order, label_key, row["sigma"]), row))
    rows.sort(key=lambda keyed: keyed[0])
    counts = Counter((row["method"], row["sigma"]) for _, row in rows)
    duplicated = [f"{label} at sigma {sigma:g}" for (label, sigma), n in counts.items() if n > 1]
    if duplicated:
        raise ValueError(f"several results for the same point: {'; '.join(duplicated)}; give each result its own "
                         "label (labels= in write_report, --labels in neft report) or drop the duplicate")
    return [row for _, row in rows]


def _pivot(rows: list[dict], caption: str, cell) -> str:
    sigmas = sorted({row["sigma"] for row in rows})
    labels = list(dict.fromkeys(row["method"] for row in rows))
    cells = {(row["method"], row["sigma"]): cell(row) for row in rows}
    lines = [
        caption,
        "",
        "| method | " + " | ".join(f"σ = {sigma:g}" for sigma in sigmas) + " |",
        "|---|" + "---:|" * len(sigmas),
    ]
    for label in labels:
        lines.append(f"| {label} | " + " | ".join(cells.get((label, sigma), "") for sigma in sigmas) + " |")
    return "\n".join(lines)


def markdown_table(rows: list[dict]) -> str:
    """Markdown tables pivoted by sigma (one line per method label, one column per evaluated sigma).

    First table: Top-1 accuracy in %, cells ``"mean ± CI95"`` with two decimals (docs/method.md, 'Monte Carlo
    evaluation and metrics'). When rows pool
    several training seeds, a second table gives the mean of the per-seed MC means ± its 95 % t-interval over
    seeds. Then the worst-case accuracy, the 1st and 5th percentiles over chips (%, cells ``"p1 / p5"``; blank
    for results without percentiles). Last table: EKL in 1e-2 nats (two decimals) and confidence (fraction, three
    decimals), cells ``"EKL / confidence"``.
    A cell is blank where a method was not evaluated at that sigma. ``rows`` come from :func:`comparison_rows`.
    """
    accuracy = _pivot(
        rows,
        "**Top-1 accuracy (%), mean ± 95 % CI half-width**",
        lambda row: f"{row['mean']:.2f} ± {row['ci95']:.2f}",
    )
    uncertainty = _pivot(
        rows,
        "**EKL (x1e-2 nats) / confidence (mean max softmax probability)**",
        lambda row: f"{row['ekl_x1e2']:.2f} / {row['confidence']:.3f}",
    )
    worst = _pivot(
        rows,
        "**Worst-case accuracy (%): 1st / 5th percentile over chips** (the chips a deployment must live with)",
        lambda row: f"{row['p1']:.2f} / {row['p5']:.2f}" if isinstance(row.get("p1"), float) else "",
    )
    tables = [accuracy, worst, uncertainty]
    if any(isinstance(row.get("seeds"), int) and row["seeds"] > 1 for row in rows):
        accuracy_caption = ("**Top-1 accuracy (%), mean ± 95 % CI half-width over chips** (chips of all training "
                            "seeds pooled: this interval ignores seed-to-seed spread)")
        tables[0] = tables[0].replace(tables[0].split("\n")[0], accuracy_caption, 1)
        tables.insert(1, _pivot(
            rows,
            "**Top-1 accuracy over training seeds (%): mean of the per-seed MC means ± 95 % t-interval half-width "
            "(n = seeds; compare methods with this one)**",
            lambda row: f"{row['seed_mean']:.2f} ± {row['seed_ci95']:.2f} (n={row['seeds']})"
            if isinstance(row.get("seed_ci95"), float) else "",
        ))
    return "\n\n".join(tables) + "\n"


def write_csv(rows: list[dict], path: str | Path) -> Path:
    """Write :func:`comparison_rows` rows to a CSV file (header = row keys; columns and units: docs/results.md)."""
    path = Path(path)
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=ROW_KEYS)
        writer.writeheader()
        writer.writerows(rows)
    return path


def plot(results: list[dict], path: str | Path, title: str | None = None) -> Path:
    """Save a PNG (150 dpi) with three panels against sigma, one line per label: accuracy (%, mean with 95 % CI
    error bars), the worst case (the 5th percentile over chips, %, with the 1st as a dotted line; skipped for
    results without percentiles) and EKL (x1e-2 nats). The legend, below the panels so that it never hides a
    curve, gives each line's training sigma and the device model it was evaluated under.

    Sigma is the relative device variation (docs/method.md, 'Device variation model'); the metrics are those of
    docs/method.md, 'Monte Carlo evaluation and metrics'.
    """
    rows = comparison_rows(results)
    labels = list(dict.fromkeys(row["method"] for row in rows))
    lines = {label: [row for row in rows if row["method"] == label] for label in labels}
    legends = {label: _legend(label, line) for label, line in lines.items()}
    # as many legend columns (at most 3) as the longest entry leaves room for across the 14-inch figure
    width = 0.5 + LEGEND_INCHES_PER_CHARACTER * max(len(text) for text in legends.values())
    columns = max(1, min(3, len(labels), int(14 / width)))
    # a fixed layout, in inches (a constrained layout costs a second drawing pass, 40 % of the plot's time): the
    # panels keep their height, the legend below them adds one line per row of labels
    legend = 0.1 + 0.22 * math.ceil(len(labels) / columns)
    below, above = 0.62 + legend, 0.62 if title else 0.36
    height = 4.8 + legend
    figure = chip_report.new_figure((14, height), layout=None)
    figure.subplots_adjust(left=0.05, right=0.99, bottom=below / height, top=1 - above / height, wspace=0.2)
    accuracy_axes, worst_axes, ekl_axes = figure.subplots(1, 3)
    for label, marker in zip(labels, itertools.cycle("osD^vP*X<>")):  # distinct markers: points often overlap
        line = lines[label]
        sigmas = [row["sigma"] for row in line]
        means, ci95 = [row["mean"] for row in line], [row["ci95"] for row in line]
        drawn = accuracy_axes.errorbar(sigmas, means, yerr=ci95, marker=marker, capsize=3, label=legends[label])
        worst = [(row["sigma"], row["p5"], row["p1"]) for row in line if isinstance(row.get("p5"), float)]
        if worst:
            color = drawn[0].get_color()
            worst_axes.plot([w[0] for w in worst], [w[1] for w in worst], marker=marker, color=color)
            worst_axes.plot([w[0] for w in worst], [w[2] for w in worst], linestyle=":", color=color)
        ekl_axes.plot(sigmas, [row["ekl_x1e2"] for row in line], marker=marker)
    xlabel = "relative device variation sigma"
    accuracy_axes.set(xlabel=xlabel, ylabel="Top-1 accuracy (%)", title="Accuracy (mean, 95 % CI)")
    worst_axes.set(xlabel=xlabel, ylabel="Top-1 accuracy (%)",
                   title="Worst case: 5th percentile over chips (1st dotted)")
    ekl_axes.set(xlabel=xlabel, ylabel="EKL (x1e-2 nats)", title="Expected KL divergence")
    for axes in (accuracy_axes, worst_axes, ekl_axes):
        axes.set_xticks(sorted({row["sigma"] for row in rows}))
        axes.grid(alpha=0.3)
    figure.legend(*accuracy_axes.get_legend_handles_labels(), loc="lower center", bbox_to_anchor=(0.5, 0.0),
                  fontsize="small", ncols=columns, frameon=False)
    if title:
        figure.suptitle(title, y=1 - 0.12 / height, va="top")
    path = Path(path)
    figure.savefig(path, dpi=150)
    return path


def write_verify_curves(results: list[dict]) -> dict[tuple[str, str, float], list[tuple[float, float, float]]]:
    """Accuracy against the fraction of write-verified weights (docs/method.md, 'Selective write-verify').

    Groups results by (label without deployment options, selection, evaluated sigma); a result evaluated without
    write-verify is the fraction-0 point of every selection of its label. Returns ``{(label, selection, sigma):
    [(fraction, mean %, ci95 points), ...]}`` sorted by fraction, for groups with at least two fractions.
    """
    selections = {r.get("evaluation", {}).get("verify_select") for r in results
                  if r.get("evaluation", {}).get("write_verify")}
    curves: dict[tuple[str, str, float], dict[float, tuple[float, float]]] = {}
    for result in results:
        evaluation = result.get("evaluation", {})
        fraction = evaluation.get("write_verify") or 0.0
        base = _base_label(result)
        for selection in ([evaluation["verify_select"]] if fraction else sorted(selections)):
            for point in result["per_sigma"]:
                key = (base, selection, round(float(point["sigma"]), 6))
                curves.setdefault(key, {})[fraction] = (point["accuracy"]["mean"], point["accuracy"]["ci95"])
    return {key: sorted((f, m, c) for f, (m, c) in points.items()) for key, points in sorted(curves.items())
            if len(points) > 1}


def plot_write_verify(results: list[dict], path: str | Path, title: str | None = None) -> Path:
    """Save a PNG (150 dpi): accuracy (%, 95 % CI error bars) against the fraction of write-verified weights (%),
    one line per (label, selection, sigma) of :func:`write_verify_curves`.

    Raises:
        ValueError: no label was evaluated at two or more fractions.
    """
    curves = write_verify_curves(results)
    if not curves:
        raise ValueError("no write-verify sweep to plot: evaluate a run at several fractions, e.g. "
                         "neft evaluate RUN --write-verify 0,0.01,0.05 (--verify-select magnitude or swim)")
    figure = chip_report.new_figure((6.5, 4.2))
    axes = figure.subplots()
    for ((label, selection, sigma), points), marker in zip(curves.items(), itertools.cycle("osD^vP*X<>")):
        fractions, means, ci95 = zip(*points)
        axes.errorbar([100 * f for f in fractions], means, yerr=ci95, marker=marker, capsize=3,
                      label=f"{label}, {selection}, σ={sigma:g}")
    axes.set(xlabel="weights write-verified (%)", ylabel="Top-1 accuracy (%)",
             title=title or "Accuracy vs fraction write-verified (mean, 95 % CI)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    path = Path(path)
    figure.savefig(path, dpi=150)
    return path


def _legend(label: str, line: list[dict]) -> str:
    """A plot line's legend: its label and, when all its points share one, the training sigma, then the device
    model it was evaluated under with the realistic chip's non-default settings (unless the label names them)."""
    trained = {row["train_sigma"] for row in line}
    facts = []
    if len(trained) == 1 and None not in trained and "sigma_train" not in label:
        facts.append(f"trained at σ={next(iter(trained)):g}")
    devices = {row.get("device_model") for row in line} - {None, "?"}
    chips = {chip_report.columns_label(row) for row in line} - {""}
    chip = next(iter(chips)) if len(chips) == 1 and next(iter(chips)) not in label else ""
    if len(devices) == 1 and (next(iter(devices)) not in label or chip):
        facts.append(f"on {next(iter(devices))}{chip}")
    return f"{label} ({', '.join(facts)})" if facts else label


def write_report(
    paths_or_results: Sequence[str | Path | dict] | str | Path,
    out_dir: str | Path,
    title: str | None = None,
    name: str = "report",
    notes: str | None = None,
    labels: Sequence[str] | None = None,
    overwrite: bool = False,
) -> dict[str, Path]:
    """Write a comparison report (docs/results.md, 'Report files') into ``out_dir`` (created if needed); an
    earlier report of the same ``name`` there is replaced only with ``overwrite=True`` (``--overwrite``).

    ``paths_or_results`` holds results files, run directories (see :func:`load_results`) and/or loaded results.
    Writes ``{name}.md`` (title, Monte Carlo runs per point and test set size, both tables of
    :func:`markdown_table` and the plot as an image link), ``{name}.csv`` (:func:`write_csv`) and the plot
    ``accuracy_vs_sigma.png`` (``{name}_accuracy_vs_sigma.png`` for a name other than ``"report"``, so that
    reports sharing a directory keep their own plot); ``notes`` is a paragraph placed under the title. Returns
    ``{"markdown": .., "csv": .., "plot": ..}``, plus ``"write_verify"`` (``{name}_write_verify.png``,
    :func:`plot_write_verify`) when a label was evaluated at several write-verified fractions, and ``"drift"``
    (``{name}_drift.png``, :func:`neft.reporting.chip_plots.plot_drift`) when a network of a drifting chip was read at
    several times after programming.

    Results may come from run directories (:func:`neft.runs.evaluate_run`) or straight from
    :func:`neft.evaluation.montecarlo.evaluate`; ``labels`` (one per result, in order; a directory holding several results
    files counts once per distinct evaluation, :func:`load_results`) names them in tables and plots, overriding their own ``label``. One network
    evaluated under several device models shares a report: its lines are told apart by the device model.

    Raises:
        ValueError: no results, ``labels`` of the wrong length, two results for the same (label, sigma), or a
            ``name`` in a run directory that is one of its own files (``RUN_FILES``), even with ``overwrite``.
        FileExistsError: the report's files exist and ``overwrite`` is False.
        FileNotFoundError: a path does not exist or holds no results file.
    """
    if isinstance(paths_or_results, (str, Path)):
        paths_or_results = [paths_or_results]
    results = [r for index, item in enumerate(paths_or_results)
               for r in ([check_result(item, f"result {index + 1} (a dict)")] if isinstance(item, dict)
                         else load_results(item))]
    if not results:
        raise ValueError("no results to report")
    if labels is not None:
        if len(labels) != len(results):
            raise ValueError(f"got {len(labels)} label(s) for {len(results)} result(s); give one label per result "
                             "(a run directory with several results files counts once per distinct evaluation)")
        results = [{**result, "label": label} for result, label in zip(results, labels)]
    rows = comparison_rows(results)  # raises before anything is created
    out_dir = Path(out_dir)
    if name.lower() in RUN_FILES and (out_dir / "config.json").is_file():
        raise ValueError(f"a report named {name!r} in the run directory {str(out_dir)!r} would replace the run's own "
                         f"{name} file; choose another name")
    plot_name = PLOT_NAME if name == "report" else f"{name}_{PLOT_NAME}"
    existing = [path for path in (out_dir / f"{name}.md", out_dir / f"{name}.csv", out_dir / plot_name)
                if path.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{str(existing[0])!r} already exists; replace the report with overwrite=True "
                              "(--overwrite), or write it elsewhere (--out) or under another name")
    out_dir.mkdir(parents=True, exist_ok=True)
    title = title or "Robustness comparison"
    paths = {
        "markdown": out_dir / f"{name}.md",
        "csv": write_csv(rows, out_dir / f"{name}.csv"),
        "plot": plot(results, out_dir / plot_name, title),
    }

    def listing(values) -> str:
        return ", ".join(str(value) for value in sorted(set(values)))

    setup = (
        f"Monte Carlo runs per point: {listing(_runs_per_point(row) for row in rows)}; "
        f"test images: {listing(r['test_size'] for r in results)}; "
        f"dataset: {listing(r.get('dataset', '?') for r in results)}; "
        f"model: {listing(r.get('model', '?') for r in results)}; "
        f"device model: {listing(_device_name(r) + chip_report.chip_label(r) for r in results)}."
    )
    training = _training_setup(results)
    intro = "\n\n".join(part for part in (notes, setup, training) if part)
    text = f"# {title}\n\n{intro}\n\n{markdown_table(rows)}\n![Accuracy and EKL vs sigma]({plot_name})\n"
    if write_verify_curves(results):  # a write-verify sweep: accuracy against the fraction verified, too
        wv_name = f"{name}_write_verify.png"
        paths["write_verify"] = plot_write_verify(results, out_dir / wv_name)
        text += f"\n![Accuracy vs fraction write-verified]({wv_name})\n"
    drift = chip_report.drift_curves(results, [_base_label(r) + chip_report.chip_label(r, with_time=False)
                                               for r in results])
    if drift:  # networks read at several times after programming: accuracy against time, too
        paths["drift"] = chip_report.plot_drift(drift, out_dir / f"{name}_drift.png")
        text += f"\n![Accuracy vs time after programming]({name}_drift.png)\n"
    paths["markdown"].write_text(text)
    return paths


def _runs_per_point(row: dict) -> str:
    """A row's Monte Carlo runs: ``50``, or for chips pooled over T networks (training seeds) ``50 chips per
    network x 3 networks = 150``."""
    seeds, runs = row.get("seeds"), row["runs"]
    if not (isinstance(seeds, int) and seeds > 1):
        return str(runs)
    if runs % seeds:
        return f"{runs} chips over {seeds} networks"
    return f"{runs // seeds} chips per network x {seeds} networks = {runs}"


def _training_setup(results: list[dict]) -> str:
    """One line per label: how its networks were trained (sigma, epochs, training images, init, beta, T, the
    settings of rcg, lipschitz and distill with distill's teacher, seeds) and the device model they were evaluated
    under."""
    lines = []
    for result, (label, _) in zip(results, _labels(results)):
        facts = []
        if result.get("method"):
            facts.append(f"trained at sigma {_training_sigma(result):g}")
            facts.append(_epochs(result))
            facts.append(f"{result['train_subset']} training images" if result.get("train_subset")
                         else "the full training set")
            facts.append(f"init {result.get('init', 'kaiming')}")
            if result["method"] in ("ovf", "irs") and result.get("beta") is not None:
                facts.append(f"beta {result['beta']:g}")
            if result.get("temperature", 1.0) != 1.0:
                facts.append(f"T {result['temperature']:g}")
            facts += [f"{name} {result[name]:g}" for name in objectives.METHOD_SETTINGS if result.get(name) is not None]
            if result.get("teacher"):
                facts.append(f"teacher {result['teacher']}")
            seeds = result.get("seeds", [result["train_seed"]] if "train_seed" in result else [])
            if seeds:
                facts.append(f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}")
        facts.append(f"evaluated under device model {_device_name(result)}")
        lines.append(f"- {label}: {', '.join(facts)}")
    return "Runs:\n\n" + "\n".join(dict.fromkeys(lines)) if lines else ""


def _epochs(result: dict) -> str:
    """How long a network trained: ``30 epochs``, or ``12 of 30 epochs (training stopped early)``."""
    planned, trained = result.get("epochs"), result.get("epochs_trained")
    if not planned:
        return "epochs not recorded"
    if trained is not None and trained < planned:
        return f"{trained} of {planned} epochs (training stopped early)"
    return f"{planned} epochs"


def _training_sigma(result: dict) -> float:
    """The sigma a network was trained at; vanilla trains without variation whatever its config said."""
    return 0.0 if result["method"] == "vanilla" else result["train_sigma"]


def _mean_at_training_sigma(result: dict) -> float:
    """MC mean accuracy (%) at the network's training sigma (sigma 0 for vanilla).

    Raises:
        ValueError: the result was not evaluated at that sigma.
    """
    target = _training_sigma(result)
    for point in result["per_sigma"]:
        if abs(point["sigma"] - target) < 1e-9:
            return point["accuracy"]["mean"]
    raise ValueError(f"{result.get('run', 'a result')} was not evaluated at its training sigma {target:g}; "
                     f"evaluate it there (e.g. neft evaluate RUN --sigmas {target:g}) to compare it over seeds")


def _interval(summary: dict) -> str:
    if summary["half_width"] is None:
        return f"{summary['mean']:+.2f} (one seed)"
    return f"{summary['mean']:+.2f} ± {summary['half_width']:.2f}"


def seed_comparison(results: list[dict]) -> dict:
    """Compare variants over training seeds, from per-seed (not pooled) results.

    Every network counts once, by its MC mean accuracy (%) at its training sigma (sigma 0 for vanilla):

    - ``thresholds``: one convergence threshold per (data set, training sigma), shared by every method
      (:func:`neft.evaluation.metrics.convergence_threshold` of the best network of any method there);
    - ``variants``: per (data set, variant label, training sigma): ``per_seed`` means, ``over_seeds`` (mean ± 95 %
      t-interval, :func:`neft.evaluation.metrics.seed_interval`) and ``convergence`` (probability with a Wilson 95 % interval
      against the shared threshold);
    - ``differences``: paired by training seed, in accuracy points: every variant minus the noise-injection
      baseline trained with the same init (``ovf init=torch`` - ``noise-injection init=torch``; plain
      ``noise-injection`` otherwise), and OVF/IRS minus each of their beta ablations (e.g. ``ovf`` -
      ``ovf beta=0``, the effect of the feedback term), each with its 95 % t-interval over the shared seeds.

    Args:
        results: ``results.json`` dicts, one per trained network, each with ``train_seed`` and ``num_classes``.

    Raises:
        KeyError: a result lacks ``num_classes`` or ``train_seed``.
        ValueError: a result was not evaluated at its training sigma.
    """
    groups: dict[tuple[str, str, float], dict[int, float]] = {}
    classes: dict[str, int] = {}
    for result, label in zip(results, _names(results)):
        key = (result.get("dataset", "?"), label, _training_sigma(result))
        groups.setdefault(key, {})[result["train_seed"]] = _mean_at_training_sigma(result)
        classes[key[0]] = result["num_classes"]
    best: dict[tuple[str, float], float] = {}
    for (dataset, _, sigma), by_seed in groups.items():
        best[(dataset, sigma)] = max(best.get((dataset, sigma), float("-inf")), *by_seed.values())
    thresholds = {key: metrics.convergence_threshold(value, classes[key[0]]) for key, value in best.items()}
    rows = []
    for (dataset, label, sigma), by_seed in groups.items():
        seeds = sorted(by_seed)
        rows.append({"dataset": dataset, "label": label, "train_sigma": sigma, "seeds": seeds,
                     "per_seed": [by_seed[s] for s in seeds],
                     "over_seeds": metrics.seed_interval([by_seed[s] for s in seeds]),
                     "convergence": metrics.convergence_probability(list(by_seed.values()), classes[dataset],
                                                                    thresholds[(dataset, sigma)])})
    pairs = []
    for dataset, label, sigma in groups:
        method, *options = label.split()
        if method == "vanilla":
            continue
        inits = [option for option in options if option.startswith("init=")]
        reference = " ".join(["noise-injection", *inits])  # the baseline trained the same way
        if reference == label or (dataset, reference, sigma) not in groups:
            reference = "noise-injection"
        if label != reference and (dataset, reference, sigma) in groups:
            pairs.append(((dataset, label, sigma), (dataset, reference, sigma)))
        base = " ".join([method, *inits])
        if method in ("ovf", "irs") and label != base and (dataset, base, sigma) in groups:
            pairs.append(((dataset, base, sigma), (dataset, label, sigma)))
    differences = []
    for a, b in pairs:
        seeds = sorted(set(groups[a]) & set(groups[b]))
        if seeds:
            per_seed = [groups[a][s] - groups[b][s] for s in seeds]
            differences.append({"a": a[1], "b": b[1], "dataset": a[0], "train_sigma": a[2], "seeds": seeds,
                                "per_seed": per_seed, "over_seeds": metrics.seed_interval(per_seed)})
    return {"thresholds": [{"dataset": d, "train_sigma": s, "threshold": t} for (d, s), t in sorted(thresholds.items())],
            "variants": rows, "differences": differences}


def seed_sections(results: list[dict]) -> str:
    """Markdown rendering of :func:`seed_comparison`: a table per variant (per-seed means, mean ± 95 %
    t-interval over seeds, convergence probability against the shared threshold, which the text states) and a
    table of paired differences. ``results`` as in :func:`seed_comparison`."""
    comparison = seed_comparison(results)
    lines = ["## Over training seeds", "",
             "Each trained network counts once, by its Monte Carlo mean at its training sigma (sigma 0 for vanilla). "
             "Intervals are 95 % Student-t intervals over seeds. A network has converged when its mean exceeds the "
             "threshold of its (data set, training sigma), shared by every method: halfway between chance and the "
             "best mean of any network there ("
             + "; ".join(f"{t['dataset']} sigma {t['train_sigma']:g}: {t['threshold']:.1f} %"
                         for t in comparison["thresholds"]) + ").", "",
             "| method | train sigma | MC mean per seed (%) | mean ± 95 % t-interval over seeds | "
             "convergence probability [Wilson 95 %] |", "|---|---|---|---|---|"]
    for row in comparison["variants"]:
        summary, c = row["over_seeds"], row["convergence"]
        spread = f"± {summary['half_width']:.2f}" if summary["half_width"] is not None else "(one seed)"
        lines.append(f"| {row['label']} | {row['train_sigma']:g} | {', '.join(f'{m:.2f}' for m in row['per_seed'])} | "
                     f"{summary['mean']:.2f} {spread} | {c['converged']}/{c['runs']} = {c['probability']:.2f} "
                     f"[{c['wilson95'][0]:.2f}, {c['wilson95'][1]:.2f}] |")
    if comparison["differences"]:
        lines += ["", "**Paired differences (accuracy points, A − B, paired by training seed)**", "",
                  "| A | B | train sigma | difference per seed | mean ± 95 % t-interval |", "|---|---|---|---|---|"]
        for d in comparison["differences"]:
            lines.append(f"| {d['a']} | {d['b']} | {d['train_sigma']:g} | "
                         f"{', '.join(f'{v:+.2f}' for v in d['per_seed'])} | {_interval(d['over_seeds'])} |")
    return "\n".join(lines) + "\n"


def findings(results: list[dict]) -> str:
    """One paragraph stating what per-seed results show, generated from the numbers of :func:`seed_comparison`:
    each variant's mean over seeds and how many seeds converged, then each paired difference, called a difference
    only when its 95 % t-interval excludes 0. ``results`` as in :func:`seed_comparison`."""
    comparison = seed_comparison(results)
    sentences = []
    for t in comparison["thresholds"]:
        rows = [r for r in comparison["variants"] if (r["dataset"], r["train_sigma"]) == (t["dataset"], t["train_sigma"])]
        parts = [f"{r['label']} {r['over_seeds']['mean']:.1f} % ({r['convergence']['converged']}/"
                 f"{r['convergence']['runs']} seeds converged)" for r in rows]
        sentences.append(f"Trained at sigma {t['train_sigma']:g} on {t['dataset']} and tested there (convergence "
                         f"threshold {t['threshold']:.1f} %): " + "; ".join(parts) + ".")
    for d in comparison["differences"]:
        summary = d["over_seeds"]
        if summary["half_width"] is None:
            continue
        low, high = summary["mean"] - summary["half_width"], summary["mean"] + summary["half_width"]
        verdict = (f"{d['a']} beats {d['b']}" if low > 0 else f"{d['a']} is worse than {d['b']}" if high < 0
                   else f"{d['a']} and {d['b']} do not differ beyond seed noise" if summary["seeds"] >= MIN_SEEDS
                   else f"with {summary['seeds']} seeds the interval is too wide to resolve a difference between "
                        f"{d['a']} and {d['b']} (run at least {MIN_SEEDS} seeds)")
        sentences.append(f"{verdict} ({summary['mean']:+.1f} ± {summary['half_width']:.1f} points over "
                         f"{summary['seeds']} seeds).")
    return " ".join(sentences)
