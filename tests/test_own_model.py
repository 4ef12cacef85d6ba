"""Your own network by import path through train, resume, evaluate, report and presets (docs/api.md, 'Your own
network and data')."""

import dataclasses
import json
import multiprocessing.forkserver
import textwrap
import warnings

import pytest
import torch

from neft import data, models
from neft.cli.main import main
from neft.evaluation.montecarlo import evaluate
from neft.models import registry
from neft.runs.evaluate import evaluate_run
from neft.runs.importing import import_run
from neft.store import checkpoint
from neft.training import TrainConfig, load_config, train

NETS = textwrap.dedent("""
    from torch import nn

    def make_net(num_classes, in_channels, hidden=16, width=1.0):
        channels = max(1, round(4 * width))
        return nn.Sequential(nn.Conv2d(in_channels, channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(4),
                             nn.Flatten(), nn.Linear(channels * 8 * 8, hidden), nn.ReLU(),
                             nn.Linear(hidden, num_classes))

    def no_classes(in_channels):
        return nn.Linear(in_channels, 2)

    def raises(num_classes, in_channels):
        raise RuntimeError("out of ideas")

    def wrong_output(num_classes, in_channels):
        return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * 32 * 32, num_classes + 1))

    def constant_net(num_classes, in_channels):
        net = make_net(num_classes, in_channels)
        for parameter in net.parameters():
            nn.init.constant_(parameter, 0.01)
        return net
""")
QUICK = ["--dataset", "mnist-5k", "--train-subset", "200", "--test-subset", "100", "--val-runs", "2", "--epochs", "1",
         "--sigma", "0.1", "--quiet"]


@pytest.fixture
def nets(tmp_path):
    path = tmp_path / "nets.py"
    path.write_text(NETS)
    return path


def test_factory_is_called_with_sizes_width_and_model_args(nets):
    model = models.create(f"{nets}:make_net", 7, 3, width=2.0, init="torch", model_args={"hidden": 5})
    assert model[0].in_channels == 3 and model[0].out_channels == 8  # width 2 doubles the 4 channels
    assert model[4].out_features == 5 and model[6].out_features == 7
    described = registry.describe(f"{nets}:make_net")
    assert described["file"] == str(nets.resolve()) and len(described["sha256"]) == 64


