"""The crossbar circuit (docs/method.md, 'The crossbar circuit' and 'Read noise'): tiles, DAC, ADC and read noise
per read, against hand-written references with explicit loops over tiles."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from neft import Crossbar, DeviceModel
from neft import reporting as report
from neft.chip import circuit as circuit_module
from neft.chip.circuit import Circuit
from neft.chip.circuit_settings import CircuitSettings
from neft.chip.converters import codes, quantize, slices
from neft.common.errors import SettingError
from neft.evaluation import montecarlo
from neft.store import checkpoint

FAST = {"memory_format": "contiguous", "compile": False, "chips_per_pass": 1, "progress": False}


def reference_layer(layer: nn.Module, x: torch.Tensor, tile_rows: int, adc_bits: int | None,
                    scales: list[torch.Tensor] | None = None):
    """Explicit im2col and a Python loop over tiles and rows: the partial sums of every tile, ADC-quantized with
    ``scales`` (None: return the maxima of the clean partial sums, the calibration) and summed, plus the bias."""
    weight = layer.weight.double()
    if isinstance(layer, nn.Linear):
        columns, groups = x.double().unsqueeze(1), 1  # [B, positions 1, rows]
    else:
        dims = weight.dim() - 2
        xp = F.pad(x.double(), [p for p in reversed(layer.padding) for _ in range(2)])
        if dims == 1:
            xp = xp.unsqueeze(-2)
        kernel = (1, *layer.kernel_size) if dims == 1 else layer.kernel_size
        stride = (1, *layer.stride) if dims == 1 else layer.stride
        dilation = (1, *layer.dilation) if dims == 1 else layer.dilation
        columns = F.unfold(xp, kernel, dilation=dilation, stride=stride).transpose(1, 2)  # [B, L, C * k]
        groups = layer.groups
    per_group = weight[0].numel()
    out_per_group = weight.shape[0] // groups
    outputs, maxima = [], []
    for g in range(groups):
        cols = columns[..., g * per_group : (g + 1) * per_group]
        w = weight[g * out_per_group : (g + 1) * out_per_group].flatten(1)
        total = 0
        for t, r0 in enumerate(range(0, per_group, tile_rows)):
            partial = 0
            for row in range(r0, min(r0 + tile_rows, per_group)):  # one crossbar row at a time
                partial = partial + cols[..., row : row + 1] * w[:, row]
            maxima.append(partial.abs().max())
            if adc_bits is not None and scales is not None:
                partial = quantize(partial, scales[t], adc_bits)
            total = total + partial
        outputs.append(total)
    out = torch.cat(outputs, dim=-1) + layer.bias.double()  # [B, L, out]
    if scales is None:
        return torch.stack(maxima).reshape(groups, -1).amax(0)
    if isinstance(layer, nn.Linear):
        return out[:, 0]
    reference = layer.double()(x.double())
    return out.transpose(1, 2).reshape(reference.shape)


LAYERS = [
    ("linear", lambda: nn.Linear(50, 7), (6, 50)),
    ("conv1d", lambda: nn.Conv1d(6, 5, 3, stride=2, padding=1), (3, 6, 11)),
    ("conv2d", lambda: nn.Conv2d(6, 4, 3, stride=2, dilation=2, padding=2), (3, 6, 9, 9)),
    ("conv2d groups 4", lambda: nn.Conv2d(8, 8, 3, padding=1, groups=4), (3, 8, 6, 6)),
    ("conv2d groups 4 strided dilated", lambda: nn.Conv2d(8, 12, 3, stride=2, dilation=2, padding=1, groups=4),
     (3, 8, 9, 9)),
]


@pytest.mark.parametrize("kind, make, shape", LAYERS, ids=[row[0] for row in LAYERS])
@pytest.mark.parametrize("tile_rows", [4, 7, 18])
def test_tiled_adc_equals_the_hand_written_reference(kind, make, shape, tile_rows):
    torch.manual_seed(1)
    layer = make().double()
    x = torch.randn(shape, dtype=torch.float64)
    scales = reference_layer(layer, x, tile_rows, adc_bits=6)  # calibration: the max of each tile's sums
    expected = reference_layer(layer, x, tile_rows, 6, list(scales))
    circuit = Circuit(Crossbar(layer), CircuitSettings(tile_rows=tile_rows, adc_bits=6))
    circuit.calibrate(x)
    torch.testing.assert_close(torch.stack(circuit.layers[0].adc_scale), scales)
    with torch.no_grad(), circuit.applied():
        got = layer(x)
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)


def vgg_like():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1, groups=4),
                         nn.ReLU(), nn.Flatten(), nn.Linear(16 * 8 * 8, 10)).eval()


def test_16_bit_adc_on_64_row_tiles_is_the_float_layer():
    model, x = vgg_like(), torch.randn(20, 3, 8, 8)
    circuit = Circuit(Crossbar(model), CircuitSettings(tile_rows=64, adc_bits=16, dac_bits=16))
    circuit.calibrate(x)
    assert circuit.tiles == 1 + 1 + 16  # 27 rows, 36 rows, 1024 rows / 64
    with torch.no_grad():
        clean = model(x)
        with circuit.applied():
            tiled = model(x)
    assert float((tiled - clean).abs().max() / clean.abs().max()) < 1e-3


@pytest.mark.parametrize("adc_mode, slices", [("analog", 1), ("sliced", 4)])
def test_each_tile_reads_at_most_2_to_the_b_values(monkeypatch, adc_mode, slices):
    model, x = vgg_like(), torch.randn(20, 3, 8, 8)
    circuit = Circuit(Crossbar(model), CircuitSettings(tile_rows=24, adc_bits=3, adc_mode=adc_mode))
    circuit.calibrate(x)
    seen = []

    def recording(values, bits, signed=True, inplace=False, batched=False):  # the ADC codes of each tile (and slice)
        out = codes(values, bits, signed, inplace, batched)
        seen.append(out.unique().numel())
        return out

    monkeypatch.setattr(circuit_module, "codes", recording)
    with torch.no_grad(), circuit.applied():
        model(x)
    assert len(seen) == circuit.tiles * slices == (2 + 2 + 43) * slices  # one ADC per tile (and slice)
    assert max(seen) <= 2 ** 3 and min(seen) >= 2  # every ADC quantizes; none reads more than 8 codes


def test_dac_quantizes_inputs_signed_or_unsigned():
    values = torch.linspace(-1, 1, 1001)
    signed = quantize(values, torch.tensor(1.0), 3)
    assert sorted(signed.unique().tolist()) == [v / 4 for v in range(-4, 4)]
    unsigned = quantize(values.clamp_min(0), torch.tensor(1.0), 2, signed=False)
    assert sorted(unsigned.unique().tolist()) == pytest.approx([0, 1 / 3, 2 / 3, 1])
    # straight-through gradient: 1 inside the range, 0 where clipped
    x = torch.tensor([0.3, 2.0], requires_grad=True)
    quantize(x, torch.tensor(1.0), 4).sum().backward()
    assert x.grad.tolist() == [1.0, 0.0]


@pytest.mark.parametrize("device_model", ["RRAM1", DeviceModel("state", state_factor=3.0)], ids=["uniform", "state"])
@pytest.mark.parametrize("kind, tile_rows", [("linear", 5), ("conv2d", 5), ("conv2d", None)])
def test_read_noise_variance_is_x_squared_s_squared(kind, tile_rows, device_model):
    torch.manual_seed(2)
    if kind == "linear":
        layer, image = nn.Linear(12, 3), torch.randn(1, 12)
    else:  # 5-row tiles split channels; one tile of a uniform std: window sums of x^2
        layer, image = nn.Conv2d(4, 4, 3, stride=2, dilation=2, padding=2, groups=2), torch.randn(1, 4, 5, 5)
    crossbar = Crossbar(layer, device_model)
    circuit = Circuit(crossbar, CircuitSettings(read_sigma=0.05, tile_rows=tile_rows))
    std = crossbar.device_model.std(layer.weight.detach(), 0.05)
    draws = 100_000
    with torch.no_grad(), circuit.applied(), circuit.reading([7]):
        out = layer(image.expand(draws, *image.shape[1:]))  # 1e5 images: 1e5 independent reads
    clean = layer(image).detach()
    if kind == "linear":
        expected = image.square() @ std.square().T
    else:
        expected = F.conv2d(image.square(), std.square(), None, 2, 2, 2, 2)
    torch.testing.assert_close(out.mean(0), clean[0], atol=4 * float(expected.max().sqrt()) / draws ** 0.5,
                               rtol=0)
    ratio = out.var(0) / expected[0]
    assert float((ratio - 1).abs().max()) < 0.02  # 1e5 draws: standard error of a variance 0.45 %


def per_run(model, images, labels, sigmas, **settings):
    options = {**FAST, **settings}
    return [p["accuracy"]["per_run"] for p in montecarlo.evaluate(model, images, labels, sigmas,
                                                                  **options)["per_sigma"]]


def test_read_noise_does_not_depend_on_batch_size_or_chips_per_pass(lenet):
    model, images, labels, _ = lenet
    runs = [per_run(model, images, labels, [0.2], runs=3, read_sigma=0.3, batch_size=size)
            for size in (1, 37, 1000)]
    assert runs[0] == runs[1] == runs[2] and len(set(runs[0][0])) > 1
    vmapped = per_run(model, images, labels, [0.2], runs=3, read_sigma=0.3, chips_per_pass=3)
    assert vmapped == runs[0]


def test_settings_off_are_bit_identical_and_adc_changes_results(lenet):
    model, images, labels, train = lenet
    plain = per_run(model, images, labels, [0.0, 0.3], runs=3)
    assert per_run(model, images, labels, [0.0, 0.3], runs=3, tile_rows=10_000) == plain
    assert per_run(model, images, labels, [0.0, 0.3], runs=3, tile_rows=16, adc_bits=None) == plain
    coarse = montecarlo.evaluate(model, images, labels, [0.0, 0.3], runs=3, tile_rows=32, adc_bits=2, dac_bits=2,
                                 calibration_images=train, **FAST)
    assert [p["accuracy"]["per_run"] for p in coarse["per_sigma"]] != plain
    assert coarse["evaluation"]["adc_bits"] == 2 and coarse["evaluation"]["tile_rows"] == 32


@pytest.mark.parametrize("settings, setting", [
    ({"adc_bits": 0}, "adc_bits"), ({"adc_bits": 33}, "adc_bits"), ({"dac_bits": 0}, "dac_bits"),
    ({"adc_bits": 4.0}, "adc_bits"), ({"tile_rows": 0}, "tile_rows"), ({"adc_range": 0}, "adc_range"),
    ({"adc_range": 101}, "adc_range"),
])
def test_bad_circuit_settings_name_the_setting(settings, setting):
    with pytest.raises(SettingError) as error:
        montecarlo.EvalConfig(**settings).check()
    assert error.value.setting == setting


def test_calibration_without_images_and_a_model_without_mapped_weights_fail_first(lenet):
    model, images, labels, _ = lenet
    with pytest.raises(SettingError, match="calibration_images") as error:
        montecarlo.evaluate(model, images, labels, [0.3], runs=2, adc_bits=6, **FAST)
    assert error.value.setting == "calibration_images"
    digital = nn.Sequential(nn.Flatten(), nn.Softmax(-1))
    with pytest.raises(SettingError, match="no crossbar-mapped weight") as error:
        montecarlo.evaluate(digital, images, labels, [0.3], runs=2, adc_bits=6, calibration_images=images, **FAST)
    assert error.value.setting == "adc_bits"


def test_bit_slices_sum_to_the_weight_and_hold_the_mapping_digits():
    device_model = DeviceModel(weight_bits=4, device_bits=2)
    clean = torch.tensor([[1.5, -0.7], [0.0, 0.25]])  # max|W| 1.5: levels round(w / 1.5 * 15) = 15, -7, 0, 2
    parts = slices(clean, clean, device_model)
    lsb = 1.5 / 15
    expected = torch.tensor([[[3, -3], [0, 2]], [[3 * 4, -1 * 4], [0, 0]]]) * lsb  # digits 15 = 3 + 3*4, 7 = 3 + 1*4
    residual = clean - expected.sum(0)  # the quantization error, split 1 : 16 over the slices
    torch.testing.assert_close(parts, expected + torch.stack([residual / 17, residual * 16 / 17]))
    chip = clean + 0.01
    torch.testing.assert_close(slices(chip, clean, device_model).sum(0), chip)


def reference_sliced(layer, x, tile_rows, adc_bits, device_model, scales=None):
    """Bit-sliced reference for a Linear: a loop over tiles and slices, each slice's column digitised on its own."""
    parts = slices(layer.weight.double(), layer.weight.double(), device_model)
    rows, total, maxima = layer.in_features, 0, []
    for t, r0 in enumerate(range(0, rows, tile_rows)):
        for j in range(parts.shape[0]):
            partial = x.double()[:, r0 : r0 + tile_rows] @ parts[j][:, r0 : r0 + tile_rows].T
            maxima.append(partial.abs().max())
            if scales is not None:
                partial = quantize(partial, scales[t * parts.shape[0] + j], adc_bits)
            total = total + partial
    return torch.stack(maxima) if scales is None else total + layer.bias.double()


