"""Monte Carlo engine (docs/method.md, 'Monte Carlo evaluation and metrics')."""

import json
import math

import pytest
import torch

from neft import Crossbar, data, make_generator, models, run_seed, runs
from neft.evaluation import montecarlo, parse_sigmas
from neft.store import checkpoint


def evaluate_points(*args, **kwargs) -> list[dict]:
    """The per-sigma entries of montecarlo.evaluate."""
    return montecarlo.evaluate(*args, **kwargs)["per_sigma"]


@pytest.fixture(scope="module")
def setup(trained_run):
    model = checkpoint.load(trained_run)
    dataset = data.load("mnist-5k", test_subset=400)
    images = dataset.preprocess(dataset.splits["test"][0])
    return model, images, dataset.splits["test"][1]


def test_sigma_zero_runs_equal_clean_accuracy(setup):
    model, images, labels = setup
    with torch.no_grad():
        clean = 100 * float((model(images).argmax(1) == labels).float().mean())
        confidence = float(torch.softmax(model(images), -1).amax(-1).mean())
    assert clean > 80  # the fixture learned real digits
    result = evaluate_points(model, images, labels, [0.0], runs=500, progress=False)[0]  # one clean pass
    assert result["accuracy"]["per_run"] == pytest.approx([clean] * 500)
    assert result["ekl"] == 0.0 and result["accuracy"]["std"] == 0.0
    assert result["confidence"] == pytest.approx(confidence, rel=1e-5)
    assert evaluate_points(model, images, labels, 0.0, runs=300, ci_target=0.5, progress=False)[0]["runs"] == 30


def test_seeds_replay_and_differ(setup):
    model, images, labels = setup
    a = evaluate_points(model, images, labels, [0.3], runs=6, seed=1, progress=False)[0]
    b = evaluate_points(model, images, labels, [0.3], runs=6, seed=1, progress=False)[0]
    c = evaluate_points(model, images, labels, [0.3], runs=6, seed=2, progress=False)[0]
    assert a["accuracy"]["per_run"] == b["accuracy"]["per_run"]
    assert a["run_seeds"] == [run_seed(1, 0.3, r) for r in range(6)]
    assert a["accuracy"]["per_run"] != c["accuracy"]["per_run"]


def test_results_independent_of_chunking(setup):
    model, images, labels = setup
    per_run = {k: evaluate_points(model, images, labels, [0.2], runs=8, chips_per_pass=k, progress=False)[0]
               for k in (1, 4, 8)}
    one_image = 100 / len(labels)
    for k in (4, 8):
        diffs = [abs(x - y) for x, y in zip(per_run[1]["accuracy"]["per_run"], per_run[k]["accuracy"]["per_run"])]
        assert max(diffs) <= one_image + 1e-9
        assert per_run[k]["ekl"] == pytest.approx(per_run[1]["ekl"], rel=1e-4)
    # each run's perturbation depends only on its seed: bitwise identical whatever the order of drawing
    crossbar = Crossbar(model)
    first = crossbar.sample_chip(0.2, make_generator(run_seed(0, 0.2, 5)))
    crossbar.sample_chip(0.2, make_generator(run_seed(0, 0.2, 0)))
    again = crossbar.sample_chip(0.2, make_generator(run_seed(0, 0.2, 5)))
    assert all(torch.equal(first[k], again[k]) for k in first)


def test_model_state_is_untouched():
    torch.manual_seed(0)
    model = models.create("vgg8", 10, 1, width=0.125)
    model.train()
    model(torch.randn(16, 1, 32, 32))  # non-trivial BatchNorm running statistics
    before = {k: v.clone() for k, v in model.state_dict().items()}
    evaluate_points(model, torch.randn(20, 1, 32, 32), torch.randint(0, 10, (20,)), [0.1, 0.3], runs=3,
                        chips_per_pass=2, progress=False)
    assert model.training
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_accuracy_falls_with_sigma_on_a_trained_network(setup):
    model, images, labels = setup
    low, high = evaluate_points(model, images, labels, [0.1, 0.4], runs=10, progress=False)
    assert high["accuracy"]["mean"] < low["accuracy"]["mean"] - 5
    assert high["ekl"] > low["ekl"] > 0
    assert high["confidence"] < low["confidence"]


