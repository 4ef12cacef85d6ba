"""The periphery of the crossbar circuit (docs/method.md, 'The periphery'): output noise per read, per-vector input
scaling, iterative bound management, per-column weight scaling, sign-magnitude codes and their checks."""

import math

import pytest
import torch
from torch import nn

from neft.chip import mapping
from neft.chip.circuit import Circuit
from neft.chip.circuit_settings import FIELDS, CircuitSettings
from neft.chip.converters import codes, full_scale_steps
from neft.chip.crossbar import Crossbar, make_generator
from neft.chip.periphery import attempts
from neft.cli.main import main
from neft.common.errors import SettingError
from neft.evaluation import EvalConfig, montecarlo


def _circuit(model, calibration=None, device_model="RRAM1", **settings):
    crossbar = Crossbar(model, device_model)
    circuit = Circuit(crossbar, CircuitSettings(**settings))
    circuit.calibrate(calibration)
    return crossbar, circuit


def _linear(weight):
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    with torch.no_grad():
        layer.weight.copy_(weight)
    return nn.Sequential(layer).eval()


def test_output_noise_has_the_set_variance_per_output_on_1e5_reads():
    torch.manual_seed(0)
    model = _linear(torch.randn(10, 6) * 0.3)
    x = torch.rand(10_000, 6)
    x[:, 0] = 2.0  # every vector's max |x| is 2: the input scale s
    _, circuit = _circuit(model, input_management="abs_max", out_noise=0.05)
    clean = model(x).detach()
    with torch.no_grad(), circuit.applied(), circuit.reading([11], 0):
        noisy = model(x)
    w_max = float(model[0].weight.detach().abs().max())
    expected = (0.05 * 2.0 * w_max) ** 2  # out_noise * s * u, u the layer's max |W|
    variance = (noisy - clean).var(0)  # 1e4 reads per output, 1e5 over the ten outputs
    assert float(variance.mean()) == pytest.approx(expected, rel=0.02)  # SE of the mean of 10: 0.45 %
    assert bool(((variance / expected - 1).abs() < 0.06).all())  # each output: 4.2 SE of a variance of 1e4 draws
    residual = (noisy - clean) / math.sqrt(expected)
    assert abs(float(torch.corrcoef(residual.T)[0, 1])) < 0.04  # independent draws per output (4 SE)



def test_under_bf16_autocast_the_normalised_outputs_and_the_adc_are_fp32():
    """A bf16 product divided by the fp32 per-vector scale is fp32 (type promotion); the read must not be divided
    in place into the bf16 tensor (output noise and ADC in bf16): the outputs equal those of fp32 partial sums
    rounded to bf16, read in fp32."""
    torch.manual_seed(0)
    model = _linear(torch.randn(6, 16) * 0.3)
    x = torch.randn(64, 16)
    settings = {"input_management": "abs_max", "dac_bits": 7, "adc_bits": 9, "out_bound": 12.0,
                "converter_codes": "sign_magnitude", "weight_scaling": "off"}
    _, circuit = _circuit(model, x[:8], **settings)
    with torch.no_grad(), circuit.applied(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    assert out.dtype == torch.float32

def test_output_noise_per_read_is_keyed_by_chip_and_image_not_by_batch():
    torch.manual_seed(0)
    model = _linear(torch.randn(4, 8))
    x = torch.randn(50, 8)
    _, circuit = _circuit(model, input_management="abs_max", out_noise=0.1)
    with torch.no_grad(), circuit.applied():
        with circuit.reading([3], 0):
            whole = model(x)
        parts = []
        for start in range(0, 50, 7):
            with circuit.reading([3], start):
                parts.append(model(x[start:start + 7]))
        with circuit.reading([4], 0):
            other = model(x)
    assert torch.allclose(torch.cat(parts), whole, rtol=1e-6, atol=1e-6)  # the same draws (matmul rounding aside)
    assert not torch.allclose(other, whole)


def test_per_run_accuracies_with_output_noise_are_the_same_for_batch_sizes_1_37_and_1000(lenet):
    model, images, labels, calibration = lenet
    per_run = []
    for batch_size in (1, 37, 1000):
        result = montecarlo.evaluate(model, images[:60], labels[:60], [0.0], runs=3, batch_size=batch_size,
                                     calibration_images=calibration, dac_bits=6, adc_bits=6, out_noise=0.3,
                                     input_management="abs_max", bound_management="iterative", chips_per_pass=1,
                                     compile=False, progress=False, precision="fp32")
        per_run.append(result["per_sigma"][0]["accuracy"]["per_run"])
    assert per_run[0] == per_run[1] == per_run[2]
    assert len(set(per_run[0])) > 1  # the noise changes the chips: at sigma 0 they differ by output noise alone


def test_per_vector_input_scaling_commutes_with_a_scale_of_the_input():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(5 * 36, 4)).eval()
    x = torch.randn(8, 3, 6, 6)
    _, circuit = _circuit(model, x, dac_bits=6, input_management="abs_max", out_noise=0.05)
    layer = model[0]
    with torch.no_grad(), circuit.applied():  # one reading block per call: the same reads (a second call of the
        with circuit.reading([2], 0):          # layer in one forward would read with fresh noise)
            base = layer(x) - layer.bias.view(1, -1, 1, 1)
        with circuit.reading([2], 0):
            scaled = layer(7.3 * x) - layer.bias.view(1, -1, 1, 1)
    # the codes of x / max|x| are those of 7.3 x / max|7.3 x| (to float rounding): the DAC and the noise scale along
    assert torch.allclose(scaled, 7.3 * base, rtol=1e-5, atol=1e-5 * float(base.abs().max()))


