"""NeFT objectives (docs/method.md, 'Negative feedback loss', 'OVF', 'IRS')."""

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from neft import Crossbar, make_generator, models
from neft.training import objectives
from neft.training.objectives import feedback, negative_feedback_loss


def test_negative_feedback_loss_by_hand_n1():
    z = torch.tensor([[2.0, 0.0]])
    z1 = torch.tensor([[1.0, 3.0]])
    # z_nf = (z - 0.1 * z1) / 2 = [0.95, -0.15]; CE for class 0 = log(1 + exp(-1.1))
    expected = math.log(1 + math.exp(-1.1))
    assert float(negative_feedback_loss(z, [z1], 0.1, torch.tensor([0]))) == pytest.approx(expected, rel=1e-6)


def test_negative_feedback_loss_by_hand_n3():
    z = torch.tensor([[1.0, 2.0, 0.0]])
    feedback = [torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([[0.0, 10.0, 0.0]]), torch.tensor([[0.0, 0.0, 100.0]])]
    # sum 10^-(i-1) z_i = [1, 1, 1]; z_nf = (z - 0.1) / 4 = [0.225, 0.475, -0.025]
    z_nf = [0.225, 0.475, -0.025]
    expected = -z_nf[1] + math.log(sum(math.exp(v) for v in z_nf))
    assert float(negative_feedback_loss(z, feedback, 0.1, torch.tensor([1]))) == pytest.approx(expected, rel=1e-6)


def test_beta_zero_is_cross_entropy_of_scaled_logits():
    z = torch.randn(5, 4)
    y = torch.randint(0, 4, (5,))
    loss = negative_feedback_loss(z, [torch.randn(5, 4)] * 3, 0.0, y)
    assert torch.allclose(loss, F.cross_entropy(z / 4, y))
    with pytest.raises(ValueError, match="beta"):
        negative_feedback_loss(z, [z], -0.1, y)


