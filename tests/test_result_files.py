"""Result files as input (docs/results.md): a hand-edited or damaged results.json is refused with one error naming
the file and the field; every result file of a run directory is counted once."""

import csv
import json
import re

import pytest

from neft import reporting as report
from neft.cli.main import main


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


@pytest.fixture(scope="module")
def evaluated_run(tmp_path_factory):
    """One LeNet-5 (one epoch on 64 digits) evaluated six ways, each into its own results*.json."""
    from neft.training import TrainConfig, train

    run = tmp_path_factory.mktemp("many") / "run"
    train(TrainConfig(model="lenet5", method="noise-injection", sigma=0.2, epochs=1, train_subset=64,
                      test_subset=32, val_runs=1, init="torch"), run, progress=False)
    fast = ["--quiet", "--runs", "2", "--test-subset", "32", "--sigmas", "0,0.2", "--compile", "off"]
    for extra in ([], ["--device-model", "RRAM4", "--name", "results_rram4"],
                  ["--write-verify", "0,0.1,0.05"],  # results_wv0 is the same evaluation as results.json
                  ["--write-verify", "0,0.05", "--verify-select", "random", "--name", "results_random"],
                  ["--read-sigma", "0.02", "--name", "results_read"]):
        assert main(["evaluate", str(run), *fast, *extra]) == 0
    return run


def test_a_report_counts_every_result_file_of_a_run_once(evaluated_run, tmp_path, capsys):
    files = sorted(p.name for p in evaluated_run.glob("results*.json"))
    assert len(files) == 8
    loaded = report.load_results(evaluated_run)
    assert len(loaded) == 6  # results.json, results_wv0.json and results_random_wv0.json are one evaluation
    assert loaded[0]["run"] == str(evaluated_run) and loaded[0]["evaluation"]["write_verify"] == 0.0
    assert main(["report", str(evaluated_run), "--out", str(tmp_path / "r")]) == 0
    with (tmp_path / "r" / "report.csv").open() as file:
        rows = [row for row in csv.DictReader(file) if row["sigma"] == "0.2"]
    assert [(row["method"], row["device_model"], row["write_verify"], row["verify_select"], row["read_sigma"])
            for row in rows] == [
        ("noise-injection", "RRAM1", "0.0", "", "0.0"),
        ("noise-injection read_sigma=0.02", "RRAM1", "0.0", "", "0.02"),
        ("noise-injection wv=5% magnitude", "RRAM1", "0.05", "magnitude", "0.0"),
        ("noise-injection wv=10% magnitude", "RRAM1", "0.1", "magnitude", "0.0"),  # 5 % before 10 %
        ("noise-injection wv=5% random", "RRAM1", "0.05", "random", "0.0"),
        ("noise-injection (trained on RRAM1, evaluated on RRAM4)", "RRAM4", "0.0", "", "0.0"),
    ]
    text = (tmp_path / "r" / "report.md").read_text()
    assert "| noise-injection (trained on RRAM1, evaluated on RRAM4) |" in text
    assert "| noise-injection wv=10% magnitude |" in text


def test_pooled_grid_results_keep_every_variant_setting_in_their_labels(tmp_path):
    from neft.experiments.grid import pooled_results

    cells = [result("rcg", train_seed=seed, censor_k=2.0, lipschitz_lambda=None, run=f"runs/rcg{seed}")
             for seed in (0, 1)]
    cells += [result("distill", train_seed=seed, distill_alpha=0.5, distill_temperature=2.0, teacher="runs/v",
                     run=f"runs/d{seed}") for seed in (0, 1)]
    pooled = pooled_results(cells)
    assert [row["method"] for row in report.comparison_rows(pooled)] == ["rcg k=2", "distill alpha=0.5 T=2"]
    text = report.write_report(pooled, tmp_path)["markdown"].read_text()
    assert "| rcg k=2 |" in text and "censor_k 2" in text and "teacher runs/v" in text
