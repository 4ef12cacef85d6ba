"""Comparison reports from Monte Carlo results: the report files, ``{name}.md``, ``{name}.csv`` and the plots, put
together (fields and units: docs/results.md, 'Report files').

Input is the ``results.json`` that Monte Carlo evaluation writes into each run directory (one trained network),
loaded and checked by :mod:`neft.reporting.results`; the tables come from :mod:`neft.reporting.tables`, the plots
from :mod:`neft.reporting.plots` and :mod:`neft.reporting.chip_plots`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from neft.common.errors import check_name
from neft.data.normalisation import describe as describe_normalisation
from neft.reporting import chip_plots as chip_report
from neft.reporting.cost_plots import cost_points, plot_cost
from neft.reporting.labels import _base_label, _device_name, _labels, _trained_on, result_label
from neft.reporting.plots import plot, plot_write_verify, write_verify_curves
from neft.reporting.results import RUN_FILES, check_result, load_results, training_sigma
from neft.reporting.tables import comparison_rows, markdown_table, write_csv
from neft.store.lock import disk_error, staged_writes
from neft.training import objectives

__all__ = ["write_report"]

PLOT_NAME = "accuracy_vs_sigma.png"


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

    ``paths_or_results`` holds results files, run directories (see :func:`~neft.reporting.results.load_results`)
    and/or loaded results. Writes ``{name}.md`` (title, Monte Carlo runs per point and test set size, both tables of
    :func:`~neft.reporting.tables.markdown_table` and the plot as an image link), ``{name}.csv``
    (:func:`~neft.reporting.tables.write_csv`) and the plot ``accuracy_vs_sigma.png``
    (``{name}_accuracy_vs_sigma.png`` for a name other than ``"report"``, so that reports sharing a directory keep
    their own plot; it leaves out the points of other kinds of sweeps, which have plots of their own, unless
    nothing else is left); ``notes`` is a paragraph placed under the title. Returns ``{"markdown": .., "csv": ..,
    "plot": ..}``, plus ``"write_verify"`` (``{name}_write_verify.png``,
    :func:`~neft.reporting.plots.plot_write_verify`) when a label was evaluated at several write-verified
    fractions, ``"drift"`` (``{name}_drift.png``, :func:`neft.reporting.chip_plots.plot_drift`) when a network of a
    drifting chip was read at several times, and ``"cost"`` (``{name}_cost.png``) when results carry a cost.

    Results may come from run directories (:func:`neft.runs.evaluate_run`) or straight from
    :func:`neft.evaluation.montecarlo.evaluate`; ``labels`` (one per result, in order; a directory holding several
    results files counts once per distinct evaluation, :func:`~neft.reporting.results.load_results`) names them in
    tables and plots, overriding their own ``label``. One network evaluated under several device models shares a
    report: its lines are told apart by the device model.

    Raises:
        ValueError: no results, ``labels`` of the wrong length, two results for the same (label, sigma), or a
            ``name`` in a run directory that is one of its own files (``RUN_FILES``), even with ``overwrite``;
            SettingError (a ``ValueError``) for a ``name``, ``title``, ``out_dir`` or label that is not a line of
            printable text
            (a line break or other control character, :func:`~neft.common.errors.check_name`).
        FileExistsError: the report's files exist and ``overwrite`` is False.
        FileNotFoundError: a path does not exist or holds no results file.
        OSError: ``out_dir`` (or a folder above it) is a file; a write failed (full disk, read-only folder): nothing
            of the report is left behind and the message names the file (:func:`neft.store.lock.staged_writes`).
    """
    _check_names(name, title)
    check_name("out_dir", str(out_dir), "the report's folder")
    results = _gather(paths_or_results, labels)
    rows = comparison_rows(results)  # raises before anything is created
    out_dir = Path(out_dir)
    plot_name = PLOT_NAME if name == "report" else f"{name}_{PLOT_NAME}"
    _check_out_dir(out_dir, name, plot_name, overwrite)
    _make_dir(out_dir)
    title = title or "Robustness comparison"
    paths = {"markdown": out_dir / f"{name}.md", "csv": out_dir / f"{name}.csv", "plot": out_dir / plot_name}
    intro = "\n\n".join(part for part in (notes, _setup(results, rows), _early_reads(results),
                                           _training_setup(results)) if part)
    text = f"# {title}\n\n{intro}\n\n{markdown_table(rows)}\n![Accuracy and EKL vs sigma]({plot_name})\n"
    with staged_writes() as stage:  # all files or none: a full disk leaves no partial report behind
        write_csv(rows, stage(paths["csv"]))
        plot(_sigma_sweep(results), stage(paths["plot"]), title)
        text += _extra_plots(results, out_dir, name, paths, stage)
        stage(paths["markdown"]).write_text(text)
    return paths


