"""The crossbar circuit's converters (docs/method.md, 'The crossbar circuit'): ranges calibrated on a seeded,
class-mixed sample of training images in training and evaluation, and degenerate converters (a zero range, 1 bit,
non-finite numbers) that give numbers or clear errors."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from neft import Crossbar, DeviceModel, data
from neft.chip.circuit import Circuit
from neft.chip.circuit_settings import CircuitSettings
from neft.cli.main import main
from neft.common.errors import SettingError
from neft.common.seeds import calibration_seed
from neft.evaluation import EvalConfig, montecarlo

FAST = {"memory_format": "contiguous", "compile": False, "chips_per_pass": 1, "progress": False, "precision": "fp32"}
CLASSES, PER_CLASS = 3, 300  # more than the 256 calibration images per class: sorted, the first 256 are class 0


def _npz(path, shuffled: bool):
    """A 3-class npz of 32x32 images, one brightness per class (class c: pixels 40 + 80 c .. 49 + 80 c), stored
    sorted by label, or in a shuffled order."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(CLASSES), PER_CLASS)
    x = (40 + 80 * y[:, None, None] + rng.integers(0, 10, (len(y), 32, 32))).astype(np.uint8)
    if shuffled:
        order = rng.permutation(len(y))
        x, y = x[order], y[order]
    np.savez(path, x_train=x, y_train=y, x_test=x[::30], y_test=y[::30])
    return f"npz:{path}"


def _classes(images: torch.Tensor, dataset) -> set[int]:
    """The classes of preprocessed ``images`` of :func:`_npz`: the class whose mean brightness is nearest."""
    x, y = dataset.splits["train"]
    centres = torch.stack([dataset.preprocess(x[y == c]).mean() for c in range(CLASSES)])
    return set((images.mean((1, 2, 3))[:, None] - centres).abs().argmin(1).tolist())


@pytest.fixture
def calibrations(monkeypatch):
    """Every batch of images a :class:`Circuit` calibrates on, in order."""
    seen, calibrate = [], Circuit.calibrate

    def spy(self, images):
        if images is not None:
            seen.append(images.detach().cpu().clone())
        return calibrate(self, images)

    monkeypatch.setattr(Circuit, "calibrate", spy)
    return seen


def test_a_class_sorted_data_set_calibrates_on_a_seeded_class_mixed_sample(tmp_path, calibrations):
    from neft.runs.evaluate import evaluate_run
    from neft.training import TrainConfig, train

    name = _npz(tmp_path / "sorted.npz", shuffled=False)
    dataset = data.load(name)
    config = TrainConfig(model="lenet5", dataset=name, method="vanilla", sigma=0.0, epochs=2, init="torch",
                         validation=0, select_on="test", batch_size=128, dac_bits=8, adc_bits=8, seed=4)
    train(config, tmp_path / "run", progress=False)
    # at the start of every epoch and for its noisy validation chips (sigma 0 through converters), on the same images
    assert len(calibrations) == 4
    assert all(torch.equal(images, calibrations[0]) for images in calibrations)
    assert calibrations[0].shape[0] == 256 and _classes(calibrations[0], dataset) == set(range(CLASSES))
    drawn = {"split": "train", "images": 256, "seed": calibration_seed(4)}
    assert json.loads((tmp_path / "run" / "config.json").read_text())["recorded"]["calibration"] == drawn
    # the recorded draw replays the images: the first 256 of a permutation seeded by the recorded seed
    order = torch.randperm(CLASSES * PER_CLASS, generator=torch.Generator().manual_seed(drawn["seed"]))[:256]
    torch.testing.assert_close(calibrations[0], dataset.preprocess(dataset.splits["train"][0][order]))

    calibrations.clear()
    results = evaluate_run(tmp_path / "run", EvalConfig(sigmas=[0.1], runs=2, seed=9, dac_bits=8), progress=False)
    assert results["calibration"] == {"split": "train", "images": 256, "seed": calibration_seed(9)}
    assert _classes(calibrations[0], dataset) == set(range(CLASSES))
    plain = evaluate_run(tmp_path / "run", EvalConfig(sigmas=[0.1], runs=2), name="plain", progress=False)
    assert plain["calibration"] is None


def test_sorted_and_shuffled_storage_give_the_same_ranges(tmp_path):
    from neft.chip.circuit import calibration_sample

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(32 * 32, 16), nn.ReLU(), nn.Linear(16, CLASSES))
    ranges = []
    for shuffled in (False, True):
        images, _ = calibration_sample(data.load(_npz(tmp_path / f"{shuffled}.npz", shuffled)), seed=0)
        circuit = Circuit(Crossbar(model, DeviceModel()), CircuitSettings(dac_bits=8, adc_bits=8))
        circuit.calibrate(images)
        ranges.append(torch.stack([torch.stack([layer.dac_scale, *layer.adc_scale]) for layer in circuit.layers]))
    # within sampling: the brightest class sets the input range in both (the first 256 stored are the darkest)
    torch.testing.assert_close(ranges[0], ranges[1], rtol=0.05, atol=0.0)


