"""The ADC as a circuit (docs/method.md, 'Converter circuits'): per-ADC offset, gain, INL and SAR capacitor
mismatch drawn per chip from its seed, their transfer, the SAR search, and the circuit in Monte Carlo."""

import math

import pytest
import torch

from neft.chip import adc_circuit
from neft.chip.converters import codes
from neft.common.errors import SettingError
from neft.evaluation import montecarlo

BITS = 6


def test_draws_replay_from_the_chip_seed_with_the_stated_spread():
    one = adc_circuit.draw(11, 2, 40, 50, BITS, 0.5, 0.02, 0.3, 0.1)
    again = adc_circuit.draw(11, 2, 40, 50, BITS, 0.5, 0.02, 0.3, 0.1)
    other = adc_circuit.draw(12, 2, 40, 50, BITS, 0.5, 0.02, 0.3, 0.1)
    for a, b, c in zip((one.offset, one.gain, one.inl, one.weights), (again.offset, again.gain, again.inl,
                                                                      again.weights),
                       (other.offset, other.gain, other.inl, other.weights)):
        assert torch.equal(a, b) and not torch.equal(a, c)
    # 2000 ADCs: the sample std of a normal is within 3 standard errors (std / sqrt(2 N)) of its sigma
    for values, sigma in ((one.offset, 0.5), (one.gain, 0.02), (one.inl, 0.3)):
        assert abs(float(values.std()) - sigma) < 3 * sigma / math.sqrt(2 * values.numel())
    # turning one error off does not change the others
    alone = adc_circuit.draw(11, 2, 40, 50, BITS, 0.5, 0.0, 0.0, 0.0)
    assert torch.equal(alone.offset, one.offset) and alone.weights is None and not alone.gain.any()


def test_nominal_capacitors_weigh_powers_of_two_and_mismatch_spreads_as_sqrt_of_size():
    exact = adc_circuit.draw(3, 0, 1, 1, BITS, 0, 0, 0, 1e-12).weights[0, 0]
    assert torch.allclose(exact, 2.0 ** torch.arange(BITS), atol=1e-9)
    sigma = 0.05
    spread = adc_circuit.draw(3, 0, 100, 100, BITS, 0, 0, 0, sigma).weights
    # capacitor l (2**l units, the termination 1) errs by sigma**2 2**l in variance; to first order bit k's weight
    # 2**BITS c_k / sum(c) errs by d_k (1 - 2**k / 2**BITS) - 2**k / 2**BITS * sum_{l != k} d_l
    variances = [sigma ** 2 * 2 ** bit for bit in range(BITS)] + [sigma ** 2]
    for k in range(BITS):
        share = 2 ** k / 2 ** BITS
        expected = variances[k] * (1 - share) ** 2 + share ** 2 * (sum(variances) - variances[k])
        # 10 000 ADCs: the sample std within 3 standard errors (std / sqrt(2 N)), plus 2 % for the linearisation
        assert float(spread[..., k].std()) == pytest.approx(math.sqrt(expected), rel=3 / math.sqrt(2e4) + 0.02)


def test_transfer_is_gain_offset_and_an_end_point_inl_bow():
    errors = adc_circuit.AdcErrors(torch.tensor([0.4]), torch.tensor([0.05]), torch.tensor([-0.7]), None)
    half = 2 ** (BITS - 1)
    x = torch.tensor([[0.0, 10.0, half, -half, 3 * half]])
    out = adc_circuit.transfer(x, errors, BITS, (1, -1))
    u = torch.tensor([0.0, 10 / half, 1, -1, 1])
    assert torch.allclose(out, x * 1.05 + 0.4 - 0.7 * (1 - u ** 2))
    assert out[0, 0] == pytest.approx(0.4 - 0.7)  # mid-scale: offset + INL
    assert out[0, 2] == pytest.approx(half * 1.05 + 0.4)  # the ends: no INL


def test_sar_search_with_nominal_weights_rounds_and_clips_and_with_mismatch_follows_its_thresholds():
    x = torch.linspace(-40, 40, 2001)
    nominal = 2.0 ** torch.arange(BITS)
    off_ties = x[(x - x.floor() - 0.5).abs() > 1e-4]
    assert torch.equal(adc_circuit.sar_codes(off_ties, nominal, BITS), codes(off_ties.clone(), BITS))
    # 3 bits with the MSB capacitor 0.5 LSB too large, v = x + 4.5: x = 1.4 (v = 5.9) keeps the MSB (4.5), not bit 1
    # (4.5 + 2 > 5.9), bit 0 (4.5 + 1 <= 5.9): code 5 - 4 = 1; x = -0.4 (v = 4.1) misses the MSB and keeps bits 1
    # and 0 (3 <= 4.1): code 3 - 4 = -1, where the ideal converter reads 0 (code -1 is 1.5 LSB wide, DNL +0.5)
    weights = torch.tensor([1.0, 2.0, 4.5])
    x = torch.tensor([-0.2, 0.2, 1.4, 2.2, 2.6, -1.2, -0.4])
    assert adc_circuit.sar_codes(x, weights, 3).tolist() == [-1, 0, 1, 2, 2, -1, -1]


