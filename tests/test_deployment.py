"""Deployment-side options of the Monte Carlo evaluation: selective write-verify (SWIM) and read noise."""

import json

import pytest
import torch
from torch import nn
from torch.func import functional_call

from neft import Crossbar, DeviceModel, data, make_generator
from neft import reporting as report
from neft.chip import devices
from neft.common.errors import SettingError
from neft.deployment.write_verify import swim_sensitivity, verification_mask, verification_scores
from neft.evaluation import montecarlo
from neft.store import checkpoint

FAST = {"memory_format": "contiguous", "compile": False, "chips_per_pass": 1, "progress": False}


@pytest.fixture(scope="module")
def setup(trained_run):
    model = checkpoint.load(trained_run)
    dataset = data.load("mnist-5k", test_subset=300)
    images = dataset.preprocess(dataset.splits["test"][0])
    return model, images, dataset.splits["test"][1], dataset.preprocess(dataset.splits["train"][0][:64])


@pytest.fixture
def tiny():
    """A 2-layer ReLU network, 16 inputs and labels: small enough for an exact Hessian by autograd."""
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))
    return model, torch.randn(16, 5), torch.randint(0, 3, (16,))


def per_run(model, images, labels, sigmas, **settings):
    return [p["accuracy"]["per_run"] for p in montecarlo.evaluate(model, images, labels, sigmas, **FAST,
                                                                  **settings)["per_sigma"]]


def test_everything_verified_exactly_is_the_clean_network(setup):
    model, images, labels, _ = setup
    with torch.no_grad():
        clean = 100.0 * int((model(images).argmax(1) == labels).sum()) / len(labels)
    accuracies = per_run(model, images, labels, [0.3], runs=5, write_verify=1.0)[0]
    assert accuracies == [clean] * 5
    crossbar = Crossbar(model)
    everything = {name: torch.ones_like(w, dtype=torch.bool) for name, w in crossbar.weights().items()}
    chip = crossbar.sample_chip(0.3, make_generator(1), everything)
    assert all(torch.equal(dw, torch.zeros_like(dw)) for dw in chip.values())
    # a residual verified_sigma scales the same draw: std of min(verified_sigma, sigma) instead of sigma
    plain = crossbar.sample_chip(0.3, make_generator(1))
    residual = crossbar.sample_chip(0.3, make_generator(1), everything, verified_sigma=0.06)
    assert all(torch.allclose(residual[n], plain[n] * 0.2, rtol=1e-6, atol=0) for n in plain)
    capped = crossbar.sample_chip(0.03, make_generator(1), everything, verified_sigma=0.06)
    assert all(torch.equal(capped[n], crossbar.sample_chip(0.03, make_generator(1))[n]) for n in plain)


def test_nothing_verified_is_plain_evaluation(setup):
    model, images, labels, _ = setup
    plain = montecarlo.evaluate(model, images, labels, [0.0, 0.3], runs=6, **FAST)
    unverified = montecarlo.evaluate(model, images, labels, [0.0, 0.3], runs=6, write_verify=0.0,
                                     verify_select="swim", verified_sigma=0.05, read_sigma=0.0, **FAST)
    for a, b in zip(plain["per_sigma"], unverified["per_sigma"]):
        assert a["accuracy"]["per_run"] == b["accuracy"]["per_run"] and a["ekl"] == b["ekl"]


def test_verifying_more_weights_helps_and_is_recorded(setup):
    model, images, labels, train_images = setup
    none, some = (montecarlo.evaluate(model, images, labels, [0.4], runs=8, write_verify=p, verify_select="swim",
                                      sensitivity_images=train_images, **FAST) for p in (0.0, 0.2))
    assert some["per_sigma"][0]["accuracy"]["mean"] > none["per_sigma"][0]["accuracy"]["mean"]
    assert some["evaluation"]["write_verify"] == 0.2 and some["evaluation"]["verify_select"] == "swim"
    assert report.result_label({**some, "label": "lenet"}) == "lenet wv=20% swim"
    assert report.result_label(none) == "network"


def exact_hessian_diagonal(model, images, labels, name):
    """Diagonal of the Hessian of the mean cross-entropy with respect to one weight, by autograd."""
    weight = dict(model.named_parameters())[name].detach()

    def loss(flat):
        logits = functional_call(model, {name: flat.view(weight.shape)}, (images,))
        return nn.functional.cross_entropy(logits, labels)

    return torch.autograd.functional.hessian(loss, weight.flatten()).diagonal().view(weight.shape)


