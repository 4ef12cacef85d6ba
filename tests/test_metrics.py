"""Metrics (SPEC section 5) against hand-computed values."""

import math

import pytest
import torch

from neft import metrics


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