def test_convert_is_straight_through_inside_the_range():
    circuit = adc_circuit.AdcCircuit(BITS, 0.5, 0.02, 0.3, 0.1)
    errors = circuit.errors([5, 6], layer=0, groups=2, columns=3, device=torch.device("cpu"))
    x = (torch.randn(4, 3, 2, generator=torch.Generator().manual_seed(0)) * 10).requires_grad_()
    out = circuit.convert(x, errors, group=1, chip_index=None, channel_dim=1)
    assert torch.equal(out, out.round()) and out.min() >= -32 and out.max() <= 31
    out.sum().backward()
    gain = 1 + errors.gain[0, 1].view(1, 3, 1)
    inl = errors.inl[0, 1].view(1, 3, 1)
    expected = gain - inl * 2 * (x.detach() / 32) / 32  # d/dx of x (1 + g) + inl (1 - (x / 32)**2)
    assert torch.allclose(x.grad, expected, atol=1e-6)


def per_run(setup, **settings):
    model, images, labels, calibration = setup
    options = {"runs": 3, "progress": False, "precision": "fp32", "compile": False, "memory_format": "contiguous",
               "tile_rows": 32, "adc_bits": 5, "calibration_images": calibration}
    return montecarlo.evaluate(model, images, labels, [0.1], **{**options, **settings})["per_sigma"][0]



def test_converter_errors_act_at_sigma_0(lenet):
    """At sigma 0 the chips still differ by their ADCs: a 2-LSB offset per ADC is drawn per chip (not the one clean
    pass that stands for every chip when nothing differs) and moves the accuracy off the ideal converter's."""
    model, images, labels, calibration = lenet
    options = {"runs": 3, "progress": False, "precision": "fp32", "tile_rows": 32, "adc_bits": 5,
               "calibration_images": calibration}
    ideal = montecarlo.evaluate(model, images, labels, [0.0], **options)["per_sigma"][0]["accuracy"]
    offset = montecarlo.evaluate(model, images, labels, [0.0], adc_offset=2.0, **options)["per_sigma"][0]["accuracy"]
    assert len(set(ideal["per_run"])) == 1  # nothing differs between ideal chips
    assert len(set(offset["per_run"])) > 1 and offset["mean"] != ideal["mean"]

def test_converter_errors_replay_per_chip_whatever_the_batch_size_and_chips_per_pass(lenet):
    errors = {"adc_offset": 1.0, "adc_gain": 0.05, "adc_inl": 0.5, "adc_mismatch": 0.1}
    reference = per_run(lenet, **errors)
    for options in ({"batch_size": 37}, {"chips_per_pass": 3}):
        other = per_run(lenet, **errors, **options)
        assert other["accuracy"]["per_run"] == reference["accuracy"]["per_run"]
        assert other["ekl"] == pytest.approx(reference["ekl"], rel=1e-6)
    ideal = per_run(lenet)
    assert per_run(lenet, adc_offset=0.0, adc_mismatch=0.0)["ekl"] == ideal["ekl"]  # 0: the ideal converter
    assert reference["ekl"] != ideal["ekl"]


@pytest.mark.parametrize("settings, setting", [
    ({"adc_offset": 0.5}, "adc_offset"), ({"adc_mismatch": 0.1}, "adc_mismatch"),  # no ADC
    ({"adc_bits": 6, "adc_gain": -0.01}, "adc_gain"), ({"adc_bits": 6, "adc_gain": 0.5}, "adc_gain"),
    ({"adc_bits": 6, "adc_inl": float("inf")}, "adc_inl"), ({"adc_bits": 6, "adc_offset": "1"}, "adc_offset"),
])
def test_bad_converter_settings_name_the_setting(settings, setting):
    with pytest.raises(SettingError) as error:
        montecarlo.EvalConfig(**settings).check()
    assert error.value.setting == setting


def test_the_cli_refuses_bad_circuit_settings_before_any_work(run_dir, capsys):
    from neft.cli.main import main

    before = sorted(p.name for p in run_dir.iterdir())
    for flags, flag in ((["--wire-resistance", "1e-4"], "--wire-resistance"), (["--adc-mismatch", "0.1"],
                        "--adc-mismatch"), (["--tile-rows", "64", "--wire-resistance", "-1"], "--wire-resistance")):
        assert main(["evaluate", str(run_dir), "--quiet", "--runs", "2", *flags]) == 2
        err = capsys.readouterr().err
        assert flag in err and "Traceback" not in err
    assert sorted(p.name for p in run_dir.iterdir()) == before  # nothing written
