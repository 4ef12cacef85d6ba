"""precision="auto": bf16 only on devices with native bf16 and only after the measured check (docs/method.md,
'Precision of the evaluation')."""

import json

import pytest
import torch
from torch import nn

from neft import data, runs
from neft.evaluation import montecarlo, precision
from neft.store import checkpoint


@pytest.fixture(scope="module")
def setup(trained_run):
    model = checkpoint.load(trained_run)
    dataset = data.load("mnist-5k", test_subset=200)
    return model, dataset.preprocess(dataset.splits["test"][0]), dataset.splits["test"][1]


class Readout(nn.Module):
    """A mapped identity layer, then a fixed (unmapped) readout ``[4, 2]``: logits ``[B, 2]`` of inputs ``[B, 4]``."""

    def __init__(self, columns):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        with torch.no_grad():
            self.fc.weight.copy_(torch.eye(4))
            self.fc.bias.zero_()
        self.register_buffer("readout", torch.tensor([columns] * 4))

    def forward(self, x):
        return self.fc(x) @ self.readout


def separable(count=200):
    """Inputs whose four entries share one sign (|sum| >= 4, far above the noise at sigma 0.1) and labels:
    class 1 for a positive sum."""
    generator = torch.Generator().manual_seed(0)
    sign = torch.randint(0, 2, (count, 1), generator=generator) * 2 - 1
    x = sign * (1 + torch.rand(count, 4, generator=generator))
    return x, (sign[:, 0] > 0).long()


@pytest.mark.parametrize("flags, expected", [("fpu sse avx2 avx512_bf16", True), ("fpu amx_bf16 amx_tile", True),
                                             ("fpu sse avx2 fma", False), (None, False)])
def test_cpu_detection_reads_the_flags(tmp_path, monkeypatch, flags, expected):
    cpuinfo = tmp_path / "cpuinfo"
    if flags is not None:
        cpuinfo.write_text(f"processor\t: 0\nmodel name\t: avx512_bf16 in a name does not count\nflags\t\t: {flags}\n")
    monkeypatch.setattr(precision, "CPUINFO", cpuinfo)
    assert precision.cpu_has_native_bf16() is expected
    assert precision.native_bf16("cpu") is expected