def _grads(model, loss):
    model.zero_grad()
    loss.backward()
    return [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("method, n", [("ovf", 3), ("irs", 3)])
def test_sigma_zero_beta_zero_equals_plain_objective(method, n):
    torch.manual_seed(0)
    model = models.create("vgg8", 10, 1, width=0.125)
    x, y = torch.randn(8, 1, 32, 32), torch.randint(0, 10, (8,))
    objective = objectives.create(method, model, x, 10, sigma=0.0, beta=0.0,
                                  **({"sigma_block": 0.0} if method == "irs" else {}))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    loss, _ = objective.loss(model, x, y)
    grads = _grads(model, loss)
    model.load_state_dict(state)  # undo the BatchNorm statistics updates of the objective's forwards
    plain = F.cross_entropy(model(x) / (n + 1), y)
    assert torch.allclose(loss, plain, atol=1e-6)
    for got, want in zip(grads, _grads(model, plain)):
        assert torch.allclose(got, want, atol=1e-6)


@pytest.mark.parametrize("method", ["ovf", "irs"])
def test_beta_zero_skips_the_feedback_forwards_with_the_same_loss_and_gradients(method, monkeypatch):
    """Counted forwards: at beta 0 only the backbone runs (1 instead of 4 forwards for OVF, no snapshot-head
    forward for IRS); loss and gradients equal, bit for bit, those of every feedback forward weighted by beta 0."""
    torch.manual_seed(2)
    model = models.create("lenet5", 10, 1, 0.5)
    x, y = torch.randn(8, 1, 32, 32), torch.randint(0, 10, (8,))

    def run(beta, heads=None):
        objective = objectives.create(method, model, x, 10, sigma=0.2, beta=beta, generator=make_generator(3))
        if heads is not None:
            objective.modules().load_state_dict(heads)
        calls = []
        hooks = [m.register_forward_hook(lambda m, _i, _o: calls.append(m is model))
                 for m in [model, *objective.modules()]]
        loss, logs = objective.loss(model, x, y)
        for hook in hooks:
            hook.remove()
        return objective, loss, _grads(model, loss), calls, logs

    skipping, loss, grads, calls, logs = run(0.0)
    feedback_terms = 3 if method == "ovf" else len(skipping.taps)
    assert calls == [True]  # one forward, the backbone's
    # the full computation: every feedback forward (same heads, same generator seed), combined with beta 0
    monkeypatch.setattr(feedback, "negative_feedback_loss",
                        lambda z, feedback, _beta, target: negative_feedback_loss(z, feedback, 0.0, target))
    _, full_loss, full_grads, full_calls, _ = run(1.0, skipping.modules().state_dict())
    assert full_calls == ([True] * 4 if method == "ovf" else [True] + [False] * feedback_terms)
    assert torch.equal(loss, full_loss)
    for got, want in zip(grads, full_grads):
        assert torch.equal(got, want)
    if method == "irs":
        assert math.isnan(logs["head1_acc"]) and all(p.grad is None for p in skipping.modules().parameters())


class _Recorder(objectives.OVF):
    """OVF that records every perturbation it draws."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.draws = []

    def noisy_forward(self, model, x, sigma):
        crossbar = self.crossbar(model)
        chip = crossbar.sample_chip(sigma, self.generator)
        self.draws.append((sigma, chip))
        return crossbar.forward(x, chip=chip)


def test_ovf_draws_four_perturbations_oriented_ones_larger_on_every_resnet_layer():
    torch.manual_seed(0)
    model = models.create("resnet18", 10, 3, width=0.25)
    objective = _Recorder(sigma=0.1, beta=0.1, generator=make_generator(0))
    objective.loss(model, torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,)))
    sigmas = [s for s, _ in objective.draws]
    assert sigmas == pytest.approx([0.1, 0.25, 0.2, 0.15])
    chips = [chip for _, chip in objective.draws]
    names = Crossbar(model).names
    assert any(".conv1." in n for n in names) and any("shortcut" in n for n in names)
    for name in names:  # block convolutions included: the release's ResNet-18 bug is not reproduced
        stds = [float(chip[name].std()) for chip in chips]
        assert stds[1] > stds[2] > stds[3] > stds[0], name
        assert stds[1] / stds[0] == pytest.approx(2.5, rel=0.35), name
        assert not torch.equal(chips[0][name], chips[3][name])


def test_irs_heads_on_vgg8_and_resnet18_follow_spec():
    vgg = objectives.create("irs", models.create("vgg8", 10, 1), torch.randn(2, 1, 32, 32), 10, sigma=0.1)
    assert [h.in_features for h in vgg.heads] == [2304, 2048, 2304]
    resnet = objectives.create("irs", models.create("resnet18", 10, 3), torch.randn(2, 3, 32, 32), 10, sigma=0.1)
    assert [h.in_features for h in resnet.heads] == [2304, 2304, 2048, 2304]
    assert [p for _, p in resnet.taps] == [6, 6, 4, 3]


class UserNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(3, 5, 3), nn.ReLU())
        self.middle = nn.Sequential(nn.Conv2d(5, 7, 3, stride=2), nn.ReLU())
        self.out = nn.Linear(7, 4)

    def forward(self, x):
        return self.out(self.middle(self.encoder(x)).mean(dim=(2, 3)))


def test_irs_on_a_user_model_with_named_taps_needs_no_sizes():
    model = UserNet()
    objective = objectives.create("irs", model, torch.randn(1, 3, 20, 20), 4, sigma=0.1, beta=0.1,
                                  taps=["encoder", ("middle", 2)])
    assert [h.in_features for h in objective.heads] == [5 * 16, 7 * 4]
    x, y = torch.randn(6, 3, 20, 20), torch.randint(0, 4, (6,))
    loss, logs = objective.loss(model, x, y)
    loss.backward()
    assert set(logs) == {"acc", "ce", "feedback", "head1_acc", "head2_acc"}
    with torch.no_grad():  # percent, like every accuracy neft reports; sigma 0.1 noise rarely flips 6 argmaxes
        clean = 100 * (model(x).argmax(1) == y).double().mean().item()
    accuracies = {key: value for key, value in logs.items() if key.endswith("acc")}
    assert all(0 <= value <= 100 and value * 6 / 100 == pytest.approx(round(value * 6 / 100))
               for value in accuracies.values())
    assert logs["ce"] > 0 and math.isfinite(logs["feedback"])
    assert abs(logs["acc"] - clean) <= 100 / 6 * 3
    assert all(p.grad is not None for p in objective.heads.parameters())
    assert model.encoder[0].weight.grad.abs().sum() > 0
    assert not model.encoder[0]._forward_hooks  # hooks are removed after each loss
    with pytest.raises(ValueError, match="declares no IRS snapshot points"):
        objectives.create("irs", model, torch.randn(1, 3, 20, 20), 4, sigma=0.1)
    with pytest.raises(ValueError, match="name no module"):
        objectives.create("irs", model, torch.randn(1, 3, 20, 20), 4, sigma=0.1, taps=["decoder"])


def test_default_betas_from_spec_table():
    assert objectives.default_beta("ovf", "vgg8", "mnist") == 1e-3
    assert objectives.default_beta("irs", "vgg8", "cifar10") == 1e-1
    assert objectives.default_beta("ovf", "resnet18", "tiny-imagenet") == 1e-2
    assert objectives.default_beta("irs", "vgg8", "fashion-mnist") == 1e-2
    assert objectives.default_beta("noise-injection", "vgg8", "mnist") == 0.0
    with pytest.raises(ValueError, match="unknown method"):
        objectives.default_beta("dropout", "vgg8", "mnist")
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    for name, value, says in (("sigma_block", 0.3, "sigma_block is the noise of IRS's feedback blocks"),
                              ("taps", ["1"], "taps are the snapshot points of IRS")):  # not silently ignored
        with pytest.raises(SettingError, match=says) as error:
            objectives.create("noise-injection", model, torch.zeros(1, 4), 2, sigma=0.1, **{name: value})
        assert error.value.setting == name
    with pytest.raises(TypeError, match="takes the model's name"):  # the network itself: a message, not .lower()
        objectives.default_beta("ovf", nn.Linear(2, 2), "mnist")
    assert objectives.default_beta("ovf", "my-net", "mnist") == 1e-3  # your own network: the fallback


def test_noise_injection_temperature_at_sigma_zero_is_scaled_cross_entropy():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5))
    x, y = torch.randn(16, 6) * 10, torch.randint(0, 5, (16,))
    for temperature in (1.0, 4.0, 0.5):
        objective = objectives.create("noise-injection", model, x, 5, sigma=0.0, temperature=temperature)
        loss, _ = objective.loss(model, x, y)
        assert abs(loss.item() - F.cross_entropy(model(x) / temperature, y).item()) < 1e-5
    # T = 4 is a real change: the loss differs from plain cross-entropy by more than rounding
    plain = F.cross_entropy(model(x), y).item()
    assert abs(objectives.create("noise-injection", model, x, 5, sigma=0.0, temperature=4.0)
               .loss(model, x, y)[0].item() - plain) > 0.1


def test_ovf_beta_zero_equals_noise_injection_at_temperature_n_plus_1_with_the_same_noise():
    """OVF draws the backbone's perturbation first; with beta 0 its loss is CE(z / 4) of that same forward."""
    torch.manual_seed(1)
    model = models.create("lenet5", 10, 1, 0.5)
    x, y = torch.randn(8, 1, 32, 32), torch.randint(0, 10, (8,))
    ovf = objectives.create("ovf", model, x, 10, sigma=0.3, beta=0.0, generator=make_generator(5))
    ni = objectives.create("noise-injection", model, x, 10, sigma=0.3, temperature=len(objectives.OVF_OFFSETS) + 1,
                           generator=make_generator(5))
    ovf_loss, ni_loss = ovf.loss(model, x, y)[0], ni.loss(model, x, y)[0]
    assert abs(ovf_loss.item() - ni_loss.item()) < 1e-5
    assert abs(ni_loss.item() - F.cross_entropy(model(x) / 4, y).item()) > 1e-3  # the noise is really there


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_temperature_is_a_clear_error(bad):
    model = nn.Linear(3, 2)
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        objectives.create("noise-injection", model, torch.randn(1, 3), 2, sigma=0.1, temperature=bad)
    with pytest.raises(ValueError, match="temperature applies to noise-injection only"):
        objectives.create("ovf", model, torch.randn(1, 3), 2, sigma=0.1, temperature=4.0)


def test_irs_head_reads_the_tapped_output_even_when_an_inplace_op_follows():
    torch.manual_seed(2)
    model = models.create("lenet5", 10, 1, 1.0, init="torch")  # features.0 = conv, ReLU(inplace=True), pool
    x, y = torch.randn(6, 1, 32, 32), torch.randint(0, 10, (6,))
    objective = objectives.create("irs", model, x, 10, sigma=0.0, beta=0.5, taps=["features.0.0"])
    loss, _ = objective.loss(model, x, y)
    conv = model.features[0][0](x)
    assert (conv < 0).any()  # the ReLU would change it
    expected = negative_feedback_loss(model(x), [objective.heads[0](conv)], 0.5, y)
    assert abs(loss.item() - expected.item()) < 1e-5


def test_irs_tap_the_forward_never_calls_is_refused_at_creation():
    class WithSpare(nn.Module):
        def __init__(self):
            super().__init__()
            self.body, self.spare = nn.Linear(4, 3), nn.Linear(4, 4)

        def forward(self, x):
            return self.body(x)

    model = WithSpare()
    with pytest.raises(ValueError, match=r"\['spare'\] are modules that WithSpare's forward never calls"):
        objectives.create("irs", model, torch.randn(2, 4), 3, sigma=0.1, beta=0.1, taps=["spare"])


@pytest.mark.parametrize("method", ["vanilla", "noise-injection", "ovf", "irs", "rcg", "lipschitz"])
def test_building_an_objective_leaves_the_model_exactly_as_it_was(method):
    """Every train/eval flag (a frozen BatchNorm included), every parameter and buffer (BatchNorm running
    statistics, num_batches_tracked) are unchanged after objectives.create, although IRS runs a forward to size
    its heads."""
    torch.manual_seed(0)
    model = models.create("vgg8", 10, 1, width=0.25)
    model.train()
    model.features[0][1].eval()  # a frozen BatchNorm inside a training model
    flags = [m.training for m in model.modules()]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    objectives.create(method, model, torch.randn(4, 1, 32, 32), 10, sigma=0.1,
                      beta=objectives.default_beta(method, "vgg8", "mnist"))
    assert [m.training for m in model.modules()] == flags
    assert all(torch.equal(value, state[key]) for key, value in model.state_dict().items())


# --- the field's other answers to device variation: RCG, Lipschitz, Distill (docs/method.md) ---------------------

from neft.chip import devices  # noqa: E402
from neft.common.errors import SettingError  # noqa: E402
from neft.store import checkpoint  # noqa: E402
from neft.training.objectives import distillation_loss, lipschitz_penalty, spectral_norm  # noqa: E402


def _phi(k):
    return math.exp(-k * k / 2) / math.sqrt(2 * math.pi)


def _Phi(k):
    return 0.5 * (1 + math.erf(k / math.sqrt(2)))


@pytest.mark.parametrize("k", [1.0, 0.5, 2.0])
def test_rcg_draws_follow_the_censored_normal(k):
    """Y = min(X, k s), X ~ N(0, s^2): E[Y] = s (k (1 - Phi(k)) - phi(k)), E[Y^2] = s^2 (Phi(k) - k phi(k) +
    k^2 (1 - Phi(k))). 1e6 draws: standard error of the mean < 0.001 s, of the std < 0.001 s."""
    weight = torch.linspace(-1, 1, 1_000_000)
    device = devices.get("RRAM1")
    s = device.std(weight, 0.2)  # 0.2 * 0.77763 * max|W| for every weight
    draws = device.sample(weight, 0.2, make_generator(3), censor_k=k)
    assert (draws <= k * s).all()
    assert (draws == k * s).float().mean().item() == pytest.approx(1 - _Phi(k), abs=0.003)  # the censored mass
    s = float(s[0])
    mean = s * (k * (1 - _Phi(k)) - _phi(k))
    second = s * s * (_Phi(k) - k * _phi(k) + k * k * (1 - _Phi(k)))
    assert float(draws.mean()) == pytest.approx(mean, abs=0.005 * s)
    assert float(draws.std()) == pytest.approx(math.sqrt(second - mean * mean), rel=0.005)


def test_rcg_censors_each_weight_at_its_own_std_and_none_is_bit_identical():
    weight = torch.randn(200, 300)
    device = devices.get("FeFET2")  # state-dependent: intermediate weights get a larger std
    std = device.std(weight, 0.3)
    draws = device.sample(weight, 0.3, make_generator(1), censor_k=1.0)
    assert (draws <= std).all() and (draws == std).any() and (draws < -std).any()
    plain = device.sample(weight, 0.3, make_generator(1))
    assert torch.equal(device.sample(weight, 0.3, make_generator(1), censor_k=None), plain)
    assert torch.equal(plain, torch.randn(weight.shape, generator=make_generator(1)) * std)  # as before censor_k
    assert torch.equal(draws, torch.minimum(plain, std))  # the same draw, censored
    model = models.create("lenet5", 10, 1, 0.5)
    crossbar = Crossbar(model)
    x = torch.randn(2, 1, 32, 32)
    assert torch.equal(crossbar.forward(x, sigma=0.3, generator=make_generator(4), censor_k=None),
                       crossbar.forward(x, sigma=0.3, generator=make_generator(4)))


def test_rcg_loss_is_cross_entropy_of_the_censored_forward():
    torch.manual_seed(0)
    model = models.create("lenet5", 10, 1, 0.5)
    x, y = torch.randn(8, 1, 32, 32), torch.randint(0, 10, (8,))
    rcg = objectives.create("rcg", model, x, 10, sigma=0.3, censor_k=0.5, generator=make_generator(5))
    loss, logs = rcg.loss(model, x, y)
    crossbar = Crossbar(model)
    chip = crossbar.sample_chip(0.3, make_generator(5), censor_k=0.5)
    logits = crossbar.forward(x, chip=chip)
    assert loss.item() == pytest.approx(F.cross_entropy(logits, y).item(), abs=1e-6)
    assert logs["acc"] == pytest.approx(100 * (logits.argmax(1) == y).float().mean().item())
    plain = objectives.create("noise-injection", model, x, 10, sigma=0.3, generator=make_generator(5))
    assert abs(plain.loss(model, x, y)[0].item() - loss.item()) > 1e-4  # censoring changes the noise


def test_spectral_norm_matches_the_exact_norm():
    torch.manual_seed(0)
    q1, _ = torch.linalg.qr(torch.randn(6, 6))
    q2, _ = torch.linalg.qr(torch.randn(4, 4))
    known = q1[:, :4] @ torch.diag(torch.tensor([3.0, 1.0, 0.5, 0.1])) @ q2.T  # singular values 3, 1, 0.5, 0.1
    assert spectral_norm(known).item() == pytest.approx(3.0, rel=1e-5)
    for shape in [(5, 3), (3, 5), (10, 10), (20, 7), (1, 9), (9, 1)]:
        w = torch.randn(shape)
        exact = torch.linalg.matrix_norm(w, 2).item()
        assert spectral_norm(w, iterations=300).item() == pytest.approx(exact, rel=1e-4), shape
        estimate = spectral_norm(w).item()  # the default iterations: from below, within a few percent
        assert exact * 0.94 <= estimate <= exact * (1 + 1e-5), shape
    conv = nn.Conv2d(3, 8, 3).weight  # [8, 3, 3, 3] -> the crossbar matrix [8, 27]
    assert spectral_norm(conv, 300).item() == pytest.approx(torch.linalg.matrix_norm(conv.reshape(8, 27), 2).item(),
                                                            rel=1e-4)
    assert spectral_norm(torch.zeros(4, 5)).item() == 0.0


def _lipschitz_net():
    """Conv rows [1,1,1,1] and 0 (sigma_max 2), Linear with entries 3 and 0.5 (sigma_max 3), Linear 0.5 I (0.5)."""
    model = nn.Sequential(nn.Conv2d(1, 2, 2, bias=False), nn.Flatten(), nn.Linear(8, 3), nn.ReLU(), nn.Linear(3, 3))
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].weight[0] = 1.0
        model[2].weight.zero_()
        model[2].weight[0, 0], model[2].weight[1, 1] = 3.0, 0.5
        model[4].weight.copy_(0.5 * torch.eye(3))
    return model


