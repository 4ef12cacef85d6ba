"""Tests for neft.reporting: loading Monte Carlo results, comparison rows, markdown, CSV, plot and report files."""

import csv
import json
import warnings
from pathlib import Path

import pytest
import torch
from matplotlib.image import imread

from neft import reporting as report
from neft.reporting import chip_plots as chip_report
from neft.reporting import plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def make_result(method, train_sigma, points, run="runs/x", train_seed=0):
    """A results.json dict; ``points`` maps sigma -> (mean %, ci95, ekl_x1e2, confidence)."""
    per_sigma = [
        {
            "sigma": sigma,
            "runs": 100,
            "run_seeds": list(range(100)),
            "accuracy": {"mean": mean, "std": ci95 * 10 / 1.96, "ci95": ci95, "ci99": ci95 * 1.3, "min": mean - 2,
                         "p1": mean - 1.5, "p5": mean - 1, "p10": mean - 0.5,
                         "per_run": [mean + s * ci95 * 10 / 1.96 * 0.99 ** 0.5 for s in (-1, 1)] * 50},
            "ekl": ekl / 100,
            "ekl_x1e2": ekl,
            "confidence": confidence,
        }
        for sigma, (mean, ci95, ekl, confidence) in points.items()
    ]
    return {"run": run, "model": "vgg8", "method": method, "train_sigma": train_sigma,
            "device_model": {"name": "RRAM1"}, "seed": 0, "runs": 100, "test_size": 1000, "dataset": "mnist-5k",
            "train_seed": train_seed, "per_sigma": per_sigma, "seconds": 1.0}


VANILLA = make_result("vanilla", 0.0, {0.1: (96.884, 0.081, 1.5, 0.95), 0.2: (73.98, 1.234, 4.0, 0.8),
                                       0.3: (45.0, 2.0, 9.0, 0.6)}, run="runs/vanilla")
NOISE = make_result("noise-injection", 0.1, {0.2: (99.45, 0.05, 0.9, 0.97), 0.1: (99.59, 0.02, 0.4, 0.99)},
                    run="runs/ni")
OVF_01 = make_result("ovf", 0.1, {0.1: (99.61, 0.012, 0.2, 0.995)}, run="runs/ovf01")
OVF_02 = make_result("ovf", 0.2, {0.2: (99.53, 0.026, 0.3, 0.99)}, run="runs/ovf02")


def write_json(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def run_dirs(tmp_path):
    """Vanilla and noise-injection as run dirs with results.json; OVF as two results*.json files in one dir."""
    write_json(tmp_path / "vanilla" / "results.json", VANILLA)
    write_json(tmp_path / "ni" / "results.json", NOISE)
    write_json(tmp_path / "ovf" / "results_sigma0.1.json", OVF_01)
    write_json(tmp_path / "ovf" / "results_sigma0.2.json", OVF_02)
    return [tmp_path / "ovf", tmp_path / "vanilla", tmp_path / "ni"]


def test_load_results_from_dirs_and_files(run_dirs, tmp_path):
    assert report.load_results(run_dirs) == [OVF_01, OVF_02, VANILLA, NOISE]
    assert report.load_results([str(tmp_path / "ovf" / "results_sigma0.2.json")]) == [OVF_02]
    assert report.load_results(tmp_path / "vanilla") == [VANILLA]


def test_results_of_a_checkpoint_the_run_no_longer_holds_are_warned_about(tmp_path):
    """A run extended with --resume --epochs N keeps a later checkpoint: its earlier results files are stale, and
    loading them says so (they were reported as the run's, silently); results of the current checkpoint are not."""
    cell = Path(__file__).parents[1] / "results" / "periphery" / "cells" / "vgg8" / "irs-s0.3-seed0"
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text((cell / "periphery_t3620.json").read_text())
    epoch = json.loads((run / "results.json").read_text())["checkpoint_epoch"]
    (run / "summary.json").write_text(json.dumps({"best_epoch": epoch}))  # written at the end: not yet updated
    torch.save({"epoch": epoch + 2, "state_dict": {}}, run / "checkpoint.pt")  # an extension kept a later epoch
    with pytest.warns(UserWarning, match=rf"results.json was evaluated on the checkpoint of epoch {epoch}, but the "
                                         rf"run's checkpoint is now that of epoch {epoch + 2}"):
        report.load_results(run)
    torch.save({"epoch": epoch, "state_dict": {}}, run / "checkpoint.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(report.load_results(run)) == 1


def test_load_results_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="neft evaluate .*empty"):
        report.load_results([tmp_path / "empty"])
    with pytest.raises(FileNotFoundError, match="missing"):
        report.load_results([tmp_path / "missing"])
    incomplete = make_result("ovf", 0.1, {0.1: (99.0, 0.1, 0.1, 0.9)})
    del incomplete["per_sigma"][0]["accuracy"]["ci95"], incomplete["method"]
    bad = write_json(tmp_path / "bad" / "results.json", incomplete)
    with pytest.raises(ValueError, match=r"not a neft results file \(missing keys in per_sigma\[0\]: accuracy.ci95\)"):
        report.load_results([bad])
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match="broken.json"):
        report.load_results([tmp_path / "broken.json"])
    with pytest.raises(ValueError, match="no results"):
        report.write_report([], tmp_path / "out")


