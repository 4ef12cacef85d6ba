"""Comparison reports from Monte Carlo results: tables, CSV and plots (SPEC sections 5 and 6).

Input is the ``results.json`` that Monte Carlo evaluation writes into each run directory (one trained network).
Accuracy is Top-1 in percent, its error is the 95 % CI half-width ``1.96*std/sqrt(R)`` over R programmed chips,
EKL is the expected KL divergence reported as x1e-2 nats and confidence is the mean max softmax probability
(a fraction in [0, 1]), all as defined in SPEC section 5.

Protocol (SPEC section 5): every evaluated sigma of every result is a point; a noise-aware method trained at
several sigmas, each tested at its own sigma, therefore forms one line over sigma, like the paper's table
(SPEC section 6).
"""

from __future__ import annotations

import csv
import itertools
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["load_results", "comparison_rows", "markdown_table", "write_csv", "plot", "write_report"]

METHOD_ORDER = ("vanilla", "noise-injection", "ovf", "irs")
ROW_KEYS = ("method", "train_sigma", "sigma", "mean", "ci95", "std", "min", "ekl_x1e2", "confidence", "runs", "run")
REQUIRED_KEYS = ("run", "method", "train_sigma", "test_size", "per_sigma")
REQUIRED_POINT_KEYS = ("sigma", "runs", "accuracy", "ekl_x1e2", "confidence")
REQUIRED_ACCURACY_KEYS = ("mean", "std", "ci95", "min")
PLOT_NAME = "accuracy_vs_sigma.png"


def _read_results_file(path: Path) -> dict:
    try:
        result = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not a neft results file (invalid JSON: {error})") from error
    if not isinstance(result, dict):
        raise ValueError(f"{path}: not a neft results file (expected a JSON object)")
    missing = [key for key in REQUIRED_KEYS if key not in result]
    for point in result.get("per_sigma", []):
        missing += [key for key in REQUIRED_POINT_KEYS if key not in point]
        missing += [f"accuracy.{key}" for key in REQUIRED_ACCURACY_KEYS if key not in point.get("accuracy", {})]
    if missing:
        raise ValueError(f"{path}: not a neft results file (missing keys: {', '.join(sorted(set(missing)))})")
    return result


def load_results(paths: Sequence[str | Path] | str | Path) -> list[dict]:
    """Load Monte Carlo results (SPEC section 5) from results files and/or run directories.

    A directory contributes its ``results.json``, or, if that is absent, every ``results*.json`` in it (sorted by
    name). A single path is accepted as well as a sequence. Results are returned as stored (accuracy in %).

    Raises:
        FileNotFoundError: a path does not exist or a directory holds no results file.
        ValueError: a file is not valid JSON or lacks keys of the results schema.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    files = []
    for path in map(Path, paths):
        if path.is_dir():
            default = path / "results.json"
            found = [default] if default.is_file() else sorted(path.glob("results*.json"))
            if not found:
                raise FileNotFoundError(f"no results.json in {path}: run `neft evaluate {path}` first")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"{path} does not exist (run `neft evaluate RUN_DIR` to create results.json)")
    return [_read_results_file(file) for file in files]


def _method_rank(method: str) -> tuple[int, str]:
    name = method.lower()
    return (METHOD_ORDER.index(name) if name in METHOD_ORDER else len(METHOD_ORDER), name)


def _has_duplicates(keys: list) -> bool:
    return len(keys) != len(set(keys))


def _sort_key(*values) -> tuple:
    """Sort key tolerating None (e.g. a vanilla run stored without a training sigma): None sorts first."""
    return tuple((value is not None, value or 0) for value in values)


def _labels(results: list[dict]) -> list[tuple[str, tuple]]:
    """(label, sort key) per result; the label grows only as far as needed to keep (label, sigma) unique."""
    labelled = []
    for result in results:
        group = [r for r in results if r["method"] == result["method"]]
        points = [(r["train_sigma"], r.get("train_seed"), p["sigma"]) for r in group for p in r["per_sigma"]]
        train_sigma, train_seed = result["train_sigma"], result.get("train_seed")
        if not _has_duplicates([sigma for _, _, sigma in points]):
            labelled.append((result["method"], ()))
        elif not _has_duplicates([(ts, sigma) for ts, _, sigma in points]):
            labelled.append((f"{result['method']} (sigma_train={train_sigma})", _sort_key(train_sigma)))
        else:
            label = f"{result['method']} (sigma_train={train_sigma}, seed={train_seed})"
            labelled.append((label, _sort_key(train_sigma, train_seed)))
    return labelled


def comparison_rows(results: list[dict]) -> list[dict]:
    """One row per (method label, evaluated sigma) over all results, following the SPEC section 5 protocol.

    Row keys: ``method`` (label), ``train_sigma``, ``sigma`` (relative device variation), ``mean``, ``ci95``,
    ``std``, ``min`` (Top-1 accuracy in %, CI95 a half-width), ``ekl_x1e2`` (EKL in 1e-2 nats), ``confidence``
    (mean max softmax probability, fraction), ``runs`` (Monte Carlo runs) and ``run`` (run directory).

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
                "train_sigma": result["train_sigma"],
                "sigma": round(float(point["sigma"]), 6),
                "mean": accuracy["mean"],
                "ci95": accuracy["ci95"],
                "std": accuracy["std"],
                "min": accuracy["min"],
                "ekl_x1e2": point["ekl_x1e2"],
                "confidence": point["confidence"],
                "runs": point["runs"],
                "run": result["run"],
            }
            rows.append(((_method_rank(result["method"]), label_key, row["sigma"]), row))
    rows.sort(key=lambda keyed: keyed[0])
    counts = Counter((row["method"], row["sigma"]) for _, row in rows)
    duplicated = [f"{label} at sigma {sigma:g}" for (label, sigma), n in counts.items() if n > 1]
    if duplicated:
        raise ValueError(f"several results for the same point: {'; '.join(duplicated)}")
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

    First table: Top-1 accuracy in %, cells ``"mean ± CI95"`` with two decimals (SPEC section 5). Second table:
    EKL in 1e-2 nats (two decimals) and confidence (fraction, three decimals), cells ``"EKL / confidence"``.
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
    return accuracy + "\n\n" + uncertainty + "\n"