def _check_names(name: str, title: str | None) -> None:
    """Refuse a report ``name`` or ``title`` that is not a line of printable text (:func:`check_name`)."""
    check_name("name", name, "the report's file name")
    if title is not None:
        check_name("title", title, "the report's title")


def _make_dir(out_dir: Path) -> None:
    """Create the report's folder; a failure (read-only, full disk) is one error naming it."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise disk_error(out_dir, error) from None


def _gather(paths_or_results: Sequence[str | Path | dict] | str | Path, labels: Sequence[str] | None) -> list[dict]:
    """The results to report, each checked (:func:`~neft.reporting.results.check_result`), named by ``labels``
    when given.

    Raises:
        ValueError: no results, or ``labels`` of the wrong length.
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
            named = "; ".join(f"{index + 1}: {result_label(result)}" for index, result in enumerate(results))
            raise ValueError(f"got {len(labels)} label(s) for {len(results)} result(s) ({named}); give one label "
                             "per result, in this order (a run directory with several results files counts once "
                             "per distinct evaluation)")
        results = [{**result, "label": check_name("labels", label, "a result's name in tables and plots")}
                   for result, label in zip(results, labels)]
    return results


def _check_out_dir(out_dir: Path, name: str, plot_name: str, overwrite: bool) -> None:
    """Refuse, before anything is written, a report that would replace a run directory's own files, or an earlier
    report of the same ``name`` unless ``overwrite``.

    Raises:
        ValueError: ``name`` is one of ``RUN_FILES`` and ``out_dir`` is a run directory.
        FileExistsError: one of the report's files exists and ``overwrite`` is False.
    """
    if name.lower() in RUN_FILES and (out_dir / "config.json").is_file():
        raise ValueError(f"a report named {name!r} in the run directory {str(out_dir)!r} would replace the run's own "
                         f"{name} file; choose another name")
    existing = [path for path in (out_dir / f"{name}.md", out_dir / f"{name}.csv", out_dir / plot_name)
                if path.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{str(existing[0])!r} already exists; replace the report with overwrite=True "
                              "(--overwrite), or write it elsewhere (--out) or under another name")


def _setup(results: list[dict], rows: list[dict]) -> str:
    """The report's setup line: Monte Carlo runs per point, test images, data sets, models and device models."""

    def listing(values) -> str:
        return ", ".join(str(value) for value in sorted(set(values)))

    devices = _by_time(results)
    return (
        f"Monte Carlo runs per point: {listing(_runs_per_point(row) for row in rows)}; "
        f"test images: {listing(r['test_size'] for r in results)}; "
        f"dataset: {listing(r.get('dataset', '?') for r in results)}; "
        f"model: {listing(r.get('model', '?') for r in results)}; "
        f"device model: {', '.join(dict.fromkeys(_device_name(r) + chip_report.chip_label(r) for r in devices))}."
    )


def _extra_plots(results: list[dict], out_dir: Path, name: str, paths: dict[str, Path],
                 stage: Callable[[Path], Path]) -> str:
    """Write the plots only some reports have (each to ``stage(path)``, :func:`neft.store.lock.staged_writes`),
    adding their paths to ``paths``: accuracy against the fraction write-verified for a write-verify sweep, and
    accuracy against time for networks read at several times after programming. Returns the markdown image
    links."""
    text = ""
    if write_verify_curves(results):  # a write-verify sweep: accuracy against the fraction verified, too
        wv_name = f"{name}_write_verify.png"
        paths["write_verify"] = out_dir / wv_name
        plot_write_verify(results, stage(paths["write_verify"]))
        text += f"\n![Accuracy vs fraction write-verified]({wv_name})\n"
    drift = chip_report.drift_curves(results, _drift_labels(results))
    if drift:  # networks read at several times after programming: accuracy against time, too
        paths["drift"] = out_dir / f"{name}_drift.png"
        chip_report.plot_drift(drift, stage(paths["drift"]))
        text += f"\n![Accuracy vs time after programming]({name}_drift.png)\n"
    points = cost_points(results)
    if points:  # results that carry a cost (neft cost --attach): accuracy against energy and programming time
        paths["cost"] = out_dir / f"{name}_cost.png"
        plot_cost(points, stage(paths["cost"]))
        text += f"\n![Accuracy vs energy per inference and programming time per chip]({name}_cost.png)\n"
    return text


