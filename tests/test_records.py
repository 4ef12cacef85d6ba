"""Records that tell the truth (docs/results.md): the epochs a run actually trained, the test set an evaluation
used, and one error naming the file for a damaged config.json or a truncated last.pt."""

import json
import warnings

import pytest
import torch

from neft.cli.main import main
from neft.reporting import report
from neft.runs.evaluate import UnfinishedRunWarning, evaluate_run
from neft.training import TrainConfig, train

CONFIG = dict(model="lenet5", method="noise-injection", sigma=0.2, epochs=3, train_subset=64, test_subset=32,
              val_runs=1, init="torch")


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory):
    """Trained 1 of its 3 epochs (stop_after=1), with a 32-image test subset."""
    out = tmp_path_factory.mktemp("records") / "stopped"
    train(TrainConfig(**CONFIG), out, progress=False, stop_after=1)
    return out


def test_an_unfinished_run_is_evaluated_with_a_warning_and_its_epochs_recorded(stopped_run, tmp_path):
    with pytest.warns(UnfinishedRunWarning, match="trained 1 of its 3 epochs"):
        results = evaluate_run(stopped_run, sigmas=[0.2], runs=2, progress=False, name="check", compile=False)
    assert (results["epochs"], results["epochs_trained"], results["checkpoint_epoch"]) == (3, 1, 1)
    saved = json.loads((stopped_run / "check.json").read_text())
    assert saved["epochs_trained"] == 1
    paths = report.write_report([saved], tmp_path / "r")
    assert "1 of 3 epochs (training stopped early)" in paths["markdown"].read_text()


def test_evaluate_uses_and_records_the_full_test_set(stopped_run):
    with pytest.warns(UnfinishedRunWarning):
        assert main(["evaluate", str(stopped_run), "--quiet", "--runs", "2", "--sigmas", "0", "--name", "full"]) == 0
    assert warnings.formatwarning("stopped", UnfinishedRunWarning, "x.py", 1) == "neft: warning: stopped\n"
    full = json.loads((stopped_run / "full.json").read_text())
    assert (full["test_set"], full["test_size"]) == ("full", 1000)  # trained with 32 test images, tested on 1000
    with pytest.warns(UnfinishedRunWarning):
        assert main(["evaluate", str(stopped_run), "--quiet", "--runs", "2", "--sigmas", "0", "--name", "part",
                     "--test-subset", "50"]) == 0
    part = json.loads((stopped_run / "part.json").read_text())
    assert (part["test_set"], part["test_size"]) == ("subset", 50)


def test_a_test_subset_as_large_as_the_test_set_evaluates_and_records_the_full_set(stopped_run, recwarn):
    """--test-subset 5000 on the 1,000-image mnist-5k test set: the full test set, said once, recorded as full."""
    full, big = (evaluate_run(stopped_run, sigmas=[0.2], runs=2, progress=False, name=name, compile=False,
                              test_subset=subset) for name, subset in (("whole", None), ("big", 5000)))
    notes = [str(w.message) for w in recwarn if "test_subset" in str(w.message)]
    assert notes == ["test_subset=5000 is at least the 1000 images of the mnist-5k test set: evaluating the full "
                     "test set"]
    assert (big["test_set"], big["test_size"], big["evaluation"]["test_subset"]) == ("full", 1000, None)
    same = [[point[k] for k in ("accuracy", "ekl")] for point in full["per_sigma"]]
    assert [[point[k] for k in ("accuracy", "ekl")] for point in big["per_sigma"]] == same  # the same images


