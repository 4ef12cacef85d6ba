"""The realistic chip (docs/method.md, 'The realistic chip'): quantized bit-sliced mapping, stuck devices, drift and
global drift compensation, in evaluation and training, with hand-computed numbers and large-sample statistics."""

import dataclasses
import math

import pytest
import torch
from torch import nn

from neft.chip import PRESET_SOURCES, DeviceModel, devices, mapping
from neft.chip import effects as chip
from neft.chip.crossbar import Crossbar, make_generator
from neft.chip.device_files import from_dict
from neft.common.errors import SettingError
from neft.evaluation import montecarlo

QUANTIZED = DeviceModel("q", quantize=True)


def test_quantize_digits_and_pair_by_hand():
    w = torch.tensor([0.5, -1.0, 0.2, 0.0])
    levels = mapping.quantize(w, 1.0, 4)  # L = 15: 7.5 rounds to even 8, -15, 3, 0
    assert levels.tolist() == [8, -15, 3, 0]
    g = mapping.to_conductances(levels, 4, 2)  # [2 rows, 2 digits, 4 weights], digit 0 least significant
    assert g[0].T.tolist() == [[0, 2], [0, 0], [3, 0], [0, 0]]  # 8 = 2*4 + 0, 3 = 0*4 + 3 on G+
    assert g[1].T.tolist() == [[0, 0], [3, 3], [0, 0], [0, 0]]  # -15 on G-: 3*4 + 3
    assert torch.equal(mapping.from_conductances(g, 2), levels.float())
    assert torch.allclose(mapping.dequantize(levels, 1.0, 4), torch.tensor([8 / 15, -1.0, 3 / 15, 0.0]))
    assert torch.equal(mapping.from_digits(mapping.to_digits(torch.arange(256), 8, 2), 2), torch.arange(256))


def test_quantized_chip_at_sigma_0_is_the_dequantized_weight_exactly_and_16_bits_is_close():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))
    for bits, device_bits in ((8, 2), (6, 3)):
        crossbar = Crossbar(model, DeviceModel(weight_bits=bits, device_bits=device_bits, quantize=True))
        weights = crossbar.perturbed_weights(crossbar.sample_chip(0.0, make_generator(0)))
        for name, w in crossbar.weights().items():
            w_max = w.detach().abs().amax()
            expected = mapping.dequantize(mapping.quantize(w.detach(), w_max, bits), w_max, bits)
            assert torch.equal(weights[name], expected)
    crossbar = Crossbar(model, DeviceModel(weight_bits=16, device_bits=4, quantize=True))
    weights = crossbar.perturbed_weights(crossbar.sample_chip(0.0, make_generator(0)))
    for name, w in crossbar.weights().items():
        assert (weights[name] - w).abs().max() <= 1e-4 * w.abs().max()


def test_stuck_fractions_on_a_million_devices_within_three_standard_errors():
    uniform = torch.rand(1_000_000, generator=make_generator(3))
    g, stuck = chip.stick(torch.full((1_000_000,), 1.0), uniform, 0.0175, 0.0904, 3)
    for rate, count in ((0.0175, (g == 0).sum()), (0.0904, (g == 3).sum())):
        se = math.sqrt(rate * (1 - rate) / 1e6)
        assert abs(count.item() / 1e6 - rate) < 3 * se
    assert stuck.sum() == (g != 1).sum()


def test_stuck_on_most_significant_device_of_a_zero_weight():
    levels = torch.tensor([0, 0])
    g = mapping.to_conductances(levels, 8, 2)  # [2, 4, 2] all zero
    uniform = torch.ones_like(g)
    uniform[0, 3, 0] = 0.5   # G+ most significant device of weight 0: stuck on
    uniform[1, 3, 1] = 0.5   # G- most significant device of weight 1: stuck on
    g, _ = chip.stick(g, uniform, 0.25, 0.5, 3)
    assert mapping.from_conductances(g, 2).tolist() == [192, -192]  # level 3 at significance 4**3 = 64
    weight = mapping.dequantize(mapping.from_conductances(g, 2), 2.0, 8)  # max|W| = 2
    assert weight.tolist() == pytest.approx([192 * 2 / 255, -192 * 2 / 255], rel=1e-7)