def test_auto_without_native_bf16_is_fp32_bit_for_bit(setup, monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    model, images, labels = setup
    assert montecarlo.EvalConfig().precision == "auto"
    auto = montecarlo.evaluate(model, images, labels, [0, 0.1], runs=3, progress=False)
    fp32 = montecarlo.evaluate(model, images, labels, [0, 0.1], runs=3, precision="fp32", progress=False)
    assert (auto["precision"], auto["precision_check"], fp32["precision"]) == ("fp32", None, "fp32")
    for a, b in zip(auto["per_sigma"], fp32["per_sigma"]):
        assert a["accuracy"]["per_run"] == b["accuracy"]["per_run"] and a["ekl"] == b["ekl"]


def test_check_fails_when_bf16_flips_predictions(monkeypatch):
    """The readout's columns 1 and 1 + 2^-10 round to the same bf16 number: fp32 separates the classes, bf16 ties
    every image (argmax: class 0), so about half the images flip."""
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    model, (x, y) = Readout([1.0, 1.0 + 2.0 ** -10]), separable()
    with pytest.warns(RuntimeWarning, match="fp32 used: .* outside the fp32 95 % interval"):
        result = montecarlo.evaluate(model, x, y, [0, 0.1], runs=10, progress=False)
    check = result["precision_check"]
    assert result["precision"] == "fp32" and not check["passed"]
    assert (check["sigma"], check["chips"], check["tolerance"]) == (0.1, precision.CHECK_CHIPS, 1.0)
    assert check["fp32_mean"] > 95 and check["bf16_mean"] == pytest.approx(100 * float((y == 0).double().mean()))
    fp32 = montecarlo.evaluate(model, x, y, [0, 0.1], runs=10, precision="fp32", progress=False)
    assert [p["accuracy"]["per_run"] for p in result["per_sigma"]] == [p["accuracy"]["per_run"]
                                                                        for p in fp32["per_sigma"]]


def test_check_fails_on_a_patched_tolerance(setup, monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(precision, "RUN_TOLERANCE", -1.0)  # no chip can pass
    model, images, labels = setup
    with pytest.warns(RuntimeWarning, match="more than the tolerance of -1"):
        result = montecarlo.evaluate(model, images, labels, [0.1], runs=2, progress=False)
    assert result["precision"] == "fp32" and result["precision_check"]["chips"] == 2


def test_check_passes_and_bf16_is_used(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    model, (x, y) = Readout([-1.0, 1.0]), separable()
    result = montecarlo.evaluate(model, x, y, [0, 0.1, 0.2], runs=10, progress=False)
    check = result["precision_check"]
    assert result["precision"] == "bf16" and check["passed"] and check["max_chip_difference"] == 0.0
    assert check["bf16_mean"] == check["fp32_mean"] and "bf16 kept" in check["reason"]
    bf16 = montecarlo.evaluate(model, x, y, [0, 0.1, 0.2], runs=10, precision="bf16", progress=False)
    assert [p["accuracy"]["per_run"] for p in result["per_sigma"]] == [p["accuracy"]["per_run"]
                                                                        for p in bf16["per_sigma"]]
    clean = montecarlo.evaluate(model, x, y, [0], runs=10, progress=False)  # no noisy chip to check on: fp32
    assert (clean["precision"], clean["precision_check"]) == ("fp32", None)


def test_check_numbers_are_hand_computed():
    check = precision.check_bf16([90.0, 92.0, 94.0], [90.5, 92.0, 93.0], 0.2)
    assert check["fp32_mean"] == 92.0 and check["fp32_ci95"] == pytest.approx(1.96 * 2 / 3 ** 0.5)
    assert check["bf16_mean"] == pytest.approx(91.8333333) and check["max_chip_difference"] == 1.0
    assert check["passed"]  # a difference equal to the tolerance passes
    assert not precision.check_bf16([90.0, 92.0, 94.0], [90.0, 92.0, 95.5], 0.2)["passed"]
    with pytest.raises(ValueError, match="same chips"):
        precision.check_bf16([90.0, 92.0], [90.0], 0.2)


def test_results_json_records_the_precision_and_the_check(trained_run, monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    runs.evaluate_run(trained_run, sigmas="0,0.1", runs=2, test_subset=100, name="precision", progress=False)
    stored = json.loads((trained_run / "precision.json").read_text())
    check = stored["precision_check"]
    assert stored["evaluation"]["precision"] == "auto" and check["chips"] == 2 and check["sigma"] == 0.1
    assert stored["precision"] == ("bf16" if check["passed"] else "fp32")


def test_auto_reads_the_clean_network_in_fp32_where_bf16_serves_the_noisy_chips(setup, monkeypatch):
    """Under "auto" with bf16 chosen, sigma 0 (every chip the clean network) is still the clean network exactly:
    its accuracy and confidence are those of fp32 forwards, not of bf16 ones (which round the logits)."""
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(precision, "RUN_TOLERANCE", 100.0)  # the check keeps bf16 whatever it measures
    model, x, y = setup
    options = {"runs": 4, "progress": False, "device_model": "RRAM1"}
    auto = montecarlo.evaluate(model, x, y, [0, 0.2], **options)
    fp32 = montecarlo.evaluate(model, x, y, [0], precision="fp32", **options)["per_sigma"][0]
    bf16 = montecarlo.evaluate(model, x, y, [0], precision="bf16", **options)["per_sigma"][0]
    assert auto["precision"] == "bf16"
    clean = auto["per_sigma"][0]
    assert clean["accuracy"] == fp32["accuracy"] and clean["confidence"] == fp32["confidence"]
    assert bf16["confidence"] != fp32["confidence"]  # bf16 forwards do read the clean network differently


def test_several_chips_per_pass_on_a_cpu_are_fp32_and_recorded_so(setup, monkeypatch):
    """CPU autocast does not reach the matmuls under torch.func.vmap: chips evaluated together compute in fp32,
    whatever the setting; the results must say fp32 (they said bf16), and an explicit bf16 warns."""
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    model, x, y = setup
    options = {"runs": 4, "progress": False, "device_model": "RRAM1", "chips_per_pass": 2}
    auto = montecarlo.evaluate(model, x, y, [0.2], **options)
    assert (auto["precision"], auto["precision_check"]) == ("fp32", None)
    with pytest.warns(RuntimeWarning, match="CPU autocast does not reach the 2 chips"):
        asked = montecarlo.evaluate(model, x, y, [0.2], precision="bf16", **options)
    fp32 = montecarlo.evaluate(model, x, y, [0.2], precision="fp32", **options)
    assert asked["precision"] == "fp32"
    assert asked["per_sigma"][0]["accuracy"] == fp32["per_sigma"][0]["accuracy"] == auto["per_sigma"][0]["accuracy"]
