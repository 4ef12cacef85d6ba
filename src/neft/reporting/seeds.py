"""Statistics over training seeds (docs/method.md, 'Monte Carlo evaluation and metrics'; docs/results.md,
'report_seeds.json'): every trained network counts once, by its Monte Carlo mean at its training sigma; variants
are compared by their mean over seeds with a t-interval, their convergence probability and paired differences,
rendered as markdown tables and as a paragraph of findings.
"""

from __future__ import annotations

from neft.evaluation import metrics
from neft.reporting.labels import _names
from neft.reporting.results import training_sigma
from neft.training import variants

__all__ = ["seed_comparison", "seed_sections", "findings"]

MIN_SEEDS = 3  # seeds below which a t-interval over seeds (t = 12.7 at 2 seeds) cannot resolve a difference
_Key = tuple[str, str, float]  # a group of networks: (data set, variant label, training sigma)


def _mean_at_training_sigma(result: dict) -> float:
    """MC mean accuracy (%) at the network's training sigma (sigma 0 for vanilla).

    Raises:
        ValueError: the result was not evaluated at that sigma.
    """
    target = training_sigma(result)
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
      t-interval, :func:`neft.evaluation.metrics.seed_interval`) and ``convergence`` (probability with a Wilson
      95 % interval against the shared threshold);
    - ``differences``: paired by training seed, in accuracy points: every variant minus the noise-injection
      baseline trained with the same init (``ovf init=torch`` - ``noise-injection init=torch``; plain
      ``noise-injection`` otherwise), and OVF/IRS minus each of their beta ablations (e.g. ``ovf`` -
      ``ovf beta=0``, the effect of the feedback term), each with its 95 % t-interval over the shared seeds.

    Networks trained on different chips (:func:`neft.training.variants.training_chip`: device model and circuit)
    are different variants, never seeds of one: their labels say ``(trained on X)`` where nothing else tells them
    apart, and every difference pairs networks trained and evaluated the same way.

    Args:
        results: ``results.json`` dicts, one per trained network, each with ``train_seed`` and ``num_classes``.

    Raises:
        KeyError: a result lacks ``num_classes`` or ``train_seed``.
        ValueError: a result was not evaluated at its training sigma, or its training seed is unknown (an imported
            network, ``neft import``).
    """
    groups, classes, variant_of = _groups(results)
    thresholds = _thresholds(groups, classes)
    rows = _variant_rows(groups, classes, thresholds)
    differences = _differences(groups, _pairs(groups, variant_of))
    return {"thresholds": [{"dataset": d, "train_sigma": s, "threshold": t}
                           for (d, s), t in sorted(thresholds.items())],
            "variants": rows, "differences": differences}


def _groups(results: list[dict]) -> tuple[dict[_Key, dict[int, float]], dict[str, int], dict[_Key, str]]:
    """Each network's MC mean (%) at its training sigma, ``{(data set, label, training sigma): {training seed:
    mean}}`` (:func:`_seed_labels`), the number of classes of each data set, and each group's method variant
    (:func:`neft.training.variants.label`; its own label for a labelled result), the part of its label before the
    deployment options."""
    groups: dict[_Key, dict[int, float]] = {}
    classes: dict[str, int] = {}
    variant_of: dict[_Key, str] = {}
    show_init = variants.mixed_inits(results)
    for result, label in zip(results, _seed_labels(results)):
        if result["train_seed"] is None:
            raise ValueError(f"{result.get('run', 'a result')} has no known training seed (an imported network: "
                             "neft import records none); leave it out of a comparison over training seeds")
        key = (result.get("dataset", "?"), label, training_sigma(result))
        groups.setdefault(key, {})[result["train_seed"]] = _mean_at_training_sigma(result)
        classes[key[0]] = result["num_classes"]
        variant_of[key] = result.get("label") or variants.label(result, show_init)
    return groups, classes, variant_of


def _seed_labels(results: list[dict]) -> list[str]:
    """The label of each result's group: its report name (:func:`neft.reporting.labels._names`), followed by
    ``(trained on X)`` when results of that name were trained on different chips
    (:func:`neft.training.variants.training_chip`), so that those never pool as seeds of one variant."""
    names = _names(results)
    chips: dict[str, set] = {}
    for result, name in zip(results, names):
        chips.setdefault(name, set()).add(variants.training_chip(result))
    return [f"{name} (trained on {variants.training_chip(result) or 'an unrecorded chip'})"
            if len(chips[name]) > 1 else name for result, name in zip(results, names)]


def _thresholds(groups: dict[_Key, dict[int, float]], classes: dict[str, int]) -> dict[tuple[str, float], float]:
    """The convergence threshold (%) of each (data set, training sigma), from the best network of any method there."""
    best: dict[tuple[str, float], float] = {}
    for (dataset, _, sigma), by_seed in groups.items():
        best[(dataset, sigma)] = max(best.get((dataset, sigma), float("-inf")), *by_seed.values())
    return {key: metrics.convergence_threshold(value, classes[key[0]]) for key, value in best.items()}


def _variant_rows(groups: dict[_Key, dict[int, float]], classes: dict[str, int],
                  thresholds: dict[tuple[str, float], float]) -> list[dict]:
    """One ``variants`` entry of :func:`seed_comparison` per group: per-seed means, the interval over seeds and the
    convergence probability against the group's shared threshold."""
    rows = []
    for (dataset, label, sigma), by_seed in groups.items():
        seeds = sorted(by_seed)
        rows.append({"dataset": dataset, "label": label, "train_sigma": sigma, "seeds": seeds,
                     "per_seed": [by_seed[s] for s in seeds],
                     "over_seeds": metrics.seed_interval([by_seed[s] for s in seeds]),
                     "convergence": metrics.convergence_probability(list(by_seed.values()), classes[dataset],
                                                                    thresholds[(dataset, sigma)])})
    return rows


