"""aihwkit 1.2's two chip conventions as device-model options (docs/method.md, 'aihwkit 1.2 conventions'):
``clip_g_max = false`` (clamp at 0 only) and ``drift_of = "resplit"`` (drift and 1/f noise of the re-split
programmed weight), against hand-computed small cases with fixed draws and large-sample statistics (3 standard
errors); bad values refused naming the key."""

import dataclasses
import math

import pytest
import torch

from neft.chip import DeviceModel, aihwkit_conventions, effects, mapping
from neft.chip.presets import PRESETS
from neft.common.errors import SettingError

AIHWKIT = PRESETS["PCM-aihwkit"]


def test_resplit_of_a_2x2_layer_by_hand():
    model = DeviceModel(quantize=True, weight_bits=4, device_bits=4, on_off_ratio=float("inf"), drift_nu_mean=0.05,
                        drift_of="resplit")  # T = 15
    plus = torch.tensor([[12.0, 0.0], [2.5, 0.0]])
    minus = torch.tensor([[0.0, 3.0], [0.5, 6.0]])  # net d = [[12, -3], [2, -6]], max|d| = 12
    split, unit = aihwkit_conventions.resplit(model, torch.stack([plus, minus]).unsqueeze(1))
    assert split.shape == (2, 1, 2, 2)
    assert torch.equal(split[0, 0], torch.tensor([[15.0, 0.0], [2.5, 0.0]]))  # d * 15 / 12 on its sign's row
    assert torch.equal(split[1, 0], torch.tensor([[0.0, 3.75], [0.0, 7.5]]))
    assert unit.item() == pytest.approx(12 / 15)
    zero, unit0 = aihwkit_conventions.resplit(model, torch.zeros(2, 1, 2, 2))
    assert unit0.item() == 0 and not zero.any()


def _aihwkit_by_hand(w: torch.Tensor, z: list[torch.Tensor], t_inference: float) -> torch.Tensor:
    """aihwkit 1.2's PCMLikeNoiseModel chip of ``w`` (max|W| 1, g_max 25 uS) with the draws ``z`` (programming,
    drift, 1/f; each [2, *w.shape], G+ row first), read ``t_inference`` s after programming, compensated."""
    w, (zp, zn, zr) = w.double(), (x.double() for x in z)
    target = torch.stack([w.clamp(min=0), (-w).clamp(min=0)]) * 25
    x = target / 25
    g_prog = (target + (0.26348 + 1.9650 * x - 1.1731 * x * x) * zp).clamp(min=0)  # no clamp at g_max
    log_x = torch.log(x.clamp(min=1e-7))
    mu = (0.0244 - 0.0155 * log_x).clamp(0.049, 0.1)
    sd = (-0.0059 - 0.0125 * log_x).clamp(0.008, 0.045)
    nu = (mu + sd * zn).abs()
    w_prog = (g_prog[0] - g_prog[1]) / 25
    scale = 25 / w_prog.abs().max()  # the re-split of drift_weights
    g = torch.stack([(w_prog * scale).clamp(min=0), (-w_prog * scale).clamp(min=0)])
    g_t = g * ((t_inference + 20) / 20) ** -nu
    q = (0.0088 / (g / 25).pow(0.65).clamp(min=1e-3)).clamp(max=0.2)
    sig = q * math.sqrt(math.log((t_inference + 20 + 250e-9) / (2 * 250e-9)))
    g_read = (g_t + g_t.abs() * sig * zr).clamp(min=0)
    w_t = (g_read[0] - g_read[1]) / scale
    return w_t * (w_prog.abs().mean() / w_t.abs().mean())


@pytest.mark.parametrize("t_inference", [3600.0, 86400.0, 3.1536e7])
def test_pcm_aihwkit_chip_of_a_2x2_layer_equals_aihwkit_by_hand(t_inference):
    w = torch.tensor([[0.5, -1.0], [0.25, 0.0]])
    model = dataclasses.replace(AIHWKIT, drift_time=t_inference + 20)
    chip = w + effects.sample(model, w, 0.0, torch.Generator().manual_seed(3))
    replay = torch.Generator().manual_seed(3)  # the documented draws: [2, 1, 2, 2] each, programming, drift, 1/f
    z = [torch.randn(2, 1, 2, 2, generator=replay)[:, 0] for _ in range(3)]
    assert torch.allclose(chip.double(), _aihwkit_by_hand(w, z, t_inference), rtol=0, atol=2e-6)
    physical = dataclasses.replace(model, clip_g_max=True, drift_of="devices")
    other = w + effects.sample(physical, w, 0.0, torch.Generator().manual_seed(3))
    assert (other - chip).abs().max() > 1e-3  # the physical conventions give another chip from the same draws


