"""The type of every field of a results file (``results.json``, docs/results.md): :func:`check_fields` refuses a
value of another type (a hand-edited or damaged file) with one error naming the file and the field, before a
report reads it.

A field's spec is one of: a string of kinds joined by ``|`` (``str``, ``int``, ``number`` (finite, never a bool),
``bool``, ``null``, ``object``, ``list``); a dict (an object whose listed fields, when present, have these specs;
other fields are not checked, so files of later versions stay readable); a one-item list (a list whose items
have that spec); or a tuple of specs, any of which may match. A field that is absent is not checked here:
:func:`neft.reporting.results.check_result` requires the fields a report cannot do without.
"""

from __future__ import annotations

import math
from pathlib import Path

__all__ = ["RESULT_FIELDS", "check_fields"]

DEVICE_MODEL = {"name": "str", "weight_bits": "int", "device_bits": "int", "state_factor": "number",
                "band": ["number"], "read_sigma": "number", "levels": (["number"], "null"), "quantize": "bool",
                "stuck_off": "number", "stuck_on": "number", "drift_nu_mean": "number", "drift_nu_std": "number",
                "drift_t0": "number", "drift_time": "number|null", "drift_compensation": "bool", "g_max": "number",
                **{name: (["number"], "null") for name in ("prog_noise_coeffs", "drift_nu_mean_law", "drift_nu_std_law",
                                                           "read_noise_1f")},
                "t_read": "number", "drift_nu_abs": "bool", "read_noise_1f_per_read": "bool", "clip_g_max": "bool",
                "drift_compensation_input": "str", "drift_of": "str"}  # on_off_ratio may be inf: not a finite number
CIRCUIT = {"tile_rows": "int|null", "dac_bits": "int|null", "adc_bits": "int|null", "adc_range": "number",
           "adc_mode": "str", "wire_resistance": "number", "adc_offset": "number", "adc_gain": "number",
           "adc_inl": "number", "adc_mismatch": "number",
           "out_noise": "number", "input_management": "str", "bound_management": "str",
           "out_bound": "number|null", "weight_scaling": "str", "converter_codes": "str",
           "drift_compensation_at": "str", "tile_split": "str", "tile_mapping": "str",
           "compensation_readout": "str"}
EVALUATION = {
    "sigmas": (["number"], "null"), "runs": "int", "seed": "int", "device_model": ("str|null", DEVICE_MODEL),
    "batch_size": "int", "test_subset": "int|null", "chips_per_pass": "int|str", "ci_target": "number|null",
    "min_runs": "int", "precision": "str", "memory_format": "str", "compile": "bool|str", "write_verify": "number",
    "verify_select": "str", "verified_sigma": "number", "read_sigma": "number|null", **CIRCUIT,
    **{name: "number|null" for name in ("stuck_off", "stuck_on", "drift_nu_mean", "drift_nu_std", "drift_time")},
    "quantize": "bool|null", "drift_compensation": "bool|null", "recalibrate_bn": "int", "chip_tune": "int",
    "chip_tune_taps": (["str"], "null"), "chip_tune_lr": "number", "chip_tune_batch": "int"}
ACCURACY = {**{key: "number" for key in ("mean", "std", "ci95", "ci99", "min", "p1", "p5", "p10")},
            "per_run": ["number"]}
POINT = {"sigma": "number", "runs": "int", "run_seeds": ["int"], "accuracy": ACCURACY, "ekl": "number",
         "ekl_x1e2": "number", "confidence": "number", "seconds": "number",
         "over_seeds": {"mean": "number", "std": "number|null", "half_width": "number|null", "seeds": "int",
                        "per_seed": ["number"]},
         "execution": {"chips_per_pass": "int", "memory_format": "str", "compiled": "bool"}}
COST = {"mapped_weights": "int", "write_verify": {"weights_verified": "int", "fraction": "number"},
        "recalibrate_bn": {"images": "int"},
        "chip_tune": {"optimizer_steps": "int", "images": "int", "weights_written_verified": "int",
                      "fraction_of_weights": "number", "taps": ["str"]}}
SPENT = {"seconds": "number", "joules": "number"}
COST_SUMMARY = {"node": "str", "energy_J": "number", "latency_s": "number", "area_m2": "number", "tiles": "int",
                "adcs": "int", "programming": {term: SPENT for term in ("programming", "write_verify",
                                                                        "recalibrate_bn", "chip_tune", "total")},
                "technology": "object"}
