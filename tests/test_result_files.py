"""Result files as input (docs/results.md): a hand-edited or damaged results.json is refused with one error naming
the file and the field; every result file of a run directory is counted once."""

import csv
import json
import re
from pathlib import Path

import pytest

from neft import reporting as report
from neft.cli.main import main


def result(method="ovf", sigma=0.1, mean=90.0, **fields):
    point = {"sigma": sigma, "runs": 2, "accuracy": {"mean": mean, "std": 2 ** 0.5, "ci95": 1.96, "min": mean - 1,
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
    ("per_sigma.0.accuracy.mean", 12.0, "per_sigma[0].accuracy.mean"),  # not the mean of per_run [89, 91]
    ("per_sigma.0.accuracy.mean", 90.001, "per_sigma[0].accuracy.mean"),  # beyond float rounding
    ("per_sigma.0.accuracy.std", 5.0, "per_sigma[0].accuracy.std"),  # not their std, sqrt(2)
    ("per_sigma.0.accuracy.per_run", [96.0, 97.6], "per_sigma[0].accuracy.mean"),
    ("label", "ovf\x1b[2J", "label"),  # an escape sequence would reach the terminal and report.md
    ("label", "ovf\nvanilla", "label"),  # a line break would split report.md's table row
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


def test_per_run_statistics_agree_to_float_rounding_and_pooled_results_pass(tmp_path):
    rounded = edited("per_sigma.0.accuracy.mean", 90.0 + 1e-12)  # float summation differs by an ulp or so
    assert report.check_result(rounded) == rounded
    from neft.experiments.grid import pooled_results

    pooled = pooled_results([result(train_seed=0, run="runs/a0", mean=90.0),
                             result(train_seed=1, run="runs/a1", mean=80.0)])
    accuracy = report.check_result(pooled[0])["per_sigma"][0]["accuracy"]  # pooled over the chips of both seeds
    assert accuracy["per_run"] == [89.0, 91.0, 79.0, 81.0] and accuracy["mean"] == pytest.approx(85.0)


def test_a_run_folder_reports_every_results_file_evaluate_wrote_under_any_name(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    for name, data in [("config", {"model": "lenet5"}), ("summary", {"best_epoch": 1}),  # the run's own files
                       ("validation", {"chips": 2, "accuracy": 90.0}),  # neft rcg-search's cache: no results
                       ("r_wv", result(label="wv")), ("rram4", result(label="rram4", mean=80.0))]:
        (run / f"{name}.json").write_text(json.dumps(data))
    assert [r["label"] for r in report.load_results(run)] == ["wv", "rram4"]  # by file name, none left out
    assert main(["report", str(run), "--out", str(tmp_path / "out")]) == 0
    text = (tmp_path / "out" / "report.md").read_text()
    assert "| wv |" in text and "| rram4 |" in text
    (run / "r_wv.json").write_text("{")  # a damaged file beside the csv its evaluation wrote is an error, not skipped
    (run / "r_wv.csv").write_text("sigma\n")
    with pytest.raises(ValueError, match=re.escape(f"{run / 'r_wv.json'}: not a neft results file")):
        report.load_results(run)
    for name in ("r_wv.json", "r_wv.csv", "rram4.json"):
        (run / name).unlink()
    with pytest.raises(FileNotFoundError) as error:  # no results at all: said so, naming the JSON files there
        report.load_results(run)
    assert str(error.value) == (f"no results file in {run} (validation.json holds no results): run `neft evaluate "
                                f"{run}` first")


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


WRONG_TYPES = [  # (field path, a value of a type no evaluation writes there, the field the error names)
    ("per_sigma", {"0": {}}, "per_sigma"), ("per_sigma.0.accuracy.mean", "90", "per_sigma[0].accuracy.mean"),
    ("per_sigma.0.sigma", None, "per_sigma[0].sigma"), ("per_sigma.0.accuracy.per_run", None,
                                                        "per_sigma[0].accuracy.per_run"),
    ("per_sigma.0.run_seeds", [1.5, 2], "per_sigma[0].run_seeds[0]"), ("evaluation", "x", "evaluation"),
    ("evaluation.write_verify", [0.1], "evaluation.write_verify"), ("evaluation.verify_select", 3,
                                                                   "evaluation.verify_select"),
    ("device_model", "RRAM1", "device_model"), ("device_model.name", None, "device_model.name"),
    ("device_model.stuck_off", None, "device_model.stuck_off"), ("device_model.drift_time", "1y",
                                                                 "device_model.drift_time"),
    ("train_device_model", [], "train_device_model"), ("train_circuit", 1.5, "train_circuit"),
    ("model", None, "model"), ("dataset", {}, "dataset"), ("method", 7, "method"), ("train_sigma", None,
                                                                                     "train_sigma"),
    ("beta", [], "beta"), ("temperature", None, "temperature"), ("censor_k", {}, "censor_k"), ("init", [], "init"),
    ("epochs", "30", "epochs"), ("epochs_trained", "x", "epochs_trained"), ("label", 5, "label"),
    ("train_seed", "0", "train_seed"), ("seeds", ["a"], "seeds[0]"), ("num_classes", 10.0, "num_classes"),
]


@pytest.mark.parametrize("path, value, field", WRONG_TYPES)
def test_a_field_of_the_wrong_type_is_one_error_naming_file_and_field(path, value, field, tmp_path, capsys):
    data = result(evaluation={"write_verify": 0.0, "verify_select": "magnitude"}, beta=0.1, temperature=1.0,
                  device_model={"name": "RRAM1", "stuck_off": 0.0, "drift_time": None}, epochs=3, init="torch",
                  train_device_model={"name": "RRAM1"}, train_circuit={"tile_rows": None}, model="lenet5",
                  dataset="digits", censor_k=None, epochs_trained=3, label=None, seeds=[0], num_classes=10)
    data["per_sigma"][0]["run_seeds"] = [1, 2]
    target, keys = data, path.split(".")
    for key in keys[:-1]:
        target = target[int(key)] if isinstance(target, list) else target[key]
    target[keys[-1]] = value
    file = tmp_path / "results.json"
    file.write_text(json.dumps(data))
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"neft: error: {file}: field {field} is "), err
    assert not (tmp_path / "out").exists()


def _fields(value, prefix=()):
    """Every field path of a results dict, the first item standing for each list."""
    yield prefix
    items = value.items() if isinstance(value, dict) else enumerate(value[:1]) if isinstance(value, list) else ()
    for key, inner in items:
        yield from _fields(inner, (*prefix, key))


def test_every_field_of_a_real_results_file_is_type_checked_or_reported(evaluated_run, tmp_path, monkeypatch):
    """Any field of a real results.json replaced by a value of any JSON type: one ValueError naming the file and that
    field, or a report written (never a TypeError or AttributeError from the middle of the report)."""
    from matplotlib.figure import Figure

    monkeypatch.setattr(Figure, "savefig", lambda figure, path, **kwargs: Path(path).write_bytes(b""))  # fast
    real = json.loads((evaluated_run / "results.json").read_text())
    file, refused = tmp_path / "results.json", 0
    for path in list(_fields(real))[1:]:
        for value in (None, "x", 2.5, {}, [1]):  # null, a string, a number, an object, a list
            data = json.loads(json.dumps(real))
            target = data
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = value
            file.write_text(json.dumps(data))
            field = "".join(f"[{key}]" if isinstance(key, int) else f".{key}" for key in path).lstrip(".")
            try:
                report.write_report([file], tmp_path / "out", overwrite=True)
            except ValueError as error:
                assert str(error).startswith(f"{file}: "), (path, value, error)
                named = re.match(rf"{re.escape(str(file))}: (field (\S+) |not a neft results file \(missing keys)",
                                 str(error))
                assert named, (path, value, error)  # the field itself, or one it no longer agrees with
                refused += named.group(2) == field
    assert refused > 300
