"""Labels that say what was trained and what was tested (docs/results.md, 'Labels'): device models changed by flags
named as such, ``trained on X, evaluated on Y``, no pooling over training chips, one training sigma for vanilla,
imported runs without invented history, and runs trained through the crossbar circuit."""

import json

import pytest
import torch

from neft import reporting as report
from neft.chip import devices
from neft.cli import build_parser
from neft.cli.chip_arguments import training_device_model
from neft.evaluation import EvalConfig
from neft.experiments.grid import pooled_results


def _result(method="ovf", seed=0, train="RRAM1", evaluated="RRAM1", train_sigma=0.1, mean=80.0, sigmas=(0.1,),
            **extra):
    """A results.json dict of one network (a few chips per sigma), trained on ``train``, evaluated on ``evaluated``."""
    points = [{"sigma": s, "runs": 2, "accuracy": {"mean": mean, "std": 0.0, "ci95": 0.0, "min": mean,
                                                    "per_run": [mean, mean]},
               "ekl_x1e2": 1.0, "ekl": 0.01, "confidence": 0.9} for s in sigmas]
    return {"method": method, "model": "lenet5", "dataset": "mnist-5k", "num_classes": 10, "test_size": 100,
            "train_sigma": train_sigma, "train_seed": seed, "beta": None, "run": f"runs/{method}-{train}-{seed}",
            "device_model": devices.get(evaluated).to_dict(), "train_device_model": devices.get(train).to_dict(),
            "evaluation": {"write_verify": 0.0}, "per_sigma": points, **extra}


def test_a_device_model_changed_by_flags_is_not_reported_as_its_preset():
    pcm = devices.get("PCM-chip")
    assert pcm.with_chip(quantize=False).name == "PCM-chip no-quantize"
    assert devices.get("RRAM-chip").with_chip(stuck_off=0.05).name == "RRAM-chip stuck-off=0.05"
    assert devices.get("RRAM1").with_chip(quantize=True, stuck_on=0.01).name == "RRAM1 quantize stuck-on=0.01"
    assert pcm.with_chip(drift_compensation=False).name == "PCM-chip no-drift-compensation"
    changed = devices.get("RRAM-chip").with_chip(stuck_off=0.05)
    assert changed.with_chip(stuck_off=0.05).name == "RRAM-chip stuck-off=0.05"  # said once, however often applied
    assert changed.with_chip(stuck_off=0.01).name == "RRAM-chip stuck-off=0.01"  # replaced, not appended
    assert pcm.with_chip(quantize=True, drift_time=3600, read_sigma=0.02).name == "PCM-chip"  # read conditions
    # the command line (training: config.json's device model; evaluation: results.json's) and Python alike
    args = build_parser().parse_args(["train", "--device-model", "PCM-chip", "--no-quantize"])
    assert devices.get(training_device_model(args)).name == "PCM-chip no-quantize"
    chip = EvalConfig(device_model="RRAM-chip", stuck_off=0.05).chip().device_model
    assert chip.name == "RRAM-chip stuck-off=0.05" and chip.to_dict()["name"] == chip.name


def test_labels_and_legends_say_trained_on_and_evaluated_on_where_they_differ(tmp_path):
    other = _result(train="RRAM-chip", evaluated="RRAM1")
    same = _result(seed=1, train="RRAM1", evaluated="RRAM1")
    assert report.result_label(other) == "ovf (trained on RRAM-chip, evaluated on RRAM1)"
    assert report.result_label(same) == "ovf"
    rows = report.comparison_rows([other, same])
    assert [row["method"] for row in rows] == ["ovf", "ovf (trained on RRAM-chip, evaluated on RRAM1)"]
    # a network evaluated on a chip changed by flags: both names said
    flags = _result(train="PCM-chip", evaluated="PCM-chip", sigmas=(0.1,))
    flags["device_model"] = devices.get("PCM-chip").with_chip(quantize=False).to_dict()
    assert report.result_label(flags) == "ovf (trained on PCM-chip, evaluated on PCM-chip no-quantize)"
    text = report.write_report([other, same], tmp_path / "r")["markdown"].read_text()
    assert "| ovf (trained on RRAM-chip, evaluated on RRAM1) |" in text and "device=" not in text


def test_networks_trained_on_a_chip_and_on_the_gaussian_model_never_pool_as_seeds():
    gaussian = [_result(seed=s, mean=90.0) for s in (0, 1)]  # each evaluated on the chip it was trained on
    on_chip = [_result(seed=s, train="RRAM-chip", evaluated="RRAM-chip", mean=50.0) for s in (0, 1)]
    pooled = pooled_results(gaussian + on_chip)
    assert sorted((p["train_device_model"]["name"], p["per_sigma"][0]["accuracy"]["mean"]) for p in pooled) == [
        ("RRAM-chip", 50.0), ("RRAM1", 90.0)]
    rram4 = [_result(seed=s, train="RRAM4", evaluated="RRAM4", mean=60.0) for s in (0, 1)]
    rows = report.seed_comparison(gaussian + rram4)["variants"]
    assert sorted((row["label"], row["per_seed"][0]) for row in rows) == [
        ("ovf (trained on RRAM1)", 90.0), ("ovf (trained on RRAM4)", 60.0)]


