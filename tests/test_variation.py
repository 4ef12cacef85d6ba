"""Model-agnostic weight perturbation."""

import pytest
import torch
import torch.nn.utils.prune
from torch import nn

from neft import Crossbar, DeviceModel, make_generator, mapped_weight_names, models, run_seed


class Odd(nn.Module):
    """Grouped, depthwise, dilated and 1-d convolutions inside nested Sequentials."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(4, 8, 3, padding=1, groups=2),
            nn.Sequential(nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=8), nn.BatchNorm2d(8), nn.ReLU()),
        )
        self.seq = nn.Conv1d(8, 4, 1)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        x = self.body(x).mean(dim=3)
        return self.head(self.seq(x).mean(dim=2))


def test_mapped_weights_cover_every_conv_and_linear():
    names = mapped_weight_names(Odd())
    assert names == ["body.0.weight", "body.1.0.weight", "seq.weight", "head.weight"]
    assert mapped_weight_names(Odd(), exclude=["head"]) == names[:3]
    assert mapped_weight_names(Odd(), include=["body.*"]) == names[:2]


def test_model_without_mapped_weight_is_an_error():
    with pytest.raises(ValueError, match="no crossbar-mapped weight"):
        Crossbar(nn.Sequential(nn.ReLU(), nn.BatchNorm1d(3)))


def test_sigma_zero_is_bit_identical_and_params_never_change():
    torch.manual_seed(0)
    model = Odd().eval()
    x = torch.randn(5, 4, 6, 6)
    clean = model(x)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    crossbar = Crossbar(model)
    assert torch.equal(crossbar.forward(x, sigma=0.0), clean)
    noisy = crossbar.forward(x, sigma=0.3, generator=make_generator(1))
    assert not torch.allclose(noisy, clean)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_every_mapped_layer_perturbed_and_biases_bn_untouched():
    model = Odd()
    chip = Crossbar(model).sample_chip(0.2, make_generator(0))
    assert set(chip) == set(mapped_weight_names(model))
    for name, noise in chip.items():
        assert noise.abs().sum() > 0, name
        assert noise.shape == dict(model.named_parameters())[name].shape


def test_gradients_reach_clean_weights_as_through_w_plus_noise():
    torch.manual_seed(0)
    model = nn.Linear(3, 2, bias=False)
    x = torch.randn(4, 3)
    crossbar = Crossbar(model)
    chip = crossbar.sample_chip(0.5, make_generator(3))
    crossbar.forward(x, chip=chip).sum().backward()
    expected = x.sum(0).expand(2, 3)  # d/dW sum((W + dW) x) = sum_b x_b for every output row
    assert torch.allclose(model.weight.grad, expected)


def test_all_zero_layer_gives_zero_noise_and_finite_output():
    model = nn.Linear(3, 2)
    nn.init.zeros_(model.weight)
    crossbar = Crossbar(model)
    chip = crossbar.sample_chip(0.4, make_generator(0))
    assert torch.equal(chip["weight"], torch.zeros(2, 3))
    assert torch.isfinite(crossbar.forward(torch.randn(2, 3), chip=chip)).all()


def test_same_seed_same_chip_different_seed_different():
    model = models.create("lenet5", 10, 1)
    crossbar = Crossbar(model, "FeFET2")
    a = crossbar.sample_chip(0.1, make_generator(7))
    b = crossbar.sample_chip(0.1, make_generator(7))
    c = crossbar.sample_chip(0.1, make_generator(8))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(not torch.equal(a[k], c[k]) for k in a)


def test_cpu_chip_is_the_device_models_draws_in_model_order():
    """Seeded replay on CPU is unchanged by the device-safe draw: the chip is DeviceModel.sample, layer by layer."""
    crossbar = Crossbar(models.create("lenet5", 10, 1), "FeFET2")
    chip = crossbar.sample_chip(0.1, make_generator(7))
    generator = make_generator(7)
    for name, w in crossbar.weights().items():
        expected = crossbar.device_model.sample(w.detach(), 0.1, generator)
        assert chip[name].device == w.device and torch.equal(chip[name], expected), name


def test_a_generator_on_another_device_draws_there_and_returns_the_noise_to_the_weights(monkeypatch):
    """torch refuses a CPU generator for CUDA draws: each layer is drawn on the generator's device and moved back.
    This machine may have no second device, so the draw is recorded: 'meta' stands in for the generator's device."""
    crossbar = Crossbar(nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2)))
    seen = []

    def sample(_device_model, weight, sigma, generator, censor_k=None):
        seen.append((weight.device.type, tuple(weight.shape), generator))
        return torch.full(weight.shape, sigma)  # on the CPU, like the real draw on a CPU generator

    monkeypatch.setattr(DeviceModel, "sample", sample)
    generator = type("Elsewhere", (), {"device": torch.device("meta")})()
    chip = crossbar.sample_chip(0.25, generator)
    assert seen == [("meta", (4, 3), generator), ("meta", (2, 4), generator)]
    assert all(dw.device.type == "cpu" and torch.equal(dw, torch.full_like(dw, 0.25)) for dw in chip.values())


