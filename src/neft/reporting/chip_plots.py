"""How reports show the realistic chip (docs/method.md, 'The realistic chip'; docs/results.md): the label suffix
that names its non-default settings, one CSV column per setting, and accuracy against the read time after
programming (drift), one line per network.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from neft.chip.circuit_settings import FIELDS as CIRCUIT_FIELDS
from neft.chip.circuit_settings import CircuitSettings
from neft.chip.device_model import DRIFT_T0

__all__ = ["CHIP_COLUMNS", "CIRCUIT_COLUMNS", "chip_columns", "chip_label", "columns_label", "drift_curves",
           "drifts", "line_styles", "new_figure", "plot_drift", "read_times_before_t0", "time_label"]

# report.csv columns, with the value a results file without the key (written before these settings) stands for
CHIP_COLUMNS = {"quantize": False, "weight_bits": 8, "device_bits": 2, "stuck_off": 0.0, "stuck_on": 0.0,
                "drift_nu_mean": 0.0, "drift_nu_std": 0.0, "drift_t0": DRIFT_T0, "drift_time": None,
                "drift_compensation": False, "read_sigma": 0.0, "drift_nu_mean_law": None, "drift_nu_std_law": None}
# report.csv columns of the crossbar circuit (docs/method.md, 'The crossbar circuit'), with their off values
CIRCUIT_COLUMNS = {name: getattr(CircuitSettings(), name) for name in CIRCUIT_FIELDS}
_UNITS = ((3.15e7, "y"), (86400, "d"), (3600, "h"), (60, "min"), (1, "s"))
COLORS = tuple(f"C{i}" for i in range(10))  # matplotlib's default (tab10) colours
MARKERS = "osD^vP*X<>"


def line_styles(count: int) -> list[tuple[str, str]]:
    """``(colour, marker)`` of ``count`` plot lines, no two alike for up to 100 lines: line ``i`` takes colour
    ``i % 10`` and marker ``(i % 10 + i // 10) % 10``, so the 11th line repeats the first colour with the next
    marker (a colour cycle and a marker cycle of the same length would repeat both together)."""
    return [(COLORS[i % 10], MARKERS[(i % 10 + i // 10) % 10]) for i in range(count)]


def new_figure(size: tuple[float, float], layout: str | None = "constrained"):
    """A matplotlib ``Figure`` of ``size`` (width, height) inches with ``layout`` (constrained by default; None:
    the caller places the axes) and an Agg canvas (PNG files, no display). matplotlib is imported here, at the
    first plot, not with neft: about 1 CPU-second saved at the start of every ``neft`` command and worker process
    that draws nothing."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=size, layout=layout)
    FigureCanvasAgg(figure)
    return figure


def time_label(seconds: float) -> str:
    """A read time in the largest unit that keeps it >= 1: ``3.15e7`` -> ``"1y"``, ``3600`` -> ``"1h"``."""
    for size, unit in _UNITS:
        if seconds >= size:
            return f"{seconds / size:.3g}{unit}"
    return f"{seconds:.3g}s"


def chip_columns(result: dict) -> dict:
    """``{setting: value}`` of the device model a result's chips were drawn from (``CHIP_COLUMNS`` keys) and of
    the crossbar circuit it was read through (``CIRCUIT_COLUMNS`` keys, from its ``evaluation``; a result
    written without them reads as the circuit off)."""
    model, evaluation = result.get("device_model", {}), result.get("evaluation", {})
    return {**{name: model.get(name, default) for name, default in CHIP_COLUMNS.items()},
            **{name: evaluation.get(name, default) for name, default in CIRCUIT_COLUMNS.items()}}


def chip_label(result: dict, with_time: bool = True) -> str:
    """Label suffix naming the realistic chip's non-default settings, e.g. `` q8/2 stuck 1%+1% t=1y comp``
    (quantized weight/device bits, stuck-off + stuck-on percentages, read time when devices drift, global drift
    compensation); empty for the Gaussian model. ``with_time=False`` leaves the read time out."""
    return columns_label(chip_columns(result), with_time)


def columns_label(chip: dict, with_time: bool = True) -> str:
    """:func:`chip_label` from the realistic chip's columns (``CHIP_COLUMNS`` keys, e.g. a report.csv row)."""
    if not chip["quantize"]:
        return ""
    suffix = f" q{chip['weight_bits']}/{chip['device_bits']}"
    if chip["stuck_off"] or chip["stuck_on"]:
        suffix += f" stuck {100 * chip['stuck_off']:g}%+{100 * chip['stuck_on']:g}%"
    if drifts(chip):
        mean = "mu(g)" if chip.get("drift_nu_mean_law") else f"{chip['drift_nu_mean']:g}"
        std = "s(g)" if chip.get("drift_nu_std_law") else f"{chip['drift_nu_std']:g}"
        suffix += f" nu={mean}+-{std}"
        if with_time:
            suffix += f" t={time_label(chip['drift_time'] or chip['drift_t0'])}"
    return suffix + (" comp" if chip["drift_compensation"] else "")


def drifts(chip: dict) -> bool:
    """True when the chip columns ``chip`` (:func:`chip_columns`, or a report.csv row) describe drifting devices: a
    drift exponent's mean or std, constant or a law of the conductance (docs/method.md, 'The realistic chip')."""
    return bool(chip["quantize"]) and any(chip.get(name) for name in ("drift_nu_mean", "drift_nu_std",
                                                                      "drift_nu_mean_law", "drift_nu_std_law"))


def read_times_before_t0(results: list[dict]) -> list[tuple[float, float]]:
    """``(read time, t0)`` in seconds of each read of a drifting chip before its drift reference time ``t0``
    (``drift_t0``, 20 s by default), sorted: there ``G(t) = G(t0) (t / t0) ** -nu`` runs the power law backwards,
    conductances above the programmed ones (docs/method.md, 'The realistic chip'; aihwkit counts its
    ``t_inference`` from t0, so its reads never come before it)."""
    early = set()
    for result in results:
        chip = chip_columns(result)
        if drifts(chip) and chip["drift_time"] is not None and chip["drift_time"] < chip["drift_t0"]:
            early.add((chip["drift_time"], chip["drift_t0"]))
    return sorted(early)


def drift_curves(results: list[dict], labels: list[str]) -> dict[tuple[str, float], list[tuple[float, float, float]]]:
    """Accuracy against the read time: ``{(network label, sigma): [(seconds, mean %, ci95 points), ...]}`` sorted
    by time, for each network (``labels``: one label per result, without the read time) evaluated at two or more
    read times of a drifting chip."""
    curves: dict[tuple[str, float], dict[float, tuple[float, float]]] = {}
    for result, label in zip(results, labels):
        chip = chip_columns(result)
        if not drifts(chip):
            continue
        time = chip["drift_time"] or chip["drift_t0"]
        for point in result["per_sigma"]:
            key = (label, round(float(point["sigma"]), 6))
            curves.setdefault(key, {})[time] = (point["accuracy"]["mean"], point["accuracy"]["ci95"])
    return {key: sorted((t, m, c) for t, (m, c) in points.items()) for key, points in sorted(curves.items())
            if len(points) > 1}


def plot_drift(curves: dict, path: str | Path, title: str | None = None) -> Path:
    """Save a PNG (150 dpi): Top-1 accuracy (%, 95 % CI error bars) against the read time after programming
    (log axis, ticked at the read times in human units: ``1s``, ``1h``, ``1d``, ``1y``), one panel per sigma and
    one line per network (its colour and marker the same in every panel, one legend under the panels), from
    :func:`drift_curves`.

    Raises:
        ValueError: no network was evaluated at two or more read times.
    """
    if not curves:
        raise ValueError("no drift sweep to plot: evaluate a run of a drifting chip at several read times, e.g. "
                         "neft evaluate RUN --device-model PCM-chip --drift-times 1,3600,86400,2.6e6,3.15e7")
    sigmas = sorted({sigma for _, sigma in curves})
    styles = dict(zip(dict.fromkeys(label for label, _ in curves), line_styles(len(curves))))  # one per network
    times = sorted({time for points in curves.values() for time, _, _ in points})
    figure = new_figure((max(7.5, 5.5 * len(sigmas)), 4.6))
    panels = figure.subplots(1, len(sigmas), squeeze=False)[0]
    for axes, sigma in zip(panels, sigmas):
        for (label, _), points in [(k, v) for k, v in curves.items() if k[1] == sigma]:
            color, marker = styles[label]
            seconds, means, ci95 = zip(*points)
            axes.errorbar(seconds, means, yerr=ci95, marker=marker, color=color, capsize=3, label=label)
        axes.set_xscale("log")
        axes.set_xticks(times, [time_label(time) for time in times])  # the read times, in human units
        axes.minorticks_off()
        axes.set(xlabel="time after programming", ylabel="Top-1 accuracy (%)", title=f"σ = {sigma:g}")
        axes.grid(alpha=0.3)
    handles = {label: handle for axes in panels for handle, label in zip(*axes.get_legend_handles_labels())}
    # one legend for every panel, under them, long labels (a chip preset's settings) wrapped to the figure's width
    width = int(13 * figure.get_figwidth())  # characters of a "small" legend line
    figure.legend(handles.values(), [textwrap.fill(label, width) for label in handles], loc="outside lower center",
                  fontsize="small")
    figure.suptitle(title or "Accuracy vs time after programming (drift; mean, 95 % CI)")
    path = Path(path)
    figure.savefig(path, dpi=150)
    return path
