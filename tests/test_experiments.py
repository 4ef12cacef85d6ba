"""`neft reproduce` and `neft demo` grids end to end on a tiny preset (docs/method.md, 'Training recipe' and
'Protocol')."""

import json

import pytest

from neft.cli.main import main
from neft.experiments import grid as experiments

TINY = """
[experiment]
methods = ["vanilla", "noise-injection", "ovf", "noise-injection T=4", "ovf beta=0"]
train_sigmas = [0.2]
seeds = [0, 1]

[train]
model = "lenet5"
dataset = "mnist-5k"
init = "torch"
epochs = 1
train_subset = 160
test_subset = 60
val_runs = 2

[evaluate]
runs = 3
sigmas = [0.0, 0.2, 0.4]
sweep = false
precision = "fp32"  # cells in worker processes compare with cells here (tests/conftest.py)
"""


def test_tiny_preset_end_to_end_and_resume(tmp_path, capsys):
    preset = tmp_path / "tiny.toml"
    preset.write_text(TINY)
    out = tmp_path / "grid"
    assert main(["reproduce", str(preset), "--out", str(out)]) == 0
    assert "report:" in capsys.readouterr().out
    cells = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert cells == sorted(f"{m}-s{s}-seed{seed}" for seed in (0, 1) for m, s in
                           [("vanilla", 0), ("noise-injection", 0.2), ("ovf", 0.2), ("noise-injection_T=4", 0.2),
                            ("ovf_beta=0", 0.2)])
    ablation = json.loads((out / "noise-injection_T=4-s0.2-seed0" / "results.json").read_text())
    assert ablation["method"] == "noise-injection" and ablation["temperature"] == 4.0
    assert json.loads((out / "ovf_beta=0-s0.2-seed1" / "results.json").read_text())["beta"] == 0.0
    vanilla = json.loads((out / "vanilla-s0-seed0" / "results.json").read_text())
    assert [p["sigma"] for p in vanilla["per_sigma"]] == [0.0, 0.2, 0.4]  # vanilla is swept
    ovf = json.loads((out / "ovf-s0.2-seed1" / "results.json").read_text())
    assert [p["sigma"] for p in ovf["per_sigma"]] == [0.2]  # noise-aware models at their own sigma
    for result in (vanilla, ovf):
        for point in result["per_sigma"]:
            assert 0 <= point["accuracy"]["mean"] <= 100 and point["runs"] == 3 and point["ekl"] >= 0
            assert 0 < point["confidence"] <= 1
    report = (out / "report.md").read_text()
    for method in ("vanilla", "noise-injection", "ovf", "noise-injection T=4", "ovf beta=0"):
        assert f"| {method} |" in report
    assert "| ovf | ovf beta=0 | 0.2 |" in report and "**What these numbers show.**" in report
    assert json.loads((out / "report_seeds.json").read_text())["thresholds"][0]["train_sigma"] == 0.0
    assert "## Over training seeds" in report and (out / "accuracy_vs_sigma.png").stat().st_size > 10_000
    pooled = vanilla["per_sigma"][0]["accuracy"]["per_run"] + json.loads(
        (out / "vanilla-s0-seed1" / "results.json").read_text())["per_sigma"][0]["accuracy"]["per_run"]
    assert f"{sum(pooled) / len(pooled):.2f} ± " in report  # pooled over both seeds' chips

    # interrupted and restarted: a finished cell is reused untouched, a removed one is redone identically
    stamp = (out / "ovf-s0.2-seed1" / "results.json").stat().st_mtime_ns
    (out / "noise-injection-s0.2-seed1" / "results.json").unlink()
    assert main(["reproduce", str(preset), "--out", str(out)]) == 0
    assert (out / "ovf-s0.2-seed1" / "results.json").stat().st_mtime_ns == stamp
    assert (out / "report.md").read_text() == report

    # the same folder with other training settings would reuse cells made with the old ones: refused, untouched
    preset.write_text(TINY.replace("epochs = 1", "epochs = 2"))
    capsys.readouterr()
    assert main(["reproduce", str(preset), "--out", str(out)]) == 2
    assert "made with other settings ([train] epochs)" in capsys.readouterr().err
    assert json.loads((out / "preset.json").read_text())["train"]["epochs"] == 1