def _pairs(groups: dict[_Key, dict[int, float]], variant_of: dict[_Key, str]) -> list[tuple[_Key, _Key]]:
    """The (A, B) groups to compare, both trained and evaluated the same way (the same label after the variant:
    deployment options, chip, ``(trained on X, ...)``): every variant against the noise-injection baseline trained
    with the same init (plain ``noise-injection`` when there is none), and OVF/IRS against each of their beta
    ablations."""
    pairs = []
    for dataset, label, sigma in groups:
        variant = variant_of[(dataset, label, sigma)]
        method, *options = variant.split()
        if method == "vanilla":
            continue
        rest = label[len(variant):] if label.startswith(variant) else ""  # how it was trained and evaluated
        inits = [option for option in options if option.startswith("init=")]
        reference = " ".join(["noise-injection", *inits]) + rest  # the baseline trained the same way
        if reference == label or (dataset, reference, sigma) not in groups:
            reference = "noise-injection" + rest
        if label != reference and (dataset, reference, sigma) in groups:
            pairs.append(((dataset, label, sigma), (dataset, reference, sigma)))
        base = " ".join([method, *inits]) + rest
        if method in ("ovf", "irs") and label != base and (dataset, base, sigma) in groups:
            pairs.append(((dataset, base, sigma), (dataset, label, sigma)))
    return pairs


def _differences(groups: dict[_Key, dict[int, float]], pairs: list[tuple[_Key, _Key]]) -> list[dict]:
    """A - B per training seed both share (accuracy points) with its interval over those seeds, for each pair that
    shares a seed."""
    differences = []
    for a, b in pairs:
        seeds = sorted(set(groups[a]) & set(groups[b]))
        if seeds:
            per_seed = [groups[a][s] - groups[b][s] for s in seeds]
            differences.append({"a": a[1], "b": b[1], "dataset": a[0], "train_sigma": a[2], "seeds": seeds,
                                "per_seed": per_seed, "over_seeds": metrics.seed_interval(per_seed)})
    return differences


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
        rows = [r for r in comparison["variants"]
                if (r["dataset"], r["train_sigma"]) == (t["dataset"], t["train_sigma"])]
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
