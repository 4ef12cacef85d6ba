"""Execution of the Monte Carlo forwards: memory layout, torch.compile and its fallback (neft.chip_forward)."""

import warnings

import pytest
import torch
from torch import nn

from neft import Crossbar, checkpoint, chip_forward, data, montecarlo


@pytest.fixture(scope="module")
def setup(trained_run):
    model = checkpoint.load(trained_run)
    dataset = data.load("mnist-5k", test_subset=300)
    return model, dataset.preprocess(dataset.splits["test"][0]), dataset.splits["test"][1]


def per_run(result):
    return result[0]["accuracy"]["per_run"]


class ViewsItsActivations(nn.Module):
    """A user model that calls ``.view`` on a conv activation: fails in channels_last, so NCHW must be kept."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4 * 30 * 30, 10)

    def forward(self, x):
        h = torch.relu(self.conv(x))
        return self.fc(h.view(h.shape[0], -1))


def test_cpu_uses_channels_last_and_agrees_with_nchw(setup):
    model, images, labels = setup
    nhwc = montecarlo.evaluate(model, images, labels, [0.2], runs=6, compile=False, progress=False)
    nchw = montecarlo.evaluate(model, images, labels, [0.2], runs=6, compile=False, memory_format="contiguous",
                               progress=False)
    assert nhwc[0]["execution"] == {"chips_per_pass": 1, "memory_format": "channels_last", "compiled": False}
    assert nchw[0]["execution"]["memory_format"] == "contiguous"
    one_image = 100 / len(labels)
    assert max(abs(a - b) for a, b in zip(per_run(nhwc), per_run(nchw))) <= one_image + 1e-9
    assert nhwc[0]["ekl"] == pytest.approx(nchw[0]["ekl"], rel=1e-4)


def test_a_model_that_breaks_in_channels_last_falls_back_to_nchw():
    torch.manual_seed(0)
    model = ViewsItsActivations()
    images, labels = torch.randn(40, 3, 32, 32), torch.randint(0, 10, (40,))
    with pytest.raises(RuntimeError):  # the model really cannot run on channels_last activations
        model(images.contiguous(memory_format=torch.channels_last))
    result = montecarlo.evaluate(model, images, labels, [0.1], runs=3, compile=False, progress=False)
    assert result[0]["execution"]["memory_format"] == "contiguous"
    forward = chip_forward.ChipForward(Crossbar(model), images, memory_format="channels_last")
    assert forward.layout == "contiguous"


def test_compiled_forward_matches_eager_with_a_padded_last_batch(setup):
    model, images, labels = setup
    images, labels = images[:250], labels[:250]  # batch_size 100 -> batches of 84, 84, 82: the last one is padded
    eager = montecarlo.evaluate(model, images, labels, [0.2], runs=4, batch_size=100, compile=False, progress=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        compiled = montecarlo.evaluate(model, images, labels, [0.2], runs=4, batch_size=100, compile=True,
                                       progress=False)
    if not compiled[0]["execution"]["compiled"]:  # the fallback itself is tested below
        pytest.skip(f"torch.compile does not work on this machine: {[str(w.message) for w in caught]}")
    assert max(abs(a - b) for a, b in zip(per_run(eager), per_run(compiled))) <= 100 / len(labels) + 1e-9
    assert compiled[0]["ekl"] == pytest.approx(eager[0]["ekl"], rel=1e-3)


def test_a_failing_compiler_falls_back_to_eager_with_a_warning(setup, monkeypatch):
    model, images, labels = setup

    def broken_compile(function, **kwargs):
        def compiled(*args):
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found")
        return compiled

    monkeypatch.setattr(chip_forward.torch, "compile", broken_compile)
    eager = montecarlo.evaluate(model, images, labels, [0.2], runs=3, compile=False, progress=False)
    with pytest.warns(RuntimeWarning, match="torch.compile could not be used.*C\\+\\+ compiler"):
        fallback = montecarlo.evaluate(model, images, labels, [0.2], runs=3, compile=True, progress=False)
    assert per_run(fallback) == per_run(eager)
    assert fallback[0]["execution"]["compiled"] is False


def test_auto_compiles_only_large_cpu_evaluations(setup, monkeypatch):
    model, images, labels = setup
    requested = []
    monkeypatch.setattr(chip_forward.torch, "compile", lambda function, **kwargs: requested.append(1) or function)
    flop = chip_forward.forward_flops(model, images[:1])
    assert flop == pytest.approx(2 * (6 * 28 * 28 * 25 + 16 * 10 * 10 * 150 + 400 * 120 + 120 * 84 + 84 * 10))
    small = montecarlo.evaluate(model, images, labels, [0.0, 0.2], runs=3, progress=False)
    assert not requested and small[1]["execution"]["compiled"] is False
    # 3 noisy chips x 300 images x flop: just above the threshold compiles, sigma = 0 does not count
    monkeypatch.setattr(montecarlo, "COMPILE_AFTER_FLOP", 3 * 300 * flop - 1)
    large = montecarlo.evaluate(model, images, labels, [0.0, 0.2], runs=3, progress=False)
    assert requested and large[1]["execution"]["compiled"] is True
    assert per_run(large[1:]) == per_run(small[1:])


def test_bad_execution_settings(setup):
    model, images, labels = setup
    mode = model.training
    with pytest.raises(ValueError, match="unknown memory_format 'nhwc'"):
        montecarlo.evaluate(model, images, labels, [0.1], runs=2, memory_format="nhwc", progress=False)
    with pytest.raises(ValueError, match="compile must be True, False or 'auto'"):
        montecarlo.evaluate(model, images, labels, [0.1], runs=2, compile="yes", progress=False)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        montecarlo.evaluate(model, images, labels, [0.1], runs=2, batch_size=0, progress=False)
    assert model.training == mode