@pytest.mark.parametrize("damage, file", [
    (lambda run: (run / "last.pt").write_bytes((run / "last.pt").read_bytes()[:500]), "last.pt"),
    (lambda run: (run / "config.json").write_text('{"model": "lenet5",'), "config.json"),
    (lambda run: (run / "config.json").write_text("[1]"), "config.json"),
])
def test_a_damaged_run_file_on_resume_is_one_error_naming_it(damage, file, tmp_path, capsys):
    run = tmp_path / "run"
    train(TrainConfig(**{**CONFIG, "epochs": 2}), run, progress=False, stop_after=1)
    damage(run)
    argv = ["train", "--model", "lenet5", "--method", "noise-injection", "--sigma", "0.2", "--epochs", "2",
            "--train-subset", "64", "--test-subset", "32", "--val-runs", "1", "--init", "torch", "--quiet",
            "--out", str(run), "--resume"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("neft: error: ") and f"{run / file}" in err[0]


def test_files_of_another_run_are_refused_naming_what_differs(stopped_run, tmp_path, capsys):
    """A last.pt or checkpoint.pt copied in from a run of another width: resume and evaluate end in one error
    naming the mismatch (never load_state_dict's traceback, never the checkpoint's settings used silently)."""
    import shutil

    other = tmp_path / "other"
    train(TrainConfig(**{**CONFIG, "width": 0.5, "epochs": 1}), other, progress=False)
    run = tmp_path / "run"
    shutil.copytree(stopped_run, run)
    shutil.copy(other / "last.pt", run / "last.pt")
    capsys.readouterr()
    assert main(["train", "--resume", "--out", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "last.pt' belongs to another run (width: 0.5 in last.pt, 1.0 in this run)" in err  # epochs may grow
    assert "Traceback" not in err
    same_shape = tmp_path / "seed1"  # the same network with another seed: only the recorded settings tell
    train(TrainConfig(**{**CONFIG, "seed": 1}), same_shape, progress=False, stop_after=1)
    shutil.copy(same_shape / "last.pt", run / "last.pt")
    log = (run / "train_log.csv").read_text()
    assert main(["train", "--resume", "--out", str(run), "--quiet"]) == 2
    assert "belongs to another run (seed: 1 in last.pt, 0 in this run)" in capsys.readouterr().err
    assert (run / "train_log.csv").read_text() == log  # nothing of the run touched
    state = torch.load(run / "last.pt", weights_only=True)
    del state["config"]  # a last.pt written before it recorded its settings: the weights' shapes still tell
    torch.save({**state, "model": torch.load(other / "last.pt", weights_only=True)["model"]}, run / "last.pt")
    assert main(["train", "--resume", "--out", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "last.pt' does not fit 'lenet5' (width 1): " in err and "of another shape" in err
    trained = (run / "checkpoint.pt").read_bytes()
    (run / "last.pt").unlink()  # no last.pt: a fresh start would replace the trained checkpoint.pt
    assert main(["train", "--resume", "--out", str(run), "--quiet"]) == 2
    assert "it has no last.pt" in capsys.readouterr().err and (run / "checkpoint.pt").read_bytes() == trained
    shutil.copy(other / "checkpoint.pt", run / "checkpoint.pt")
    assert main(["evaluate", str(run), "--quiet", "--runs", "2", "--sigmas", "0.2", "--name", "x"]) == 2
    err = capsys.readouterr().err
    assert "was not trained with the settings of the config.json beside it" in err
    assert "width: 1.0 in config.json, 0.5 in checkpoint.pt" in err and not (run / "x.json").exists()
    (run / "config.json").unlink()  # a checkpoint on its own: its recorded settings, and a warning saying so
    with pytest.warns(UserWarning, match="has no config.json: the settings recorded in checkpoint.pt are used "
                                         r"\(model 'lenet5'"):
        assert evaluate_run(run, sigmas=[0.2], runs=2, progress=False, name="alone")["model"] == "lenet5"


def test_a_weight_tied_between_embedding_and_linear_is_on_the_crossbar_either_way():
    import torch
    from torch import nn

    from neft.chip.crossbar import mapped_weight_names

    class Tied(nn.Module):
        def __init__(self, embedding_first):
            super().__init__()
            modules = [("embed", nn.Embedding(10, 4)), ("head", nn.Linear(4, 10, bias=False))]
            for name, module in modules if embedding_first else modules[::-1]:
                self.add_module(name, module)
            self.head.weight = self.embed.weight  # [10, 4] either way

        def forward(self, x):
            return self.head(self.embed(x))

    torch.manual_seed(0)
    assert mapped_weight_names(Tied(embedding_first=False)) == ["head.weight"]
    assert mapped_weight_names(Tied(embedding_first=True)) == ["embed.weight"]  # named as named_parameters() does


def test_a_ci_target_stops_at_the_same_run_whatever_the_chips_per_pass():
    import torch

    from neft import models
    from neft.evaluation import montecarlo

    torch.manual_seed(0)
    model = models.create("lenet5", 10, 1, width=0.5, init="torch").eval()
    images, labels = torch.randn(48, 1, 32, 32), torch.randint(0, 10, (48,))
    fast = dict(sigmas=[0.3], runs=40, min_runs=5, compile=False, memory_format="contiguous", progress=False)
    one = montecarlo.evaluate(model, images, labels, chips_per_pass=1, ci_target=2.5, **fast)["per_sigma"][0]
    assert 5 <= one["runs"] < 40 and one["runs"] % 4 and one["runs"] % 3  # stops between two rounds of 3 and of 4
    for chips in (3, 4):
        other = montecarlo.evaluate(model, images, labels, chips_per_pass=chips, ci_target=2.5, **fast)["per_sigma"][0]
        assert other["runs"] == one["runs"] and other["run_seeds"] == one["run_seeds"]
        assert other["accuracy"]["per_run"] == pytest.approx(one["accuracy"]["per_run"], abs=100 / 48 + 1e-9)
        assert other["ekl"] == pytest.approx(one["ekl"], rel=1e-4)
        assert other["confidence"] == pytest.approx(one["confidence"], rel=1e-5)


def test_a_resume_refused_for_edited_settings_points_at_config_json_never_at_overwrite(stopped_run, tmp_path, capsys):
    """--overwrite deletes the trained epochs: a resume refused for other settings points at the run's config.json."""
    import json
    import shutil

    run = tmp_path / "run"
    shutil.copytree(stopped_run, run)
    capsys.readouterr()
    assert main(["train", "--resume", "--out", str(run), "--quiet", "--lr", "0.5"]) == 2  # a flag the run did not use
    err = capsys.readouterr().err
    assert "with different settings (lr)" in err and f"{str(run / 'config.json')!r}" in err and "overwrite" not in err
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "seed": 5}))  # config.json edited by hand
    assert main(["train", "--resume", "--out", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "belongs to another run (seed: 0 in last.pt, 5 in this run)" in err
    assert f"{str(run / 'config.json')!r} was edited" in err and "overwrite" not in err
