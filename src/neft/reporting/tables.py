"""Comparison tables over results (columns and units: docs/results.md, 'report.csv'): one row per (label,
evaluated sigma), the markdown tables pivoted by sigma and the CSV file.

Protocol (docs/method.md, 'Protocol'): every evaluated sigma of every result is a point; a noise-aware method
trained at several sigmas, each tested at its own sigma, therefore forms one line over sigma, like the paper's
accuracy-versus-sigma results.
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

from neft.reporting import chip_plots as chip_report
from neft.reporting.labels import _base_label, _device_name, _labels
from neft.reporting.results import training_sigma

__all__ = ["comparison_rows", "markdown_table", "write_csv"]

METHOD_ORDER = ("vanilla", "noise-injection", "ovf", "irs", "rcg", "lipschitz", "correctnet", "distill")
ROW_KEYS = ("method", "train_sigma", "sigma", "mean", "ci95", "std", "min", "p1", "p5", "ekl_x1e2", "confidence",
            "runs", "run", "seeds", "seed_mean", "seed_ci95", "device_model", "write_verify", "verify_select",
            *chip_report.CHIP_COLUMNS, *chip_report.CIRCUIT_COLUMNS)


def _method_rank(method: str) -> tuple[int, str]:
    name = method.lower()
    return (METHOD_ORDER.index(name) if name in METHOD_ORDER else len(METHOD_ORDER), name)


def _setting_columns(result: dict) -> dict:
    """The CSV columns of what sets one network's results apart besides its chip (``chip_report.chip_columns``:
    read noise, quantization, stuck devices, drift): device model, fraction write-verified and its selection
    (empty when nothing is verified)."""
    evaluation = result.get("evaluation", {})
    fraction = evaluation.get("write_verify") or 0.0
    return {"device_model": _device_name(result), "write_verify": fraction,
            "verify_select": evaluation.get("verify_select", "") if fraction else ""}


def comparison_rows(results: list[dict]) -> list[dict]:
    """One row per (method label, evaluated sigma) over all results, following docs/method.md, 'Protocol'.

    Row keys: ``method`` (label), ``train_sigma``, ``sigma`` (relative device variation), ``mean``, ``ci95``,
    ``std``, ``min`` (Top-1 accuracy in %, CI95 a half-width over chips), ``ekl_x1e2`` (EKL in 1e-2 nats),
    ``confidence`` (mean max softmax probability, fraction), ``runs`` (Monte Carlo runs), ``run`` (run directory),
    and for results pooled over training seeds ``seeds`` (T), ``seed_mean`` and ``seed_ci95`` (mean of the T
    per-seed MC means and its 95 % t-interval half-width, :func:`neft.evaluation.metrics.seed_interval`; empty
    otherwise).

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
                "train_sigma": training_sigma(result),  # 0 for vanilla
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
