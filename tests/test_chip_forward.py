"""Execution of the Monte Carlo forwards: memory layout, torch.compile and its fallback
(neft.evaluation.chip_forward)."""

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from neft import Crossbar, data, make_generator, run_seed
from neft.evaluation import chip_forward, montecarlo
from neft.store import checkpoint


def evaluate_points(*args, **kwargs) -> list[dict]:
    """The per-sigma entries of montecarlo.evaluate."""
    return montecarlo.evaluate(*args, **kwargs)["per_sigma"]


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


class DropoutAtTest(nn.Module):
    """Test-time randomness (Monte Carlo dropout in forward): vmap refuses random operations."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(8, 16), nn.Linear(16, 3)

    def forward(self, x):
        return self.fc2(F.dropout(torch.relu(self.fc1(x)), 0.5, training=True))


class BranchesOnData(nn.Module):
    """Data-dependent Python control flow: under vmap the branch cannot be chosen per chip."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        logits = self.fc(x)
        return logits if logits.sum() > 0 else -logits


def vmap_notes(caught) -> list[str]:
    return [str(w.message) for w in caught if "vmap" in str(w.message)]


def test_cpu_uses_channels_last_and_agrees_with_nchw(setup):
    model, images, labels = setup
    nhwc = evaluate_points(model, images, labels, [0.2], runs=6, compile=False, progress=False)
    nchw = evaluate_points(model, images, labels, [0.2], runs=6, compile=False, memory_format="contiguous",
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
    result = evaluate_points(model, images, labels, [0.1], runs=3, compile=False, progress=False)
    assert result[0]["execution"]["memory_format"] == "contiguous"
    forward = chip_forward.ChipForward(Crossbar(model), images, memory_format="channels_last")
    assert forward.layout == "contiguous"


def test_compiled_forward_matches_eager_with_a_padded_last_batch(setup):
    model, images, labels = setup
    images, labels = images[:250], labels[:250]  # batch_size 100 -> batches of 84, 84, 82: the last one is padded
    eager = evaluate_points(model, images, labels, [0.2], runs=4, batch_size=100, compile=False, progress=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        compiled = evaluate_points(model, images, labels, [0.2], runs=4, batch_size=100, compile=True,
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
    eager = evaluate_points(model, images, labels, [0.2], runs=3, compile=False, progress=False)
    with pytest.warns(RuntimeWarning, match="torch.compile could not be used.*C\\+\\+ compiler"):
        fallback = evaluate_points(model, images, labels, [0.2], runs=3, compile=True, progress=False)
    assert per_run(fallback) == per_run(eager)
    assert fallback[0]["execution"]["compiled"] is False


def test_auto_compiles_only_large_cpu_evaluations(setup, monkeypatch):
    model, images, labels = setup
    requested = []
    monkeypatch.setattr(chip_forward.torch, "compile", lambda function, **kwargs: requested.append(1) or function)
    flop = chip_forward.forward_flops(model, images[:1])
    assert flop == pytest.approx(2 * (6 * 28 * 28 * 25 + 16 * 10 * 10 * 150 + 400 * 120 + 120 * 84 + 84 * 10))
    small = evaluate_points(model, images, labels, [0.0, 0.2], runs=3, progress=False)
    assert not requested and small[1]["execution"]["compiled"] is False
    # 3 noisy chips x 300 images x flop: just above the threshold compiles, sigma = 0 does not count
    monkeypatch.setattr(montecarlo, "COMPILE_AFTER_FLOP", 3 * 300 * flop - 1)
    large = evaluate_points(model, images, labels, [0.0, 0.2], runs=3, progress=False)
    assert requested and large[1]["execution"]["compiled"] is True
    assert per_run(large[1:]) == per_run(small[1:])


def test_bad_execution_settings(setup):
    model, images, labels = setup
    mode = model.training
    with pytest.raises(ValueError, match="unknown memory_format 'nhwc'"):
        evaluate_points(model, images, labels, [0.1], runs=2, memory_format="nhwc", progress=False)
    with pytest.raises(ValueError, match="compile must be True, False or 'auto'"):
        evaluate_points(model, images, labels, [0.1], runs=2, compile="yes", progress=False)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        evaluate_points(model, images, labels, [0.1], runs=2, batch_size=0, progress=False)
    assert model.training == mode


@pytest.mark.parametrize("model_type, reason", [(DropoutAtTest, "random operation"),
                                                (BranchesOnData, "data-dependent control flow")])
def test_a_model_vmap_cannot_run_is_evaluated_one_chip_per_pass_with_one_warning(model_type, reason):
    torch.manual_seed(0)
    model = model_type()
    images, labels = torch.randn(30, 8), torch.randint(0, 3, (30,))
    results = {}
    for chips in (2, 1):
        torch.manual_seed(1)  # the same dropout masks for both: the fallback is exactly one chip per pass
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            results[chips] = per_run(evaluate_points(model, images, labels, [0.1], chips_per_pass=chips, runs=4,
                                                     progress=False))
        notes = vmap_notes(caught)
        assert len(notes) == (1 if chips == 2 else 0), notes
    assert len(results[2]) == 4 and results[2] == results[1]
    assert all(0 <= a <= 100 and round(a * 30 / 100, 6) == round(a * 30 / 100) for a in results[2])
    with pytest.warns(RuntimeWarning, match=f"chips_per_pass=2: torch.func.vmap cannot run {model_type.__name__} "
                                            f"\\(RuntimeError: vmap: .*{reason}.*\\); evaluating one chip per pass"):
        forward = chip_forward.ChipForward(Crossbar(model), images, chips_per_pass=2)
    assert forward.chips_per_pass == 1


def test_branching_model_one_chip_per_pass_gives_the_chips_own_accuracies():
    torch.manual_seed(0)
    model = BranchesOnData()
    images, labels = torch.randn(30, 8), torch.randint(0, 3, (30,))
    with pytest.warns(RuntimeWarning, match="vmap cannot run"):
        accuracies = per_run(evaluate_points(model, images, labels, [0.1], chips_per_pass=3, runs=4, seed=5,
                                             progress=False))
    crossbar = Crossbar(model)
    expected = []
    for run in range(4):
        chip = crossbar.sample_chip(0.1, make_generator(run_seed(5, 0.1, run)))
        with torch.no_grad():
            expected.append(100.0 * float((crossbar.forward(images, chip=chip).argmax(1) == labels).double().mean()))
    assert accuracies == pytest.approx(expected, abs=1e-9)


def test_auto_is_one_chip_per_pass_on_cpu(setup):
    model, images, _ = setup
    assert chip_forward.choose_chips_per_pass(Crossbar(model), images[:100], max_chips=64) == 1


@pytest.mark.parametrize("one, four, chosen", [(1.0, 0.5, 4), (1.0, 2.0, 1), (1.0, 1.0, 1)])
def test_auto_keeps_several_chips_only_when_they_are_faster_per_chip(setup, monkeypatch, one, four, chosen):
    model, images, _ = setup
    forward = chip_forward.ChipForward(Crossbar(model), images[:50], chips_per_pass=4)
    monkeypatch.setattr(chip_forward.ChipForward, "seconds_per_chip",
                        lambda self, x, chips: {1: one, 4: four}[chips])
    assert chip_forward._faster(forward, images[:50]) == chosen


def test_auto_never_times_vmap_for_a_model_it_cannot_run(monkeypatch):
    monkeypatch.setattr(chip_forward.ChipForward, "seconds_per_chip", lambda *args: pytest.fail("timed"))
    images = torch.randn(10, 8)
    with pytest.warns(RuntimeWarning, match="vmap cannot run DropoutAtTest"):
        forward = chip_forward.ChipForward(Crossbar(DropoutAtTest()), images, chips_per_pass=4)
    assert chip_forward._faster(forward, images) == 1


def test_seconds_per_chip_times_warm_forwards_of_stacked_chips(setup):
    model, images, _ = setup
    forward = chip_forward.ChipForward(Crossbar(model), images[:50], chips_per_pass=2)
    calls = []
    hook = model.register_forward_hook(lambda *args: calls.append(1))
    try:
        seconds = [forward.seconds_per_chip(images[:50], chips, repeats=3) for chips in (1, 2)]
    finally:
        hook.remove()
    assert len(calls) == 2 * (1 + 3)  # one warm-up + 3 timed forwards each (vmap runs the model once per call)
    assert all(0 < s < 10 for s in seconds)
