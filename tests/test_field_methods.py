"""The field's methods as their authors ran them (docs/method.md): the NeFT paper's CorrectNet baseline and RCG's
training-noise scale."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from neft.chip.crossbar import Crossbar
from neft.common.errors import SettingError
from neft.training import TrainConfig, objectives, train, variants
from neft.training.objectives import orthogonality_penalty


def _conv_linear_net():
    """Conv2d(1, 2, 2) with kernels [[1, 2], [3, 4]] and [[1, 0], [0, 1]], then Linear(2 -> 2) [[1, 0], [0, 2]]."""
    model = nn.Sequential(nn.Conv2d(1, 2, 2, bias=False), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 2))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]], [[[1.0, 0.0], [0.0, 1.0]]]]))
        model[3].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
    return model


def test_orthogonality_penalty_by_hand():
    model = _conv_linear_net()
    # kernel 1: W^T W = [[10, 14], [14, 20]], minus I: 81 + 196 + 196 + 361 = 834; kernel 2: identity, 0;
    # Linear: W^T W = diag(1, 4), minus I: diag(0, 3): 9.  Sum 843.
    assert orthogonality_penalty(Crossbar(model).weights().values()).item() == pytest.approx(843.0, rel=1e-6)
    # a Linear [out, in] is one matrix with W^T W [in, in]: a 3x2 weight of orthonormal columns costs nothing
    assert orthogonality_penalty([torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])]).item() == 0.0


def test_correctnet_loss_is_noise_injection_plus_the_authors_penalty():
    model = _conv_linear_net()
    x, y = torch.randn(4, 1, 3, 3), torch.tensor([0, 1, 1, 0])
    objective = objectives.create("correctnet", model, x, 2, sigma=0.0)
    assert objective.correctnet_lambda == 5e-4 and objective.beta == 0.0
    loss, _ = objective.loss(model, x, y)
    assert loss.item() == pytest.approx(F.cross_entropy(model(x), y).item() + 5e-4 * 843.0, abs=1e-6)
    # under noise the cross-entropy term is noise-injection's, drawn from the same generator
    noisy = objectives.create("correctnet", model, x, 2, sigma=0.2, correctnet_lambda=0.0,
                              generator=torch.Generator().manual_seed(3))
    plain = objectives.create("noise-injection", model, x, 2, sigma=0.2, generator=torch.Generator().manual_seed(3))
    assert torch.equal(noisy.loss(model, x, y)[0], plain.loss(model, x, y)[0])


def test_correctnet_penalty_gradient_orthogonalises():
    torch.manual_seed(0)
    weight = nn.Parameter(torch.randn(6, 4))
    optimizer = torch.optim.SGD([weight], lr=0.01)
    before = orthogonality_penalty([weight]).item()
    for _ in range(50):
        optimizer.zero_grad()
        orthogonality_penalty([weight]).backward()
        optimizer.step()
    assert orthogonality_penalty([weight]).item() < 0.05 * before


def test_correctnet_settings_are_checked_named_and_labelled():
    with pytest.raises(SettingError, match="correctnet_lambda must be a finite number >= 0"):
        TrainConfig(model="lenet5", method="correctnet", correctnet_lambda=-1.0).check()
    with pytest.raises(SettingError, match="correctnet_lambda applies to correctnet only"):
        TrainConfig(model="lenet5", method="lipschitz", correctnet_lambda=1e-3).check()
    assert variants.parse("correctnet lambda=1e-3") == ("correctnet", {"correctnet_lambda": 1e-3})
    with pytest.raises(ValueError, match="lambda applies to lipschitz only"):
        variants.parse("ovf lambda=1")
    assert variants.label({"method": "correctnet", "correctnet_lambda": 1e-3}) == "correctnet lambda=0.001"
    assert variants.label({"method": "correctnet", "correctnet_lambda": 5e-4}) == "correctnet"
    assert objectives.settings_of("correctnet", {})["correctnet_lambda"] == 5e-4
    assert objectives.settings_of("lipschitz", {"lipschitz_lambda": 0.1})["correctnet_lambda"] is None


def test_correctnet_learns_real_digits(tmp_path):
    # 2 epochs at sigma 0.2 on 1,500 digits; chance is 10 %
    config = TrainConfig(model="lenet5", dataset="mnist-5k", init="torch", method="correctnet", sigma=0.2, epochs=2,
                         batch_size=32, train_subset=1500, test_subset=500, val_runs=2)
    summary = train(config, tmp_path / "correctnet", progress=False)
    assert summary["test_accuracy_clean"] >= 50.0


# --- the SWIM release's selection score (docs/method.md, 'Selective write-verify') --------------------------------

from torch.func import functional_call  # noqa: E402

from neft.deployment import write_verify as writeverify  # noqa: E402


def test_swim_release_score_by_autograd():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))
    images, labels = torch.randn(16, 5), torch.randint(0, 3, (16,))
    crossbar = Crossbar(model)
    scores = writeverify.verification_scores(crossbar, "swim-release", sensitivity_images=images,
                                             sensitivity_labels=labels)
    for name, w in crossbar.weights().items():
        w = w.detach()

        def loss(flat):
            return F.cross_entropy(functional_call(model, {name: flat.view(w.shape)}, (images,)), labels)

        m = w.abs().max()
        gradient = torch.autograd.functional.jacobian(loss, w.flatten()).view(w.shape)
        hessian = torch.autograd.functional.hessian(loss, w.flatten()).diagonal().view(w.shape)
        by_hand = 1e6 * (hessian * m**2 + 2 * gradient * m).abs() + w.abs() / m
        assert torch.allclose(scores[name], by_hand, rtol=1e-4)
    # the first-derivative term and the magnitude make it another ranking than swim's
    swim = writeverify.verification_scores(crossbar, "swim", sensitivity_images=images)
    release = writeverify.verification_mask(scores, 0.25)
    plain = writeverify.verification_mask(swim, 0.25)
    assert any(not torch.equal(release[n], plain[n]) for n in release)
    with pytest.raises(SettingError, match="sensitivity_labels"):
        writeverify.verification_scores(crossbar, "swim-release", sensitivity_images=images)


# --- RCG's training-noise scale and the authors' search (docs/method.md, 'RCG') ------------------------------------

import json  # noqa: E402

from neft.cli.main import main  # noqa: E402
from neft.experiments import rcg_search as rcgsearch  # noqa: E402


def test_rcg_scale_one_is_todays_rcg_bit_for_bit_and_scales_the_same_draw():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 6 * 6, 4))
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 4, (8,))
    crossbar = Crossbar(model)
    today = crossbar.forward(x, sigma=0.3, generator=torch.Generator().manual_seed(5), censor_k=1.0)
    rcg = objectives.create("rcg", model, x, 4, sigma=0.3, rcg_scale=1.0, generator=torch.Generator().manual_seed(5))
    assert torch.equal(rcg.noisy_forward(model, x, 0.3), today)
    default = objectives.create("rcg", model, x, 4, sigma=0.3, generator=torch.Generator().manual_seed(7))
    same = objectives.create("rcg", model, x, 4, sigma=0.3, rcg_scale=1.0, generator=torch.Generator().manual_seed(7))
    assert torch.equal(default.loss(model, x, y)[0], same.loss(model, x, y)[0])
    chip = crossbar.sample_chip(0.3, torch.Generator().manual_seed(5), censor_k=1.0)
    scaled = objectives.create("rcg", model, x, 4, sigma=0.3, rcg_scale=1.5, generator=torch.Generator().manual_seed(5))
    expected = crossbar.forward(x, chip={name: 1.5 * dw for name, dw in chip.items()})
    assert torch.equal(scaled.noisy_forward(model, x, 0.3), expected)
    with pytest.raises(SettingError, match="rcg_scale must be a finite number > 0"):
        objectives.create("rcg", model, x, 4, sigma=0.3, rcg_scale=0.0)
    with pytest.raises(SettingError, match="rcg_scale applies to rcg only"):
        TrainConfig(model="lenet5", method="noise-injection", rcg_scale=2.0).check()
    assert variants.parse("rcg scale=1.5 k=0.5") == ("rcg", {"rcg_scale": 1.5, "censor_k": 0.5})
    assert variants.label({"method": "rcg", "censor_k": 1.0, "rcg_scale": 1.5}) == "rcg scale=1.5"


def test_rcg_scale_scales_a_realistic_chips_deviation_at_sigma_0():
    """At sigma 0 a realistic chip (PCM-aihwkit: programming noise, drift) still deviates from the clean weights;
    rcg_scale multiplies that draw as it does at sigma > 0 (it was skipped at sigma 0, silently)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 6 * 6, 4))
    x = torch.randn(8, 1, 8, 8)
    crossbar = Crossbar(model, "PCM-aihwkit")
    chip = crossbar.sample_chip(0.0, torch.Generator().manual_seed(5), censor_k=1.0)
    assert max(float(dw.abs().max()) for dw in chip.values()) > 0  # the devices deviate at sigma 0
    scaled = objectives.create("rcg", model, x, 4, sigma=0.0, rcg_scale=2.0, device_model="PCM-aihwkit",
                               generator=torch.Generator().manual_seed(5))
    expected = crossbar.forward(x, chip={name: 2.0 * dw for name, dw in chip.items()})
    assert torch.equal(scaled.noisy_forward(model, x, 0.0), expected)