def test_a_grouped_convolution_reads_each_group_at_its_own_input_scale_and_read_noise():
    """Conv2d(4, 6, 3, groups=2) through a 4-bit per-vector DAC equals its two groups as separate Conv2d(2, 3, 3)
    through the same circuit: each group's receptive field is scaled by its own max |x| (it crashed: the im2col
    holds both groups' rows). Group 1's inputs are 1000x group 0's, so one shared scale would round group 0 to zero,
    and read noise summed over both groups' rows would be ~1000x too large on group 0: with read noise (sigma 0.05
    per read) group 0's noise has the std of the separate group's, within 25 % on 375 outputs."""
    torch.manual_seed(3)
    grouped = nn.Sequential(nn.Conv2d(4, 6, 3, groups=2, bias=False)).eval()
    halves = [nn.Sequential(nn.Conv2d(2, 3, 3, bias=False)).eval() for _ in range(2)]
    with torch.no_grad():
        for j, half in enumerate(halves):
            half[0].weight.copy_(grouped[0].weight[3 * j:3 * j + 3])
    x = torch.randn(5, 4, 7, 7) * torch.tensor([1.0, 1.0, 1000.0, 1000.0]).view(1, 4, 1, 1)

    def read(model, inputs, read_sigma):
        _, circuit = _circuit(model, inputs, dac_bits=4, input_management="abs_max", read_sigma=read_sigma)
        with torch.no_grad(), circuit.applied(), circuit.reading([5], 0):
            return model(inputs)

    whole = read(grouped, x, 0.0)
    parts = [read(half, x[:, 2 * j:2 * j + 2], 0.0) for j, half in enumerate(halves)]
    assert torch.allclose(whole, torch.cat(parts, 1), rtol=1e-5, atol=1e-6)
    assert float(whole[:, :3].abs().max()) > 0  # group 0 read at its own scale, not rounded away
    noise = (read(grouped, x, 0.05) - whole)[:, :3].std()
    alone = (read(halves[0], x[:, :2], 0.05) - parts[0]).std()
    assert 0.75 < float(noise / alone) < 1.25