def write_csv(rows: list[dict], path: str | Path) -> Path:
    """Write :func:`comparison_rows` rows to a CSV file (header = row keys, units as in SPEC section 5)."""
    path = Path(path)
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=ROW_KEYS)
        writer.writeheader()
        writer.writerows(rows)
    return path


def plot(results: list[dict], path: str | Path, title: str | None = None) -> Path:
    """Save a PNG (150 dpi) with accuracy (%, 95 % CI error bars) and EKL (x1e-2 nats) vs sigma, one line per label.

    Sigma is the relative device variation of SPEC section 1; the metrics are those of SPEC section 5.
    """
    rows = comparison_rows(results)
    figure = Figure(figsize=(11, 4.2), layout="constrained")
    FigureCanvasAgg(figure)
    accuracy_axes, ekl_axes = figure.subplots(1, 2)
    labels = list(dict.fromkeys(row["method"] for row in rows))
    for label, marker in zip(labels, itertools.cycle("osD^vP*X<>")):  # distinct markers: points often overlap
        line = [row for row in rows if row["method"] == label]
        sigmas = [row["sigma"] for row in line]
        means, ci95 = [row["mean"] for row in line], [row["ci95"] for row in line]
        accuracy_axes.errorbar(sigmas, means, yerr=ci95, marker=marker, capsize=3, label=label)
        ekl_axes.plot(sigmas, [row["ekl_x1e2"] for row in line], marker=marker, label=label)
    xlabel = "relative device variation sigma"
    accuracy_axes.set(xlabel=xlabel, ylabel="Top-1 accuracy (%)", title="Accuracy (mean, 95 % CI)")
    ekl_axes.set(xlabel=xlabel, ylabel="EKL (x1e-2 nats)", title="Expected KL divergence")
    for axes in (accuracy_axes, ekl_axes):
        axes.set_xticks(sorted({row["sigma"] for row in rows}))
        axes.grid(alpha=0.3)
        axes.legend(fontsize="small")
    if title:
        figure.suptitle(title)
    path = Path(path)
    figure.savefig(path, dpi=150)
    return path


def write_report(
    paths_or_results: Sequence[str | Path | dict] | str | Path,
    out_dir: str | Path,
    title: str | None = None,
    name: str = "report",
) -> dict[str, Path]:
    """Write a comparison report (SPEC sections 5 and 6) into ``out_dir`` (created if needed; files overwritten).

    ``paths_or_results`` holds results files, run directories (see :func:`load_results`) and/or loaded results.
    Writes ``{name}.md`` (title, Monte Carlo runs per point and test set size, both tables of
    :func:`markdown_table` and the plot as an image link), ``{name}.csv`` (:func:`write_csv`) and the plot
    ``accuracy_vs_sigma.png`` (``{name}_accuracy_vs_sigma.png`` for a name other than ``"report"``, so that
    reports sharing a directory keep their own plot). Returns ``{"markdown": .., "csv": .., "plot": ..}``.
    """
    if isinstance(paths_or_results, (str, Path)):
        paths_or_results = [paths_or_results]
    results = [r for item in paths_or_results for r in ([item] if isinstance(item, dict) else load_results(item))]
    if not results:
        raise ValueError("no results to report")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    title = title or "Robustness comparison"
    rows = comparison_rows(results)
    plot_name = PLOT_NAME if name == "report" else f"{name}_{PLOT_NAME}"
    paths = {
        "markdown": out_dir / f"{name}.md",
        "csv": write_csv(rows, out_dir / f"{name}.csv"),
        "plot": plot(results, out_dir / plot_name, title),
    }

    def listing(values) -> str:
        return ", ".join(str(value) for value in sorted(set(values)))

    setup = (
        f"Monte Carlo runs per point: {listing(row['runs'] for row in rows)}; "
        f"test images: {listing(r['test_size'] for r in results)}; "
        f"dataset: {listing(r.get('dataset', '?') for r in results)}; "
        f"model: {listing(r.get('model', '?') for r in results)}; "
        f"device model: {listing(r.get('device_model', {}).get('name', '?') for r in results)}."
    )
    text = f"# {title}\n\n{setup}\n\n{markdown_table(rows)}\n![Accuracy and EKL vs sigma]({plot_name})\n"
    paths["markdown"].write_text(text)
    return paths