def test_rows_sorted_by_method_order_with_values():
    rows = report.comparison_rows([OVF_02, NOISE, make_result("awp", 0.1, {0.1: (99.0, 0.1, 0.1, 0.9)}),
                                   make_result("irs", 0.1, {0.1: (99.6, 0.1, 0.1, 0.9)}), OVF_01, VANILLA])
    assert [(row["method"], row["sigma"]) for row in rows] == [
        ("vanilla", 0.1), ("vanilla", 0.2), ("vanilla", 0.3), ("noise-injection", 0.1), ("noise-injection", 0.2),
        ("ovf", 0.1), ("ovf", 0.2), ("irs", 0.1), ("awp", 0.1)]
    assert rows[1] == {"method": "vanilla", "train_sigma": 0.0, "sigma": 0.2, "mean": 73.98, "ci95": 1.234,
                       "std": 1.234 * 10 / 1.96, "min": 73.98 - 2, "p1": 73.98 - 1.5, "p5": 73.98 - 1, "ekl_x1e2": 4.0,
                       "confidence": 0.8, "runs": 100,
                       "run": "runs/vanilla", "seeds": "", "seed_mean": "", "seed_ci95": "",
                       "device_model": "RRAM1", "write_verify": 0.0, "verify_select": "",
                       **chip_report.CHIP_COLUMNS,  # the Gaussian model's chip columns
                       "tile_rows": None, "dac_bits": None, "adc_bits": None, "adc_mode": "analog",
                       "adc_range": 100.0, "wire_resistance": 0.0, "adc_offset": 0.0, "adc_gain": 0.0,
                       "adc_inl": 0.0, "adc_mismatch": 0.0,
                       "out_noise": 0.0, "input_management": "none", "bound_management": "none",
                       "out_bound": None, "weight_scaling": "layer", "converter_codes": "twos_complement",
                       "drift_compensation_at": "weights", "tile_split": "fill", "tile_mapping": "layer",
                       "compensation_readout": "weights"}
    assert rows[6]["run"] == "runs/ovf02" and rows[6]["train_sigma"] == 0.2


def test_labels_name_training_sigma_and_seed_only_when_needed():
    swept_01 = make_result("ovf", 0.1, {0.1: (99.6, 0.1, 0.1, 0.9), 0.2: (99.0, 0.1, 0.1, 0.9)})
    swept_02 = make_result("ovf", 0.2, {0.1: (99.5, 0.1, 0.1, 0.9)})
    labels = [row["method"] for row in report.comparison_rows([swept_02, VANILLA, swept_01])]
    assert labels == ["vanilla"] * 3 + ["ovf (sigma_train=0.1)"] * 2 + ["ovf (sigma_train=0.2)"]
    seed_1 = make_result("ovf", 0.1, {0.1: (99.5, 0.1, 0.1, 0.9)}, train_seed=1)
    labels = [row["method"] for row in report.comparison_rows([seed_1, OVF_01])]
    assert labels == ["ovf (sigma_train=0.1, seed=0)", "ovf (sigma_train=0.1, seed=1)"]
    with pytest.raises(ValueError, match="ovf .* at sigma 0.1"):
        report.comparison_rows([OVF_01, OVF_01])


