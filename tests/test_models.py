"""Model zoo shapes and parameter counts (docs/method.md, 'Models')."""

import pytest
import torch

from neft import models


def count(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    "name, channels, size",
    [("vgg8", 1, 32), ("vgg8", 3, 32), ("resnet18", 3, 32), ("resnet18", 3, 64), ("lenet5", 1, 32)]
)
def test_logits_shape(name, channels, size):
    model = models.create(name, 7, channels, width=0.25).eval()
    assert model(torch.randn(2, channels, size, size)).shape == (2, 7)


def test_vgg8_parameter_count_by_hand():
    convs = 1 * 64 * 9 + 64 * 128 * 9 + 128 * 256 * 9 + 256 * 256 * 9 + 256 * 512 * 9 + 512 * 512 * 9
    batchnorm = 2 * (64 + 128 + 256 + 256 + 512 + 512)
    classifier = 512 * 16 * 1024 + 1024 + 1024 * 10 + 10
    assert convs + batchnorm + classifier == 12_901_322
    assert count(models.create("vgg8", 10, 1)) == 12_901_322


def test_resnet18_parameter_count_matches_cifar_resnet18():
    # the standard CIFAR ResNet-18 with 10 classes has 11,173,962 parameters
    assert count(models.create("resnet18", 10, 3)) == 11_173_962


def test_lenet5_parameter_count_by_hand():
    expected = (1 * 6 * 25 + 6) + (6 * 16 * 25 + 16) + (400 * 120 + 120) + (120 * 84 + 84) + (84 * 10 + 10)
    assert count(models.create("lenet5", 10, 1)) == expected


def test_kaiming_init_and_zero_bias():
    model = models.create("vgg8", 10, 1)
    fc = model.classifier[1]
    assert torch.equal(fc.bias, torch.zeros_like(fc.bias))
    assert float(fc.weight.detach().std()) == pytest.approx((2 / 1024) ** 0.5, rel=0.02)  # fan_out = 1024


def test_kaiming_uniform_init_has_the_release_std_and_a_small_max():
    """Same std as the release's Kaiming-normal fan_out, but max|W| = sqrt(3) std instead of ~4.5 std."""
    torch.manual_seed(0)
    normal = models.create("vgg8", 10, 1).classifier[1].weight.detach()  # 1024 x 8192 weights
    uniform = models.create("vgg8", 10, 1, init="kaiming-uniform").classifier[1].weight.detach()
    std = (2 / 1024) ** 0.5
    assert float(uniform.std()) == pytest.approx(std, rel=0.01)
    assert float(uniform.abs().max()) == pytest.approx(3 ** 0.5 * std, rel=0.01)
    assert float(normal.abs().max()) / float(normal.std()) > 4.5  # ~ the largest of 8.4 M normal draws
    with pytest.raises(ValueError, match="unknown init"):
        models.create("vgg8", 10, 1, init="xavier")


def test_declared_taps_exist():
    for name in models.MODELS:
        model = models.create(name, 10, 3)
        modules = dict(model.named_modules())
        assert models.default_taps(model) and all(tap in modules for tap, _ in models.default_taps(model))


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown model"):
        models.create("alexnet", 10, 3)
    with pytest.raises(ValueError, match="width"):
        models.create("vgg8", 10, 3, width=0)


def test_layers_command_prints_noise_to_weight_ratio_at_init(capsys):
    """Uniform init: max|W| = sqrt(3) std, so the RRAM1 noise/weight std is 0.35 * 0.77763 * sqrt(3) = 0.4714."""
    from neft.cli.main import main

    torch.manual_seed(0)
    assert main(["layers", "--model", "lenet5", "--sigma", "0.35", "--init", "kaiming-uniform"]) == 0
    ratios = [float(line.split()[-1]) for line in capsys.readouterr().out.splitlines() if "noise/weight" in line]
    # sample max and std of 150 .. 48,000 draws: within 0.03 of the limit
    assert len(ratios) == 5 and all(abs(r - 0.4714) < 0.03 for r in ratios)
    torch.manual_seed(0)
    assert main(["layers", "--model", "lenet5", "--sigma", "0.35"]) == 0  # the release's normal init: larger
    ratios = [float(line.split()[-1]) for line in capsys.readouterr().out.splitlines() if "noise/weight" in line]
    assert len(ratios) == 5 and min(ratios) > 0.6
