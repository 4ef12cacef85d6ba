"""Result files as input (docs/results.md): a hand-edited or damaged results.json is refused with one error naming
the file and the field; every result file of a run directory is counted once."""

import json
import re

import pytest

from neft import report
from neft.cli import main


def result(method="ovf", sigma=0.1, mean=90.0, **fields):
    point = {"sigma": sigma, "runs": 2, "accuracy": {"mean": mean, "std": 1.0, "ci95": 1.4, "min": mean - 1,
                                                      "per_run": [mean - 1, mean + 1]},
             "ekl": 0.01, "ekl_x1e2": 1.0, "confidence": 0.9}
    return {"schema_version": 3, "method": method, "train_sigma": 0.1, "train_seed": 0, "test_size": 100,
            "run": "runs/a", "per_sigma": [point], **fields}


def edited(path, value):
    data = result()
    target = data
    keys = path.split(".")
    for key in keys[:-1]:
        target = target[int(key)] if isinstance(target, list) else target[key]
    target[int(keys[-1]) if isinstance(target, list) else keys[-1]] = value
    return data


@pytest.mark.parametrize("path, value, field", [
    ("per_sigma.0.accuracy.mean", 150.0, "per_sigma[0].accuracy.mean"),
    ("per_sigma.0.accuracy.mean", -1.0, "per_sigma[0].accuracy.mean"),
    ("per_sigma.0.accuracy.mean", float("nan"), "per_sigma[0].accuracy.mean"),
    ("per_sigma.0.accuracy.mean", "90", "per_sigma[0].accuracy.mean"),
    ("per_sigma.0.accuracy.min", 101, "per_sigma[0].accuracy.min"),
    ("per_sigma.0.accuracy.std", -0.5, "per_sigma[0].accuracy.std"),
    ("per_sigma.0.accuracy.ci95", True, "per_sigma[0].accuracy.ci95"),
    ("per_sigma.0.accuracy.per_run", [90.0], "per_sigma[0].accuracy.per_run"),
    ("per_sigma.0.sigma", -0.1, "per_sigma[0].sigma"),
    ("per_sigma.0.sigma", None, "per_sigma[0].sigma"),
    ("per_sigma.0.runs", -3, "per_sigma[0].runs"),
    ("per_sigma.0.runs", 2.5, "per_sigma[0].runs"),
    ("per_sigma.0.ekl_x1e2", float("inf"), "per_sigma[0].ekl_x1e2"),
    ("per_sigma.0.confidence", 1.5, "per_sigma[0].confidence"),
    ("per_sigma.0.accuracy", [1, 2], "per_sigma[0].accuracy"),
    ("per_sigma.0", "x", "per_sigma[0]"),
    ("per_sigma", [], "per_sigma"),
    ("per_sigma", {"sigma": 0.1}, "per_sigma"),
    ("test_size", 0, "test_size"),
    ("train_sigma", -0.2, "train_sigma"),
])
def test_an_edited_results_file_is_refused_naming_file_and_field(path, value, field, tmp_path):
    file = tmp_path / "results.json"
    file.write_text(json.dumps(edited(path, value)))  # NaN and inf as JSON allows Python to write them
    with pytest.raises(ValueError) as error:
        report.load_results(tmp_path)
    message = str(error.value)
    assert message.startswith(f"{file}: ") and f"field {field} " in message
    with pytest.raises(ValueError, match=re.escape(f"field {field} ")):
        report.write_report([edited(path, value)], tmp_path / "out")  # a dict from Python gets the same check
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("text", ["{", "[1, 2]", '{"per_sigma": []}', "\xff\xfe"])
def test_damaged_results_files_give_one_cli_error(text, tmp_path, capsys):
    file = tmp_path / "results.json"
    file.write_bytes(text.encode("latin-1"))
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"neft: error: {file}: ") and "Traceback" not in err[0]
    assert not (tmp_path / "out").exists()


def test_valid_results_are_accepted_unchanged(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps(result()))
    assert report.load_results(tmp_path) == [result()]