@pytest.mark.parametrize("noise", [{"out_noise": 0.1, "input_management": "abs_max"}, {"read_sigma": 0.1}])
def test_a_module_called_twice_in_one_forward_reads_with_fresh_noise_each_time(noise):
    """``lin(x) - lin(x)``: one Linear read twice on the same inputs. Each read has its own output (or read) noise,
    so the difference is not zero (the second call reused the first call's draw: exactly zero); the same forward
    again gives the same numbers (the calls are counted from 0 in every forward)."""

    class TwiceOnSame(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(6, 4, bias=False)

        def forward(self, x):
            return self.lin(x) - self.lin(x)

    torch.manual_seed(0)
    model, x = TwiceOnSame().eval(), torch.randn(8, 6)
    _, circuit = _circuit(model, x, **noise)
    with torch.no_grad(), circuit.applied(), circuit.reading([5], 0):
        first, again = model(x), model(x)
    assert float(first.abs().min()) > 0 and torch.equal(first, again)


def test_the_dac_never_overwrites_the_callers_inputs():
    """A 1x1 convolution at stride 1 (its receptive fields are a view of its input) on a skip connection: the
    per-vector DAC's codes used to be written into the input itself, corrupting the caller's images and the
    skip path. The inputs stay as they were, and the output is that of the same block with a copied input."""

    class Skip(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1, bias=False)

        def forward(self, x):
            return x + self.conv(x)

    torch.manual_seed(0)
    model, x = Skip().eval(), torch.randn(4, 3, 5, 5)
    before = x.clone()
    _, circuit = _circuit(model, x, dac_bits=4, input_management="abs_max", converter_codes="sign_magnitude")
    with torch.no_grad(), circuit.applied():
        out = model(x)
        assert torch.equal(x, before)
        assert torch.equal(out, x + model.conv(x.clone()))


@pytest.mark.parametrize("padding, kernel, pads", [("same", 3, (1, 1, 1, 1)), ("same", 4, (1, 2, 1, 2)),
                                                   ("same", (3, 4), (1, 2, 1, 1)), ("valid", 3, (0, 0, 0, 0))])
@pytest.mark.parametrize("settings", [
    {"input_management": "abs_max", "dac_bits": 5, "converter_codes": "sign_magnitude", "tile_rows": 7,
     "out_noise": 0.05, "read_sigma": 0.05},
    {"input_management": "abs_max", "out_bound": 1e6},
    {"tile_rows": 7, "adc_bits": 6, "read_sigma": 0.05}])
def test_string_padding_reads_as_the_same_padding_written_out(padding, kernel, pads, settings):
    """A Conv2d with ``padding="same"`` or ``"valid"`` reads, noise and codes included, exactly as the same
    convolution after an explicit ``ZeroPad2d`` of torch's per-side amounts (an even kernel pads one more on the
    right and bottom); it crashed in the periphery's im2col and input scales."""
    torch.manual_seed(2)
    conv = nn.Conv2d(3, 4, kernel, padding=padding)
    written = nn.Conv2d(3, 4, kernel)
    written.load_state_dict(conv.state_dict())
    x = torch.randn(6, 3, 8, 9)
    outputs = []
    for model in (nn.Sequential(conv).eval(), nn.Sequential(nn.ZeroPad2d(pads), written).eval()):
        _, circuit = _circuit(model, x, **settings)
        with torch.no_grad(), circuit.applied(), circuit.reading([3], 0):
            outputs.append(model(x))
    assert outputs[0].shape == ((6, 4, 8, 9) if padding == "same" else (6, 4, 6, 7))
    torch.testing.assert_close(outputs[0], outputs[1], rtol=1e-5, atol=1e-6)
    with torch.no_grad():  # and with ideal converters and no noise, the float layer
        float_out = conv(x)
    if "out_bound" in settings:
        torch.testing.assert_close(outputs[0], float_out, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("padding, pads", [("same", (1, 2)), ("valid", (0, 0)), (2, (2, 2))])
def test_conv1d_read_noise_sums_under_any_padding_equal_the_padding_written_out(padding, pads):
    """Read noise of one std on every device without tiles takes each output's variance as a box sum of the
    squared (padded) inputs: a Conv1d with string or integer padding reads as the same convolution after an
    explicit ``ConstantPad1d``; changing ``padding`` after the layer is built is followed, as torch's forward does."""
    torch.manual_seed(4)
    conv, written = nn.Conv1d(3, 4, 4, dilation=1), nn.Conv1d(3, 4, 4)
    conv.padding = padding  # after construction: torch's forward reads it at call time
    written.load_state_dict(conv.state_dict())
    x = torch.randn(5, 3, 11)
    outputs = []
    for model in (nn.Sequential(conv).eval(), nn.Sequential(nn.ConstantPad1d(pads, 0.0), written).eval()):
        _, circuit = _circuit(model, x, read_sigma=0.2, adc_bits=8)
        assert circuit.layers[0].read_const == [pytest.approx(circuit.layers[0].read_const[0])]  # the box path
        with torch.no_grad(), circuit.applied(), circuit.reading([3], 0):
            outputs.append(model(x))
    with torch.no_grad():
        assert outputs[0].shape == conv(x).shape
    torch.testing.assert_close(outputs[0], outputs[1], rtol=1e-5, atol=1e-6)


def test_a_weight_tied_between_two_modules_is_refused_under_the_circuit():
    """The circuit runs one module per mapped weight: a second module sharing it would read as a plain layer (no
    DAC, ADC, output noise), silently; it is refused naming both, and the Gaussian chip still runs it."""
    model = nn.Sequential(nn.Linear(4, 4, bias=False), nn.ReLU(), nn.Linear(4, 4, bias=False)).eval()
    model[2].weight = model[0].weight
    x, y = torch.randn(8, 4), torch.randint(0, 4, (8,))
    with pytest.raises(SettingError, match=r"module '2' uses the weight '0.weight' of another module") as caught:
        montecarlo.evaluate(model, x, y, [0.0], runs=2, progress=False, device_model="aihwkit-inference")
    assert caught.value.setting in FIELDS
    with torch.no_grad():
        clean = 100.0 * float((model(x).argmax(1) == y).float().mean())
    assert montecarlo.evaluate(model, x, y, [0.0], runs=2, progress=False)["per_sigma"][0]["accuracy"]["mean"] == \
        pytest.approx(clean)


def test_per_column_scaling_with_ideal_converters_is_the_float_layer():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(2, 6, 3), nn.Flatten(), nn.Linear(6 * 16, 3)).eval()
    x = torch.randn(5, 2, 6, 6)
    _, circuit = _circuit(model, weight_scaling="column", tile_rows=7)
    with torch.no_grad(), circuit.applied():
        out = model(x)
    reference = model(x).detach()
    assert float((out - reference).abs().max()) <= 1e-6 * float(reference.abs().max())


def test_per_column_scaling_gives_each_column_its_own_gaussian_std():
    weight = torch.tensor([[1.0, -0.5, 0.2], [0.1, 0.05, -0.02]])  # column maxima 1 and 0.1
    crossbar, circuit = _circuit(_linear(weight), weight_scaling="column")
    generator = make_generator(0)
    with circuit.applied():  # chips of a model drawn while its circuit is applied follow its mapping
        draws = torch.stack([crossbar.sample_chip(0.1, generator)["0.weight"] for _ in range(4000)])
    outside = torch.stack([crossbar.sample_chip(0.1, generator)["0.weight"] for _ in range(1000)])
    assert float(outside[:, 1].std()) == pytest.approx(0.1 * crossbar.device_model.bit_factor, rel=0.1)  # layer-wide
    std = draws.std(0)
    factor = crossbar.device_model.bit_factor
    expected = torch.tensor([[0.1 * factor], [0.01 * factor]]).expand(2, 3)
    assert torch.allclose(std, expected, rtol=0.05)  # SE of a std over 4000 draws: 1.1 %


def test_per_column_scaling_gives_each_column_its_own_quantization_levels():
    weight = torch.tensor([[1.0, -0.5, 0.3], [0.1, 0.07, -0.02]])
    crossbar, circuit = _circuit(_linear(weight), device_model={"name": "Q", "quantize": True, "weight_bits": 4,
                                                                "device_bits": 2}, weight_scaling="column")
    with circuit.applied():
        chip = crossbar.sample_chip(0.0, make_generator(0))["0.weight"] + weight
    for row, top in ((0, 1.0), (1, 0.1)):  # 15 levels of each column's own max |W|
        levels = mapping.quantize(weight[row], torch.tensor(top), 4).float()
        assert torch.allclose(chip[row], levels * top / 15, atol=1e-7)
    assert float(chip[1, 2]) == pytest.approx(-0.02, abs=0.1 / 15 / 2)  # a layer-wide level 1/15 would read 0


def test_iterative_bound_management_rereads_a_saturated_vector_with_halved_inputs():
    weight = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.5, -0.5, 0.0, 0.0]])
    x = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0]])  # outputs 4 and 1 in units of s * u = 1
    model = _linear(weight)
    _, clipped = _circuit(model, input_management="abs_max", out_bound=3.0)
    _, managed = _circuit(model, input_management="abs_max", out_bound=3.0, bound_management="iterative")
    with torch.no_grad():
        with clipped.applied():
            assert model(x).tolist() == [[3.0, 0.0], [1.0, 0.5]]  # the first vector saturates at the bound
        with managed.applied():
            assert model(x).tolist() == [[4.0, 0.0], [1.0, 0.5]]  # read again at half the input: 2 < 3
        far = torch.tensor([[100.0, 0.0, 0.0, 0.0]]) @ torch.ones(4, 4) / 100  # every input 1: output 4
        _, tight = _circuit(model, far, input_management="abs_max", out_bound=0.1, bound_management="iterative",
                            dac_bits=7, converter_codes="sign_magnitude")
        with tight.applied():  # aihwkit's limit: factors 1, 2, 4, 8, 16 (16 > max_bm_res / inp_res = 15.75)
            assert float(model(far)[0, 0]) == pytest.approx(0.1 * 16)
    assert attempts(tight.settings) == 5


