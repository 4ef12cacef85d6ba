"""Report plots (docs/results.md, 'accuracy_vs_sigma.png'): accuracy, worst case and EKL against sigma, one
line per label, and accuracy against the fraction of write-verified weights (docs/method.md, 'Selective
write-verify').
"""

from __future__ import annotations

import math
from pathlib import Path

from neft.reporting import chip_plots as chip_report
from neft.reporting.labels import _base_label
from neft.reporting.tables import comparison_rows

__all__ = ["plot", "write_verify_curves", "plot_write_verify"]

LEGEND_INCHES_PER_CHARACTER = 0.068  # matplotlib's "small" legend font (8.33 pt DejaVu Sans), an average width


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
    for label, (color, marker) in zip(labels, chip_report.line_styles(len(labels))):  # points often overlap
        line = lines[label]
        sigmas = [row["sigma"] for row in line]
        means, ci95 = [row["mean"] for row in line], [row["ci95"] for row in line]
        accuracy_axes.errorbar(sigmas, means, yerr=ci95, marker=marker, color=color, capsize=3, label=legends[label])
        worst = [(row["sigma"], row["p5"], row["p1"]) for row in line if isinstance(row.get("p5"), float)]
        if worst:
            worst_axes.plot([w[0] for w in worst], [w[1] for w in worst], marker=marker, color=color)
            worst_axes.plot([w[0] for w in worst], [w[2] for w in worst], linestyle=":", color=color)
        ekl_axes.plot(sigmas, [row["ekl_x1e2"] for row in line], marker=marker, color=color)
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
    for ((label, selection, sigma), points), (color, marker) in zip(curves.items(),
                                                                    chip_report.line_styles(len(curves))):
        fractions, means, ci95 = zip(*points)
        axes.errorbar([100 * f for f in fractions], means, yerr=ci95, marker=marker, color=color, capsize=3,
                      label=f"{label}, {selection}, σ={sigma:g}")
    axes.set(xlabel="weights write-verified (%)", ylabel="Top-1 accuracy (%)",
             title=title or "Accuracy vs fraction write-verified (mean, 95 % CI)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    path = Path(path)
    figure.savefig(path, dpi=150)
    return path