def test_ci_target_stops_early_and_agrees_with_the_full_run(setup):
    model, images, labels = setup
    # the full run: half of the early run's budget of 150 chips is enough to compare (chip r's seed does not
    # depend on the number of runs)
    full = evaluate_points(model, images, labels, [0.1], runs=75, progress=False)[0]
    early = evaluate_points(model, images, labels, [0.1], runs=150, ci_target=1.0, progress=False)[0]
    assert 30 <= early["runs"] < 75  # under half the budget (30 measured: the target is met at min_runs)
    assert early["accuracy"]["ci95"] < 1.0
    assert (abs(early["accuracy"]["mean"] - full["accuracy"]["mean"])
            < early["accuracy"]["ci95"] + full["accuracy"]["ci95"])
    assert early["accuracy"]["per_run"] == full["accuracy"]["per_run"][: early["runs"]]


def test_bf16_is_close_to_fp32(setup):
    model, images, labels = setup
    fp32 = evaluate_points(model, images, labels, [0.1], runs=4, progress=False)[0]
    bf16 = evaluate_points(model, images, labels, [0.1], runs=4, precision="bf16", progress=False)[0]
    assert abs(fp32["accuracy"]["mean"] - bf16["accuracy"]["mean"]) < 2.0


def test_inputs_that_require_grad_and_bad_labels(setup):
    model, images, labels = setup
    plain = evaluate_points(model, images, labels, [0.1], runs=2, progress=False)[0]
    grad = evaluate_points(model, images.clone().requires_grad_(), labels, [0.1], runs=2, progress=False)[0]
    assert grad["accuracy"]["per_run"] == plain["accuracy"]["per_run"]
    with pytest.raises(ValueError, match=r"labels must be class indices in \[0, 9\].*got 0\.\.10"):
        evaluate_points(model, images, torch.where(labels == 3, 10, labels), [0.1], runs=2, progress=False)


def test_bad_input(setup):
    model, images, labels = setup
    with pytest.raises(ValueError, match="runs must be an integer >= 2"):
        evaluate_points(model, images, labels, [0.1], runs=1)
    with pytest.raises(ValueError, match="sigmas must be"):
        evaluate_points(model, images, labels, [-0.1], runs=2)
    with pytest.raises(ValueError, match="test set is empty"):
        evaluate_points(model, images[:0], labels[:0], [0.1], runs=2)
    with pytest.raises(ValueError, match="sigma list '' is empty"):
        parse_sigmas("")
    with pytest.raises(ValueError, match=r"is empty \(start:stop:step needs start <= stop\)"):
        parse_sigmas("0.4:0:0.1")
    assert parse_sigmas("0:0.4:0.1") == [0.0, 0.1, 0.2, 0.3, 0.4]