def test_markdown_cells_and_blanks():
    text = report.markdown_table(report.comparison_rows([VANILLA, NOISE, OVF_01, OVF_02]))
    accuracy, worst, uncertainty = text.split("\n\n**")
    lines = accuracy.splitlines()
    assert lines[2] == "| method | σ = 0.1 | σ = 0.2 | σ = 0.3 |"
    assert lines[4] == "| vanilla | 96.88 ± 0.08 | 73.98 ± 1.23 | 45.00 ± 2.00 |"
    assert lines[5] == "| noise-injection | 99.59 ± 0.02 | 99.45 ± 0.05 |  |"
    assert lines[6] == "| ovf | 99.61 ± 0.01 | 99.53 ± 0.03 |  |"
    assert len(lines) == 7
    assert worst.startswith("Worst-case accuracy (%): 1st / 5th percentile over chips")
    assert "| vanilla | 95.38 / 95.88 | 72.48 / 72.98 | 43.50 / 44.00 |" in worst  # make_result: mean - 1.5, - 1
    assert uncertainty.startswith("EKL (x1e-2 nats)")
    assert "| ovf | 0.20 / 0.995 | 0.30 / 0.990 |  |" in uncertainty


def test_csv_round_trip(tmp_path):
    rows = report.comparison_rows([VANILLA, NOISE, OVF_01, OVF_02])
    path = report.write_csv(rows, tmp_path / "rows.csv")
    with path.open(newline="") as file:
        parsed = list(csv.DictReader(file))
    assert [row["method"] for row in parsed] == [row["method"] for row in rows]
    numeric = ["train_sigma", "sigma", "mean", "ci95", "std", "min", "ekl_x1e2", "confidence", "runs"]
    assert [{key: float(row[key]) for key in numeric} for row in parsed] == [
        {key: row[key] for key in numeric} for row in rows]


def test_write_report(run_dirs, tmp_path):
    out_dir = tmp_path / "out" / "nested"
    paths = report.write_report(run_dirs, out_dir, title="VGG8 / MNIST")
    assert paths == {"markdown": out_dir / "report.md", "csv": out_dir / "report.csv",
                     "plot": out_dir / "accuracy_vs_sigma.png"}
    text = paths["markdown"].read_text()
    assert text.startswith("# VGG8 / MNIST\n")
    assert "Monte Carlo runs per point: 100; test images: 1000;" in text
    assert "| ovf | 99.61 ± 0.01 | 99.53 ± 0.03 |  |" in text
    assert "![Accuracy and EKL vs sigma](accuracy_vs_sigma.png)" in text
    assert paths["plot"].read_bytes()[:8] == PNG_SIGNATURE
    height, width = imread(paths["plot"]).shape[:2]
    assert width > 1200 and height > 500
    assert len(paths["csv"].read_text().splitlines()) == 1 + 7
    # loaded results work too, and a second report overwrites nothing of the first
    other = report.write_report([OVF_01, OVF_02], out_dir, name="ovf")
    assert other["plot"].name == "ovf_accuracy_vs_sigma.png" and paths["plot"].exists()


def _seeded(label_fields, means, dataset="fashion-mnist"):
    """One results dict per seed, MC mean ``means[seed]`` at training sigma 0.35."""
    out = []
    for seed, mean in enumerate(means):
        result = make_result(label_fields["method"], 0.35, {0.35: (mean, 0.5, 1.0, 0.9)}, run=f"r{seed}",
                             train_seed=seed)
        out.append({**result, **label_fields, "dataset": dataset, "num_classes": 10, "model": "vgg8"})
    return out