def test_rcg_scale_leaves_the_chips_drift_compensation_factors_alone():
    """Under aihwkit-inference a chip carries each layer's drift compensation factor (applied to the digitised
    outputs) beside its weight deviations: rcg_scale scales the deviations only (it scaled the factors too)."""
    from neft.chip.circuit import Circuit
    from neft.training.config import TrainConfig

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 6 * 6, 4))
    x = torch.randn(8, 1, 8, 8)
    chip = TrainConfig(method="rcg", sigma=0.0, device_model="aihwkit-inference", out_noise=0.0).check().chip()
    circuit = Circuit(Crossbar(model, chip.device_model), chip.circuit)
    circuit.calibrate(x)
    model.train()
    rcg = objectives.create("rcg", model, x, 4, sigma=0.0, rcg_scale=2.0, device_model=chip.device_model,
                            generator=torch.Generator().manual_seed(5))
    with circuit.applied():
        drawn = rcg.crossbar(model).sample_chip(0.0, torch.Generator().manual_seed(5), censor_k=1.0)
        factors = [name for name in drawn if name not in rcg.crossbar(model).names]
        assert factors and any(float((drawn[name] - 1).abs().max()) > 1e-3 for name in factors)
        expected = rcg.crossbar(model).forward(x, chip={name: dw if name in factors else 2.0 * dw
                                                        for name, dw in drawn.items()})
        assert torch.equal(rcg.noisy_forward(model, x, 0.0), expected)