def test_sliced_adc_equals_the_reference_and_differs_from_analog():
    torch.manual_seed(4)
    layer, x = nn.Linear(40, 6).double(), torch.randn(8, 40, dtype=torch.float64)
    device_model = DeviceModel(weight_bits=8, device_bits=2)
    scales = reference_sliced(layer, x, 16, 4, device_model)
    circuit = Circuit(Crossbar(layer, device_model), CircuitSettings(tile_rows=16, adc_bits=4, adc_mode="sliced"))
    circuit.calibrate(x)
    assert circuit.layers[0].slice_count == 4 and len(circuit.layers[0].adc_scale) == 3 * 4
    with torch.no_grad(), circuit.applied():
        sliced = layer(x)
    torch.testing.assert_close(sliced, reference_sliced(layer, x, 16, 4, device_model, list(scales)))
    analog = Circuit(Crossbar(layer, device_model), CircuitSettings(tile_rows=16, adc_bits=4))
    analog.calibrate(x)
    with torch.no_grad(), analog.applied():
        assert not torch.allclose(layer(x), sliced)
    fine = Circuit(Crossbar(layer, device_model), CircuitSettings(tile_rows=16, adc_bits=16, adc_mode="sliced"))
    fine.calibrate(x)
    clean = layer(x).detach()
    with torch.no_grad(), fine.applied():
        assert float((layer(x) - clean).abs().max()) < 1e-3 * float(clean.abs().max())