def test_stuck_devices_are_drawn_from_the_chip_seed():
    model = nn.Linear(64, 32)
    crossbar = Crossbar(model, DeviceModel(quantize=True, stuck_off=0.05, stuck_on=0.05))
    first, again, other = (crossbar.sample_chip(0.0, make_generator(s)) for s in (5, 5, 6))
    assert torch.equal(first["weight"], again["weight"]) and not torch.equal(first["weight"], other["weight"])
    w_max = model.weight.detach().abs().max()
    clean = mapping.dequantize(mapping.quantize(model.weight.detach(), w_max, 8), w_max, 8)
    changed = (model.weight.detach() + first["weight"] - clean).abs() > 1e-6
    expected = 1 - 0.9 ** 8  # a weight with at least one of its 8 devices stuck (and changed, mostly)
    assert 0.6 * expected < changed.float().mean() <= expected + 0.05


def test_drift_at_t0_is_no_drift_and_compensation_undoes_uniform_drift():
    torch.manual_seed(0)
    model = nn.Linear(20, 5, bias=False)
    plain = Crossbar(model, DeviceModel(quantize=True))
    at_t0 = Crossbar(model, DeviceModel(quantize=True, drift_nu_mean=0.06, drift_nu_std=0.02, drift_time=20.0))
    assert torch.equal(plain.sample_chip(0.1, make_generator(0))["weight"],
                       at_t0.sample_chip(0.1, make_generator(0))["weight"])
    x = torch.randn(64, 20)
    # g_min = 0 (on/off inf): every device, idle ones included, drifts by one factor, and nothing clips
    year = DeviceModel(quantize=True, drift_nu_mean=0.06, drift_nu_std=0.0, drift_time=3.15e7,
                       on_off_ratio=math.inf)
    plain = Crossbar(model, DeviceModel(quantize=True, on_off_ratio=math.inf))
    undrifted = plain.forward(x, chip=plain.sample_chip(0.1, make_generator(2)))
    drifted = Crossbar(model, year)
    lost = drifted.forward(x, chip=drifted.sample_chip(0.1, make_generator(2)))
    assert torch.allclose(lost, undrifted * (3.15e7 / 20) ** -0.06, rtol=1e-5, atol=1e-6)  # (t/t0)^-nu = 0.43
    compensated = Crossbar(model, dataclasses.replace(year, drift_compensation=True))
    out = compensated.forward(x, chip=compensated.sample_chip(0.1, make_generator(2)))
    assert torch.allclose(out, undrifted, rtol=1e-5, atol=1e-6)


def test_drift_compensation_factor_by_hand():
    reference = torch.tensor([[1.0, 2.0], [-3.0, 0.0]])  # row sums 3, -3: readout 3
    assert chip.compensation(reference, reference * 0.5).item() == pytest.approx(2.0)
    assert chip.compensation(reference, torch.zeros(2, 2)).item() == 1.0


def test_training_through_the_chip_is_a_straight_through_estimator():
    torch.manual_seed(0)
    model = nn.Linear(6, 3)
    x = torch.randn(8, 6)
    crossbar = Crossbar(model, DeviceModel(quantize=True, stuck_off=0.1, stuck_on=0.1))
    crossbar.forward(x, sigma=0.1, generator=make_generator(0)).sum().backward()
    assert torch.allclose(model.weight.grad, torch.ones(8, 3).T @ x)  # d sum(W_chip x) / dW with dW_chip/dW = 1
    model.zero_grad()
    out = crossbar.forward(x, sigma=0.0, generator=make_generator(0))
    assert not torch.equal(out, model(x))  # quantized and stuck at sigma 0 too: training sees the chip


def test_options_off_are_todays_chips_bit_for_bit():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 10))
    images, labels = torch.randn(40, 1, 4, 4), torch.randint(0, 10, (40,))
    fast = dict(runs=4, progress=False, compile=False, chips_per_pass=1)
    today = montecarlo.evaluate(model, images, labels, [0.0, 0.2], **fast)
    off = montecarlo.evaluate(model, images, labels, [0.0, 0.2], quantize=False, stuck_on=0.0,
                              device_model=DeviceModel("RRAM1", drift_compensation=False), **fast)
    for a, b in zip(today["per_sigma"], off["per_sigma"]):
        assert a["accuracy"]["per_run"] == b["accuracy"]["per_run"]
    on = montecarlo.evaluate(model, images, labels, [0.0], quantize=True, stuck_on=0.05, **fast)
    assert on["device_model"]["quantize"] and on["evaluation"]["stuck_on"] == 0.05
    assert len(set(on["per_sigma"][0]["accuracy"]["per_run"])) > 1  # sigma 0 is not the clean network any more