@pytest.mark.parametrize(
    "edit, message",
    [
        (("seeds = [0, 1]", "seeds = [0, 1]\nlearning_rate = 3"), "unknown key(s) ['learning_rate']"),
        (("train_sigmas = [0.2]", "train_sigmas = []"), "train_sigmas is empty"),
        (('dataset = "mnist-5k"', 'dataset = "cifar10"\ndata_dir = "/nonexistent"'), "cifar10 not found"),
        (("train_sigmas = [0.2]", "train_sigmas = [-0.2]"), "sigma must be"),
        (('methods = ["vanilla",', 'methods = ["dropout",'), "unknown method"),
        (('methods = ["vanilla",', 'methods = ["ovf T=4",'), "T applies to noise-injection and distill only"),
        (('methods = ["vanilla",', 'methods = ["ovf", "ovf",'), "lists a variant twice"),
        (('methods = ["vanilla",', 'methods = ["noise-injection T=1", "ovf beta=0.001",'), "train the same networks"),
        (('methods = ["vanilla",', 'methods = ["ovf init=torch",'), "train the same networks"),  # [train] init is torch
        (("seeds = [0, 1]", 'seeds = [0, "one"]'), "seeds must be integers >= 0, got ['one']"),
        (("train_sigmas = [0.2]", "train_sigmas = [1.5]"), "[experiment] train_sigmas: sigma 1.5 is above 1"),
        (("train_sigmas = [0.2]", "train_sigmas = [0.9]"), "sigma 0.9 is too large for OVF"),
        (("epochs = 1", "epochs = 0"), "[train] epochs: epochs must be an integer >= 1"),
        (("val_runs = 2", 'val_runs = "2"'), "[train] val_runs: val_runs must be an integer >= 1, got '2'"),
        (("runs = 3", "runs = 3\nchips_per_pass = 0"), "[evaluate] chips_per_pass: chips_per_pass must be"),
        (("runs = 3", 'runs = 3\ndevice_model = "RRAM9"'), "unknown device model"),
        # settings only the cells' networks can refuse: once refused after the first cell trained
        (("runs = 3", "runs = 3\nrecalibrate_bn = 64"), "[evaluate] recalibrate_bn: LeNet5 has no BatchNorm layer"),
        (("runs = 3", 'runs = 3\nchip_tune = 2\nchip_tune_taps = ["features.9"]'),
         "[evaluate] chip_tune_taps: chip_tune_taps ['features.9'] are not modules of LeNet5"),
        (("runs = 3", "runs = 3\nchip_tune_lr = 0.1"), "[evaluate] chip_tune_lr: chip_tune_lr (--chip-tune-lr) sets"),
    ],
)
def test_bad_preset_fails_before_training(tmp_path, capsys, edit, message):
    preset = tmp_path / "bad.toml"
    preset.write_text(TINY.replace(*edit))
    assert main(["reproduce", str(preset), "--out", str(tmp_path / "grid")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "grid").exists()


def test_shipped_presets_parse():
    from pathlib import Path

    configs = Path(__file__).parent.parent / "configs"
    cpu = experiments.load_preset(configs / "cpu-fashion-mnist.toml") if Path(
        "/usr/share/datasets/fashion-mnist").is_dir() else None
    if cpu:
        assert len(experiments._cells(cpu)) == 12
    for path in configs.glob("paper-*.toml"):
        with pytest.raises(FileNotFoundError, match="not found"):  # the paper's data sets are not on this machine
            experiments.load_preset(path)


def test_shards_and_parallel_workers_fill_one_grid(tmp_path, capsys):
    preset = tmp_path / "two.toml"
    preset.write_text(TINY.replace('["vanilla", "noise-injection", "ovf", "noise-injection T=4", "ovf beta=0"]',
                                   '["vanilla", "noise-injection"]')
                      .replace("seeds = [0, 1]", "seeds = [0]"))
    out = tmp_path / "grid"
    assert main(["reproduce", str(preset), "--out", str(out), "--shard", "1/2"]) == 0
    assert "1/2 cells finished" in capsys.readouterr().out and not (out / "report.md").exists()
    assert (out / "noise-injection-s0.2-seed0" / "results.json").is_file()
    assert main(["reproduce", str(preset), "--out", str(out), "--shard", "0/2"]) == 0
    assert (out / "report.md").is_file()
    parallel = tmp_path / "parallel"
    # two cells at once on one device (the CPU here, its cores shared out) give the same numbers
    assert main(["reproduce", str(preset), "--out", str(parallel), "--cells-per-device", "2"]) == 0
    for cell in ("vanilla-s0-seed0", "noise-injection-s0.2-seed0"):  # same cells, same seeds, same numbers
        a = json.loads((out / cell / "results.json").read_text())["per_sigma"]
        b = json.loads((parallel / cell / "results.json").read_text())["per_sigma"]
        assert [p["accuracy"]["per_run"] for p in a] == [p["accuracy"]["per_run"] for p in b]
    assert main(["reproduce", str(preset), "--shard", "2/2"]) == 2
    assert main(["reproduce", str(preset), "--shard", "0/2", "--cells-per-device", "2"]) == 2
    assert ("argument --shard: a shard runs one cell at a time; drop parallel/cells_per_device"
            in capsys.readouterr().err)


def test_distill_cells_learn_from_the_vanilla_cell_of_their_seed(tmp_path, capsys):
    preset = tmp_path / "distill.toml"
    preset.write_text(TINY.replace('["vanilla", "noise-injection", "ovf", "noise-injection T=4", "ovf beta=0"]',
                                   '["distill", "rcg", "vanilla"]')
                      .replace("seeds = [0, 1]", "seeds = [0]")
                      .replace("val_runs = 2", 'val_runs = 2\nteacher = "vanilla"'))
    out = tmp_path / "grid"
    assert main(["reproduce", str(preset), "--out", str(out), "--cells-per-device", "2"]) == 0
    err = capsys.readouterr().err  # the teacher phase starts one worker (one cell), the other phase two
    assert "grid cells (1 at once)" in err and "grid cells (2 at once)" in err
    distill = json.loads((out / "distill-s0.2-seed0" / "config.json").read_text())
    assert distill["teacher"] == str(out / "vanilla-s0-seed0")
    assert json.loads((out / "rcg-s0.2-seed0" / "config.json").read_text())["teacher"] is None  # not its setting
    assert "| distill |" in (out / "report.md").read_text()
    preset.write_text(preset.read_text().replace('["distill", "rcg", "vanilla"]', '["distill"]'))
    assert main(["reproduce", str(preset), "--out", str(tmp_path / "no-teacher")]) == 2
    assert 'teacher = "vanilla" needs "vanilla" in [experiment] methods' in capsys.readouterr().err
