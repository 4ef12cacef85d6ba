"""Conductance bounds and conductance-dependent device laws of the realistic chip (docs/method.md, 'The realistic
chip', 'Conductance-dependent device laws'): large-sample statistics against hand-computed values (within 3
standard errors), the range kept, the 1/f read noise frozen and per read, bad input refused before any work."""

import dataclasses
import math

import pytest
import torch
from torch import nn

from neft.chip import DeviceModel, effects
from neft.chip.crossbar import Crossbar, make_generator
from neft.chip.presets import PRESETS
from neft.common.errors import SettingError

AIHWKIT = PRESETS["PCM-aihwkit"]
N = 1_000_000


def _pdf(z: float) -> float:
    return math.exp(-z * z / 2) / math.sqrt(2 * math.pi)


def _cdf(z: float) -> float:
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def clipped_moments(m: float, s: float, lo: float, hi: float) -> tuple[float, float]:
    """(mean, variance) of ``clip(N(m, s**2), lo, hi)`` (the censored normal's moments)."""
    a, b = (lo - m) / s, (hi - m) / s
    inside = _cdf(b) - _cdf(a)
    mean = lo * _cdf(a) + hi * (1 - _cdf(b)) + m * inside + s * (_pdf(a) - _pdf(b))
    square = (lo * lo * _cdf(a) + hi * hi * (1 - _cdf(b)) + (m * m + s * s) * inside
              + 2 * m * s * (_pdf(a) - _pdf(b)) + s * s * (a * _pdf(a) - b * _pdf(b)))
    return mean, square - mean * mean


def folded_moments(m: float, s: float) -> tuple[float, float]:
    """(mean, variance) of ``|N(m, s**2)|``."""
    mean = s * math.sqrt(2 / math.pi) * math.exp(-m * m / (2 * s * s)) + m * (1 - 2 * _cdf(-m / s))
    return mean, m * m + s * s - mean * mean


def assert_moments(sample: torch.Tensor, mean: float, variance: float) -> None:
    """The sample's mean and variance within 3 standard errors (the variance's from the sample's 4th moment)."""
    x = sample.double()
    centred = x - x.mean()
    var = centred.square().mean()
    se_mean = math.sqrt(var.item() / x.numel())
    se_var = math.sqrt((centred.pow(4).mean() - var * var).item() / x.numel())
    assert abs(x.mean().item() - mean) < 3 * se_mean, (x.mean().item(), mean, se_mean)
    assert abs(var.item() - variance) < 3 * se_var, (var.item(), variance, se_var)


def test_no_conductance_outside_the_range_after_programming_stuck_devices_drift_and_1f_noise():
    model = DeviceModel(quantize=True, weight_bits=2, device_bits=2, on_off_ratio=5.0, g_max=40.0,
                        prog_noise_coeffs=(3.0, 2.0), stuck_off=0.05, stuck_on=0.05,
                        drift_nu_mean_law=AIHWKIT.drift_nu_mean_law, drift_nu_std_law=AIHWKIT.drift_nu_std_law,
                        drift_nu_abs=True, read_noise_1f=AIHWKIT.read_noise_1f, drift_time=3.15e7)
    generator = make_generator(0)
    target = torch.randint(0, 4, (N,), generator=generator).float()
    g = effects.program(model, target, 0.2, generator)
    g, stuck = effects.stick(g, torch.rand(N, generator=generator), 0.05, 0.05, 3)
    steps = [g, effects.drift(model, g, effects.drift_exponents(model, target, generator), stuck)]
    steps.append(effects.read_1f(model, g, steps[-1], generator))
    early = dataclasses.replace(model, drift_time=1.0)  # read before t0: the power law runs upwards
    steps.append(effects.drift(early, g, effects.drift_exponents(model, target, generator), stuck))
    for levels in steps:
        g_us = effects.microsiemens(model, levels)
        assert levels.min() >= 0 and levels.max() <= 3
        assert g_us.min() >= 8.0 * (1 - 1e-6) and g_us.max() <= 40.0 * (1 + 1e-6)  # [g_max / 5, g_max] uS
    for levels in steps[:-1]:
        assert (levels == 0).float().mean() > 0.1  # the clip at g_min was needed (idle and drifted devices)
    assert (steps[0] == 3).float().mean() > 0.1 and (steps[-1] == 3).float().mean() > 0.1  # and at g_max