def test_rcg_search_is_a_golden_section_search_scored_on_validation_chips(tmp_path, monkeypatch):
    trained = []

    def fake_score(config, run_dir, score, chips, progress):  # a concave validation score peaking at scale 1.3
        trained.append((config.rcg_scale, config.seed))
        value = 90.0 - 10.0 * (config.rcg_scale - 1.3) ** 2 + config.seed
        return {"chips": chips, "mean": value + 2, "p1": value - 1, "p5": value}

    monkeypatch.setattr(rcgsearch, "_score_run", fake_score)
    base = TrainConfig(model="lenet5", dataset="mnist-5k", method="rcg", sigma=0.35, epochs=1)
    summary = rcgsearch.search(base, tmp_path, low=0.5, high=2.5, points=6, seeds=[0, 1], score="p5")
    scales = [p["scale"] for p in summary["points"]]
    assert scales[:2] == [1.264, 1.736] and len(scales) == 6 and len(trained) == 12
    assert abs(summary["best"]["scale"] - 1.3) < 0.1
    assert summary["points"][0]["score"] == pytest.approx(90.0 - 10.0 * (1.264 - 1.3) ** 2 + 0.5)
    assert json.loads((tmp_path / "search.json").read_text())["best"] == summary["best"]
    assert (tmp_path / "search.csv").read_text().splitlines()[0] == "scale,score_p5,val_mean,p5_seed0,p5_seed1"