def test_swim_sensitivity_is_hessian_diagonal_times_programming_variance(tiny):
    model, images, labels = tiny
    crossbar = Crossbar(model, "RRAM1")
    by_hand = {}
    for name, w in crossbar.weights().items():
        std = devices.get("RRAM1").bit_factor * w.detach().abs().max()  # std per unit sigma, weight units
        by_hand[name] = exact_hessian_diagonal(model, images, labels, name) * std**2
    sensitivity = swim_sensitivity(crossbar, images)  # no labels: exact for a ReLU network whatever they are
    for name in by_hand:
        assert torch.allclose(sensitivity[name], by_hand[name], rtol=1e-4, atol=1e-9)
    flat = torch.cat([s.flatten() for s in by_hand.values()])
    for p in (0.1, 0.25, 0.5):
        mask = verification_mask(verification_scores(crossbar, "swim", sensitivity_images=images), p)
        chosen = torch.cat([m.flatten() for m in mask.values()])
        expected = torch.zeros_like(chosen)
        expected[flat.topk(round(p * flat.numel())).indices] = True
        assert torch.equal(chosen, expected)


def test_magnitude_picks_the_largest_normalised_weights_and_random_is_seeded(tiny):
    model, _, _ = tiny
    crossbar = Crossbar(model)
    weights = crossbar.weights()
    level = torch.cat([(w.abs() / w.abs().max()).detach().flatten() for w in weights.values()])  # |w| / max|W|
    mask = verification_mask(verification_scores(crossbar, "magnitude"), 0.25)
    chosen = torch.cat([m.flatten() for m in mask.values()])
    assert int(chosen.sum()) == 8  # round(0.25 * 32)
    assert level[chosen].min() > level[~chosen].max()
    draws = [torch.cat([m.flatten() for m in verification_mask(verification_scores(crossbar, "random", seed=s),
                                                                0.3).values()]) for s in (0, 0, 1)]
    assert all(int(d.sum()) == round(0.3 * 32) for d in draws)
    assert torch.equal(draws[0], draws[1]) and not torch.equal(draws[0], draws[2])
    smaller = torch.cat([m.flatten() for m in verification_mask(verification_scores(crossbar, "random"),
                                                                0.1).values()])
    assert bool((draws[0] | ~smaller).all())  # nested: the weights verified at 10 % are verified at 30 %


def test_read_noise_at_sigma_zero_and_from_a_device_file(setup, tmp_path):
    model, images, labels, _ = setup
    clean, noisy = per_run(model, images, labels, [0.0], runs=4), per_run(model, images, labels, [0.0], runs=4,
                                                                           read_sigma=0.1)
    assert len(set(clean[0])) == 1 and len(set(noisy[0])) > 1
    assert per_run(model, images, labels, [0.0], runs=4, read_sigma=0.1) == noisy  # replays from the run seed
    path = tmp_path / "chip.toml"
    path.write_text("weight_bits = 8\ndevice_bits = 2\nread_sigma = 0.1\n")
    assert devices.get(str(path)).read_sigma == 0.1 and devices.get(str(path)).to_dict()["read_sigma"] == 0.1
    from_file = montecarlo.evaluate(model, images, labels, [0.0], runs=4, device_model=str(path), **FAST)
    assert [from_file["per_sigma"][0]["accuracy"]["per_run"]] == noisy
    assert report.result_label(from_file) == "network read_sigma=0.1"


@pytest.mark.parametrize("settings, setting", [
    ({"write_verify": 1.5}, "write_verify"), ({"write_verify": -0.1}, "write_verify"),
    ({"write_verify": float("nan")}, "write_verify"), ({"verify_select": "best"}, "verify_select"),
    ({"read_sigma": -0.01}, "read_sigma"), ({"read_sigma": float("inf")}, "read_sigma"),
    ({"verified_sigma": -1}, "verified_sigma"),
])
def test_bad_settings_name_the_setting(settings, setting):
    with pytest.raises(SettingError) as error:
        montecarlo.EvalConfig(**settings).check()
    assert error.value.setting == setting


def test_swim_without_data_and_bad_device_read_sigma(setup):
    model, images, labels, _ = setup
    with pytest.raises(SettingError, match="sensitivity_images") as error:
        montecarlo.evaluate(model, images, labels, [0.3], runs=2, write_verify=0.1, verify_select="swim", **FAST)
    assert error.value.setting == "verify_select"
    with pytest.raises(SettingError) as error:
        DeviceModel(read_sigma=-0.2)
    assert error.value.setting == "read_sigma"


def test_cli_sweep_writes_one_result_per_fraction(trained_run, capsys):
    from neft.cli.main import main

    assert main(["evaluate", str(trained_run), "--quiet", "--sigmas", "0.3", "--runs", "3", "--test-subset", "200",
                 "--write-verify", "0,0.5", "--verify-select", "swim", "--name", "wv"]) == 0
    results = [json.loads((trained_run / f"wv_wv{p}.json").read_text()) for p in ("0", "0.5")]
    assert [r["evaluation"]["write_verify"] for r in results] == [0.0, 0.5]
    assert report.result_label(results[1]) == "noise-injection wv=50% swim"
    assert results[1]["per_sigma"][0]["accuracy"]["mean"] > results[0]["per_sigma"][0]["accuracy"]["mean"]
    assert main(["evaluate", str(trained_run), "--quiet", "--write-verify", "2", "--name", "bad"]) == 2
    assert "argument --write-verify: write_verify is the fraction" in capsys.readouterr().err