def test_lipschitz_penalty_by_hand():
    model = _lipschitz_net()
    # relu(2 - 1)^2 + relu(3 - 1)^2 + relu(0.5 - 1)^2 = 1 + 4 + 0
    assert lipschitz_penalty(Crossbar(model).weights().values()).item() == pytest.approx(5.0, rel=1e-5)
    x, y = torch.randn(4, 1, 3, 3), torch.tensor([0, 1, 2, 0])
    objective = objectives.create("lipschitz", model, x, 3, sigma=0.0, lipschitz_lambda=0.1)
    loss, _ = objective.loss(model, x, y)
    assert loss.item() == pytest.approx(F.cross_entropy(model(x), y).item() + 0.5, abs=1e-5)
    assert objectives.create("lipschitz", model, x, 3, sigma=0.0, lipschitz_lambda=0.0).loss(model, x, y)[0].item() \
        == pytest.approx(F.cross_entropy(model(x), y).item(), abs=1e-6)


def test_lipschitz_penalty_gradient_reduces_it():
    torch.manual_seed(0)
    model = models.create("lenet5", 10, 1, 0.5)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(4)  # spectral norms well above 1
    weights = list(Crossbar(model).weights().values())
    before = lipschitz_penalty(weights)
    before.backward()
    assert before.item() > 1 and all(w.grad.abs().sum() > 0 for w in weights)
    with torch.no_grad():
        for w in weights:
            w -= 0.05 * w.grad
    assert lipschitz_penalty(weights).item() < 0.9 * before.item()