def test_clip_g_max_false_clamps_programming_at_zero_only():
    model = DeviceModel(quantize=True, weight_bits=2, device_bits=2, clip_g_max=False)  # T = 3
    target = torch.full((2, 1, 1000), 3.0)
    target[1] = 0.0
    programmed = effects.program(model, target, 0.2, torch.Generator().manual_seed(1))
    z = torch.randn(target.shape, generator=torch.Generator().manual_seed(1))
    assert torch.equal(programmed, (target + z * (0.2 * 3)).clamp(min=0))  # hand: target + sigma T z, >= 0
    assert (programmed[0] > 3).any() and (programmed >= 0).all()
    clipped = effects.program(dataclasses.replace(model, clip_g_max=True), target, 0.2,
                              torch.Generator().manual_seed(1))
    assert torch.equal(clipped, programmed.clamp(max=3))


def test_clip_g_max_false_keeps_the_unclipped_mean_and_half_the_devices_above_g_max():
    n, s = 1_000_000, 0.1 * 3  # sigma 0.1 of T = 3 levels, devices at g_max
    model = DeviceModel(quantize=True, weight_bits=2, device_bits=2, clip_g_max=False)
    g = effects.program(model, torch.full((n,), 3.0), 0.1, torch.Generator().manual_seed(2)).double()
    above = (g > 3).double().mean().item()
    assert abs(above - 0.5) < 3 * math.sqrt(0.25 / n)
    assert abs(g.mean().item() - 3.0) < 3 * s / math.sqrt(n)  # clipped at g_max it would be 3 - s / sqrt(2 pi)
    assert abs(g.std().item() - s) < 3 * s / math.sqrt(2 * n)


def test_resplit_drift_scales_each_weight_by_its_target_rows_exponent():
    n, t = 1_000_000, 20_000.0  # (t / t0) = 1000
    model = DeviceModel(quantize=True, weight_bits=8, device_bits=8, on_off_ratio=float("inf"),
                        drift_nu_mean=0.05, drift_nu_std=0.01, drift_time=t, drift_of="resplit")
    w = torch.rand(n, generator=torch.Generator().manual_seed(4)) * 0.5 + 0.5  # positive: G- targets 0
    generator = torch.Generator().manual_seed(5)
    replay = torch.Generator().set_state(generator.get_state())
    read = (w + effects.sample(model, w, 0.02, generator)).double()
    target = effects.map_layer(model, w).conductances
    programmed = mapping.from_conductances(effects.program(model, target, 0.02, replay), 8) * (w.abs().max() / 255)
    assert (programmed > 0).all()
    nu = -torch.log(read / programmed.double()) / math.log(1000)  # each weight drifts by its own G+ exponent only
    centred = nu - nu.mean()
    var = centred.square().mean().item()
    assert abs(nu.mean().item() - 0.05) < 3 * math.sqrt(var / n) + 1e-6  # (+ float32 rounding of the ratio)
    assert abs(var - 0.01 ** 2) < 3 * math.sqrt((centred.pow(4).mean().item() - var * var) / n)
    devices = dataclasses.replace(model, drift_of="devices")  # the idle G- device drifts with its own nu there
    other = (w + effects.sample(devices, w, 0.02, torch.Generator().manual_seed(5))).double()
    assert not torch.allclose(other, read, rtol=1e-4)


BAD = [  # (device-file lines, the key the error names)
    ("quantize = true\nclip_g_max = 1", "clip_g_max"),
    ("clip_g_max = false", "clip_g_max"),  # without quantize
    ("quantize = true\ndrift_of = 'net-weight'", "drift_of"),
    ("quantize = true\ndrift_nu_mean = 0.05\ndrift_of = 'resplit'", "drift_of"),  # 8/2 bits: 4 devices a weight
    ("quantize = true\nweight_bits = 8\ndevice_bits = 8\ndrift_of = 'resplit'", "drift_of"),  # nothing drifts
    ("quantize = true\nweight_bits = 8\ndevice_bits = 8\ndrift_nu_mean = 0.05\nstuck_on = 0.01\n"
     "drift_of = 'resplit'", "drift_of"),
]


@pytest.mark.parametrize("lines, key", BAD)
def test_bad_convention_values_name_the_key(lines, key, tmp_path):
    from neft.chip.device_files import from_file

    path = tmp_path / "bad.toml"
    path.write_text(lines + "\n")
    with pytest.raises(SettingError) as error:
        from_file(path)
    assert error.value.setting == key and key in str(error.value)


def test_defaults_write_nothing_new_and_pcm_aihwkit_round_trips(tmp_path):
    from neft.chip.device_files import from_file

    assert "clip_g_max" not in DeviceModel(quantize=True).to_dict()
    assert "drift_of" not in PRESETS["PCM-chip"].to_dict()
    data = AIHWKIT.to_dict()
    assert data["clip_g_max"] is False and data["drift_of"] == "resplit"
    path = tmp_path / "aihwkit.toml"
    path.write_text("name = 'x'\nweight_bits = 24\ndevice_bits = 24\nquantize = true\non_off_ratio = inf\n"
                    "drift_nu_mean_law = [0.0244, -0.0155, 0.049, 0.1]\nclip_g_max = false\ndrift_of = 'resplit'\n")
    model = from_file(path)
    assert model.clip_g_max is False and model.drift_of == "resplit"
