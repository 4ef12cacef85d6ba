"""Tiles as aihwkit 1.2 makes them (docs/method.md, 'The periphery': 'Tiles of their own', 'Drift compensation'):
equal tile splits, every tile programmed relative to its own max |W| with its own compensation factor, the
compensation readout through the noisy periphery, and the compensation factor taken from the chip's one draw."""

import math

import pytest
import torch
from torch import nn

from neft.chip import devices, effects
from neft.chip.circuit import Circuit
from neft.chip.circuit_settings import CircuitSettings, tile_ranges
from neft.chip.crossbar import Crossbar, make_generator
from neft.chip.periphery import compensation_readout
from neft.common.errors import SettingError

# no converters, no noise: a bound no output reaches, each vector scaled by its max |x| (exact in float)
IDEAL = {"input_management": "abs_max", "out_bound": 1e9}


def _circuit(model, device_model="RRAM1", calibration=None, **settings):
    crossbar = Crossbar(model, device_model)
    circuit = Circuit(crossbar, CircuitSettings(**settings))
    circuit.calibrate(calibration)
    return crossbar, circuit


def _pcm_year():
    return devices.get("PCM-aihwkit").with_chip(drift_time=3.15e7 + 20)


def _two_scales(out=16, rows=576):
    """A Linear of ``rows`` inputs whose first 288 columns are three times larger than the rest."""
    torch.manual_seed(0)
    layer = nn.Linear(rows, out, bias=False)
    with torch.no_grad():
        layer.weight[:, :288] *= 3
    return nn.Sequential(layer).eval()


def test_equal_split_sizes_are_aihwkits():
    assert tile_ranges(576, 512, "equal") == [(0, 288), (288, 576)]
    assert tile_ranges(1152, 512, "equal") == [(0, 384), (384, 768), (768, 1152)]
    assert tile_ranges(1000, 512, "equal") == [(0, 500), (500, 1000)]
    assert tile_ranges(1001, 400, "equal") == [(0, 334), (334, 668), (668, 1001)]  # larger tiles first
    assert tile_ranges(512, 512, "equal") == [(0, 512)]
    assert tile_ranges(576, 512, "fill") == [(0, 512), (512, 576)]
    assert tile_ranges(576, None, "equal") == [(0, 576)]


@pytest.mark.parametrize("layer", [nn.Linear(576, 10), nn.Conv2d(64, 5, 3, padding=1), nn.Conv2d(128, 4, 3)])
def test_equal_tiles_with_ideal_converters_give_the_float_layer(layer):
    torch.manual_seed(1)
    model = nn.Sequential(layer).eval()
    x = torch.randn(3, 576) if isinstance(layer, nn.Linear) else torch.randn(2, layer.in_channels, 6, 6)
    _, circuit = _circuit(model, tile_rows=512, tile_split="equal", **IDEAL)
    rows = layer.weight[0].numel()
    assert circuit.layers[0].tiles == tile_ranges(rows, 512, "equal")
    assert len(circuit.layers[0].tiles) == (2 if rows == 576 else 3)  # 1152 rows: 384-row tiles, channels cut
    with torch.no_grad(), circuit.applied():
        out = model(x)
    expected = model(x).detach()
    assert torch.allclose(out, expected, rtol=1e-5, atol=1e-5 * float(expected.abs().max()))