def test_sign_magnitude_codes_are_symmetric():
    assert full_scale_steps(8, True, symmetric=True) == 127 and full_scale_steps(8, True) == 128
    values = torch.tensor([-9.0, -3.4, 0.4, 2.6, 9.0])
    assert codes(values, 3, symmetric=True).tolist() == [-3.0, -3.0, 0.0, 3.0, 3.0]
    assert codes(values, 3).tolist() == [-4.0, -3.0, 0.0, 3.0, 3.0]


@pytest.mark.parametrize("settings, setting", [
    ({"out_noise": -0.1, "dac_bits": 8}, "out_noise"),
    ({"out_noise": 0.1}, "out_noise"),  # no input full scale to be relative to
    ({"input_management": "abs_max"}, "input_management"),  # manages no converter
    ({"bound_management": "iterative", "dac_bits": 8}, "bound_management"),  # no output bound
    ({"converter_codes": "sign_magnitude"}, "converter_codes"),
    ({"input_management": "max"}, "input_management"),
    ({"out_bound": 0, "dac_bits": 8}, "out_bound"),
    ({"weight_scaling": "row"}, "weight_scaling"),
    ({"out_noise": 0.1, "dac_bits": 4, "adc_bits": 4, "adc_mode": "sliced"}, "out_noise"),
])
def test_bad_periphery_settings_name_the_setting(settings, setting):
    with pytest.raises(SettingError) as error:
        EvalConfig(**settings).check()
    assert error.value.setting == setting