@pytest.mark.parametrize("settings, setting", [
    (dict(quantize=True, stuck_off=-0.1), "stuck_off"),
    (dict(quantize=True, stuck_on=float("nan")), "stuck_on"),
    (dict(quantize=True, stuck_on=1.5), "stuck_on"),
    (dict(quantize=True, stuck_off=0.6, stuck_on=0.6), "stuck_on"),
    (dict(quantize=True, drift_nu_std=-0.01), "drift_nu_std"),
    (dict(quantize=True, drift_time=0.0), "drift_time"),
    (dict(quantize=True, drift_time=-5.0), "drift_time"),
    (dict(quantize=True, drift_time=3600.0), "drift_time"),  # a read time without drift has no effect
    (dict(quantize=True, drift_compensation=True), "drift_compensation"),  # so has compensation
    (dict(stuck_off=0.01), "stuck_off"),
    (dict(drift_nu_mean=0.05), "drift_nu_mean"),
    (dict(drift_compensation=True), "drift_compensation"),
    (dict(quantize="yes"), "quantize"),
])
def test_bad_chip_settings_name_the_setting(settings, setting):
    with pytest.raises(SettingError) as error:
        DeviceModel(**settings)
    assert error.value.setting == setting
    with pytest.raises(SettingError) as error:  # the same through the evaluation settings, before any work
        montecarlo.EvalConfig(sigmas=[0.1], device_model="RRAM1", **settings).check()
    assert error.value.setting == setting


def test_unknown_device_file_key_and_presets():
    with pytest.raises(SettingError, match="unknown device model keys"):
        from_dict({"quantise": True})
    for name in ("RRAM-chip", "PCM-chip"):
        preset = devices.get(name)
        assert preset.quantize and name in PRESET_SOURCES
    assert devices.get("rram-chip").stuck_on == 0.0904 and devices.get("PCM-chip").drift_compensation


def test_cli_drift_sweep_report_and_bad_input_write_nothing(trained_run, tmp_path, capsys):
    import json

    from neft import reporting as report
    from neft.cli.main import main

    files = set(trained_run.iterdir())
    assert main(["evaluate", str(trained_run), "--quiet", "--sigmas", "0.1", "--runs", "3", "--test-subset", "200",
                 "--drift-times", "3600,0", "--device-model", "PCM-chip", "--name", "bad"]) == 2
    assert "argument --drift-times: drift_time must be a time" in capsys.readouterr().err
    assert main(["evaluate", str(trained_run), "--quiet", "--stuck-on", "0.02", "--name", "bad"]) == 2
    assert "argument --stuck-on: stuck_on acts on the devices of the quantized mapping" in capsys.readouterr().err
    assert set(trained_run.iterdir()) == files  # refused before any work: nothing written
    assert main(["evaluate", str(trained_run), "--quiet", "--sigmas", "0.1", "--runs", "3", "--test-subset", "200",
                 "--device-model", "PCM-chip", "--stuck-off", "0.01", "--drift-times", "20,3.15e7",
                 "--name", "drift"]) == 0
    results = [json.loads((trained_run / f"drift_t{t}.json").read_text()) for t in ("20", "3.15e+07")]
    assert [r["device_model"]["drift_time"] for r in results] == [20.0, 3.15e7]
    assert results[1]["evaluation"]["stuck_off"] == 0.01 and results[1]["device_model"]["quantize"]
    assert results[1]["device_model"]["name"] == "PCM-chip stuck-off=0.01"  # not the preset: a name of its own
    assert report.result_label(results[1]) == ("noise-injection q8/2 stuck 1%+0% nu=mu(g)+-s(g) t=1y comp (trained "
                                               "on RRAM1, evaluated on PCM-chip stuck-off=0.01)")
    paths = report.write_report(results, tmp_path / "report")
    assert paths["drift"].is_file() and "report_drift.png" in paths["markdown"].read_text()
    rows = list(__import__("csv").DictReader(paths["csv"].open()))
    assert {row["drift_time"] for row in rows} == {"20.0", "31500000.0"} and rows[0]["stuck_off"] == "0.01"
    per_run = list(__import__("csv").DictReader((trained_run / "drift_t3.15e+07.csv").open()))
    assert per_run[0]["method"] == report.result_label(results[1])  # the run's own CSV names its chip too
    assert main(["evaluate", str(trained_run), "--quiet", "--sigmas", "0.1", "--runs", "3", "--test-subset", "200",
                 "--device-model", "PCM-chip", "--no-drift-compensation", "--drift-times", "3.15e7",
                 "--name", "uncompensated"]) == 0  # a preset's compensation switched off from the command line
    off = json.loads((trained_run / "uncompensated.json").read_text())
    assert off["device_model"]["drift_compensation"] is False and off["device_model"]["quantize"]
    assert report.result_label(off).endswith(" nu=mu(g)+-s(g) t=1y (trained on RRAM1, evaluated on PCM-chip "
                                             "no-drift-compensation)")