def test_seed_sections_shared_threshold_t_intervals_and_paired_differences():
    ni = _seeded({"method": "noise-injection", "beta": 0.0}, [20.0, 30.0, 70.0])
    ovf = _seeded({"method": "ovf", "beta": 1e-3}, [60.0, 62.0, 80.0])
    ovf0 = _seeded({"method": "ovf", "beta": 0.0}, [58.0, 65.0, 81.0])
    text = report.seed_sections(ni + ovf + ovf0)
    # best mean of any run at (fashion-mnist, 0.35) is 81 %: threshold 10 + (81 - 10) / 2 = 45.5 % for every method
    assert "fashion-mnist sigma 0.35: 45.5 %" in text
    # noise-injection: 1 of 3 above 45.5; its mean 40, std sqrt(700) = 26.458, half = 4.302653 * 26.458 / sqrt(3)
    assert "| noise-injection | 0.35 | 20.00, 30.00, 70.00 | 40.00 ± 65.72 | 1/3 = 0.33" in text
    assert "| ovf | 0.35 | 60.00, 62.00, 80.00 | 67.33 ± 27.36 | 3/3 = 1.00" in text
    assert "| ovf beta=0 | 0.35 |" in text
    # paired by seed: ovf - noise-injection = +40, +32, +10: mean 27.33, std 15.534, half 38.59
    assert "| ovf | noise-injection | 0.35 | +40.00, +32.00, +10.00 | +27.33 ± 38.59 |" in text
    # the feedback term: ovf - ovf beta=0 = +2, -3, -1: mean -0.67, std 2.5166, half 6.25
    assert "| ovf | ovf beta=0 | 0.35 | +2.00, -3.00, -1.00 | -0.67 ± 6.25 |" in text
    paragraph = report.findings(ni + ovf + ovf0)
    assert "noise-injection 40.0 % (1/3 seeds converged)" in paragraph and "threshold 45.5 %" in paragraph
    assert "ovf and ovf beta=0 do not differ beyond seed noise (-0.7 ± 6.3 points over 3 seeds)" in paragraph
    # a difference whose interval excludes 0 is called one: ovf - noise-injection = +30 for every seed
    shifted = report.findings(ni + _seeded({"method": "ovf", "beta": 1e-3}, [50.0, 60.0, 100.0]))
    assert "ovf beats noise-injection (+30.0 ± 0.0 points over 3 seeds)" in shifted


def test_pooled_report_shows_both_intervals(tmp_path):
    from neft.experiments.grid import pooled_results

    results = _seeded({"method": "noise-injection", "beta": 0.0}, [70.0, 74.0, 75.0])
    pooled = pooled_results(results)
    point = pooled[0]["per_sigma"][0]
    assert point["over_seeds"]["mean"] == pytest.approx(73.0)
    # std sqrt(((-3)^2 + 1 + 4) / 2) = sqrt(7) = 2.6458; half = 4.302653 * 2.6458 / sqrt(3) = 6.5724
    assert point["over_seeds"]["half_width"] == pytest.approx(6.5724, rel=1e-4)
    text = report.write_report(pooled, tmp_path, title="t", notes="What this shows.")["markdown"].read_text()
    assert "What this shows." in text and "73.00 ± 6.57 (n=3)" in text and "over chips" in text
    assert "noise-injection: trained at sigma 0.35" in text