def test_per_column_scaling_of_a_layer_the_circuit_cannot_map_is_refused_before_work():
    model = nn.Sequential(nn.LSTM(4, 3))
    with pytest.raises(SettingError) as error:
        montecarlo.evaluate(model, torch.randn(2, 5, 4), torch.zeros(2, dtype=torch.long), [0.1], runs=2,
                            weight_scaling="column", progress=False)
    assert error.value.setting == "weight_scaling"


def test_per_vector_dac_codes_refuse_conv1d():
    model = nn.Sequential(nn.Conv1d(2, 3, 3)).eval()
    with pytest.raises(SettingError) as error:
        _circuit(model, torch.randn(4, 2, 8), dac_bits=6, input_management="abs_max")
    assert error.value.setting == "input_management"


@pytest.mark.parametrize("flags, expected", [
    (["--out-noise", "-0.1", "--dac-bits", "8"], "--out-noise"),
    (["--bound-management", "iterative"], "--bound-management"),
    (["--input-management", "abs_max"], "--input-management"),
    (["--device-model", "aihwkit-inference", "--adc-mode", "sliced"],  # a setting the preset filled: its flag
     "the chip preset aihwkit-inference sets out_noise = 0.06: out_noise runs with adc_mode 'analog' only"),
    (["--device-model", "aihwkit-inference", "--adc-mode", "sliced"], "(give --out-noise to change it)"),
])
def test_the_command_line_refuses_bad_periphery_flags_with_one_line_and_writes_nothing(flags, expected, run_dir,
                                                                                         capsys):
    before = sorted(p.name for p in run_dir.iterdir())
    assert main(["evaluate", str(run_dir), "--quiet", "--runs", "2", *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("neft: error: ") and expected in err[0]
    assert sorted(p.name for p in run_dir.iterdir()) == before


def _pcm_year():
    from neft.chip import devices

    return devices.get("PCM-chip").with_chip(drift_time=3.15e7)


def test_drift_compensation_on_the_outputs_carries_the_same_chip_and_its_factor():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(12, 6), nn.ReLU(), nn.Linear(6, 3)).eval()
    weights_chip = Crossbar(model, _pcm_year()).sample_chip(0.05, make_generator(9))
    crossbar, circuit = _circuit(model, device_model=_pcm_year(), drift_compensation_at="outputs")
    generator = make_generator(9)
    with circuit.applied():
        outputs_chip = crossbar.sample_chip(0.05, generator)
    assert set(outputs_chip) == {"0.weight", "2.weight", "0.neft_drift_alpha", "2.neft_drift_alpha"}
    for name, alpha in (("0.weight", "0.neft_drift_alpha"), ("2.weight", "2.neft_drift_alpha")):
        w = dict(model.named_parameters())[name].detach()
        assert float(outputs_chip[alpha]) > 1.05  # a year of drift (nu ~ 0.06: (3.15e7 / 20)^-0.06 = 0.43) undone
        assert torch.allclose(outputs_chip[alpha] * (w + outputs_chip[name]), w + weights_chip[name], atol=1e-6)
    # the generator ends where one draw leaves it: the next chip is the one after
    assert torch.equal(generator.get_state(), (lambda g: (Crossbar(model, _pcm_year()).sample_chip(0.05, g),
                                                         g.get_state())[1])(make_generator(9)))


def test_drift_compensation_on_the_outputs_with_ideal_converters_gives_the_weights_placement(lenet):
    model, images, labels, calibration = lenet
    per_run = [montecarlo.evaluate(model, images[:50], labels[:50], [0.05], runs=3, device_model=_pcm_year(),
                                   drift_compensation_at=at, progress=False, chips_per_pass=1, compile=False,
                                   precision="fp32")["per_sigma"][0]["accuracy"]["per_run"]
               for at in ("weights", "outputs")]
    assert per_run[0] == per_run[1]


def test_drift_compensation_on_the_outputs_scales_the_digitised_outputs():
    weight = torch.tensor([[0.9, -0.3, 0.2], [0.1, 0.4, -0.8]])
    model = _linear(weight)
    x = torch.tensor([[1.0, 0.5, -0.25]])
    crossbar, circuit = _circuit(model, x, device_model=_pcm_year(), adc_bits=3, out_bound=1.0,
                                 input_management="abs_max", drift_compensation_at="outputs")
    with torch.no_grad(), circuit.applied():
        chip = crossbar.sample_chip(0.0, make_generator(1))
        alpha, drifted = chip["0.neft_drift_alpha"], weight + chip["0.weight"]
        out = torch.func.functional_call(model, crossbar.perturbed_weights(chip), (x,))
    u = weight.abs().max()  # the layer's clean max |W|; s = max |x| = 1; 3-bit ADC: step 1/4, codes -4 .. 3
    expected = torch.clamp(torch.round(x @ drifted.T / u * 4), -4, 3) / 4 * u * alpha
    assert torch.allclose(out, expected, atol=1e-6)
    folded = torch.clamp(torch.round(x @ (alpha * drifted).T / u * 4), -4, 3) / 4 * u
    assert not torch.allclose(expected, folded, atol=1e-3)  # the weights' placement reads other codes


def test_drift_compensation_on_the_outputs_needs_the_device_models_compensation():
    with pytest.raises(SettingError) as error:
        _circuit(_linear(torch.ones(2, 2)), drift_compensation_at="outputs")
    assert error.value.setting == "drift_compensation_at"


def test_the_aihwkit_inference_chip_preset_fills_the_circuit_and_an_explicit_setting_wins():
    config = EvalConfig(device_model="aihwkit-inference", adc_bits=8).check()
    assert (config.dac_bits, config.adc_bits, config.out_bound, config.out_noise, config.tile_rows) == (7, 8, 12.0,
                                                                                                        0.06, 512)
    assert (config.input_management, config.bound_management, config.converter_codes, config.weight_scaling,
            config.drift_compensation_at) == ("abs_max", "iterative", "sign_magnitude", "off", "outputs")
    chip = config.chip()
    from neft.chip import devices

    pcm = devices.get("PCM-aihwkit")
    assert chip.device_model.name == "aihwkit-inference"
    assert chip.device_model.prog_noise_coeffs == pcm.prog_noise_coeffs and chip.device_model.drift_compensation
    assert chip.circuit.reads and chip.circuit.managed



def test_an_error_in_a_setting_the_chip_preset_filled_names_the_preset():
    """``tile_rows=None`` over ``aihwkit-inference`` leaves the preset's equal tile split without tiles: the error
    names the preset that set ``tile_split`` (the caller never gave it), in Python as on the command line."""
    model, x, y = nn.Sequential(nn.Linear(4, 3)).eval(), torch.randn(8, 4), torch.randint(0, 3, (8,))
    with pytest.raises(SettingError, match=r"^the chip preset aihwkit-inference sets tile_split = 'equal': "
                                           r"tile_split sets how a layer is split .* needs tile_rows") as caught:
        montecarlo.evaluate(model, x, y, [0.0], runs=2, device_model="aihwkit-inference", tile_rows=None,
                            progress=False)
    assert caught.value.setting == "tile_split"
    with pytest.raises(SettingError, match=r"^tile_split sets how"):  # given by the caller: no preset named
        montecarlo.evaluate(model, x, y, [0.0], runs=2, tile_split="equal", dac_bits=8, progress=False)


def test_a_setting_given_at_its_default_value_wins_over_the_chip_preset():
    """out_noise=0, bound_management="none", weight_scaling="layer" are the defaults of a plain circuit; given with
    aihwkit-inference they must turn the preset's values off, in Python (constructor, dataclass replace) and from the
    command line (a flag written at its default value), not be filled in again by the preset."""
    from argparse import Namespace

    from neft.chip.chip_presets import replace_given
    from neft.cli.chip_arguments import circuit_settings
    from neft.training import TrainConfig

    off = {"out_noise": 0.0, "bound_management": "none", "weight_scaling": "layer"}
    for config in (EvalConfig(device_model="aihwkit-inference", **off),
                   replace_given(EvalConfig(), device_model="aihwkit-inference", **off),
                   replace_given(EvalConfig(device_model="aihwkit-inference", **off), runs=7),
                   TrainConfig(model="lenet5", dataset="mnist-5k", device_model="aihwkit-inference", **off)):
        checked = config.check()
        assert (checked.out_noise, checked.bound_management, checked.weight_scaling) == (0.0, "none", "layer")
        assert (checked.adc_bits, checked.input_management, checked.out_bound) == (9, "abs_max", 12.0)  # the rest
    argv = ["evaluate", "run", "--device-model", "aihwkit-inference", "--out-noise", "0", "--adc-bits=8"]
    args = Namespace(argv=argv, command="evaluate", device_model="aihwkit-inference", **{
        name: getattr(EvalConfig(), name) for name in FIELDS})
    args.out_noise, args.adc_bits = 0.0, 8
    assert circuit_settings(args, given=True) == {"out_noise": 0.0, "adc_bits": 8}
    checked = EvalConfig(device_model="aihwkit-inference", **circuit_settings(args, given=True)).check()
    assert (checked.out_noise, checked.adc_bits, checked.dac_bits) == (0.0, 8, 7)
    import copy

    for other in (copy.copy(checked), copy.deepcopy(checked), replace_given(checked, runs=3)):  # copies keep it
        assert other.check().out_noise == 0.0 and other.adc_bits == 8
    later = EvalConfig(device_model="aihwkit-inference")
    later.adc_bits = 6  # set after construction, to another value than the default: kept
    assert (later.check().adc_bits, later.dac_bits) == (6, 7)

def test_a_chip_preset_given_chip_flags_in_training_keeps_its_periphery():
    """`neft train --device-model aihwkit-inference --drift-time T` records the preset's device model as a dict
    (the flag applied); the preset's circuit must still come with it, not a bare device."""
    from argparse import Namespace

    from neft.cli.chip_arguments import training_device_model
    from neft.training import TrainConfig

    args = Namespace(device_model="aihwkit-inference", drift_time=3.15e7)
    model = training_device_model(args)
    assert isinstance(model, dict) and model["drift_time"] == 3.15e7
    config = TrainConfig(model="lenet5", dataset="mnist-5k", device_model=model, sigma=0.0).check()
    assert (config.tile_rows, config.dac_bits, config.adc_bits, config.out_noise, config.input_management,
            config.drift_compensation_at) == (512, 7, 9, 0.06, "abs_max", "outputs")


def test_drift_compensation_turned_off_over_an_aihwkit_preset_drops_how_it_would_read_and_act():
    """--no-drift-compensation with PCM-aihwkit / aihwkit-inference was refused, naming settings the preset set
    (drift_compensation_input, then drift_compensation_at, then compensation_readout)."""
    from argparse import Namespace

    from neft.chip import devices
    from neft.cli.chip_arguments import training_device_model
    from neft.training import TrainConfig

    off = devices.get("PCM-aihwkit").with_chip(drift_compensation=False)
    assert off.name == "PCM-aihwkit no-drift-compensation" and not off.drift_compensation
    on_again = off.with_chip(drift_compensation=True)  # how it reads a layer was kept: aihwkit's one-hot readout
    assert (on_again.drift_compensation_input, on_again.drift_compensation) == ("one-hot", True)
    for flags in ({"drift_compensation": False}, {"quantize": False}):
        config = EvalConfig(device_model="aihwkit-inference", **flags).check()
        assert (config.drift_compensation_at, config.compensation_readout, config.adc_bits) == (
            EvalConfig().drift_compensation_at, EvalConfig().compensation_readout, 9)
        assert not config.chip().device_model.drift_compensation
    from neft.chip.chip_presets import chip_preset

    own = dict(devices.get("RRAM1").to_dict(), name="aihwkit-inference clone")  # a user's own model, not the preset
    assert chip_preset(own) is None and chip_preset(dict(own, name="aihwkit-inference stuck-on=0.01")) is not None
    model = training_device_model(Namespace(device_model="aihwkit-inference", drift_compensation=False))
    trained = TrainConfig(model="lenet5", dataset="mnist-5k", device_model=model, sigma=0.0).check()
    assert (trained.drift_compensation_at, trained.out_noise) == (EvalConfig().drift_compensation_at, 0.06)


@pytest.mark.parametrize("method", ["vanilla", "noise-injection", "ovf", "irs", "rcg", "lipschitz", "correctnet",
                                    "distill"])
def test_every_objective_trains_through_the_whole_periphery_with_output_noise_drawn_per_step(method):
    from neft import models
    from neft.training import objectives

    torch.manual_seed(4)
    model = models.create("lenet5", 10, 1, init="torch")
    x, y = torch.randn(8, 1, 32, 32), torch.randint(0, 10, (8,))
    teacher = models.create("lenet5", 10, 1, init="torch").eval() if method == "distill" else None
    sigma = 0.0 if method == "vanilla" else 0.05
    objective = objectives.create(method, model, x, 10, sigma=sigma, beta=0.1 if method in ("ovf", "irs") else 0.0,
                                  generator=make_generator(0), teacher=teacher)
    _, circuit = _circuit(model, x, dac_bits=7, adc_bits=9, out_bound=12.0, out_noise=0.06, tile_rows=64,
                          input_management="abs_max", bound_management="iterative", weight_scaling="column",
                          converter_codes="sign_magnitude")
    model.train()
    with circuit.applied():
        first, _ = objective.loss(model, x, y)
        first.backward()
        second, _ = objective.loss(model, x, y)
    assert torch.isfinite(first) and float(first.detach()) != float(second.detach())  # fresh noise every forward
    first_layer = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert float(first_layer.weight.grad.abs().sum()) > 0  # straight-through gradients reach the weights


def test_a_run_trained_on_a_chip_preset_is_evaluated_on_the_whole_preset_by_default(run_dir, tmp_path):
    """Without a device model given, a run is read on the one it trained on; for a chip preset that is the devices
    and the periphery (the results were named aihwkit-inference while the circuit was left ideal)."""
    import shutil

    from neft.chip import devices
    from neft.runs.evaluate import evaluate_run

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    saved = torch.load(run / "checkpoint.pt", weights_only=True)
    saved["device_model"] = devices.get("aihwkit-inference").to_dict()
    torch.save(saved, run / "checkpoint.pt")
    result = evaluate_run(run, sigmas=[0.0], runs=2, test_subset=20, progress=False)
    evaluation = result["evaluation"]
    assert (evaluation["tile_rows"], evaluation["dac_bits"], evaluation["adc_bits"], evaluation["out_noise"]) == (
        512, 7, 9, 0.06)


def test_aihwkit_inference_calibrates_nothing_and_needs_no_calibration_images(lenet):
    """Per-vector input scaling and a fixed output bound leave no converter range to calibrate: aihwkit-inference
    runs without calibration images, with the same chips as with them (no calibration forward, no record)."""
    model, images, labels, calibration = lenet
    assert not CircuitSettings(dac_bits=7, adc_bits=9, input_management="abs_max", out_bound=12.0).calibrated
    assert CircuitSettings(dac_bits=7).calibrated and CircuitSettings(adc_bits=9).calibrated  # a range to calibrate
    options = {"runs": 3, "progress": False, "precision": "fp32", "device_model": "aihwkit-inference"}
    without = montecarlo.evaluate(model, images, labels, [0.0], **options)["per_sigma"][0]
    with_images = montecarlo.evaluate(model, images, labels, [0.0], calibration_images=calibration,
                                      **options)["per_sigma"][0]
    assert without["accuracy"]["per_run"] == with_images["accuracy"]["per_run"]