def test_training_with_the_periphery_learns_and_records_it(tmp_path):
    from neft.training import TrainConfig, train

    config = TrainConfig(model="lenet5", dataset="mnist-5k", method="noise-injection", sigma=0.1, epochs=2,
                         init="torch", val_runs=2, train_subset=1000, test_subset=200, tile_rows=64, adc_bits=4,
                         dac_bits=4)
    summary = train(config, tmp_path / "run", progress=False)
    # 10 classes, chance 10 %: measured 42.5 % on the noisy 4-bit chips (40 % for the same run without the circuit)
    assert summary["best_val_accuracy"] > 25
    saved = checkpoint.load_checkpoint(tmp_path / "run")[1]["config"]
    assert (saved["tile_rows"], saved["adc_bits"], saved["dac_bits"]) == (64, 4, 4)
    # its evaluations record the training periphery and their labels name it beside the evaluated one
    from neft.evaluation import EvalConfig
    from neft.runs.evaluate import evaluate_run

    result = evaluate_run(tmp_path / "run", EvalConfig(runs=2, sigmas=[0.1], tile_rows=64, adc_bits=6, test_subset=50),
                          progress=False)
    assert result["train_circuit"] == {"tile_rows": 64, "dac_bits": 4, "adc_bits": 4, "adc_range": 100.0,
                                       "adc_mode": "analog", "wire_resistance": 0.0, "adc_offset": 0.0,
                                       "adc_gain": 0.0, "adc_inl": 0.0, "adc_mismatch": 0.0,
                                       "out_noise": 0.0, "input_management": "none",
                                       "bound_management": "none", "out_bound": None, "weight_scaling": "layer",
                                       "converter_codes": "twos_complement", "drift_compensation_at": "weights",
                                       "tile_split": "fill", "tile_mapping": "layer",
                                       "compensation_readout": "weights"}
    assert report.result_label(result) == ("noise-injection (trained on RRAM1 tile=64 dac=4b adc=4b, evaluated on "
                                           "RRAM1 tile=64 adc=6b)")
    plain = evaluate_run(tmp_path / "run", EvalConfig(runs=2, sigmas=[0.1], test_subset=50), name="plain",
                         progress=False)
    assert report.result_label(plain) == "noise-injection (trained on RRAM1 tile=64 dac=4b adc=4b, evaluated on RRAM1)"