PRECISION_CHECK = {"sigma": "number", "chips": "int", "fp32_mean": "number", "fp32_ci95": "number",
                   "bf16_mean": "number", "max_chip_difference": "number", "tolerance": "number", "passed": "bool",
                   "reason": "str"}
RESULT_FIELDS = {
    "schema_version": "int", "label": "str|null", "evaluation": EVALUATION, "deployment_cost": COST,
    "cost": COST_SUMMARY,
    "chip_device": "str", "run": "str", "model": "str", "model_args": "object|null",
    "model_source": ({"path": "str", "file": "str", "sha256": "str", "changed": "bool"}, "null"),
    "width": "number", "dataset": "str", "num_classes": "int", "method": "str", "train_sigma": "number",
    "train_seed": "int|null", "beta": "number|null", "temperature": "number",
    **{name: "number|null" for name in ("censor_k", "rcg_scale", "lipschitz_lambda", "correctnet_lambda",
                                        "distill_alpha", "distill_temperature")},
    "teacher": "str|null", "teacher_sha256": "str|null", "init": "str|null", "epochs": "int|null",
    "epochs_trained": "int|null", "checkpoint_epoch": "int|null", "test_set": "str", "train_subset": "int|null",
    "device_model": DEVICE_MODEL, "train_device_model": DEVICE_MODEL, "train_circuit": CIRCUIT, "seed": "int",
    "runs": "int", "ci_target": "number|null", "precision": "str", "precision_check": (PRECISION_CHECK, "null"),
    "test_size": "int", "per_sigma": [POINT], "seconds": "number", "seeds": ["int"],
    "versions": {name: "str" for name in ("neft", "torch", "numpy", "python")},
    "normalisation": {"source": "str", "mean": ["number"], "std": ["number"]},
    "calibration": ({"split": "str", "images": "int", "seed": "int"}, "null")}

_KINDS = {
    "str": ("a string", lambda v: isinstance(v, str)),
    "int": ("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    "number": ("a finite number",
               lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)),
    "bool": ("true or false", lambda v: isinstance(v, bool)),
    "null": ("null", lambda v: v is None),
    "object": ("an object", lambda v: isinstance(v, dict)),
    "list": ("a list", lambda v: isinstance(v, list)),
}


def _kind(spec) -> str:
    """The JSON kinds ``spec`` allows at the top, joined by ``|`` (``object`` for a dict, ``list`` for a list)."""
    if isinstance(spec, str):
        return spec
    if isinstance(spec, tuple):
        return "|".join(_kind(alternative) for alternative in spec)
    return "object" if isinstance(spec, dict) else "list"


def _matches(spec, value) -> bool:
    """Whether ``value`` has one of the kinds ``spec`` allows at the top (its items and fields not looked at)."""
    return any(_KINDS[kind][1](value) for kind in _kind(spec).split("|"))


def _check(spec, value, field: str, path: Path, bad) -> None:
    """Check ``value`` (the field ``field``) and, below it, its fields or items against ``spec``."""
    if not _matches(spec, value):
        wanted = " or ".join(dict.fromkeys(_KINDS[kind][0] for kind in _kind(spec).split("|")))
        raise bad(path, field, f"is {_shown(value)}, not {wanted}")
    alternatives = spec if isinstance(spec, tuple) else (spec,)
    spec = next((s for s in alternatives if not isinstance(s, str) and _matches(s, value)), None)
    if isinstance(spec, dict):
        for key, inner in spec.items():
            if key in value:
                _check(inner, value[key], f"{field}.{key}" if field else key, path, bad)
    elif isinstance(spec, list):
        for index, item in enumerate(value):
            _check(spec[0], item, f"{field}[{index}]", path, bad)


def _shown(value) -> str:
    """``value`` as it reads in an error message, at most 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_fields(result: dict, path: Path, bad) -> None:
    """Check the type of every field of ``result`` that :data:`RESULT_FIELDS` lists (docs/results.md).

    ``bad(path, field, problem)`` builds the error, e.g. ``bad(path, "per_sigma[0].accuracy.mean", "is '90', not a
    finite number")``.

    Raises:
        ValueError: (what ``bad`` returns) for the first field whose value has another type.
    """
    _check(RESULT_FIELDS, result, "", path, bad)