def test_training_device_variant_and_cli_chip_flags(tmp_path):
    from neft.cli import build_parser
    from neft.cli.chip_arguments import chip_settings as _chip_settings
    from neft.training import variants

    assert variants.parse("ovf device=PCM-chip") == ("ovf", {"device_model": "PCM-chip"})
    assert variants.directory_name("ovf device=configs/chips/x.toml") == "ovf_device=configs_chips_x.toml"
    with pytest.raises(ValueError, match="unknown device model"):
        variants.parse("ovf device=NOPE")
    args = build_parser().parse_args(["train", "--quantize", "--stuck-off", "0.01", "--drift-time", "3600"])
    assert _chip_settings(args) == {"quantize": True, "stuck_off": 0.01, "drift_time": 3600.0}


def test_cached_mapping_follows_weight_updates():
    torch.manual_seed(0)
    model = nn.Linear(16, 4)
    crossbar = Crossbar(model, DeviceModel(quantize=True, stuck_on=0.05))
    first = crossbar.sample_chip(0.1, make_generator(0))
    assert torch.equal(first["weight"], crossbar.sample_chip(0.1, make_generator(0))["weight"])  # cached mapping
    with torch.no_grad():
        model.weight.mul_(-0.5)  # an optimiser step in place: the mapping is redone
    fresh = Crossbar(model, crossbar.device_model).sample_chip(0.1, make_generator(0))
    assert torch.equal(crossbar.sample_chip(0.1, make_generator(0))["weight"], fresh["weight"])


def test_a_run_started_with_device_model_and_chip_flags_resumes_with_the_same_command(tmp_path, capsys):
    """`neft train --device-model M --drift-time T ... --out RUN --resume` (the command that started the run,
    repeated) continues it; another drift time or device model is refused naming the setting."""
    from neft.cli import main

    run = str(tmp_path / "run")
    command = ["train", "--model", "lenet5", "--method", "noise-injection", "--sigma", "0.1", "--train-subset", "64",
               "--test-subset", "32", "--val-runs", "1", "--device-model", "PCM-chip", "--out", run, "--quiet"]
    assert main([*command, "--epochs", "1", "--drift-time", "3600"]) == 0
    capsys.readouterr()
    assert main([*command, "--epochs", "1", "--drift-time", "7200", "--resume"]) == 2
    assert "drift_time: 3600.0 in the run, 7200.0 given" in capsys.readouterr().err
    assert main([*command, "--epochs", "1", "--device-model", "RRAM1", "--resume"]) == 2
    assert "with different settings (" in capsys.readouterr().err
    assert main([*command, "--epochs", "2", "--drift-time", "3600", "--resume"]) == 0
    assert len(open(tmp_path / "run" / "train_log.csv").read().splitlines()) == 3  # header + 2 epochs


def test_no_quantize_turns_a_presets_chip_off_and_resume_refuses_other_chip_flags(tmp_path, capsys):
    from neft.cli import build_parser, main
    from neft.cli.chip_arguments import training_device_model as _training_device_model
    from neft.training import TrainConfig, train

    # stuck devices go with the quantized mapping they act on; the model is no longer the preset: its own name
    off = dataclasses.replace(devices.get("RRAM-chip").gaussian, name="RRAM-chip no-quantize")
    args = build_parser().parse_args(["train", "--device-model", "RRAM-chip", "--no-quantize"])
    assert devices.get(_training_device_model(args)) == off and not off.quantize and off.stuck_on == 0.0
    pcm_off = dataclasses.replace(devices.get("PCM-chip").gaussian, name="PCM-chip no-quantize")
    assert montecarlo.EvalConfig(device_model="PCM-chip", quantize=False).chip().device_model == pcm_off
    with pytest.raises(SettingError, match="stuck_on acts on the devices of the quantized mapping"):
        montecarlo.EvalConfig(device_model="PCM-chip", quantize=False, stuck_on=0.1).chip()
    run = tmp_path / "run"
    train(TrainConfig(model="lenet5", method="noise-injection", sigma=0.1, epochs=2, train_subset=64, test_subset=32,
                      val_runs=1, device_model="RRAM-chip"), run, progress=False, stop_after=1)
    capsys.readouterr()
    for flags, changed in ((["--stuck-on", "0.05"], "stuck_on: 0.0904 in the run, 0.05 given"),
                           (["--no-quantize"], "quantize: True in the run, False given")):
        assert main(["train", "--resume", "--out", str(run), "--quiet", *flags]) == 2
        assert f"with different settings ({changed.split(':')[0]}): {changed}" in capsys.readouterr().err
    assert main(["train", "--resume", "--out", str(run), "--quiet", "--quantize"]) == 0  # the run's own: resumes