def test_evaluate_run_writes_results_and_never_clobbers(trained_run):
    results = runs.evaluate_run(trained_run, sigmas="0,0.2", runs=3, test_subset=200, name="quick",
                                      progress=False)
    stored = json.loads((trained_run / "quick.json").read_text())
    assert stored["per_sigma"][1]["accuracy"]["per_run"] == results["per_sigma"][1]["accuracy"]["per_run"]
    assert (stored["model"], stored["method"], stored["train_sigma"], stored["runs"], stored["test_size"]) == (
        "lenet5", "noise-injection", 0.1, 3, 200)
    assert set(stored["per_sigma"][0]["accuracy"]) >= {"mean", "std", "ci95", "ci99", "min", "p1", "p5", "p10",
                                                       "per_run"}
    assert (trained_run / "quick.csv").is_file() and (trained_run / "quick_accuracy_vs_sigma.png").is_file()
    with pytest.raises(FileExistsError, match="--overwrite"):
        runs.evaluate_run(trained_run, sigmas="0.1", runs=2, test_subset=50, name="quick", progress=False)
    (trained_run / "quick.json").unlink()  # the CSV and the plot are protected too
    with pytest.raises(FileExistsError, match="quick.csv"):
        runs.evaluate_run(trained_run, sigmas="0.1", runs=2, test_subset=50, name="quick", progress=False)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--sigmas", "-0.1"], "sigmas must be"),
        (["--runs", "1"], "runs must be an integer >= 2"),
        (["--test-subset", "0"], "test_subset must be an integer >= 1"),
        (["--sigmas", "0:0.4"], "cannot read sigmas"),
        (["--ci-target", "nan", "--runs", "40"], "ci_target must be a positive number"),
        (["--ci-target", "0.5", "--runs", "10"], "give runs >= 30"),
        (["--batch-size", "0"], "batch_size must be"),
        (["--name", "sub/dir"], "must be a plain file name"),
    ],
)
def test_cli_evaluate_bad_input(trained_run, capsys, flags, message):
    from neft.cli.main import main

    assert main(["evaluate", str(trained_run), "--quiet", "--name", "bad", *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (trained_run / "bad.json").exists()


def test_cli_evaluate_without_checkpoint(tmp_path, capsys):
    from neft.cli.main import main

    assert main(["evaluate", str(tmp_path), "--quiet"]) == 2
    assert "no checkpoint" in capsys.readouterr().err


def test_non_finite_numbers_are_errors_not_results(setup):
    model, images, labels = setup
    bad = images.clone()
    bad[3, 0, 5, 5] = float("nan")
    with pytest.raises(ValueError, match="1 test image\\(s\\) contain NaN or infinite values"):
        evaluate_points(model, bad, labels, [0.1], runs=2, progress=False)
    huge = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(32 * 32, 10))
    with torch.no_grad():
        huge[1].weight.fill_(3e37)  # logits overflow float32 to +-inf
    for sigma in (0.0, 0.1):
        with pytest.raises(ValueError, match=f"NaN or infinite logits at sigma {sigma:g}"):
            evaluate_points(huge, images[:50], labels[:50], [sigma], runs=2, progress=False)


def test_ekl_of_nan_logits_is_nan_not_zero():
    from neft.evaluation.metrics import PredictionAccumulator

    accumulator = PredictionAccumulator(1, 2)
    accumulator.add(torch.tensor([[[float("nan"), 0.0]]]), torch.tensor([0]), 0)
    accumulator.finish_runs(1)
    assert math.isnan(accumulator.ekl())
    with pytest.raises(ValueError, match="NaN or infinite logits"):
        accumulator.check_finite()


def test_evaluate_and_objectives_leave_the_model_exactly_as_it_was():
    from neft.training import objectives

    torch.manual_seed(0)
    model = models.create("vgg8", 10, 1, 0.125, init="torch")
    model.train()
    model.features[1][1].eval()  # a user's frozen BatchNorm inside a training model
    flags = [m.training for m in model.modules()]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    images, labels = torch.randn(20, 1, 32, 32), torch.randint(0, 10, (20,))
    evaluate_points(model, images, labels, [0.0, 0.2], runs=2, progress=False)
    for method in ("vanilla", "noise-injection", "ovf", "irs"):
        objectives.create(method, model, images, 10, sigma=0.1, beta=0.01 if method in ("ovf", "irs") else 0.0)
    assert [m.training for m in model.modules()] == flags
    assert all(torch.equal(value, state[key]) for key, value in model.state_dict().items())


def test_evaluation_settings_are_one_checked_object_recorded_in_the_results(setup):
    model, images, labels = setup
    config = montecarlo.EvalConfig(runs=3, seed=4, device_model="RRAM4", memory_format="contiguous", compile=False)
    result = montecarlo.evaluate(model, images, labels, "0:0.2:0.1", config, label="lenet", progress=False)
    assert result["evaluation"]["sigmas"] == [0.0, 0.1, 0.2] and result["evaluation"]["seed"] == 4
    assert result["evaluation"]["device_model"] == "RRAM4" and result["device_model"]["name"] == "RRAM4"
    assert result["label"] == "lenet" and result["test_size"] == 400 and result["chip_device"] == "cpu"
    assert result["per_sigma"][2]["run_seeds"] == [run_seed(4, 0.2, r) for r in range(3)]
    # keywords override the object's fields; the object itself is not changed
    override = montecarlo.evaluate(model, images, labels, [0.2], config, runs=2, progress=False)
    assert override["per_sigma"][0]["runs"] == 2 and config.runs == 3
    assert override["per_sigma"][0]["accuracy"]["per_run"] == result["per_sigma"][2]["accuracy"]["per_run"][:2]
    for bad, setting in [(dict(runs=1), "runs"), (dict(batch_size=0), "batch_size"),
                         (dict(precision="fp8"), "precision"),
                         (dict(sigmas=[1.5]), "sigmas"), (dict(chips_per_pass=0), "chips_per_pass"),
                         (dict(ci_target=-1), "ci_target"), (dict(runs=10, ci_target=0.5), "runs")]:
        with pytest.raises(montecarlo.SettingError) as caught:
            montecarlo.EvalConfig(**bad).check()
        assert caught.value.setting == setting
    with pytest.raises(TypeError, match="unknown setting.*'run'"):
        montecarlo.evaluate(model, images, labels, [0.1], run=3)
    for label in ("a\nb", "ovf\x1b[2J", "", 5):  # a label reports print as a table cell and a legend
        with pytest.raises(montecarlo.SettingError, match="label must be a non-empty line of text") as caught:
            montecarlo.evaluate(model, images, labels, [0.1], runs=2, label=label, progress=False)
        assert caught.value.setting == "label"
    with pytest.raises(ValueError, match="no sigmas to evaluate"):
        montecarlo.evaluate(model, images, labels, runs=3)
