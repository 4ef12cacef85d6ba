"""Robustness metrics over Monte Carlo runs (docs/method.md, 'Monte Carlo evaluation and metrics').

Accuracy statistics over runs (each run = one programmed chip), epistemic uncertainty as the expected KL
divergence (EKL) between each chip's softmax and the mean softmax over chips, mean confidence, and the
convergence probability of a group of training runs with a Wilson interval.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

from neft.common.distributed import all_reduce_

__all__ = ["accuracy_summary", "PredictionAccumulator", "convergence_probability", "convergence_threshold",
           "wilson_interval", "ci_half_width", "seed_interval"]

Z95, Z99 = 1.96, 2.576
EKL_ROUNDING = 1e-12  # nats; see PredictionAccumulator.ekl


def ci_half_width(std: float, runs: int, z: float = Z95) -> float:
    """Half-width ``z * std / sqrt(runs)`` of the normal confidence interval of a mean [release] (docs/method.md)."""
    return z * std / math.sqrt(runs)


def accuracy_summary(per_run: Sequence[float]) -> dict:
    """Statistics of per-run accuracies (percent) over R Monte Carlo runs (docs/method.md, 'Monte Carlo evaluation
    and metrics').

    Args:
        per_run: R accuracies in percent, R >= 2.

    Returns:
        ``{"mean", "std" (ddof = 1), "ci95", "ci99" (half-widths), "min", "p1", "p5", "p10", "per_run"}``,
        all in percent (percentiles by linear interpolation).

    Raises:
        ValueError: for fewer than 2 runs (the sample std is undefined) or non-finite values.
    """
    values = np.asarray(per_run, dtype=np.float64)
    if values.size < 2:
        raise ValueError(f"need at least 2 Monte Carlo runs to estimate a std and CI, got {values.size}; use runs >= 2")
    if not np.isfinite(values).all():
        raise ValueError("per-run accuracies contain NaN or infinite values")
    mean, std = _mean_std(values)
    p1, p5, p10 = (float(v) for v in np.percentile(values, [1, 5, 10]))
    return {
        "mean": mean,
        "std": std,
        "ci95": ci_half_width(std, values.size, Z95),
        "ci99": ci_half_width(std, values.size, Z99),
        "min": float(values.min()),
        "p1": p1,
        "p5": p5,
        "p10": p10,
        "per_run": [float(v) for v in values],
    }


class PredictionAccumulator:
    """Streaming sums over Monte Carlo runs of the softmax outputs on a fixed test set of N images.

    Feed every run's probabilities for every image exactly once (in any batch order); then

        EKL = mean_x mean_k KL(p_k(.|x) || pbar(.|x)) = mean_x [ H(pbar(x)) - mean_k H(p_k(x)) ]   (nats)

    (the mutual information between prediction and chip, docs/method.md) and
    confidence = mean over x and k of max_y p_k(y|x). Sums are kept in float64.

    Args:
        num_images: N, the test-set size.
        num_classes: C.
        device: where the sums live (the evaluation device).
    """

    def __init__(self, num_images: int, num_classes: int, device: torch.device | str = "cpu") -> None:
        self.num_images = num_images
        self.sum_probs = torch.zeros(num_images, num_classes, dtype=torch.float64, device=device)
        self.sum_entropy = torch.zeros((), dtype=torch.float64, device=device)
        self.sum_confidence = torch.zeros((), dtype=torch.float64, device=device)
        self.nonfinite = torch.zeros((), dtype=torch.bool, device=device)  # a device flag: no host sync per batch
        self.runs = 0

    def add(self, logits: torch.Tensor, labels: torch.Tensor, start: int, copies: int = 1) -> torch.Tensor:
        """Add K runs' logits for images ``start .. start + B - 1``.

        Args:
            logits: ``[K, B, C]`` (K chips on the same B images).
            labels: ``[B]`` class indices.
            start: index of the first image of the batch in the test set.
            copies: each chip stands for this many identical runs (e.g. every run at sigma = 0 is the clean
                network); count them in :meth:`finish_runs` too.

        Returns:
            Number of correct predictions per chip, int64 ``[K]``.
        """
        self.nonfinite |= ~torch.isfinite(logits).all()
        log_probs = torch.log_softmax(logits.double(), dim=-1)
        probs = log_probs.exp()
        self.sum_probs[start : start + logits.shape[1]] += copies * probs.sum(0)
        self.sum_entropy -= copies * (probs * log_probs).sum()
        self.sum_confidence += copies * probs.amax(-1).sum()
        return (logits.argmax(-1) == labels).sum(-1)

    def check_finite(self, where: str = "", cause: Callable[[], str] | None = None) -> None:
        """Raise if any logits fed so far were NaN or infinite (their argmax, softmax and EKL mean nothing).

        Args:
            where: appended to "the model gave NaN or infinite logits", e.g. ``" at sigma 0.1"``.
            cause: called only then, gives the cause and its fix as a sentence
                (:func:`neft.evaluation.non_finite.non_finite_cause`); None: "check the weights and the inputs".

        Raises:
            ValueError: naming ``where`` and the cause.
        """
        if bool(self.nonfinite):
            raise ValueError(f"the model gave NaN or infinite logits{where}: "
                             f"{cause() if cause is not None else 'check the weights and the inputs'}")

    def finish_runs(self, count: int) -> None:
        """Record that ``count`` more runs have been fed for every image."""
        self.runs += count

    def all_reduce(self) -> None:
        """Sum the accumulated values over ``torch.distributed`` ranks (each rank fed its own runs); no-op for
        one process. Call once, after the last :meth:`add` and :meth:`finish_runs` with the total run count."""
        for tensor in (self.sum_probs, self.sum_entropy, self.sum_confidence):
            all_reduce_(tensor)

    def ekl(self) -> float:
        """Expected KL divergence in nats (0 when every chip predicts the same distribution).

        H(pbar) - mean H(p_k) is a difference of two float64 sums of up to ~1e7 terms; results below
        ``EKL_ROUNDING`` = 1e-12 nats are their rounding error (measured ~6e-17 for identical chips) and read 0.
        """
        pbar = self.sum_probs / self.runs
        entropy_of_mean = -(pbar * torch.log(pbar.clamp_min(1e-300))).sum(-1).mean()
        mean_entropy = self.sum_entropy / (self.runs * self.num_images)
        value = float(entropy_of_mean - mean_entropy)
        return 0.0 if value < EKL_ROUNDING else value  # NaN stays NaN: never read as "no uncertainty"

    def confidence(self) -> float:
        """Mean over images and runs of the top-class probability, in [0, 1]."""
        return float(self.sum_confidence / (self.runs * self.num_images))


def wilson_interval(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval ``(low, high)`` of a binomial proportion (95 % by default).

    Raises:
        ValueError: when trials < 1 or successes is outside [0, trials].
    """
    if trials < 1 or not 0 <= successes <= trials:
        raise ValueError(f"need trials >= 1 and 0 <= successes <= trials, got {successes}/{trials}")
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def _mean_std(values: np.ndarray) -> tuple[float, float]:
    """Mean and sample std (ddof = 1; 0 for one value) of a flat float64 array, exactly ``(value, 0.0)`` when all
    values are equal: float summation would otherwise give a mean one ulp off and a std of about 1e-15 (93.7
    seven times: 1.5e-14), printed as a spread that is not there."""
    if values.min() == values.max():
        return float(values[0]), 0.0
    return float(values.mean()), float(values.std(ddof=1))


def seed_interval(per_seed: Sequence[float], confidence: float = 0.95) -> dict:
    """Mean and Student-t confidence interval over T training seeds [ours].

    The chips of one training seed share its weights, so a method's accuracy over seeds is summarised by the T
    per-seed Monte Carlo means (one number per trained network) and a t-interval with T - 1 degrees of freedom:
    ``half = t_{(1 + confidence) / 2, T-1} * std(ddof=1) / sqrt(T)``. The same applies to paired method
    differences (one difference per seed). Pooling the T x R chips as independent would understate the spread.

    Args:
        per_seed: T values in percent (per-seed MC means, or per-seed differences), T >= 1.
        confidence: two-sided level in (0, 1).

    Returns:
        ``{"mean", "std", "half_width", "seeds", "per_seed"}`` in percent; ``std`` and ``half_width`` are None
        for T = 1 (no spread can be estimated from one seed).

    Raises:
        ValueError: for an empty or non-finite input, or a confidence outside (0, 1).
    """
    from scipy import stats

    values = np.atleast_1d(np.asarray(per_seed, dtype=np.float64))
    if values.ndim != 1 or values.size < 1 or not np.isfinite(values).all():
        raise ValueError(f"need a flat list of at least one finite per-seed value, got {values.tolist()}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    mean, std = _mean_std(values)
    half = None
    if values.size == 1:  # no spread can be estimated from one seed
        std = None
    else:
        half = float(stats.t.ppf((1 + confidence) / 2, values.size - 1) * std / math.sqrt(values.size))
    return {"mean": mean, "std": std, "half_width": half, "seeds": int(values.size),
            "per_seed": [float(v) for v in values]}


def convergence_threshold(best_mean: float, num_classes: int) -> float:
    """Accuracy (percent) above which a training run counts as converged [ours]: halfway between chance
    (``100 / num_classes``) and ``best_mean``, the best MC mean of any run, of any method, at the same data set and
    training sigma, so that every method is judged against the same bar. E.g. 10 classes, best 80 %: 45 %.

    Raises:
        ValueError: for num_classes < 2.
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    chance = 100.0 / num_classes
    return chance + (float(best_mean) - chance) / 2


def convergence_probability(mean_accuracies: Sequence[float], num_classes: int, threshold: float | None = None) -> dict:
    """Fraction of T training runs (different seeds) that converged [ours] (docs/method.md, 'Monte Carlo evaluation
    and metrics').

    Args:
        mean_accuracies: each run's MC mean accuracy (percent) at its training sigma, T >= 1.
        num_classes: to place chance accuracy at ``100 / num_classes``.
        threshold: percent; default :func:`convergence_threshold` of the best run of this group. To compare
            methods, pass one threshold shared by all of them (the best run of any method at that sigma).

    Returns:
        ``{"probability", "converged", "runs", "threshold", "wilson95": [low, high]}``.

    Raises:
        ValueError: for an empty list.
    """
    values = [float(v) for v in mean_accuracies]
    if not values:
        raise ValueError("convergence probability needs at least one training run")
    if threshold is None:
        threshold = convergence_threshold(max(values), num_classes)
    converged = sum(v > threshold for v in values)
    return {
        "probability": converged / len(values),
        "converged": converged,
        "runs": len(values),
        "threshold": float(threshold),
        "wilson95": list(wilson_interval(converged, len(values))),
    }