@pytest.mark.parametrize("flags, message", [
    (["--low", "2", "--high", "1"], "argument --high: high (1) must be larger than low (2)"),
    (["--points", "1"], "argument --points: points must be an integer >= 2"),
    (["--seeds", "a"], "argument --seeds: seeds must be a comma list"),
    (["--val-chips", "1"], "argument --val-chips: val_chips must be an integer >= 2"),
    (["--method", "ovf"], "argument --method: rcg-search trains rcg networks"),
])
def test_rcg_search_refuses_bad_settings_before_training(tmp_path, capsys, flags, message):
    assert main(["rcg-search", "--model", "lenet5", "--out", str(tmp_path / "s"), *flags]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_rcg_search_trains_and_scores_real_networks(tmp_path):
    base = TrainConfig(model="lenet5", dataset="mnist-5k", init="torch", method="rcg", sigma=0.3, epochs=1,
                       train_subset=300, test_subset=50, val_runs=2)
    summary = rcgsearch.search(base, tmp_path, low=0.5, high=1.5, points=2, seeds=[0], score="p1", val_chips=4,
                               progress=False)
    for point in summary["points"]:
        run = tmp_path / point["runs"][0]
        assert point["runs"] == [f"scale{point['scale']:g}-seed0-{rcgsearch.settings_key(base)}"]
        validation = json.loads((run / "validation.json").read_text())
        assert point["score"] == validation["p1"] <= validation["mean"] and validation["chips"] == 4
        config = json.loads((run / "config.json").read_text())
        assert config["rcg_scale"] == point["scale"] and config["censor_k"] == 1.0



def test_rcg_search_scores_on_the_circuit_it_trains_through(tmp_path, monkeypatch):
    """A search through a circuit (tiles, DAC, ADC) scores its networks on that circuit, its ranges calibrated;
    the validation chips were read without it (and without calibration images an ADC cannot even run)."""
    from neft.training import selection  # chip_accuracy: the scoring of rcg's points and of training's epochs

    seen = []
    evaluate = selection.montecarlo.evaluate

    def recording(*args, **kwargs):
        seen.append(kwargs)
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(selection.montecarlo, "evaluate", recording)
    base = TrainConfig(model="lenet5", dataset="mnist-5k", init="torch", method="rcg", sigma=0.3, epochs=1,
                       train_subset=200, test_subset=50, val_runs=2, tile_rows=64, dac_bits=8, adc_bits=6)
    rcgsearch._score_run(base, tmp_path / "run", "p5", 3, False)  # one network of a search: trained, scored
    scoring = [kwargs for kwargs in seen if kwargs.get("runs") == 3]  # 3 validation chips (training selects on 2)
    assert len(scoring) == 1
    scoring = scoring[0]
    assert (scoring["tile_rows"], scoring["dac_bits"], scoring["adc_bits"]) == (64, 8, 6)
    assert scoring["calibration_images"] is not None and scoring["calibration_images"].shape[0] > 0

def test_rcg_search_keys_its_networks_by_its_settings(tmp_path, monkeypatch):
    """A search rerun with other settings in the same folder trains and scores its own networks; one with the same
    settings (another device, another spelling of the defaults) reuses them."""
    used = []

    def fake_score(config, run_dir, score, chips, progress):
        used.append(run_dir)
        return {"chips": chips, "mean": 90.0, "p1": 80.0 + config.sigma, "p5": 85.0}

    monkeypatch.setattr(rcgsearch, "_score_run", fake_score)
    base = TrainConfig(model="lenet5", dataset="mnist-5k", method="rcg", sigma=0.35, epochs=1)
    first = rcgsearch.search(base, tmp_path, points=2, seeds=[0], score="p1")
    runs = set(used)
    used.clear()
    rcgsearch.search(TrainConfig(**{**base.__dict__, "device": "cpu", "lr": 1e-3}), tmp_path, points=2, seeds=[0],
                     score="p1")
    assert set(used) == runs  # the same networks
    used.clear()
    other = rcgsearch.search(TrainConfig(**{**base.__dict__, "sigma": 0.3}), tmp_path, points=2, seeds=[0],
                             score="p1")
    assert len(used) == 2 and not set(used) & runs  # never the 0.35 search's networks or scores
    assert other["settings"]["key"] != first["settings"]["key"]
    assert other["points"][0]["score"] == pytest.approx(80.3)