def test_own_model_through_the_cli(tmp_path, nets, capsys):
    spec = f"{nets}:make_net"
    ovf, irs = tmp_path / "ovf", tmp_path / "irs"
    assert main(["train", "--model", spec, "--model-args", '{"hidden": 12}', "--method", "ovf", *QUICK,
                 "--out", str(ovf)]) == 0
    assert main(["train", "--model", spec, "--method", "irs", "--taps", "1", "4:1", *QUICK, "--out", str(irs)]) == 0
    config = json.loads((ovf / "config.json").read_text())
    assert config["model"] == f"{nets.resolve()}:make_net" and config["model_args"] == {"hidden": 12}
    assert config["recorded"]["model_source"]["sha256"] == registry.describe(spec)["sha256"]
    model, meta = checkpoint.load_checkpoint(ovf)
    assert model[4].out_features == 12 and meta["model"]["args"] == {"hidden": 12}
    raw = torch.load(irs / "checkpoint.pt", weights_only=True)
    assert set(raw["state_dict"]) == set(models.create(spec, 10, 1).state_dict())  # no IRS heads inside

    # resume from the run alone: settings from config.json; given flags only confirm
    assert main(["train", "--resume", "--out", str(ovf)]) == 0
    assert main(["train", "--resume", "--out", str(ovf), "--epochs", "1", "--method", "ovf"]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", "--out", str(ovf), "--epochs", "3", "--lr", "0.5"]) == 2  # more epochs extend
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "(lr): lr: 0.001 in the run, 0.5 given" in err[0]

    assert main(["evaluate", str(ovf), "--runs", "4", "--quiet"]) == 0
    assert main(["evaluate", str(irs), "--runs", "4", "--quiet"]) == 0
    assert main(["report", str(ovf), str(irs), "--out", str(tmp_path / "report")]) == 0
    results = json.loads((ovf / "results.json").read_text())
    assert results["model"] == config["model"] and results["model_source"]["changed"] is False
    report = (tmp_path / "report" / "report.md").read_text()
    assert "ovf" in report and "irs" in report


def test_resume_from_the_run_alone_continues_it(tmp_path, nets, capsys):
    config = TrainConfig(model=f"{nets}:make_net", dataset="mnist-5k", method="noise-injection", sigma=0.1,
                         epochs=2, train_subset=200, test_subset=100, val_runs=2)
    train(config, tmp_path / "run", progress=False, stop_after=1)
    assert not (tmp_path / "run" / "summary.json").exists()
    assert load_config(tmp_path / "run").epochs == 2
    assert main(["train", "--resume", "--out", str(tmp_path / "run"), "--quiet"]) == 0
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["epochs"] == 2
    assert len((tmp_path / "run" / "train_log.csv").read_text().splitlines()) == 3  # header + 2 epochs
    (nets.parent / "nets.py").write_text(NETS + "\n# edited\n")
    capsys.readouterr()
    assert main(["train", "--resume", "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "changed since the run was trained" in err[0] and "nets.py" in err[0]
    with pytest.warns(UserWarning, match="changed since this network was trained"):
        results = evaluate_run(tmp_path / "run", runs=2, progress=False)
    assert results["model_source"]["changed"] is True


def test_a_module_built_in_python_trains_and_evaluates(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(32 * 32, 10))
    config = TrainConfig(dataset="mnist-5k", method="noise-injection", sigma=0.1, epochs=1, train_subset=200,
                         test_subset=100, val_runs=2)
    train(config, tmp_path / "run", progress=False, model=net)
    assert config.model == "python:torch.nn.modules.container.Sequential"
    with pytest.raises(ValueError, match="built in Python"):
        checkpoint.load(tmp_path / "run")
    results = evaluate_run(tmp_path / "run", sigmas=[0.1], runs=3, progress=False, model=net)
    best = checkpoint.load(tmp_path / "run", model=net)
    dataset = data.load("mnist-5k")
    x = torch.cat([b for b, _ in dataset.batches("test", 1000)])
    direct = evaluate(best, x, dataset.splits["test"][1], [0.1], runs=3, progress=False)
    assert results["per_sigma"][0]["accuracy"]["per_run"] == direct["per_sigma"][0]["accuracy"]["per_run"]


def test_own_model_in_a_two_cell_preset_run_in_parallel(tmp_path, nets, capfd):
    preset = tmp_path / "grid.toml"
    preset.write_text(textwrap.dedent(f"""
        [experiment]
        out = "{tmp_path / 'grid'}"
        methods = ["noise-injection", "ovf"]
        train_sigmas = [0.1]
        seeds = [0]
        [train]
        model = "{nets}:make_net"
        dataset = "digits"  # read faster than mnist-5k by each worker
        epochs = 1
        train_subset = 200
        test_subset = 100
        val_runs = 2
        [train.model_args]
        hidden = 8
        [evaluate]
        runs = 3
    """))
    # grid workers are forked from one forkserver per process, and write to the stdout it started with: stop one
    # started by an earlier test, whose output pytest captured elsewhere, so that this test's capture sees them
    multiprocessing.forkserver._forkserver._stop()
    assert main(["reproduce", str(preset), "--cells-per-device", "2"]) == 0
    out, err = capfd.readouterr()
    for cell in ("noise-injection-s0.1-seed0", "ovf-s0.1-seed0"):
        config = json.loads((tmp_path / "grid" / cell / "config.json").read_text())
        assert config["model_args"] == {"hidden": 8} and (tmp_path / "grid" / cell / "results.json").is_file()
        assert f"[{cell}] epoch 1/1: loss" in out and f"[{cell}] evaluated: sigma 0.1" in out  # prefixed lines
    assert "grid cells (2 at once): 100%" in err and "2/2" in err  # one bar over the whole grid


@pytest.mark.parametrize("model, message", [
    ("no_such_package_xyz.nets:make", "cannot import 'no_such_package_xyz.nets'"),
    ("{nets}:missing", "defines no 'missing'"),
    ("{dir}/absent.py:make", "does not exist"),
    ("{nets}:no_classes", "must accept num_classes and in_channels"),
    ("{nets}:raises", "raised RuntimeError when called with num_classes=10, in_channels=1: out of ideas"),
    ("{nets}:wrong_output", "returns [2, 11] for a batch [2, 1, 32, 32]; it must return logits [B, num_classes]"),
])
def test_bad_own_model_is_one_clear_line_and_leaves_nothing(tmp_path, nets, capsys, model, message):
    out = tmp_path / "run"
    code = main(["train", "--model", model.format(nets=nets, dir=tmp_path), *QUICK, "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("neft: error: argument --model"), err
    assert message in err[0]
    assert not out.exists()


def test_own_model_keeps_its_own_init_unless_init_says_otherwise(tmp_path, nets):
    """An import-path network is not re-initialised by default ("own"); the zoo keeps the release's Kaiming init;
    config.json records the init used; an explicit init applies to either."""
    spec = f"{nets}:constant_net"
    assert torch.equal(models.create(spec, 10, 1)[0].weight, torch.full((4, 1, 3, 3), 0.01))
    assert models.create(spec, 10, 1, init="kaiming")[0].weight.std() > 0.1  # re-drawn
    assert TrainConfig(model=spec).check().init == "own" and TrainConfig(model="LeNet5").check().init == "kaiming"
    assert TrainConfig(model=spec, init="kaiming").check().init == "kaiming"
    settings = dict(dataset="mnist-5k", method="noise-injection", sigma=0.1, epochs=1, lr=1e-12, batch_size=100,
                    train_subset=200, test_subset=100, val_runs=2)
    train(TrainConfig(model=spec, **settings), tmp_path / "own", progress=False)
    assert json.loads((tmp_path / "own" / "config.json").read_text())["init"] == "own"
    trained = checkpoint.load(tmp_path / "own")
    assert all(torch.allclose(p, torch.full_like(p, 0.01), atol=1e-6) for p in trained.parameters())  # lr 1e-12
    module = models.create(spec, 10, 1)  # a module handed over in Python keeps its init too, unless init names one
    train(TrainConfig(**settings), tmp_path / "given", progress=False, model=module)
    assert load_config(tmp_path / "given").init == "own"
    assert torch.allclose(module[0].weight, torch.full_like(module[0].weight, 0.01), atol=1e-6)
    train(TrainConfig(init="kaiming-uniform", **settings), tmp_path / "reinit", progress=False, model=module)
    assert load_config(tmp_path / "reinit").init == "kaiming-uniform" and module[0].weight.std() > 0.1


def test_a_run_recorded_with_kaiming_resumes_unchanged(tmp_path, nets, capsys):
    """A run of an import-path network started when every default init was Kaiming (config.json: "kaiming")
    resumes as it was: from its directory alone, and in Python with init left unset."""
    spec, out = f"{nets}:constant_net", tmp_path / "old"
    settings = dict(model=spec, dataset="mnist-5k", method="noise-injection", sigma=0.1, epochs=3, batch_size=100,
                    train_subset=200, test_subset=100, val_runs=2)
    train(TrainConfig(init="kaiming", **settings), out, progress=False, stop_after=1)  # as such a run recorded it
    train(TrainConfig(**settings), out, resume=True, progress=False, stop_after=2)  # init unset: the run's
    assert main(["train", "--resume", "--out", str(out), "--quiet"]) == 0
    assert load_config(out).init == "kaiming" and checkpoint.load_checkpoint(out)[1]["config"]["init"] == "kaiming"
    assert main(["train", "--resume", "--out", str(out), "--init", "own", "--quiet"]) == 2
    assert "init: 'kaiming' in the run, 'own' given" in capsys.readouterr().err


def test_layers_lists_an_own_model_and_its_modules(nets, capsys):
    assert main(["layers", "--model", f"{nets}:make_net", "--model-args", '{"hidden": 6}']) == 0
    out = capsys.readouterr().out
    assert "4.weight" in out and "[6, 256]" in out and "modules to tap with --taps: 0, 1, 2, 3, 4, 5, 6" in out


def test_imported_state_dict_evaluates_like_montecarlo_evaluate(tmp_path, nets, capsys):
    spec = f"{nets}:make_net"
    torch.manual_seed(3)
    net = models.create(spec, 10, 1, init="torch")
    torch.save(net.state_dict(), tmp_path / "plain.pt")
    assert main(["import", "--model", spec, "--weights", str(tmp_path / "plain.pt"), "--dataset", "mnist-5k",
                 "--out", str(tmp_path / "run")]) == 0
    assert main(["evaluate", str(tmp_path / "run"), "--sigmas", "0,0.2", "--runs", "4", "--test-subset", "200",
                 "--quiet"]) == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    dataset = data.load("mnist-5k", test_subset=200)
    x = torch.cat([b for b, _ in dataset.batches("test", 1000)])
    direct = evaluate(net.eval(), x, dataset.splits["test"][1], [0.0, 0.2], runs=4, progress=False)
    for ours, theirs in zip(results["per_sigma"], direct["per_sigma"]):
        assert ours["accuracy"]["per_run"] == theirs["accuracy"]["per_run"] and ours["ekl"] == theirs["ekl"]
    assert results["label"] == "imported plain"
    assert main(["evaluate", str(tmp_path / "run"), "--sigmas", "0.2", "--runs", "2", "--test-subset", "100",
                 "--write-verify", "0.05", "--verify-select", "swim", "--name", "wv", "--quiet"]) == 0  # SWIM works
    assert main(["report", str(tmp_path / "run"), "--out", str(tmp_path / "report")]) == 0
    assert "imported plain" in (tmp_path / "report" / "report.md").read_text()

    # DataParallel/DDP keys: the 'module.' prefix is removed, knowingly; a training checkpoint dict is read too
    torch.save({"epoch": 9, "state_dict": torch.nn.DataParallel(net).state_dict()}, tmp_path / "ddp.pt")
    capsys.readouterr()
    assert main(["import", "--model", spec, "--weights", str(tmp_path / "ddp.pt"), "--dataset", "mnist-5k",
                 "--out", str(tmp_path / "ddp")]) == 0
    assert "removed the 'module.' prefix" in capsys.readouterr().out
    recorded = json.loads((tmp_path / "ddp" / "config.json").read_text())["recorded"]["imported"]
    assert (recorded["stripped_prefix"], recorded["state_dict_key"]) == ("module.", "state_dict")
    assert all(torch.equal(a, b) for a, b in zip(checkpoint.load(tmp_path / "ddp").state_dict().values(),
                                                 net.state_dict().values()))


@pytest.mark.parametrize("weights, message", [
    ("module", "is not a plain state_dict"),
    ("other", "does not fit"),
    ("missing", "not found"),
])
def test_bad_weights_are_one_clear_line(tmp_path, nets, capsys, weights, message):
    spec = f"{nets}:make_net"
    path = tmp_path / "w.pt"
    if weights == "module":
        torch.save(models.create(spec, 10, 1), path)  # a pickled module, not a state_dict
    elif weights == "other":
        torch.save(models.create(spec, 10, 1, model_args={"hidden": 3}).state_dict(), path)
    code = main(["import", "--model", spec, "--weights", str(path), "--dataset", "mnist-5k", "--out",
                 str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert not (tmp_path / "run").exists()


def test_import_states_records_and_evaluates_with_the_normalisation_the_weights_were_trained_with(tmp_path, nets,
                                                                                                 capsys):
    """--normalisation none / --mean --std: recorded, printed, used by evaluate (no 'files changed' warning),
    in the results' fields and the report; the Python argument too."""
    spec = f"{nets}:make_net"
    torch.manual_seed(3)
    net = models.create(spec, 10, 1)
    torch.save(net.state_dict(), tmp_path / "w.pt")
    base = ["import", "--model", spec, "--weights", str(tmp_path / "w.pt"), "--dataset", "mnist-5k"]
    assert main([*base, "--normalisation", "none", "--out", str(tmp_path / "raw")]) == 0
    assert "with input normalisation none (pixel values in [0, 1]): clean test" in capsys.readouterr().out
    recorded = json.loads((tmp_path / "raw" / "config.json").read_text())["recorded"]["dataset"]
    assert (recorded["normalisation"], recorded["mean"], recorded["std"]) == ("none", [0.0], [1.0])
    with warnings.catch_warnings():  # a stated normalisation is no data set whose files changed since training
        warnings.simplefilter("error")
        assert main(["evaluate", str(tmp_path / "raw"), "--sigmas", "0,0.2", "--runs", "3", "--test-subset", "200",
                     "--quiet"]) == 0
    results = json.loads((tmp_path / "raw" / "results.json").read_text())
    assert results["normalisation"] == {"source": "none", "mean": [0.0], "std": [1.0]}
    dataset = dataclasses.replace(data.load("mnist-5k", test_subset=200), mean=(0.0,), std=(1.0,))
    x = torch.cat([b for b, _ in dataset.batches("test", 1000)])
    direct = evaluate(net.eval(), x, dataset.splits["test"][1], [0.0, 0.2], runs=3, progress=False)
    assert [p["accuracy"]["per_run"] for p in results["per_sigma"]] == [
        p["accuracy"]["per_run"] for p in direct["per_sigma"]]
    assert main(["report", str(tmp_path / "raw"), "--out", str(tmp_path / "report")]) == 0
    assert "inputs normalised none (pixel values in [0, 1])" in (tmp_path / "report" / "report.md").read_text()

    assert main([*base, "--mean", "0.1307", "--std", "0.3081", "--out", str(tmp_path / "given")]) == 0
    assert "normalisation given (mean 0.1307; std 0.3081)" in capsys.readouterr().out
    assert checkpoint.load_checkpoint(tmp_path / "given")[1]["dataset_stats"]["mean"] == [0.1307]
    summary = import_run(spec, tmp_path / "w.pt", "mnist-5k", tmp_path / "py", normalisation={"mean": [0.2],
                                                                                               "std": [0.4]})
    assert summary["normalisation"] == {"source": "given", "mean": [0.2], "std": [0.4]}
    assert import_run(spec, tmp_path / "w.pt", "mnist-5k", tmp_path / "own")["normalisation"] == {
        "source": "dataset", "mean": [0.5], "std": [0.5]}  # mnist-5k's own, as neft train uses


@pytest.mark.parametrize("flags, message", [
    (["--mean", "0.5"], "argument --std: --mean was given without --std: give the per-channel statistics as "
                        "--mean M... and --std S... together"),
    (["--std", "0.5"], "argument --mean: --std was given without --mean"),
    (["--normalisation", "none", "--mean", "0.5", "--std", "0.5"], "without --normalisation"),
    (["--mean", "0.5", "0.5", "--std", "0.2", "0.2"], "must be 1 number(s), one per channel"),
    (["--mean", "125.3", "--std", "63.0"], "divide by 255 (e.g. mean 123.675 -> 0.485"),
    (["--mean", "nan", "--std", "0.3"], "normalisation mean must be a finite number in [0, 1], got nan"),
    (["--weights", "nan.pt"], "holds NaN or infinite values in 4.weight, 6.bias: such a network"),
])
def test_a_bad_normalisation_or_non_finite_weights_are_one_clear_line(tmp_path, nets, capsys, flags, message):
    spec = f"{nets}:make_net"
    state = models.create(spec, 10, 1).state_dict()
    torch.save(state, tmp_path / "w.pt")
    state["4.weight"][0, 0], state["6.bias"][1] = float("nan"), float("-inf")
    torch.save(state, tmp_path / "nan.pt")
    flags = [str(tmp_path / flag) if flag == "nan.pt" else flag for flag in flags]
    code = main(["import", "--model", spec, "--weights", str(tmp_path / "w.pt"), "--dataset", "mnist-5k",
                 "--out", str(tmp_path / "run"), *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("neft: error:") and message in err[0], err
    assert not (tmp_path / "run").exists()


def test_import_into_an_existing_folder_offers_overwrite_not_resume(tmp_path, nets, capsys):
    """`neft import` has no --resume: its refusal of a folder holding a run says --overwrite or another --out."""
    spec = f"{nets}:make_net"
    torch.save(models.create(spec, 10, 1).state_dict(), tmp_path / "w.pt")
    argv = ["import", "--model", spec, "--weights", str(tmp_path / "w.pt"), "--dataset", "mnist-5k",
            "--out", str(tmp_path / "run")]
    assert main(argv) == 0
    before = (tmp_path / "run" / "checkpoint.pt").read_bytes()
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"neft: error: run directory {str(tmp_path / 'run')!r} already exists; replace it with "
                   "overwrite=True (--overwrite), or choose another directory (--out)"]
    assert (tmp_path / "run" / "checkpoint.pt").read_bytes() == before


def test_every_train_flag_is_a_trainconfig_field():
    """`neft train --resume --out RUN` applies the flags given by their names: each must be a TrainConfig field."""
    import argparse
    import dataclasses

    from neft.cli.train_arguments import add_train_arguments as _add_train_arguments

    parser = argparse.ArgumentParser()
    _add_train_arguments(parser)
    assert {a.dest for a in parser._actions} - {"help"} == {f.name for f in dataclasses.fields(TrainConfig)}


def test_resume_of_a_folder_without_a_run_is_one_clear_line(tmp_path, capsys):
    assert main(["train", "--resume", "--out", str(tmp_path / "typo")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has no config.json, so it is no neft run to resume" in err[0]
    assert not (tmp_path / "typo").exists()


@pytest.mark.parametrize("flags", [["--epochs", "2"], ["--model", "lenet5", "--dataset", "mnist-5k", "--epochs", "1",
                                    "--train-subset", "64", "--test-subset", "32", "--val-runs", "1", "--quiet"]])
@pytest.mark.parametrize("folder", ["missing", "empty", "stray"])
def test_resume_with_flags_of_a_folder_without_a_run_is_refused_too(tmp_path, capsys, monkeypatch, flags, folder):
    """--resume never starts a fresh run with default settings, whatever other flags are given."""
    out = tmp_path / "typo"
    if folder != "missing":
        out.mkdir()
    if folder == "stray":
        (out / "notes.txt").write_text("mine")
    assert main(["train", "--resume", "--out", str(out), *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("neft: error:"), err
    assert "has no config.json, so it is no neft run to resume" in err[0]
    left = sorted(p.name for p in out.iterdir()) if out.exists() else None
    assert left == {"missing": None, "empty": [], "stray": ["notes.txt"]}[folder]


def test_resume_without_out_of_a_run_never_trained_is_refused(tmp_path, capsys, monkeypatch):
    """`neft train --resume` without --out resumes the run named after the settings; none there: refused."""
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--resume", "--model", "lenet5", "--dataset", "mnist-5k", "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "runs/lenet5-mnist-5k-noise-injection-s0.1-seed0' has no config.json" in err[0], err
    assert not (tmp_path / "runs").exists()


def test_a_state_dict_without_num_batches_tracked_fits_as_in_pytorch():
    """BatchNorm's num_batches_tracked is a counter PyTorch fills in when a state_dict lacks it (older exports);
    such weights fit. A missing weight still does not."""
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    state = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert checkpoint.state_dict_mismatch(net.state_dict(), state) == ""
    net.load_state_dict(state, strict=True)  # what the import then does
    del state["1.running_var"]
    assert checkpoint.state_dict_mismatch(net.state_dict(), state) == "1 missing (1.running_var)"