def test_distillation_loss_by_hand():
    student = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    teacher = torch.tensor([[0.0, 1.0], [0.0, 0.0]])
    y = torch.tensor([0, 1])
    # row 1 at T = 2: softmax([0.5, 0]) and softmax([0, 0.5]) are mirror images, so
    # KL(p_t || p_s) = (p_t1 - p_t0) * 0.5 = tanh(0.25) / 2; CE = log(1 + e^-1). Row 2: KL 0, CE log 2.
    kl = [math.tanh(0.25) / 2, 0.0]
    ce = [math.log(1 + math.exp(-1)), math.log(2)]
    expected = sum(0.7 * c + 0.3 * 4 * k for c, k in zip(ce, kl)) / 2
    assert (distillation_loss(student, teacher, y, alpha=0.3, temperature=2.0).item()
            == pytest.approx(expected, rel=1e-6))
    assert distillation_loss(student, teacher, y, 0.0, 2.0).item() == pytest.approx(F.cross_entropy(student, y).item())


def _teacher_run(folder, dataset="mnist-5k", classes=10, in_channels=1, model="lenet5"):
    """A run directory holding an (untrained) backbone checkpoint, as `neft train` writes it."""
    torch.manual_seed(1)
    net = models.create(model, classes, in_channels, 0.5, init="torch")
    folder.mkdir(parents=True)
    checkpoint.save(folder / "checkpoint.pt", net, {"model": {"name": model, "num_classes": classes,
                                                              "in_channels": in_channels, "width": 0.5},
                                                    "dataset": dataset, "method": "vanilla", "sigma": 0.0})
    return folder


