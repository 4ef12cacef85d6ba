"""The names results go by in tables and plots (docs/results.md): each result's label (its own, else its method
variant) with its deployment options, grown only as far as needed to tell results apart.
"""

from __future__ import annotations

from neft.chip.circuit_settings import FIELDS, CircuitSettings
from neft.reporting import chip_plots as chip_report
from neft.reporting.results import training_sigma
from neft.training import variants

__all__ = ["result_label", "evaluated_chip"]


def result_label(result: dict) -> str:
    """The name a result goes by in tables and plots: its ``label`` when set (``neft evaluate --label``,
    ``evaluate(..., label=...)``, ``write_report(..., labels=...)``), else its method variant
    (:func:`neft.training.variants.label`, e.g. ``ovf beta=0``), else ``"network"`` for a result without a method; then
    its deployment options (:func:`_deployment`), e.g. ``noise-injection wv=5% swim``; then, where the network was
    trained on another chip than it was evaluated on (:func:`_trained_on`), ``(trained on X, evaluated on Y)``."""
    return _base_label(result) + _deployment(result) + _trained_on(result)


def evaluated_chip(result: dict) -> str:
    """The chip a result was evaluated on: its device model's name and the crossbar circuit it was read through,
    e.g. ``"RRAM4"``, ``"PCM-chip no-quantize"``, ``"RRAM1 tile=64 adc=6b"`` (the counterpart of
    :func:`neft.training.variants.training_chip`)."""
    circuit = {name: result.get("evaluation", {})[name] for name in FIELDS if name in result.get("evaluation", {})}
    return _device_name(result) + (CircuitSettings(**circuit).label() if circuit else "")


def _trained_on(result: dict) -> str:
    """`` (trained on X, evaluated on Y)`` when the chip a network was trained on (device model and circuit,
    :func:`neft.training.variants.training_chip`) is not the one it was evaluated on (:func:`evaluated_chip`): its
    device model has another name, or it trained through a crossbar circuit the evaluation did not use as it was.
    Empty when they are the same, the training chip is not recorded, or only the evaluation adds a circuit (the
    label's circuit suffix, e.g. `` tile=64 adc=6b``, says so)."""
    trained, evaluated = variants.training_chip(result), evaluated_chip(result)
    if not trained or trained in (evaluated, _device_name(result)):  # the same chip, or a circuit added only here
        return ""
    return f" (trained on {trained}, evaluated on {evaluated})"


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
    comp``) and the crossbar circuit's (:meth:`neft.chip.circuit_settings.CircuitSettings.label`, e.g.
    `` tile=128 adc=6b sliced``; left to :func:`_trained_on`'s ``evaluated on`` where that names it); empty without
    them."""
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
    return suffix + (CircuitSettings(**circuit).label() if circuit and not _trained_on(result) else "")


def _device_name(result: dict) -> str:
    return result.get("device_model", {}).get("name", "?")


def _labels(results: list[dict]) -> list[tuple[str, tuple]]:
    """(label, sort key) per result: :func:`result_label` (variant labels name the init only when the results mix
    inits), grown only as far as needed to keep (label, sigma) unique: by the device model when the clashing
    results were evaluated under different ones, then by the training sigma, then by the training seed, then by
    the evaluation settings in which they differ (``test_subset=300``, ``precision=bf16``: the precision used);
    results on different test sets never form one curve, even at different sigmas (named by ``test_size`` and
    ``test_subset``)."""
    labelled = _grown_labels(results, _names(results))
    for label in {label for label, _ in labelled}:
        group = [i for i, (other, _) in enumerate(labelled) if other == label]
        # the precision a result ran in (``auto`` resolves to fp32 or bf16), not the one asked for
        settings = [{**results[i].get("evaluation", {}), "test_size": results[i].get("test_size"),
                     **({"precision": results[i]["precision"]} if "precision" in results[i] else {})} for i in group]
        differ = sorted({key for e in settings for key in e if key != "sigmas"
                         and any(o.get(key) != e.get(key) for o in settings)})
        if not _has_duplicates([p["sigma"] for i in group for p in results[i]["per_sigma"]]):
            differ = [key for key in differ if key in ("test_size", "test_subset")]  # one curve, on one test set
        for i, evaluation in zip(group, settings):
            extra = ", ".join(f"{key}={evaluation.get(key)}" for key in differ)
            if extra:
                labelled[i] = (f"{label} ({extra})", (*labelled[i][1], extra))
    return labelled


def _grown_labels(results: list[dict], names: list[str]) -> list[tuple[str, tuple]]:
    """:func:`_labels` before its last step."""
    labelled = []
    for result, name in zip(results, names):
        group = [r for r, v in zip(results, names) if v == name]
        points = [(_device_name(r), training_sigma(r), r.get("train_seed"), p["sigma"])
                  for r in group for p in r["per_sigma"]]
        device = _device_name(result)
        if _has_duplicates([sigma for *_, sigma in points]) and not _has_duplicates([(d, s) for d, _, _, s in points]):
            name = f"{name} ({device})"
            labelled.append((name, (name,)))
            continue
        train_sigma, train_seed = training_sigma(result), result.get("train_seed")
        if not _has_duplicates([sigma for *_, sigma in points]):
            labelled.append((name, (name,)))
        elif not _has_duplicates([(ts, sigma) for _, ts, _, sigma in points]):
            labelled.append((f"{name} (sigma_train={train_sigma})", (name, *_sort_key(train_sigma))))
        else:
            label = f"{name} (sigma_train={train_sigma}, seed={'unknown' if train_seed is None else train_seed})"
            labelled.append((label, (name, *_sort_key(train_sigma, train_seed))))
    return labelled


def _names(results: list[dict]) -> list[str]:
    """:func:`result_label` of each result, where variant labels name the init only when the results mix inits
    (:func:`neft.training.variants.labels`)."""
    show_init = variants.mixed_inits(results)
    # a chip shared by several results is named once, in the report's setup and the plot legend
    chip = len(results) == 1 or len({chip_report.chip_label(r) for r in results}) > 1
    return [_base_label(r, show_init) + _deployment(r, chip) + _trained_on(r) for r in results]


def _has_duplicates(keys: list) -> bool:
    return len(keys) != len(set(keys))


def _sort_key(*values) -> tuple:
    """Sort key tolerating None (e.g. a vanilla run stored without a training sigma): None sorts first."""
    return tuple((value is not None, value or 0) for value in values)