def test_a_report_into_a_file_says_to_give_a_folder(tmp_path, capsys):
    from neft.cli.main import main

    write_json(tmp_path / "run" / "results.json", NOISE)
    taken = tmp_path / "notes.txt"
    taken.write_text("mine")
    for out, where in ((taken, "it is a file"), (taken / "sub", "a folder above it is a file")):
        assert main(["report", str(tmp_path / "run"), "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"neft: error: cannot write {str(out)!r}: {where}, not a folder; give the path of a folder (a "
                       "new one, or one that exists)"]
    assert taken.read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "run"]


def test_a_failed_report_creates_no_folder(tmp_path):
    with pytest.raises(ValueError, match="several results for the same point"):
        report.write_report([NOISE, NOISE], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_seed_comparison_needs_the_training_sigma():
    off = _seeded({"method": "noise-injection", "beta": 0.0}, [20.0, 30.0])
    for result in off:
        result["per_sigma"][0]["sigma"] = 0.3  # evaluated next to, not at, the training sigma 0.35
    with pytest.raises(ValueError, match="not evaluated at its training sigma 0.35"):
        report.seed_comparison(off)


def test_results_from_python_share_a_report_with_labels_and_device_models(tmp_path):
    """montecarlo.evaluate results (no run metadata) go straight into a report; one network under two device
    models gets one line per device model; labels= names results."""
    import torch

    from neft import models
    from neft.evaluation import montecarlo

    torch.manual_seed(0)
    model = models.create("lenet5", 10, 1)
    images, labels = torch.randn(60, 1, 32, 32), torch.randint(0, 10, (60,))
    rram1, rram4 = (montecarlo.evaluate(model, images, labels, [0.0, 0.1], runs=2, device_model=name, progress=False)
                    for name in ("RRAM1", "RRAM4"))
    paths = report.write_report([rram1, rram4], tmp_path, title="one network, two devices")
    text = paths["markdown"].read_text()
    assert "| network (RRAM1) |" in text and "| network (RRAM4) |" in text
    assert "- network (RRAM4): evaluated under device model RRAM4" in text
    named = report.write_report([rram1, rram4], tmp_path, name="named", labels=["chip A", "chip B"])
    assert "| chip A |" in named["markdown"].read_text()
    with pytest.raises(ValueError, match=r"2 result\(s\) \(1: network; 2: network\); give one label per result, in "
                                         "this order"):  # which result takes which label
        report.write_report([rram1, rram4], tmp_path, labels=["only one"])
    with pytest.raises(ValueError, match="same point.*label"):
        report.write_report([rram1, rram1], tmp_path / "clash")
    assert not (tmp_path / "clash").exists()


def test_report_states_how_each_run_was_trained_and_the_legend_its_training_sigma(tmp_path):
    noise = {**NOISE, "epochs": 30, "train_subset": 1000, "init": "torch", "train_seed": 3}
    text = report.write_report([VANILLA, noise], tmp_path)["markdown"].read_text()
    assert ("- noise-injection init=torch: trained at sigma 0.1, 30 epochs, 1000 training images, init torch, seed 3, "
            "evaluated under device model RRAM1") in text
    assert "- vanilla: trained at sigma 0, epochs not recorded, the full training set, init kaiming" in text
    one = {**NOISE, "epochs": 1, "train_seed": 3}
    text = report.write_report([one], tmp_path / "one")["markdown"].read_text()
    assert "trained at sigma 0.1, 1 epoch, the full training set" in text
    stopped = {**NOISE, "epochs": 1, "epochs_trained": 0, "train_seed": 3}
    assert "0 of 1 epoch (training stopped early)" in report.write_report(
        [stopped], tmp_path / "stopped")["markdown"].read_text()
    rows = report.comparison_rows([VANILLA, noise])
    line = [r for r in rows if r["method"] == "noise-injection init=torch"]
    assert (plots._legend("noise-injection init=torch", line)
            == "noise-injection init=torch (trained at σ=0.1, on RRAM1)")


def test_write_verify_sweeps_become_curves_and_a_plot(tmp_path):
    def swept(fraction, selection, mean):
        result = make_result("noise-injection", 0.3, {0.3: (mean, 0.5, 1.0, 0.9)}, run=f"runs/ni-{fraction}")
        result["evaluation"] = {"write_verify": fraction, "verify_select": selection, "verified_sigma": 0.0}
        return result

    plain = make_result("noise-injection", 0.3, {0.3: (77.0, 0.7, 1.0, 0.9)}, run="runs/ni")
    results = [plain, swept(0.01, "magnitude", 78.0), swept(0.05, "magnitude", 79.5), swept(0.01, "swim", 82.0)]
    curves = report.write_verify_curves(results)
    assert curves == {("noise-injection", "magnitude", 0.3): [(0.0, 77.0, 0.7), (0.01, 78.0, 0.5), (0.05, 79.5, 0.5)],
                      ("noise-injection", "swim", 0.3): [(0.0, 77.0, 0.7), (0.01, 82.0, 0.5)]}
    paths = report.write_report(results, tmp_path)
    assert paths["write_verify"].read_bytes().startswith(PNG_SIGNATURE)
    assert "![Accuracy vs fraction write-verified](report_write_verify.png)" in paths["markdown"].read_text()
    assert "| noise-injection wv=5% magnitude |" in paths["markdown"].read_text()
    assert "write_verify" not in report.write_report([plain], tmp_path / "plain")
    with pytest.raises(ValueError, match="no write-verify sweep"):
        report.plot_write_verify([plain], tmp_path / "none.png")


def test_chip_and_circuit_settings_have_columns_and_reach_labels_and_legends():
    """report.csv has a column per chip and circuit setting; a chip shared by all results is named once in the
    setup, and then in each plot legend; one result alone (a run's own CSV) names it in its label."""
    chip = {"quantize": True, "weight_bits": 8, "device_bits": 2, "stuck_off": 0.01, "stuck_on": 0.02}
    results = [{**make_result(method, 0.1, {0.1: (90.0, 0.5, 0.5, 0.9)}), "device_model": {"name": "RRAM1", **chip},
                "evaluation": {"tile_rows": 64, "adc_bits": 6, "adc_mode": "sliced"}}
               for method in ("ovf", "irs")]
    rows = report.comparison_rows(results)
    assert [row["method"] for row in rows] == ["ovf tile=64 adc=6b sliced", "irs tile=64 adc=6b sliced"]
    assert {key: rows[0][key] for key in ("quantize", "stuck_on", "tile_rows", "dac_bits", "adc_bits", "adc_mode",
                                          "adc_range")} == {"quantize": True, "stuck_on": 0.02, "tile_rows": 64,
                                                            "dac_bits": None, "adc_bits": 6, "adc_mode": "sliced",
                                                            "adc_range": 100.0}
    assert plots._legend(rows[0]["method"], rows[:1]) == ("ovf tile=64 adc=6b sliced (trained at σ=0.1, on RRAM1 "
                                                           "q8/2 stuck 1%+2%)")
    alone = report.comparison_rows(results[:1])[0]["method"]
    assert alone == "ovf q8/2 stuck 1%+2% tile=64 adc=6b sliced"
    assert plots._legend(alone, report.comparison_rows(results[:1])) == f"{alone} (trained at σ=0.1, on RRAM1)"


def test_a_report_never_replaces_a_run_directorys_own_files(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    (run / "train_log.csv").write_text("epoch\n1\n")
    with pytest.raises(ValueError, match="would replace the run's own train_log file"):
        report.write_report([VANILLA], run, name="train_log", overwrite=True)
    assert (run / "train_log.csv").read_text() == "epoch\n1\n"
    assert report.write_report([VANILLA], run, name="rram1")["csv"] == run / "rram1.csv"  # another name: written


def test_accuracy_at_reads_the_mean_and_p5_at_one_sigma_and_none_where_nothing_was_evaluated(tmp_path):
    from neft.reporting.results import accuracy_at

    path = tmp_path / "results.json"
    path.write_text(json.dumps(VANILLA))
    assert accuracy_at(path, 0.2) == (73.98, 72.98)
    assert accuracy_at(path, 0.2 + 1e-12) == (73.98, 72.98)
    assert accuracy_at(path, 0.4) is None and accuracy_at(tmp_path / "missing.json", 0.2) is None
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="not a neft results file"):
        accuracy_at(tmp_path / "bad.json", 0.2)