def test_per_tile_mapping_gives_each_tiles_programming_noise_its_own_max_w():
    model = _two_scales(64)
    weight = model[0].weight.detach()
    crossbar, circuit = _circuit(model, tile_rows=512, tile_split="equal", tile_mapping="tile", **IDEAL)
    with circuit.applied():
        dW = crossbar.sample_chip(0.1, make_generator(4))["0.weight"]
    bit_factor = crossbar.device_model.bit_factor
    for r0, r1 in ((0, 288), (288, 576)):  # 64 x 288 draws per tile: the std within 1.6 % (3 SE of 0.42 %)
        expected = 0.1 * bit_factor * float(weight[:, r0:r1].abs().max())
        assert float(dW[:, r0:r1].std()) == pytest.approx(expected, rel=0.016)
    assert float(weight[:, :288].abs().max()) > 2.5 * float(weight[:, 288:].abs().max())
    # one reference per layer (the default): the small tile's noise follows the layer's max |W|
    crossbar, circuit = _circuit(model, tile_rows=512, tile_split="equal", **IDEAL)
    with circuit.applied():
        dW = crossbar.sample_chip(0.1, make_generator(4))["0.weight"]
    assert float(dW[:, 288:].std()) == pytest.approx(0.1 * bit_factor * float(weight.abs().max()), rel=0.016)


def test_per_tile_factors_are_those_of_each_tiles_own_draw_and_scale_its_outputs():
    model = _two_scales()
    weight = model[0].weight.detach()
    crossbar, circuit = _circuit(model, _pcm_year(), tile_rows=512, tile_split="equal", tile_mapping="tile",
                                 drift_compensation_at="outputs", **IDEAL)
    with circuit.applied():
        chip = crossbar.sample_chip(0.0, make_generator(7))
    generator, expected, reads = make_generator(7), [], []  # replayed: each tile drawn in turn from the generator
    for r0, r1 in ((0, 288), (288, 576)):
        programmed, read, _ = effects.draw(_pcm_year(), weight[:, r0:r1], 0.0, generator)
        expected.append(programmed.abs().mean() / read.abs().mean())  # aihwkit's one-hot readout, exact
        reads.append(read)
    alpha = chip["0.neft_drift_alpha"]
    assert alpha.shape == (2,) and torch.allclose(alpha, torch.stack(expected), rtol=1e-6)
    assert torch.allclose(weight + chip["0.weight"], torch.cat(reads, 1), rtol=0, atol=1e-7)
    assert float(alpha.min()) > 1.5  # a year of drift undone, tile by tile
    x = torch.randn(4, 576)
    with torch.no_grad(), circuit.applied():
        out = torch.func.functional_call(model, crossbar.perturbed_weights(chip), (x,))
    by_tile = alpha[0] * x[:, :288] @ reads[0].T + alpha[1] * x[:, 288:] @ reads[1].T
    assert torch.allclose(out, by_tile, rtol=1e-5, atol=1e-6)


def test_periphery_readout_without_noise_is_the_weights_readout():
    model = _two_scales()
    settings = {"tile_rows": 512, "tile_split": "equal", "tile_mapping": "tile", "drift_compensation_at": "outputs"}
    alphas = []
    for readout in ("weights", "periphery"):
        crossbar, circuit = _circuit(model, _pcm_year(), compensation_readout=readout, **settings, **IDEAL)
        with circuit.applied():
            alphas.append(crossbar.sample_chip(0.0, make_generator(2))["0.neft_drift_alpha"])
    assert torch.allclose(alphas[0], alphas[1], rtol=1e-6)


def test_periphery_readout_is_mean_abs_of_the_quantized_noisy_one_hot_reads():
    weight = torch.tensor([[0.30, -0.10, 0.0], [0.05, 0.70, -0.45]])
    model = nn.Sequential(nn.Linear(3, 2, bias=False)).eval()
    _, circuit = _circuit(model, calibration=torch.randn(4, 3), input_management="abs_max", out_bound=1.0,
                          adc_bits=3, converter_codes="sign_magnitude", weight_scaling="off")
    layer = circuit.layers[0]
    # 3-bit sign-magnitude ADC of bound 1: codes -3 .. 3, step 1/3; x = e_i reads column i of W
    readout = compensation_readout(layer, [0], weight, circuit.settings, make_generator(0))
    assert float(readout) == pytest.approx(float((torch.round(weight * 3) / 3).abs().mean()), rel=1e-6)
    # output noise only (no ADC): E|W + s z| over a tile of zeros is s sqrt(2 / pi)
    _, circuit = _circuit(nn.Sequential(nn.Linear(400, 50, bias=False)), input_management="abs_max",
                          out_noise=0.06, weight_scaling="off")
    readout = compensation_readout(circuit.layers[0], [0], torch.zeros(50, 400), circuit.settings,
                                   make_generator(1))
    expected = 0.06 * math.sqrt(2 / math.pi)  # 2e4 draws: SE 0.43 % of the mean of |z|
    assert float(readout) == pytest.approx(expected, rel=0.013)
    assert float(compensation_readout(circuit.layers[0], [0], torch.zeros(50, 400),
                                      CircuitSettings(input_management="abs_max", out_bound=2.0).check(),
                                      None)) == pytest.approx(1e-4)  # floored as aihwkit's readout