def test_cli_evaluate_with_circuit_flags(trained_run, capsys):
    import json

    from neft.cli.main import main

    assert main(["evaluate", str(trained_run), "--quiet", "--sigmas", "0.1", "--runs", "2", "--test-subset", "100",
                 "--tile-rows", "64", "--adc-bits", "6", "--adc-mode", "sliced", "--name", "adc"]) == 0
    result = json.loads((trained_run / "adc.json").read_text())
    assert (result["evaluation"]["adc_bits"], result["evaluation"]["adc_mode"]) == (6, "sliced")
    assert report.result_label(result).endswith(" tile=64 adc=6b sliced")
    assert main(["evaluate", str(trained_run), "--quiet", "--runs", "2", "--adc-bits", "33"]) == 2
    assert "--adc-bits" in capsys.readouterr().err


def test_a_dac_range_percentile_that_falls_on_the_zeros_after_a_relu_is_refused_not_read_as_a_constant():
    from neft.chip.converters import calibration_magnitude

    values = torch.cat([torch.zeros(600), torch.arange(1.0, 401.0)])  # 60 % zeros, as after a ReLU
    assert float(calibration_magnitude(values, 50)) == 0.0
    assert float(calibration_magnitude(values, 80)) == pytest.approx(200.0, abs=1.0)  # the 80th percentile
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    circuit = Circuit(Crossbar(model, DeviceModel()), CircuitSettings(dac_bits=6, adc_range=30).check())
    with pytest.raises(SettingError, match=r"adc_range 30: .* inputs of '2.weight' .*\(\d+\.\d % of them are 0"):
        circuit.calibrate(torch.randn(64, 8))
    nan = Circuit(Crossbar(nn.Sequential(nn.Linear(8, 4)), DeviceModel()), CircuitSettings(dac_bits=6, adc_range=30)
                  .check())
    with pytest.raises(FloatingPointError, match="'0.weight'"):  # NaN inputs: the NaN error, not the range
        nan.calibrate(torch.full((4, 8), float("nan")))
    zero = Circuit(Crossbar(nn.Sequential(nn.Linear(8, 4)), DeviceModel()), CircuitSettings(dac_bits=6).check())
    zero.calibrate(torch.zeros(4, 8))  # only zeros read: a full scale of 0, allowed