def test_distill_loss_uses_the_clean_teacher_and_never_updates_it(tmp_path):
    teacher_dir = _teacher_run(tmp_path / "teacher")
    torch.manual_seed(0)
    model = models.create("lenet5", 10, 1, 0.5)
    x, y = torch.randn(8, 1, 32, 32), torch.randint(0, 10, (8,))
    objective = objectives.create("distill", model, x, 10, sigma=0.3, teacher=teacher_dir, distill_alpha=0.6,
                                  distill_temperature=3.0, generator=make_generator(7))
    teacher = objective.teacher
    frozen = {k: v.clone() for k, v in teacher.state_dict().items()}
    loss, _ = objective.loss(model, x, y)
    student = Crossbar(model).forward(x, sigma=0.3, generator=make_generator(7))
    expected = distillation_loss(student, checkpoint.load(teacher_dir)(x), y, 0.6, 3.0)
    assert loss.item() == pytest.approx(expected.item(), abs=1e-6)
    assert len(objective.modules()) == 0  # the teacher joins neither the optimiser nor last.pt
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(3):
        optimizer.zero_grad()
        objective.loss(model, x, y)[0].backward()
        optimizer.step()
    assert not teacher.training and not any(p.requires_grad or p.grad is not None for p in teacher.parameters())
    assert all(torch.equal(v, frozen[k]) for k, v in teacher.state_dict().items())