def test_a_zero_range_reads_zero_never_nan():
    torch.manual_seed(0)
    layer = nn.Linear(32, 4)
    calibration = torch.randn(16, 32)
    calibration[:, 16:] = 0  # the second tile reads only zeros: its ADC range is 0
    circuit = Circuit(Crossbar(layer, DeviceModel()), CircuitSettings(tile_rows=16, adc_bits=6, dac_bits=6))
    circuit.calibrate(calibration)
    assert float(circuit.layers[0].adc_scale[1]) == 0.0
    x = torch.randn(8, 32, requires_grad=True)
    with circuit.applied():
        out = layer(x)
        first_tile_only = layer(torch.cat([x[:, :16], torch.zeros(8, 16)], 1))
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, first_tile_only)  # the zero-range ADC reads 0 whatever its inputs
    out.sum().backward()
    assert torch.isfinite(x.grad).all() and float(x.grad[:, 16:].abs().max()) == 0.0


def test_a_tile_of_zero_weights_evaluates_to_numbers():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    with torch.no_grad():
        model[1].weight[:, 32:] = 0  # the second tile holds no weight: its partial sums calibrate to 0
    images, labels = torch.randn(40, 1, 8, 8), torch.arange(40) % 3
    result = montecarlo.evaluate(model, images, labels, [0.0, 0.1], runs=3, tile_rows=32, adc_bits=6, dac_bits=6,
                                 calibration_images=images, **FAST)
    assert all(np.isfinite(p["accuracy"]["mean"]) and np.isfinite(p["ekl"]) for p in result["per_sigma"])


@pytest.mark.parametrize("setting", ["dac_bits", "adc_bits"])
def test_a_one_bit_converter_is_refused_naming_the_setting(setting):
    with pytest.raises(SettingError, match="signed 1-bit converter has the codes -1 and 0 only") as error:
        EvalConfig(sigmas=[0.1], **{setting: 1}).check()
    assert error.value.setting == setting
    assert EvalConfig(sigmas=[0.1], **{setting: 2}).check()  # 2 bits: -2..1 steps


def test_cli_train_with_a_one_bit_dac_stops_before_any_work(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--model", "lenet5", "--dataset", "mnist-5k", "--epochs", "1", "--quiet", "--dac-bits", "1",
                 "--out", str(out)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("neft: error:") and "--dac-bits" in lines[0], lines
    assert not out.exists()


def _huge(scale: float) -> nn.Module:
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    with torch.no_grad():
        model[1].weight.fill_(scale)
    return model


def test_non_finite_logits_name_the_network_when_its_clean_forward_overflows():
    images, labels = torch.rand(20, 1, 8, 8) + 1, torch.arange(20) % 3
    with pytest.raises(ValueError) as error:
        montecarlo.evaluate(_huge(3e37), images, labels, [0.1], runs=2, **FAST)
    message = str(error.value)
    assert "the network itself gives them on its clean weights" in message and "layer '1'" in message
    assert "fp16" not in message and "drift" not in message  # fp32, no drift: neither is a cause


def test_non_finite_logits_name_the_chip_when_the_clean_network_is_finite():
    images, labels = torch.ones(20, 1, 8, 8), torch.arange(20) % 3
    model = _huge(5e36)  # clean logits 3.2e38, finite (float32 max 3.4e38); a chip's weights spread around them
    with pytest.raises(ValueError) as error:
        montecarlo.evaluate(model, images, labels, [0.5], runs=2, **FAST)
    message = str(error.value)
    assert "the clean network is finite, so the chips at sigma 0.5 of device model" in message
    assert "fp16" not in message and "network itself" not in message


def test_a_loss_non_finite_before_the_first_step_does_not_blame_the_learning_rate(tmp_path):
    from neft.training import TrainConfig, train

    model = nn.Sequential(nn.Flatten(), nn.Linear(32 * 32, 10))
    with torch.no_grad():
        model[1].weight.fill_(1e37)  # the network as given overflows: no optimiser step has been taken
    config = TrainConfig(dataset="mnist-5k", method="vanilla", sigma=0.0, epochs=1, train_subset=64, test_subset=32,
                         val_runs=1)
    with pytest.raises(FloatingPointError) as error:
        train(config, tmp_path / "run", progress=False, model=model)
    message = str(error.value)
    assert "step 1" in message and "first overflows at layer '1' before the first step" in message
    assert "learning rate" not in message