def test_programming_error_mean_and_std_at_three_conductances():
    """CrossSim's RRAM_Milo law (std 4.782321 - 0.009107 g uS) with sigma 0.05 in quadrature, clipped to the range."""
    model = PRESETS["RRAM-Milo"]
    step = (225.0 - 50.0) / 3  # uS per level, g_min = 225 / 4.5 = 50 uS
    for level in (0, 1, 3):
        g = 50.0 + level * step
        std = math.hypot(0.05 * 3, (4.782321 - 0.009107 * g) / step)  # levels
        mean, variance = clipped_moments(level, std, 0, 3)
        drawn = effects.program(model, torch.full((N // 3,), float(level)), 0.05, make_generator(level))
        assert_moments(drawn - level, mean - level, variance)


def test_drift_exponent_mean_and_std_at_three_conductances():
    """aihwkit's law: mu = clip(0.0244 - 0.0155 ln x, 0.049, 0.1), sigma = clip(-0.0059 - 0.0125 ln x, 0.008, 0.045),
    nu = |N(mu, sigma)|, at x = 0.02 (nothing clipped), 0.3 and 1 (both clipped)."""
    top = 2 ** 24 - 1
    for x in (0.02, 0.3, 1.0):
        level = round(x * top)
        x = level / top  # g_min = 0: x = level / T
        mu = min(max(0.0244 - 0.0155 * math.log(x), 0.049), 0.1)
        sigma = min(max(-0.0059 - 0.0125 * math.log(x), 0.008), 0.045)
        nu = effects.drift_exponents(AIHWKIT, torch.full((N // 3,), float(level)), make_generator(7))
        assert_moments(nu, *folded_moments(mu, sigma))
    assert 0.08 < 0.0244 - 0.0155 * math.log(0.02) < 0.1  # the first point is inside both clip ranges


def test_1f_read_noise_std_at_three_conductances_and_two_times():
    model = DeviceModel(quantize=True, weight_bits=24, device_bits=24, on_off_ratio=math.inf,
                        read_noise_1f=AIHWKIT.read_noise_1f)
    top = 2 ** 24 - 1
    for t in (3600.0, 3.15e7):
        read_at = dataclasses.replace(model, drift_time=t)
        for x in (0.05, 0.3, 0.8):
            level = float(round(x * top))
            q_s = min(0.0088 / max((level / top) ** 0.65, 1e-3), 0.2)
            std = level * q_s * math.sqrt(math.log((t + 250e-9) / (2 * 250e-9)))  # levels
            g = torch.full((N // 6,), level)
            drawn = effects.read_1f(read_at, g, g, make_generator(int(t) + round(10 * x)))
            assert_moments(drawn - level, *(m - level if i == 0 else m
                                            for i, m in enumerate(clipped_moments(level, std, 0, top))))


def _linear(weights: list[list[float]]) -> nn.Linear:
    layer = nn.Linear(len(weights[0]), len(weights), bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weights))
    return layer


def test_1f_read_noise_per_read_variance_within_2_percent_on_1e5_reads():
    from neft.chip.circuit import Circuit
    from neft.chip.circuit_settings import CircuitSettings

    model = dataclasses.replace(AIHWKIT, read_noise_1f_per_read=True, drift_time=3620.0)
    layer = _linear([[0.5, -1.0, 0.25], [0.1, 0.0, -0.8]])
    crossbar = Crossbar(layer, model)
    circuit = Circuit(crossbar, CircuitSettings(read_1f=True))
    x = torch.tensor([1.0, 0.5, -2.0])
    accumulated = math.sqrt(math.log((3620 + 250e-9) / (2 * 250e-9)))
    expected = []
    for row in layer.weight.detach().tolist():  # one device per weight, x = |w| / max|W| (max|W| = 1)
        expected.append(sum((xi * abs(w) * min(0.0088 / max(abs(w) ** 0.65, 1e-3), 0.2) * accumulated) ** 2
                            for xi, w in zip(x.tolist(), row)))
    with torch.no_grad(), circuit.applied(), circuit.reading([123], 0):
        out = layer(x.expand(100_000, 3))
    variance = out.double().var(0)
    assert torch.allclose(variance, torch.tensor(expected, dtype=torch.float64), rtol=0.02)
    assert torch.allclose(out.double().mean(0), (layer.weight.detach() @ x).double(), atol=4 * max(expected) ** 0.5
                          / 100_000 ** 0.5)


def test_per_read_1f_accuracies_do_not_depend_on_the_batch_size():
    from neft.evaluation import montecarlo

    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 10))
    images, labels = torch.randn(120, 1, 4, 4), torch.randint(0, 10, (120,))
    model = dataclasses.replace(AIHWKIT, read_noise_1f_per_read=True, drift_time=86420.0)
    runs = [montecarlo.evaluate(net, images, labels, [0.0], device_model=model, runs=3, progress=False,
                                compile=False, chips_per_pass=chips, batch_size=size)["per_sigma"][0]
            for size, chips in ((1, 1), (37, 2), (1000, 3))]
    assert runs[0]["accuracy"]["per_run"] == runs[1]["accuracy"]["per_run"] == runs[2]["accuracy"]["per_run"]
    frozen = dataclasses.replace(model, read_noise_1f_per_read=False)
    again = [montecarlo.evaluate(net, images, labels, [0.0], device_model=frozen, runs=3, progress=False,
                                 compile=False, batch_size=size)["per_sigma"][0]["accuracy"]["per_run"]
             for size in (1, 37)]
    assert again[0] == again[1]


def test_the_constant_law_model_and_the_gaussian_model_are_unchanged_by_the_new_keys():
    w = torch.randn(32, 16)
    plain = DeviceModel("RRAM1")
    explicit = DeviceModel("RRAM1", g_max=25.0, on_off_ratio=10.0, prog_noise_coeffs=None, t_read=250e-9)
    assert plain == explicit and plain.to_dict() == DeviceModel("RRAM1").to_dict()
    assert "g_max" not in plain.to_dict()  # results files of models without the keys are as before
    assert torch.equal(plain.sample(w, 0.1, make_generator(3)), explicit.sample(w, 0.1, make_generator(3)))


def test_training_draws_the_conductance_dependent_errors_afresh_every_step():
    """A noise-injection step's forward (every objective's noisy forward, ``Objective.noisy_forward``) at sigma 0 on
    RRAM-Milo: weights at +-max|W| hold level 3 (225 uS) on their four devices of one row, the other row's devices sit
    at level 0 (g_min 50 uS); each device's error follows the law, clipped, summed with significances 4**j."""
    from neft.training.objectives.noise import NoiseInjection

    signs = torch.where(torch.rand(64, 64, generator=make_generator(1)) < 0.5, -1.0, 1.0)
    net = _linear(signs.tolist())  # every weight at +-max|W|: level 255 = digits 3, 3, 3, 3
    objective = NoiseInjection(device_model="RRAM-Milo", sigma=0.0, generator=make_generator(0))
    steps = [objective.noisy_forward(net, torch.eye(64), 0.0).T for _ in range(20)]  # W_chip, one chip per step
    assert not torch.equal(steps[0], steps[1])  # drawn afresh every step
    step = 175.0 / 3  # uS per level
    held = clipped_moments(3, (4.782321 - 0.009107 * 225.0) / step, 0, 3)  # mean, variance (levels)
    idle = clipped_moments(0, (4.782321 - 0.009107 * 50.0) / step, 0, 3)
    significance = [4 ** j for j in range(4)]
    mean = sum(significance) * ((held[0] - 3) - idle[0]) / 255  # toward zero, max|W| = 1
    variance = sum(j * j for j in significance) * (held[1] + idle[1]) / 255 ** 2
    errors = (torch.stack(steps) - net.weight.detach()) * net.weight.detach().sign()  # + away from zero
    assert_moments(errors.flatten(), mean, variance)


BAD = [  # (device-file lines, the key the error names)
    ("prog_noise_coeffs = [1.0, -2.0]", "prog_noise_coeffs"),  # std 1 - 2 x < 0 above x = 0.5
    ("prog_noise_coeffs = [0.1, 1.0, -3.0]\non_off_ratio = 100", "prog_noise_coeffs"),  # negative near g_max only
    ("on_off_ratio = 1.0", "on_off_ratio"),
    ("on_off_ratio = 0.5", "on_off_ratio"),
    ("t_read = 0.0\nread_noise_1f = [0.0088, 0.65, 0.001, 0.2]", "t_read"),
    ("read_noise_1f = [0.0088, 0.65, 0.001, 0.2]\ndrift_time = 1e-8", "drift_time"),  # read before t_read
    ("drift_nu_mean_law = [0.02, -0.01, -0.1, 0.1]\nquantize = true", "drift_nu_mean_law"),  # nu clipped below 0
    ("drift_nu_std_law = [0.02, -0.01, 0.0]", "drift_nu_std_law"),
    ("drift_nu_mean = 0.05\ndrift_nu_mean_law = [0.0244, -0.0155, 0.049, 0.1]", "drift_nu_mean_law"),
    ("read_noise_1f_per_read = true", "read_noise_1f_per_read"),
    ("drift_compensation_input = 'eye'", "drift_compensation_input"),
    ("g_max = -25.0", "g_max"),
]


@pytest.mark.parametrize("lines, key", BAD)
def test_bad_device_laws_name_the_key_in_python(lines, key, tmp_path):
    from neft.chip.device_files import from_file

    path = tmp_path / "bad.toml"
    path.write_text(f"quantize = true\n{lines}\n" if "quantize" not in lines else lines)
    with pytest.raises(SettingError) as error:
        from_file(path)
    assert error.value.setting == key and key in str(error.value)


def test_bad_device_files_are_refused_by_the_cli_before_any_work(tmp_path, capsys):
    from neft.cli.main import main

    for index, (lines, key) in enumerate(BAD[:6]):
        path = tmp_path / f"bad{index}.toml"
        path.write_text(f"quantize = true\n{lines}\n")
        out = tmp_path / f"run{index}"
        assert main(["train", "--device-model", str(path), "--out", str(out), "--epochs", "1",
                     "--train-subset", "16"]) == 2
        err = capsys.readouterr().err
        assert key in err and "Traceback" not in err and len(err.strip().splitlines()) <= 3, err
        assert not out.exists()  # refused before any work: no run directory


def test_one_hot_compensation_is_the_mean_absolute_weight_and_1f_chips_replay_from_their_seed():
    from neft.chip import effects as chip

    reference = torch.tensor([[1.0, 2.0], [-3.0, 0.0]])  # mean |W| = 6 / 4; all-ones readout mean |row sums| = 3
    drifted = torch.tensor([[0.5, 1.0], [-1.0, 0.5]])  # mean |W| = 3 / 4; row sums 1.5, -0.5: readout 1
    assert chip.compensation(reference, drifted, "one-hot").item() == pytest.approx(2.0)
    assert chip.compensation(reference, drifted, "ones").item() == pytest.approx(3.0)
    model = dataclasses.replace(AIHWKIT, drift_time=3.15e7 + 20)
    crossbar = Crossbar(nn.Linear(32, 8), model)
    first, again, other = (crossbar.sample_chip(0.0, make_generator(s))["weight"] for s in (4, 4, 5))
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_a_read_before_t_read_in_a_drift_sweep_is_refused_before_any_point_is_evaluated(run_dir, capsys):
    from neft.cli.main import main

    files = set(run_dir.iterdir())
    assert main(["evaluate", str(run_dir), "--quiet", "--sigmas", "0", "--runs", "2", "--device-model", "PCM-aihwkit",
                 "--drift-times", "3620,1e-8", "--name", "early"]) == 2
    err = capsys.readouterr().err
    assert "drift_time" in err and "t_read" in err and "Traceback" not in err
    assert set(run_dir.iterdir()) == files  # the first (valid) point was not evaluated either: nothing written
