"""Accuracy against what the chip costs (docs/method.md, 'What a chip costs'; docs/results.md, 'Report files'):
one point per configuration (a results file with a ``cost`` field, written by ``neft cost --attach``, and one of its
sigmas), the mean and the 5th percentile over chips against the energy per inference and against the programming
time per chip, the Pareto front of the 5th percentile at each sigma marked."""

from __future__ import annotations

import itertools
import warnings
from pathlib import Path

from neft.reporting import chip_plots as chip_report
from neft.reporting.labels import _labels

__all__ = ["cost_points", "pareto_front", "pareto_fronts", "plot_cost"]


def cost_points(results: list[dict]) -> list[dict]:
    """One point per (result with a ``cost`` field, sigma): ``label``, ``sigma``, ``mean`` and ``p5`` (accuracy in
    %, the 5th percentile over chips; the mean when a file has no percentiles), ``energy`` (J per inference),
    ``programming`` (seconds per chip, every term of the ``programming`` cost), ``area`` (m^2). Warns when the
    results were costed with different technology keys (``cost.technology``), and when some carry a cost and
    others none (those are left off)."""
    points, technologies, labels = [], [], [label for label, _ in _labels(results)]
    for result, label in zip(results, labels):
        cost = result.get("cost")
        if not cost:
            continue
        if cost.get("technology") not in technologies:
            technologies.append(cost.get("technology"))
        for point in result["per_sigma"]:
            accuracy = point["accuracy"]
            points.append({"label": label, "sigma": float(point["sigma"]), "mean": accuracy["mean"],
                           "p5": accuracy.get("p5", accuracy["mean"]), "energy": cost["energy_J"],
                           "programming": cost["programming"]["total"]["seconds"], "area": cost["area_m2"]})
    uncosted = [label for result, label in zip(results, labels) if not result.get("cost")]
    if points and uncosted:
        warnings.warn(f"{len(uncosted)} of {len(results)} results carry no cost and are left off the cost plot "
                      f"({', '.join(uncosted[:3])}{', ...' if len(uncosted) > 3 else ''}): cost them with `neft cost "
                      "RUN_DIR --attach`", stacklevel=2)
    if len(technologies) > 1:
        warnings.warn("the results were costed with different technology keys (or some without a record of them): "
                      "their energies and times are not comparable; cost them again alike with `neft cost RUN_DIR "
                      "--attach --overwrite`", stacklevel=2)
    return points


def pareto_front(points: list[dict], cost: str, accuracy: str = "p5") -> list[dict]:
    """The points no other point beats: none has a cost at most theirs and a higher accuracy, or a lower cost
    and an accuracy at least theirs. Sorted by cost (the front rises with cost)."""
    front, best = [], float("-inf")
    for point in sorted(points, key=lambda p: (p[cost], -p[accuracy])):
        if point[accuracy] > best:
            front.append(point)
            best = point[accuracy]
    return front


def pareto_fronts(points: list[dict], cost: str, accuracy: str = "p5") -> dict[float, list[dict]]:
    """``{sigma: pareto_front(points at sigma)}``, sigmas ascending: the chips of one sigma compete, those of
    another sigma are other chips."""
    sigmas = sorted({point["sigma"] for point in points})
    return {sigma: pareto_front([p for p in points if p["sigma"] == sigma], cost, accuracy) for sigma in sigmas}


def plot_cost(points: list[dict], path: str | Path, title: str | None = None) -> Path:
    """Save a PNG (150 dpi) of two panels: accuracy (mean as circles, 5th percentile over chips as triangles, %)
    against the energy per inference (uJ, log scale) and against the programming time per chip (s, log scale),
    one colour per label (the legend and the names on the front give each label up to its first parenthesis), the
    Pareto front of the 5th percentile as a black line, one per sigma (its own line style; points of different
    sigmas are different chips and do not compete), each front point named (with its sigma when there are several).

    Raises:
        ValueError: no point (no result has a ``cost`` field).
    """
    if not points:
        raise ValueError("no result carries a cost: run `neft cost RUN_DIR --attach` first")
    labels = list(dict.fromkeys(point["label"] for point in points))
    sigmas = sorted({point["sigma"] for point in points})
    colours = _colours(len(labels))
    columns = 3 if len(labels) > 8 else 2
    rows = -(-(len(labels) + 2 + len(sigmas)) // columns)  # legend rows: a label each, two markers, a front each
    height = 5.0 + 0.2 * rows
    figure = chip_report.new_figure((14, height), layout=None)
    figure.subplots_adjust(left=0.06, right=0.98, top=1 - 0.5 / height, bottom=(0.7 + 0.2 * rows) / height,
                           wspace=0.18)
    axes = figure.subplots(1, 2)
    for ax, (key, scale, unit) in zip(axes, (("energy", 1e6, "energy per inference (uJ)"),
                                             ("programming", 1.0, "programming time per chip (s)"))):
        for colour, label in zip(colours, labels):
            mine = [p for p in points if p["label"] == label]
            ax.scatter([p[key] * scale for p in mine], [p["mean"] for p in mine], marker="o", s=22, color=colour,
                       label=label.split(" (")[0] if key == "energy" else None)
            ax.scatter([p[key] * scale for p in mine], [p["p5"] for p in mine], marker="^", s=22,
                       facecolors="none", edgecolors=colour)
        for (sigma, front), style in zip(pareto_fronts(points, key).items(), itertools.cycle(("-", "--", ":", "-."))):
            at = f", sigma {sigma:g}" if len(sigmas) > 1 else ""
            ax.plot([p[key] * scale for p in front], [p["p5"] for p in front], color="black", lw=1, linestyle=style,
                    drawstyle="steps-post", label=f"Pareto front (5th percentile{at})" if key == "energy" else None)
            for p in front:
                ax.annotate(p["label"].split(" (")[0] + at, (p[key] * scale, p["p5"]), fontsize=6, xytext=(3, -8),
                            textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel(unit)
        ax.set_ylabel("accuracy (%): o mean, ^ 5th percentile")
        ax.grid(alpha=0.3)
    figure.legend(loc="lower center", ncol=columns, fontsize="small", frameon=False)
    if title:
        figure.suptitle(title)
    figure.savefig(path, dpi=150)
    return Path(path)


def _colours(count: int) -> list:
    """``count`` distinguishable colours: matplotlib's tab10 up to 10, tab20 up to 20, else viridis samples."""
    from matplotlib import colormaps

    if count <= 10:
        return list(chip_report.COLORS[:count])
    cmap = colormaps["tab20" if count <= 20 else "viridis"]
    return [cmap(i / max(1, count - 1)) if count > 20 else cmap(i) for i in range(count)]