def test_noisy_readout_undercompensates_a_years_drift_as_aihwkit():
    model = _two_scales()
    settings = {"tile_rows": 512, "tile_split": "equal", "tile_mapping": "tile", "drift_compensation_at": "outputs",
                "input_management": "abs_max", "out_bound": 12.0, "weight_scaling": "off"}
    alphas = []
    for readout in ("weights", "periphery"):
        crossbar, circuit = _circuit(model, _pcm_year(), compensation_readout=readout, out_noise=0.06, **settings)
        with circuit.applied():
            alphas.append(crossbar.sample_chip(0.0, make_generator(3))["0.neft_drift_alpha"])
    exact, noisy = alphas
    # mean |W| of the tiles ~0.06 and ~0.02 against the noise's 0.048: the noise floor pulls alpha toward 1
    assert bool((noisy > 1).all()) and bool((noisy < exact - 0.3).all())
    assert float(noisy[1] - 1) < float(noisy[0] - 1)  # the smaller tile's readout is more noise


def test_bad_tile_settings_are_refused_by_name():
    for settings, name in (({"tile_rows": 8, "tile_split": "halves"}, "tile_split"),
                           ({"tile_split": "equal"}, "tile_split"),
                           ({"tile_mapping": "chip", "out_bound": 1.0, "input_management": "abs_max"},
                            "tile_mapping"),
                           ({"compensation_readout": "adc"}, "compensation_readout")):
        with pytest.raises(SettingError) as error:
            CircuitSettings(**settings).check()
        assert error.value.setting == name
    with pytest.raises(SettingError) as error:  # the readout of a compensation the device model does not make
        _circuit(_two_scales(), "RRAM1", compensation_readout="periphery", **IDEAL)
    assert error.value.setting == "compensation_readout"


def test_a_tile_cutting_through_channels_scales_each_patch_by_its_own_rows_max():
    torch.manual_seed(5)
    model = nn.Sequential(nn.Conv2d(128, 4, 3, bias=False)).eval()
    x = torch.randn(2, 128, 4, 4)
    _, circuit = _circuit(model, calibration=x, tile_rows=512, tile_split="equal", input_management="abs_max",
                          dac_bits=7, converter_codes="sign_magnitude", out_bound=1e9, weight_scaling="off")
    with torch.no_grad(), circuit.applied():
        out = model(x)
    patches = torch.nn.functional.unfold(x, 3)  # [B, 1152, 4 positions], rows in weight.flatten(1)'s order
    weight = model[0].weight.detach().flatten(1)
    expected = 0
    for r0, r1 in ((0, 384), (384, 768), (768, 1152)):  # 42 2/3 channels each
        rows = patches[:, r0:r1]
        s = rows.abs().amax(1, keepdim=True)  # the max over the tile's own rows of each receptive field
        quantized = torch.round(rows / s * 63) / 63 * s  # 7-bit sign-magnitude DAC: codes -63 .. 63
        expected = expected + weight[:, r0:r1] @ quantized
    assert torch.allclose(out.flatten(2), expected, rtol=1e-5, atol=1e-5)