def test_vanilla_has_one_training_sigma_in_every_output(tmp_path):
    vanilla = [_result("vanilla", seed=0, train_sigma=0.1, sigmas=(0.0, 0.1)),
               _result("vanilla", seed=1, train_sigma=0.0, sigmas=(0.0, 0.1))]
    rows = report.comparison_rows([vanilla[0]])
    assert {row["train_sigma"] for row in rows} == {0.0}
    pooled = pooled_results(vanilla)
    assert len(pooled) == 1 and pooled[0]["train_sigma"] == 0.0 and pooled[0]["seeds"] == [0, 1]
    paths = report.write_report(vanilla[:1] + [_result(seed=0)], tmp_path / "r")
    csv = paths["csv"].read_text().splitlines()
    assert all(line.split(",")[1] == "0.0" for line in csv if line.startswith("vanilla"))
    assert "vanilla: trained at sigma 0," in paths["markdown"].read_text()
    assert report.seed_comparison(vanilla)["variants"][0]["train_sigma"] == 0.0


def test_an_imported_run_records_its_init_and_seed_as_unknown(tmp_path):
    from neft import models
    from neft.runs.evaluate import evaluate_run
    from neft.runs.importing import import_run

    torch.manual_seed(0)
    torch.save(models.create("lenet5", 10, 1, init="torch").state_dict(), tmp_path / "net.pt")
    import_run("lenet5", tmp_path / "net.pt", "mnist-5k", tmp_path / "run")
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (config["init"], config["seed"]) == (None, None)
    result = evaluate_run(tmp_path / "run", EvalConfig(sigmas=[0.0], runs=2, test_subset=50), progress=False)
    assert (result["init"], result["train_seed"]) == (None, None)
    text = report.write_report([result, _result(seed=3, init="kaiming")], tmp_path / "r")["markdown"].read_text()
    assert "init unknown" in text and "seed unknown" in text and "init None" not in text
    with pytest.raises(ValueError, match="no known training seed"):
        report.seed_comparison([{**result, "label": None}])


def test_a_run_trained_through_the_circuit_says_so(tmp_path, capsys):
    from neft.runs import evaluate as runs
    from neft.training import TrainConfig, train

    config = TrainConfig(model="lenet5", method="noise-injection", sigma=0.1, epochs=1, train_subset=128,
                         test_subset=32, val_runs=1, init="torch", tile_rows=64, adc_bits=6)
    summary = train(config, tmp_path / "run", progress=True)
    assert "clean (no circuit)" in capsys.readouterr().out  # the epoch line: the clean accuracy skips the circuit
    saved = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert saved["clean_circuit"] is None and saved["train_circuit"]["adc_bits"] == 6 == summary["train_circuit"][
        "adc_bits"]
    with pytest.warns(runs.CircuitMismatchWarning, match="trained through the crossbar circuit tile=64 adc=6b and is "
                                                    "evaluated without it.*--tile-rows 64 --adc-bits 6"):
        result = runs.evaluate_run(tmp_path / "run", EvalConfig(sigmas=[0.1], runs=2, test_subset=32),
                                   progress=False)
    assert report.result_label(result) == "noise-injection (trained on RRAM1 tile=64 adc=6b, evaluated on RRAM1)"
    wanted = r"evaluate with --adc-bits 6 --out-noise 0.0 --input-management none for"
    with pytest.warns(runs.CircuitMismatchWarning, match=wanted) as seen:
        runs.evaluate_run(tmp_path / "run", EvalConfig(sigmas=[0.1], runs=2, test_subset=32, tile_rows=64,
                                                       adc_bits=8, out_noise=0.05, input_management="abs_max"),
                          name="other", progress=False)
    assert "--tile-rows" not in str(seen[0].message)  # only what differs: following it gives the trained chip


def test_one_network_evaluated_twice_with_other_settings_is_labelled_by_them(tmp_path):
    """The same network and chip read on 300 and on all test images (or in bf16 and fp32) are two rows of one
    report, each named by the setting that differs, not 'several results for the same point'."""
    full = _result(evaluation={"write_verify": 0.0, "test_subset": None, "precision": "fp32"}, mean=80.0)
    part = _result(evaluation={"write_verify": 0.0, "test_subset": 300, "precision": "bf16"}, mean=81.0)
    rows = report.comparison_rows([full, part])
    assert sorted((row["method"].rsplit(" (", 1)[1], row["mean"]) for row in rows) == [
        ("precision=bf16, test_subset=300)", 81.0), ("precision=fp32, test_subset=None)", 80.0)]
    auto = [{**_result(evaluation={"write_verify": 0.0, "test_subset": None, "precision": "auto"}, mean=mean),
             "precision": used} for mean, used in ((80.0, "fp32"), (81.0, "bf16"))]
    assert sorted(row["method"].rsplit(" (", 1)[1] for row in report.comparison_rows(auto)) == [
        "precision=bf16)", "precision=fp32)"]  # the precision each ran in, not the "auto" asked for
    other_sigma = _result(sigmas=(0.2,), evaluation={"write_verify": 0.0, "test_subset": None, "precision": "bf16"})
    assert {row["method"] for row in report.comparison_rows([full, other_sigma])} == {"ovf"}  # one curve: no clash
    fewer = _result(sigmas=(0.2,), evaluation={"write_verify": 0.0, "test_subset": 50, "precision": "fp32"},
                    test_size=50)  # other sigmas but another test set: never one curve
    labels = sorted(row["method"] for row in report.comparison_rows([full, fewer]))
    assert labels == ["ovf (test_size=100, test_subset=None)", "ovf (test_size=50, test_subset=50)"]