def _by_time(items: list, key=lambda item: item) -> list:
    """``items`` (results, or tuples holding them at ``key``) by device model name and read time (a drifting chip's
    ``drift_time``, else t0), so read times list as 1s, 15s, 1h, 1d, 1y; a stable sort."""
    def read_time(result: dict) -> float:
        chip = chip_report.chip_columns(result)
        return (chip["drift_time"] or chip["drift_t0"]) if chip_report.drifts(chip) else 0.0

    return sorted(items, key=lambda item: (_device_name(key(item)), read_time(key(item))))


def _drift_labels(results: list[dict]) -> list[str]:
    """The network of each result as the drift plot names it: its label and chip without the read time."""
    return [_base_label(r) + chip_report.chip_label(r, with_time=False) + _trained_on(r) for r in results]


def _sigma_sweep(results: list[dict]) -> list[dict]:
    """The results the plot against sigma shows: all but the points of another kind of sweep, which have a plot
    of their own (a fraction above 0 of a write-verify sweep, every read time of a drift sweep); all of them
    when nothing else is left."""
    verified = {label for label, _, _ in write_verify_curves(results)}
    drifted = {label for label, _ in chip_report.drift_curves(results, _drift_labels(results))}
    kept = [result for result, network in zip(results, _drift_labels(results))
            if network not in drifted and not (result.get("evaluation", {}).get("write_verify")
                                               and _base_label(result) in verified)]
    return kept or results


def _early_reads(results: list[dict]) -> str:
    """A warning for reads of a drifting chip before its drift reference time t0 (empty when there are none)."""
    early = chip_report.read_times_before_t0(results)
    if not early:
        return ""
    times = ", ".join(f"{chip_report.time_label(time)} (t0 = {chip_report.time_label(t0)})" for time, t0 in early)
    return (f"**Warning: read before the drift reference time t0**: {times}. Conductances equal the programmed ones "
            "at t0; before it the drift law G(t) = G(t0) (t / t0)^-nu runs backwards (conductances above the "
            "programmed ones), which no measurement supports (aihwkit counts read times from t0). Read at t >= t0.")


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
    settings of rcg, lipschitz and distill with distill's teacher, seeds), the input normalisation stated for
    imported weights when it is not the data set's own, and the device model they were evaluated under."""
    lines = []
    for result, (label, _) in _by_time(list(zip(results, _labels(results))), key=lambda item: item[0]):
        facts = []
        if result.get("method"):
            facts.append(f"trained at sigma {training_sigma(result):g}")
            facts.append(_epochs(result))
            facts.append(f"{result['train_subset']} training images" if result.get("train_subset")
                         else "the full training set")
            facts.append(f"init {result.get('init', 'kaiming') or 'unknown'}")
            if result["method"] in ("ovf", "irs") and result.get("beta") is not None:
                facts.append(f"beta {result['beta']:g}")
            if result.get("temperature", 1.0) != 1.0:
                facts.append(f"T {result['temperature']:g}")
            facts += [f"{name} {result[name]:g}" for name in objectives.METHOD_SETTINGS if result.get(name) is not None]
            if result.get("teacher"):
                facts.append(f"teacher {result['teacher']}")
            seeds = result.get("seeds", [result["train_seed"]] if "train_seed" in result else [])
            if seeds:
                facts.append(f"seed{'s' if len(seeds) > 1 else ''} "
                             f"{', '.join('unknown' if seed is None else str(seed) for seed in seeds)}")
        normalisation = result.get("normalisation") or {"source": "dataset"}
        if normalisation["source"] != "dataset":  # weights imported with their own normalisation stated
            facts.append(f"inputs normalised {describe_normalisation(**normalisation)}")
        facts.append(f"evaluated under device model {_device_name(result)}")
        lines.append(f"- {label}: {', '.join(facts)}")
    return "Runs:\n\n" + "\n".join(dict.fromkeys(lines)) if lines else ""


def _epochs(result: dict) -> str:
    """How long a network trained: ``30 epochs`` (``1 epoch``), or ``12 of 30 epochs (training stopped early)``."""
    planned, trained = result.get("epochs"), result.get("epochs_trained")
    if not planned:
        return "epochs not recorded"
    if trained is not None and trained < planned:
        return f"{trained} of {planned} epoch{'s' if planned > 1 else ''} (training stopped early)"
    return f"{planned} epoch{'s' if planned > 1 else ''}"
