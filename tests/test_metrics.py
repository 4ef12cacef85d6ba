"""Metrics (docs/method.md, 'Monte Carlo evaluation and metrics') against hand-computed values."""

import math

import pytest
import torch

from neft.evaluation import metrics


def test_accuracy_summary_by_hand():
    summary = metrics.accuracy_summary([90.0, 92.0, 94.0, 96.0])
    std = math.sqrt(((3**2) + 1 + 1 + 3**2) / 3)  # ddof = 1 around mean 93
    assert summary["mean"] == 93.0
    assert summary["std"] == pytest.approx(std)
    assert summary["ci95"] == pytest.approx(1.96 * std / 2)
    assert summary["ci99"] == pytest.approx(2.576 * std / 2)
    assert summary["min"] == 90.0
    assert summary["p10"] == pytest.approx(90.6)  # linear interpolation: 90 + 0.3 * 2
    with pytest.raises(ValueError, match="at least 2"):
        metrics.accuracy_summary([90.0])


def test_ekl_and_confidence_of_a_two_class_model_by_hand():
    # two chips, one image: p_1 = (0.9, 0.1), p_2 = (0.4, 0.6); pbar = (0.65, 0.35)
    p1, p2 = torch.tensor([0.9, 0.1]), torch.tensor([0.4, 0.6])
    logits = torch.log(torch.stack([p1, p2])).unsqueeze(1)  # [K=2, B=1, C=2]
    acc = metrics.PredictionAccumulator(1, 2)
    correct = acc.add(logits, torch.tensor([0]), 0)
    acc.finish_runs(2)

    def kl(p, q):
        return sum(a * math.log(a / b) for a, b in zip(p, q))

    expected = (kl([0.9, 0.1], [0.65, 0.35]) + kl([0.4, 0.6], [0.65, 0.35])) / 2
    assert acc.ekl() == pytest.approx(expected, rel=1e-6)  # float32 logits in
    assert acc.confidence() == pytest.approx((0.9 + 0.6) / 2)
    assert correct.tolist() == [1, 0]
    # with identical chips EKL is exactly zero
    same = metrics.PredictionAccumulator(1, 2)
    same.add(torch.log(torch.stack([p1, p1])).unsqueeze(1), torch.tensor([0]), 0)
    same.finish_runs(2)
    assert same.ekl() == 0.0


def test_convergence_probability_and_wilson():
    result = metrics.convergence_probability([90.0, 85.0, 30.0, 12.0], num_classes=10)
    assert result["threshold"] == pytest.approx(10 + (90 - 10) / 2)
    assert result["converged"] == 2 and result["probability"] == 0.5
    low, high = result["wilson95"]
    assert (round(low, 4), round(high, 4)) == (0.15, 0.85)  # Wilson for 2/4 at z = 1.96
    assert metrics.wilson_interval(10, 10)[1] == 1.0
    with pytest.raises(ValueError):
        metrics.convergence_probability([], 10)


def test_seed_interval_by_hand():
    # per-seed means 71.58, 75.53, 75.16: mean 74.09, std = sqrt(((-2.51)^2 + 1.44^2 + 1.07^2) / 2) = 2.18158,
    # t_{0.975, 2} = 4.302653, half-width = 4.302653 * 2.18158 / sqrt(3) = 5.41935
    summary = metrics.seed_interval([71.58, 75.53, 75.16])
    assert summary["mean"] == pytest.approx(74.09)
    assert summary["std"] == pytest.approx(2.181582, rel=1e-5)
    assert summary["half_width"] == pytest.approx(5.41935, rel=1e-5)
    assert summary["seeds"] == 3
    # two seeds: t_{0.975, 1} = 12.7062; values 1, 3: std sqrt(2), half = 12.7062 * sqrt(2) / sqrt(2) = 12.7062
    assert metrics.seed_interval([1.0, 3.0])["half_width"] == pytest.approx(12.7062, rel=1e-4)
    one = metrics.seed_interval([50.0])
    assert one["mean"] == 50.0 and one["half_width"] is None and one["std"] is None
    with pytest.raises(ValueError):
        metrics.seed_interval([])
    with pytest.raises(ValueError):
        metrics.seed_interval([1.0, float("nan")])


def test_shared_convergence_threshold_by_hand():
    # 10 classes: chance 10 %; best run of any method 80 % -> threshold 45 %
    assert metrics.convergence_threshold(80.0, 10) == pytest.approx(45.0)
    # a method whose runs are all poor does not get its own, lower bar
    poor = metrics.convergence_probability([20.0, 30.0, 50.0], 10, threshold=metrics.convergence_threshold(80.0, 10))
    assert poor["converged"] == 1 and poor["threshold"] == pytest.approx(45.0)
    own = metrics.convergence_probability([20.0, 30.0, 50.0], 10)  # its own best (50 %) sets 30 %: 1 of 3 above
    assert own["threshold"] == pytest.approx(30.0) and own["converged"] == 1
    with pytest.raises(ValueError):
        metrics.convergence_threshold(80.0, 1)


@pytest.mark.parametrize("value, runs", [(93.7, 7), (97.3, 1000), (0.1, 3), (33.33, 7)])
def test_the_spread_of_a_constant_is_exactly_zero(value, runs):
    summary = metrics.accuracy_summary([value] * runs)  # float sums give a std of ~1e-14 and a mean one ulp off
    assert (summary["mean"], summary["std"], summary["ci95"], summary["ci99"]) == (value, 0.0, 0.0, 0.0)
    assert f"{summary['std']:g}" == "0" and math.copysign(1.0, summary["std"]) == 1.0  # never -0
    seeds = metrics.seed_interval([value] * runs)
    assert (seeds["mean"], seeds["std"], seeds["half_width"]) == (value, 0.0, 0.0)