def test_distill_teacher_of_another_data_set_is_a_clear_error(tmp_path):
    from neft.training import TrainConfig

    model, x = models.create("lenet5", 10, 1, 0.5), torch.randn(2, 1, 32, 32)
    with pytest.raises(SettingError, match="distill needs a teacher"):
        objectives.create("distill", model, x, 10, sigma=0.1)
    with pytest.raises(SettingError, match="is not a trained run"):
        objectives.create("distill", model, x, 10, sigma=0.1, teacher=tmp_path / "missing")
    with pytest.raises(SettingError, match="predicts 3 classes, the student 10"):
        objectives.create("distill", model, x, 10, sigma=0.1, teacher=_teacher_run(tmp_path / "three", classes=3))
    with pytest.raises(SettingError, match="cannot read this data set's images"):
        objectives.create("distill", model, x, 10, sigma=0.1, teacher=_teacher_run(tmp_path / "rgb", in_channels=3))
    digits = _teacher_run(tmp_path / "digits", dataset="digits")
    with pytest.raises(SettingError, match="trained on digits, this run trains on mnist-5k") as error:
        TrainConfig(model="lenet5", dataset="mnist-5k", method="distill", teacher=str(digits)).check()
    assert error.value.setting == "teacher"
    # another architecture on the same data set may teach
    TrainConfig(model="lenet5", dataset="mnist-5k", method="distill",
                teacher=str(_teacher_run(tmp_path / "vgg", model="vgg8"))).check()


