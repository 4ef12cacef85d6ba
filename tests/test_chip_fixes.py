"""Fixes for one programmed chip (docs/method.md, 'Fixes for one programmed chip'): BatchNorm recalibration and
the tiny shared block tuned per chip, applied by the Monte Carlo engine between drawing and testing a chip."""

import json

import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from neft import Crossbar, data, models
from neft import reporting as report
from neft.cli.main import main
from neft.common.errors import SettingError
from neft.deployment import tuned_block as chiptune
from neft.deployment.recalibration import recalibrate_bn
from neft.evaluation import montecarlo
from neft.runs.evaluate import evaluate_run
from neft.store import checkpoint

FAST = {"memory_format": "contiguous", "compile": False, "chips_per_pass": 1, "progress": False}


@pytest.fixture(scope="module")
def digits():
    dataset = data.load("mnist-5k", test_subset=500)
    test = dataset.preprocess(dataset.splits["test"][0]), dataset.splits["test"][1]
    train = dataset.preprocess(dataset.splits["train"][0][:2000]), dataset.splits["train"][1][:2000]
    return train, test


@pytest.fixture(scope="module")
def bn_net(digits):
    """A small conv-BatchNorm network trained 200 Adam steps on 2,000 real digits, its BatchNorm statistics
    estimated on all of them (92.4 % clean test accuracy; 92.6 % recalibrated on half of them)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 5, stride=2), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.Conv2d(8, 16, 5, stride=2), nn.BatchNorm2d(16), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(64, 10))
    (x, y), _ = digits
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(200):
        index = torch.randint(len(x), (64,), generator=generator)
        optimizer.zero_grad()
        F.cross_entropy(model(x[index]), y[index]).backward()
        optimizer.step()
    for layer in (model[1], model[4]):  # running statistics of the final weights (the moving average lags)
        layer.reset_running_stats()
        layer.momentum = None
    with torch.no_grad():
        model(x)
    for layer in (model[1], model[4]):
        layer.momentum = 0.1
    return model.eval()


def accuracy(logits, labels):
    return 100.0 * float((logits.argmax(1) == labels).float().mean())


def test_recalibration_on_the_clean_weights_keeps_clean_accuracy(bn_net, digits):
    (train_x, _), (x, y) = digits
    weights = {name: w.detach() for name, w in Crossbar(bn_net).weights().items()}
    with torch.no_grad():
        clean = accuracy(bn_net(x), y)
        statistics = recalibrate_bn(bn_net, weights, train_x[1000:])
        recalibrated = accuracy(functional_call(bn_net, {**weights, **statistics}, (x,)), y)
    assert clean > 85.0
    assert abs(recalibrated - clean) <= 0.5
    # over one batch the statistics are the batch mean and the unbiased variance of the first layer's inputs
    with torch.no_grad():
        features = bn_net[0](train_x[1000:])
    assert torch.allclose(statistics["1.running_mean"], features.mean((0, 2, 3)), atol=1e-5)
    assert torch.allclose(statistics["1.running_var"], features.var((0, 2, 3), unbiased=True), rtol=1e-4)
    assert bn_net[1].training is False and bn_net[1].momentum == 0.1  # the model is given back as it was


def test_recalibration_helps_a_batchnorm_network_on_noisy_chips_and_is_recorded(bn_net, digits):
    (train_x, train_y), (x, y) = digits
    plain = montecarlo.evaluate(bn_net, x, y, [0.3], runs=6, **FAST)
    off = montecarlo.evaluate(bn_net, x, y, [0.3], runs=6, recalibrate_bn=0, fix_images=train_x,
                              fix_labels=train_y, **FAST)
    fixed = montecarlo.evaluate(bn_net, x, y, [0.3], runs=6, recalibrate_bn=512, fix_images=train_x,
                                fix_labels=train_y, label="bn-net", **FAST)
    assert off["per_sigma"][0]["accuracy"]["per_run"] == plain["per_sigma"][0]["accuracy"]["per_run"]
    # measured: 34.8 % without, 68.2 % with recalibration (mean of 6 chips at sigma 0.3)
    assert fixed["per_sigma"][0]["accuracy"]["mean"] > plain["per_sigma"][0]["accuracy"]["mean"] + 2
    assert fixed["evaluation"]["recalibrate_bn"] == 512
    assert fixed["deployment_cost"]["recalibrate_bn"] == {"images": 512}
    assert report.result_label(fixed) == "bn-net bn=512"
    assert all(not m.training for m in bn_net.modules())


def test_the_untuned_block_is_the_backbone_bit_for_bit_and_is_shared(digits):
    torch.manual_seed(0)
    model = models.create("vgg8", 10, 1, width=0.25).eval()
    (_, _), (x, _) = digits
    with torch.no_grad():
        before = model(x[:8])
        with chiptune.installed(model, ("features.2", "features.3"), x[:1]) as block:
            assert block.weight.shape == (64, 64, 1, 1) and not block.weight.any()
            assert torch.equal(model(x[:8]), before)
            calls = []
            hook = block.register_forward_hook(lambda *_: calls.append(1))
            model(x[:1])
            hook.remove()
            assert len(calls) == 2  # one weight, two insertion points
        assert not hasattr(model, chiptune.WEIGHT) and torch.equal(model(x[:8]), before)
    with pytest.raises(SettingError, match="same channel count"):
        with chiptune.installed(model, ("features.1", "features.2"), x[:1]):
            pass
    with pytest.raises(SettingError, match=r"\['features.9'\] are not modules"):
        with chiptune.installed(model, ("features.9",), x[:1]):
            pass


def test_the_block_runs_once_after_its_tap_in_a_sequential_model(bn_net, digits):
    # a Sequential runs its submodules in order: the block must never be one of them
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU())  # ends in a 4-D output: a block run as a layer runs twice
    x = torch.randn(2, 1, 6, 6)
    weight = torch.randn(4, 4, 1, 1)
    with torch.no_grad(), chiptune.installed(net, ("1",), x[:1]):
        tuned = functional_call(net, {chiptune.WEIGHT: weight}, (x,))
        assert list(net) == [net[0], net[1]]
    plain = net(x)
    assert torch.equal(tuned, plain + F.conv2d(plain, weight))
    (train_x, train_y), (x, y) = digits
    result = montecarlo.evaluate(bn_net, x[:64], y[:64], [0.0, 0.2], runs=2, chip_tune=3, chip_tune_taps=["2"],
                                 fix_images=train_x, fix_labels=train_y, **FAST)
    assert result["deployment_cost"]["chip_tune"]["weights_written_verified"] == 8 * 8
    assert all(0 <= level["accuracy"]["mean"] <= 100 for level in result["per_sigma"])


def test_chip_tune_zero_is_plain_evaluation_and_tuning_helps(trained_run, digits):
    model = checkpoint.load(trained_run)
    (train_x, train_y), (x, y) = digits
    plain = montecarlo.evaluate(model, x, y, [0.3], runs=4, **FAST)
    off = montecarlo.evaluate(model, x, y, [0.3], runs=4, chip_tune=0, fix_images=train_x, fix_labels=train_y,
                              **FAST)
    assert off["per_sigma"][0]["accuracy"]["per_run"] == plain["per_sigma"][0]["accuracy"]["per_run"]
    tuned = montecarlo.evaluate(model, x, y, [0.3], runs=4, chip_tune=30, fix_images=train_x, fix_labels=train_y,
                                **FAST)
    # measured: 68.9 % untuned, 81.7 % after 30 steps (mean of 4 chips at sigma 0.3)
    assert tuned["per_sigma"][0]["accuracy"]["mean"] > plain["per_sigma"][0]["accuracy"]["mean"] + 1
    cost = tuned["deployment_cost"]["chip_tune"]
    assert cost["optimizer_steps"] == 30 and cost["images"] == 30 * 64 and cost["taps"] == ["features.1"]
    assert cost["weights_written_verified"] == 256
    assert cost["fraction_of_weights"] == pytest.approx(256 / (61470 + 256))
    assert not any(name.startswith(chiptune.WEIGHT) for name, _ in model.named_parameters())
    # several chips per pass (vmap) carry each chip's own block
    paired = montecarlo.evaluate(model, x, y, [0.3], runs=4, chip_tune=30, fix_images=train_x, fix_labels=train_y,
                                 **{**FAST, "chips_per_pass": 2})
    assert paired["per_sigma"][0]["accuracy"]["per_run"] == pytest.approx(
        tuned["per_sigma"][0]["accuracy"]["per_run"], abs=0.21)


def test_run_directory_evaluation_records_the_fixes(trained_run, tmp_path):
    results = evaluate_run(trained_run, sigmas="0.3", runs=2, test_subset=100, chip_tune=5, name="tuned",
                           progress=False)
    saved = json.loads((trained_run / "tuned.json").read_text())
    assert saved["evaluation"]["chip_tune"] == 5 and saved["deployment_cost"]["chip_tune"]["optimizer_steps"] == 5
    assert report.result_label(results) == "noise-injection tune=5"


@pytest.mark.parametrize("flags, message", [
    (["--chip-tune", "-1"], "argument --chip-tune: chip_tune must be an integer >= 0"),
    (["--recalibrate-bn", "-2"], "argument --recalibrate-bn: recalibrate_bn must be an integer >= 0"),
    (["--chip-tune", "5", "--chip-tune-lr", "0"], "argument --chip-tune-lr: chip_tune_lr must be a finite number"),
    (["--chip-tune", "5", "--chip-tune-batch", "0"], "argument --chip-tune-batch: chip_tune_batch must be an integer"),
    (["--recalibrate-bn", "100"], "argument --recalibrate-bn: LeNet5 has no BatchNorm layer"),
    (["--chip-tune", "5", "--chip-tune-taps", "features.7"],
     "argument --chip-tune-taps: chip_tune_taps ['features.7']"),
])
def test_bad_fix_settings_are_refused_with_one_line(trained_run, capsys, flags, message):
    assert main(["evaluate", str(trained_run), "--sigmas", "0.3", "--runs", "2", "--name", "bad", "--quiet",
                 *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (trained_run / "bad.json").exists()


def test_recalibration_runs_at_sigma_zero_too(bn_net, digits):
    """Every sigma gets the same fix: at sigma 0 each chip is recalibrated like at any other sigma, so a fixed
    curve starts at the fixed clean network, not at the unfixed one."""
    (train_x, train_y), (x, y) = digits
    fixed = montecarlo.evaluate(bn_net, x, y, [0.0, 0.3], runs=2, recalibrate_bn=512, fix_images=train_x,
                                fix_labels=train_y, **FAST)
    weights = {name: w.detach() for name, w in Crossbar(bn_net).weights().items()}
    with torch.no_grad():
        statistics = recalibrate_bn(bn_net, weights, train_x[:512])
        recalibrated = accuracy(functional_call(bn_net, {**weights, **statistics}, (x,)), y)
        unfixed = accuracy(bn_net(x), y)
    assert recalibrated != unfixed  # the fix changes the clean network (else the test could not tell)
    assert fixed["per_sigma"][0]["accuracy"]["per_run"] == pytest.approx([recalibrated] * 2, abs=1e-4)


@pytest.mark.parametrize("flags, setting", [
    (["--chip-tune-lr", "0.05"], "--chip-tune-lr"),
    (["--chip-tune-lr", "0.01"], "--chip-tune-lr"),  # even at the default value: the flag was written
    (["--chip-tune-batch", "64"], "--chip-tune-batch"),
    (["--chip-tune-taps", "features.1", "--recalibrate-bn", "0"], "--chip-tune-taps"),
])
def test_tuning_flags_without_chip_tune_are_refused(trained_run, capsys, flags, setting):
    assert main(["evaluate", str(trained_run), "--sigmas", "0.3", "--runs", "2", "--name", "unused", "--quiet",
                 *flags]) == 2
    err = capsys.readouterr().err
    assert f"argument {setting}:" in err and "tuned block, which is off" in err and "--chip-tune STEPS" in err
    assert len(err.strip().splitlines()) == 1 and not (trained_run / "unused.json").exists()


def test_tuning_settings_without_chip_tune_are_refused_in_python(bn_net, digits):
    (train_x, train_y), (x, y) = digits
    for setting, value in (("chip_tune_lr", 0.05), ("chip_tune_batch", 8), ("chip_tune_taps", ["1"])):
        with pytest.raises(SettingError, match=f"{setting} .* the tuned block, which is off") as error:
            montecarlo.evaluate(bn_net, x, y, [0.3], runs=2, **{setting: value}, **FAST)
        assert error.value.setting == setting


def test_the_written_block_carries_the_realistic_chips_effects(trained_run, digits):
    """The block is written to the same chip as the backbone: on a realistic chip it is quantized to the chip's
    weight levels (and gets its stuck devices and drift), even when verification leaves no programming error."""
    from neft.chip import mapping
    from neft.deployment.fixes import ChipFixes
    from neft.evaluation import EvalConfig

    model = checkpoint.load(trained_run)
    (train_x, train_y), _ = digits
    config = EvalConfig(sigmas=[0.1], chip_tune=3, quantize=True, verified_sigma=0.0).check()
    crossbar = Crossbar(model, config.chip().device_model)
    fixes = ChipFixes(crossbar, config, train_x, train_y)
    with fixes.installed():
        weights = {name: w.detach() for name, w in crossbar.weights().items()}
        block = fixes.extras(weights, 7, 0.1)[chiptune.WEIGHT]
    levels = block / (block.abs().max() / mapping.magnitude_levels(8))  # the chip's 8-bit weight levels
    assert block.abs().max() > 0 and torch.allclose(levels, levels.round(), atol=1e-3)
    stuck = EvalConfig(sigmas=[0.1], chip_tune=3, quantize=True, stuck_on=0.2).check()
    crossbar = Crossbar(model, stuck.chip().device_model)
    fixes = ChipFixes(crossbar, stuck, train_x, train_y)
    with fixes.installed():
        stuck_block = fixes.extras(weights, 7, 0.1)[chiptune.WEIGHT]
    # the same tuned weight (same backbone, same seed) written to a chip with 20 % of its devices stuck on
    assert (stuck_block != block).float().mean() > 0.3