def test_noise_std_per_layer_follows_device_model():
    model = models.create("vgg8", 10, 1, width=0.5)
    crossbar = Crossbar(model)
    chip = crossbar.sample_chip(0.1, make_generator(0))
    for name, w in crossbar.weights().items():
        expected = 0.1 * 0.777628 * float(w.detach().abs().max())
        tolerance = 5 / (2 * w.numel()) ** 0.5  # 5 standard errors of a sample std
        assert float(chip[name].std()) == pytest.approx(expected, rel=tolerance), name


def test_forward_needs_exactly_one_of_sigma_or_chip():
    crossbar = Crossbar(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="exactly one"):
        crossbar.forward(torch.ones(1, 2))
    with pytest.raises(ValueError, match="sigma must be"):
        crossbar.forward(torch.ones(1, 2), sigma=-1)


def test_run_seed_depends_only_on_its_inputs():
    assert run_seed(0, 0.1, 3) == run_seed(0, 0.1 + 1e-12, 3)
    assert len({run_seed(0, 0.1, r) for r in range(100)} | {run_seed(1, 0.1, 0), run_seed(0, 0.2, 0)}) == 102


def test_tied_weights_are_one_set_of_devices():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 6), nn.Linear(6, 3))
    model[2].weight = model[0].weight
    crossbar = Crossbar(model)
    assert crossbar.names == ["0.weight", "3.weight"]
    chip = crossbar.sample_chip(0.2, make_generator(1))
    x = torch.randn(4, 6)
    tied = model[0].weight + chip["0.weight"]  # both layers see the same perturbed devices
    h = torch.relu(torch.nn.functional.linear(x, tied, model[0].bias))
    h = torch.nn.functional.linear(h, tied, model[2].bias)
    expected = torch.nn.functional.linear(h, model[3].weight + chip["3.weight"], model[3].bias)
    assert torch.allclose(crossbar.forward(x, chip=chip), expected, atol=1e-6)


@pytest.mark.parametrize("reparametrize, fix", [
    (lambda layer: torch.nn.utils.prune.l1_unstructured(layer, "weight", 0.3), "prune.remove"),
    (lambda layer: torch.nn.utils.parametrizations.weight_norm(layer), "remove_parametrizations"),
    (lambda layer: torch.nn.utils.parametrizations.spectral_norm(layer), "remove_parametrizations"),
    (lambda layer: torch.nn.utils.weight_norm(layer), "remove_weight_norm"),
])
def test_pruned_or_parametrized_weights_are_refused_not_left_clean(reparametrize, fix):
    import warnings

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's own deprecation of the legacy weight_norm
        reparametrize(model[0])
    with pytest.raises(ValueError, match=rf"layer '0' computes its weight at every forward .*{fix}"):
        Crossbar(model)
    Crossbar(model, exclude=["0"])  # left digital on purpose: fine


def test_matrix_weights_left_digital_are_named_once():
    class WithEmbedding(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed, self.head = nn.Embedding(10, 4), nn.Linear(4, 2)

        def forward(self, x):
            return self.head(self.embed(x))

    with pytest.warns(UserWarning, match=r"1 matrix-shaped parameter\(s\) of WithEmbedding stay digital.*embed.weight"):
        Crossbar(WithEmbedding())
    with pytest.warns(UserWarning):
        crossbar = Crossbar(WithEmbedding())
    assert [(row.name, row.count, row.placement.split(":")[0]) for row in crossbar.summary()] == [
        ("embed.weight", 40, "digital"), ("head.weight", 8, "crossbar"), ("head.bias", 2, "digital")]
    assert ("neft maps the weights of nn.Conv1d/2d/3d, nn.Linear, nn.LSTM/GRU/RNN and nn.MultiheadAttention only"
            in crossbar.summary()[0].placement)


def test_summary_accounts_for_every_parameter_with_its_reason():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 3), nn.Linear(3, 2))
    rows = Crossbar(model, exclude=["4"]).summary()
    assert [row.name for row in rows] == [name for name, _ in model.named_parameters()]
    assert sum(row.count for row in rows) == sum(p.numel() for p in model.parameters())
    placements = {row.name: row.placement for row in rows}
    assert placements["0.weight"] == placements["3.weight"] == "crossbar"
    assert placements["0.bias"].startswith("digital: bias")
    assert (placements["1.weight"].startswith("digital: normalisation")
            and placements["1.bias"] == placements["1.weight"])
    assert placements["4.weight"] == "digital: layer left off by the include/exclude patterns"