@pytest.mark.parametrize("method, setting, value", [
    ("noise-injection", "censor_k", 2.0), ("ovf", "lipschitz_lambda", 0.5), ("rcg", "distill_alpha", 0.5),
    ("lipschitz", "distill_temperature", 2.0), ("vanilla", "teacher", "runs/teacher"), ("rcg", "temperature", 4.0),
    ("rcg", "censor_k", -1.0), ("lipschitz", "lipschitz_lambda", float("nan")), ("distill", "distill_alpha", 1.5),
    ("ovf", "sigma_block", 0.3), ("noise-injection", "taps", ["1"]),  # IRS's feedback heads only
])
def test_settings_are_refused_where_they_do_not_apply_or_are_invalid(method, setting, value):
    from neft.training import TrainConfig

    extra = {"teacher": "runs/teacher"} if method == "distill" else {}
    with pytest.raises(SettingError) as error:
        TrainConfig(model="lenet5", method=method, **{**extra, setting: value}).check()
    assert error.value.setting == setting


def test_results_record_the_settings_of_the_method_only():
    config = {"censor_k": 2.0, "lipschitz_lambda": 0.1, "distill_alpha": 0.9, "distill_temperature": 4.0,
              "teacher": None}
    assert objectives.settings_of("rcg", config) == {"censor_k": 2.0, "rcg_scale": 1.0, "lipschitz_lambda": None,
                                                     "correctnet_lambda": None, "distill_alpha": None,
                                                     "distill_temperature": None, "teacher": None}
    assert objectives.settings_of("distill", {"teacher": "runs/t"}) == {  # a config without the keys: defaults
        "censor_k": None, "rcg_scale": None, "lipschitz_lambda": None, "correctnet_lambda": None,
        "distill_alpha": objectives.DISTILL_ALPHA,
        "distill_temperature": objectives.DISTILL_TEMPERATURE, "teacher": "runs/t"}
