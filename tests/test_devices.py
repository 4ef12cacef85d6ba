"""Device variation models against the numbers of docs/method.md, 'Device variation model'."""

import json
import math

import pytest
import torch

from neft.chip import DeviceModel, devices
from neft.chip.device_files import from_dict
from neft.common.errors import SettingError


def weight_with_max_two():
    # |w|/max: 1.0 and 0.05 are edge states, 0.5 and 0.3 intermediate.
    return torch.tensor([[2.0, -0.1], [1.0, -0.6]])


def test_rram1_std_matches_spec_number():
    std = devices.get("RRAM1").std(weight_with_max_two(), 0.1)
    assert torch.allclose(std, torch.full((2, 2), 0.155526), atol=1e-6)


def test_fefet6_edge_and_intermediate_multipliers():
    base = 0.1 * 2.0 * 0.777628370336976
    std = devices.get("fefet6").std(weight_with_max_two(), 0.1)
    expected = torch.tensor([[0.258199 * base, 0.258199 * base], [1.549193 * base, 1.549193 * base]])
    assert torch.allclose(std, expected, rtol=1e-5)


@pytest.mark.parametrize(
    "bits, constant",
    [((8, 2), 0.77763), ((6, 2), math.sqrt(273) / 21), ((8, 4), math.sqrt(257) / 17), ((4, 1), math.sqrt(85) / 15)],
)
def test_bit_constants_hand_computed(bits, constant):
    model = DeviceModel(weight_bits=bits[0], device_bits=bits[1])
    assert model.bit_factor == pytest.approx(constant, abs=1e-5)
    std = model.std(torch.tensor([1.0, -0.5]), 0.2)
    assert torch.allclose(std, torch.full((2,), 0.2 * constant), atol=1e-6)


@pytest.mark.parametrize("name, edge, middle",
                         [("FeFET2", 0.674, 1.348), ("RRAM4", 0.378, 1.512), ("FeFET6", 0.258, 1.549)])
def test_preset_multipliers_match_spec_table(name, edge, middle):
    e, m = devices.get(name).multipliers
    assert (round(e, 3), round(m, 3)) == (edge, middle)


@pytest.mark.parametrize("name", ["RRAM1", "FeFET6"])
def test_sampled_statistics_on_a_million_elements(name):
    model = devices.get(name)
    generator = torch.Generator().manual_seed(0)
    weight = torch.rand(1_000_000, generator=generator) * 2 - 1
    sigma = 0.2
    noise = model.sample(weight, sigma, generator)
    std = model.std(weight, sigma)
    for mask in (std == std.min(), std == std.max()):  # edge and intermediate populations separately
        n = int(mask.sum())
        assert n > 100_000
        expected = float(std[mask][0])
        assert abs(float(noise[mask].mean())) < 3 * expected / math.sqrt(n)
        assert float(noise[mask].std()) == pytest.approx(expected, rel=0.01)
    # the population-average variance stays at the state-independent value (docs/method.md: sigma_eff normalisation)
    # for a uniform weight distribution half the weights are intermediate, so it is not exactly 1; check the formula
    edge, middle = model.multipliers
    frac_mid = float((std == std.max()).float().mean()) if model.state_factor > 1 else 0.0
    avg_var = (1 - frac_mid) * edge**2 + frac_mid * middle**2
    assert (float((noise / (sigma * model.bit_factor * weight.abs().max())).pow(2).mean())
            == pytest.approx(avg_var, rel=0.01))


def test_zero_weight_and_zero_sigma():
    model = devices.get("FeFET6")
    zero = torch.zeros(3, 4)
    assert torch.equal(model.sample(zero, 0.3), zero)
    assert torch.equal(model.sample(torch.randn(3, 4), 0.0), torch.zeros(3, 4))


@pytest.mark.parametrize("sigma", [-0.1, float("nan"), float("inf"), "abc"])
def test_invalid_sigma_is_rejected(sigma):
    with pytest.raises(ValueError, match="sigma must be"):
        devices.get("RRAM1").std(torch.ones(2), sigma)


def test_nan_weights_are_rejected():
    with pytest.raises(ValueError, match="NaN"):
        devices.get("RRAM1").sample(torch.tensor([1.0, float("nan")]), 0.1)


@pytest.mark.parametrize("bits", [(8, 3), (2, 4), (0, 2), (8, 0)])
def test_bits_not_multiple_rejected(bits):
    with pytest.raises(ValueError, match="weight_bits|device_bits"):
        DeviceModel(weight_bits=bits[0], device_bits=bits[1])


def test_unknown_preset_lists_valid_names():
    with pytest.raises(ValueError, match="RRAM1, FeFET2, RRAM4, FeFET6"):
        devices.get("PCM3")


def test_user_device_model_from_toml_and_json(tmp_path):
    toml = tmp_path / "mychip.toml"
    toml.write_text("weight_bits = 8\ndevice_bits = 4\nstate_factor = 3.0\nband = [0.2, 0.8]\n")
    chip = devices.get(str(toml))
    assert (chip.name, chip.weight_bits, chip.device_bits, chip.state_factor, chip.band) == (
        "mychip", 8, 4, 3.0, (0.2, 0.8))
    measured = tmp_path / "measured.json"
    measured.write_text(json.dumps({"name": "lab", "levels": [1.0, 2.0]}))
    lab = devices.get(measured)
    std = lab.std(torch.tensor([1.0, 0.25, 0.5, -0.75]), 0.1)
    base = 0.1 * 0.777628370336976
    # bins of |w|/max: [0, .5) -> 1.0, [.5, 1] -> 2.0
    assert torch.allclose(std, torch.tensor([2 * base, base, 2 * base, 2 * base]))
    assert from_dict(lab.to_dict()) == lab
    both = tmp_path / "both.json"  # a table replaces state_factor and band: the two together are refused
    for extra in ({"state_factor": 3.0}, {"band": [0.1, 0.9]}):
        both.write_text(json.dumps({"name": "lab", "levels": [1.0, 2.0], **extra}))
        with pytest.raises(SettingError, match="replaces state_factor and band") as caught:
            devices.get(both)
        assert caught.value.setting == "levels"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"bits": 8}))
    with pytest.raises(ValueError, match="unknown device model keys"):
        devices.get(bad)
