"""Issue 33, item 7: which training methods survive the periphery aihwkit ships (results/periphery/run.sh).

For each network (LeNet-5 on mnist-5k, VGG8 width 0.25 on Fashion-MNIST) and each method trained on the Gaussian
model or under the chip preset aihwkit-inference:

1. accuracy on PCM-aihwkit devices alone (ideal converters: the weight-noise-only answer) and under aihwkit-inference
   (the same devices read through aihwkit 1.2's shipped periphery), 1 h and 1 year after programming; VGG8 also with
   BatchNorm recalibration or the tuned block per chip at 1 year: mean over seeds of each network's mean over 20
   chips (5 with the tuned block), with a 95 % t-interval over seeds, and the mean 5th percentile over chips;
2. paired differences per seed (same seed, same chips): method minus vanilla, and trained under the periphery minus
   trained on the Gaussian model, mean with a 95 % t-interval over the seeds both networks have (so with fewer
   seeds on one side it is not the difference of the two rows' means).

Usage: python3 results/periphery/table.py RUNS > results/periphery/table.md (RUNS as in run.sh; the committed
results/periphery/cells holds the evaluation files).
"""

import json
import sys
import warnings
from pathlib import Path

from scipy import stats

from neft.reporting.results import accuracy_at

SEEDS = (0, 1, 2)
NETWORKS = {"lenet5": ("LeNet-5, mnist-5k", 0.35),
            "vgg8": ("VGG8 width 0.25, Fashion-MNIST (2,000 training images)", 0.3)}
METHODS = ("vanilla", "noise-injection", "ovf", "irs", "rcg", "lipschitz", "correctnet", "distill")
READS = {"devices 1 h": "devices_t3620.json", "devices 1 y": "devices_t3.15e+07.json",
         "periphery 1 h": "periphery_t3620.json", "periphery 1 y": "periphery_t3.15e+07.json",
         "periphery 1 y + BN recalibration": "periphery-bn.json",
         "periphery 1 y + tuned block": "periphery-tuned.json"}


def run_name(method: str, trained_under_periphery: bool, sigma: float, seed: int) -> str:
    """The run directory train.sh gives a method, training model and seed."""
    if method == "vanilla":
        return f"vanilla-s0-seed{seed}"
    if trained_under_periphery:
        return f"{method}_device=aihwkit-inference-s0-seed{seed}"
    return f"{method}-s{sigma:g}-seed{seed}"


def interval(values: list[float]) -> str:
    """``mean +- 95 % t half-width (n)`` over seeds; ``mean (1 seed)`` for one."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return f"{mean:+.2f} (1 seed)"
    with warnings.catch_warnings():  # equal values: a zero-width interval, not a precision problem
        warnings.simplefilter("ignore", RuntimeWarning)
        half = stats.t.ppf(0.975, len(values) - 1) * stats.tstd(values) / len(values) ** 0.5
    return f"{mean:+.2f} +- {half:.2f} ({len(values)})"


def cell(values: list[tuple[float, float]]) -> str:
    """Mean accuracy over seeds with its interval; the mean 5th percentile after the semicolon."""
    if not values:
        return "-"
    p5 = sum(v[1] for v in values) / len(values)
    return interval([v[0] for v in values]).lstrip("+") + f"; {p5:.1f}"


def selected_on_ideal_layers(directory: Path, method: str, under: bool, sigma: float) -> bool:
    """Whether a seed of the variant chose its epoch on its ideal layers (``best_val_kind`` "clean"): networks
    trained under the periphery before neft scored such runs on noisy validation chips."""
    kinds = [json.loads(path.read_text()).get("best_val_kind") for seed in SEEDS
             if (path := directory / run_name(method, under, sigma, seed) / "summary.json").is_file()]
    return under and "clean" in kinds


def variants(directory: Path, sigma: float):
    """(label, method, trained under the periphery) of every variant with at least one evaluation file; a
    variant whose epochs were chosen on the ideal layers is marked with a dagger."""
    for method in METHODS:
        for under in ((False,) if method == "vanilla" else (False, True)):
            if any((directory / run_name(method, under, sigma, seed) / file).is_file()
                   for seed in SEEDS for file in READS.values()):
                mark = " \u2020" if selected_on_ideal_layers(directory, method, under, sigma) else ""
                yield f"{method}{' (trained under aihwkit-inference)' if under else ''}{mark}", method, under


def accuracies(directory: Path, method: str, under: bool, sigma: float, file: str) -> dict[int, tuple]:
    """seed -> (mean, p5) of one variant's results file, for the seeds that have it."""
    found = {seed: accuracy_at(directory / run_name(method, under, sigma, seed) / file, 0.0) for seed in SEEDS}
    return {seed: value for seed, value in found.items() if value is not None}


def paired(a: dict, b: dict) -> str:
    """Mean over the seeds both have of a's mean accuracy minus b's, with its interval."""
    seeds = sorted(a.keys() & b.keys())
    return interval([a[s][0] - b[s][0] for s in seeds]) if seeds else "-"


def network_tables(directory: Path, title: str, sigma: float) -> None:
    """The accuracy table and the paired differences of one network."""
    reads = {name: file for name, file in READS.items() if any(directory.glob(f"*/{file}"))}
    if not reads:
        print(f"## {title}\n\nNo evaluation has finished yet.\n")
        return
    print(f"## {title}\n\nMean accuracy (%) over seeds of each network's mean over 20 chips (5 with the tuned "
          "block), +- 95 % t-interval (seeds); mean 5th percentile over chips after the semicolon.\n")
    print("| method | " + " | ".join(reads) + " |")
    print("|---|" + "---:|" * len(reads))
    rows = list(variants(directory, sigma))
    for label, method, under in rows:
        values = [list(accuracies(directory, method, under, sigma, file).values()) for file in reads.values()]
        print(f"| {label} | " + " | ".join(cell(v) for v in values) + " |")
    if any(label.endswith("\u2020") for label, _, _ in rows):
        print("\n\u2020 Trained before neft chose the epoch of a run at sigma 0 on noisy validation chips: its epoch "
              "was chosen on the clean accuracy of its ideal layers.")
    print("\nPaired differences (points, same seeds and chips), mean +- 95 % t-interval over the seeds both "
          "networks have (the count in brackets; with fewer seeds on one side, not the difference of the rows' "
          "means):\n")
    keys = [name for name in ("devices 1 y", "periphery 1 h", "periphery 1 y") if name in reads]
    print("| method | " + " | ".join(f"- vanilla, {k}" for k in keys)
          + " | " + " | ".join(f"periphery-trained - Gaussian-trained, {k}" for k in keys) + " |")
    print("|---|" + "---:|" * (2 * len(keys)))
    for label, method, under in rows:
        if method == "vanilla" or under:
            continue
        against_vanilla, against_gaussian = [], []
        for key in keys:
            own = accuracies(directory, method, False, sigma, READS[key])
            against_vanilla.append(paired(own, accuracies(directory, "vanilla", False, sigma, READS[key])))
            against_gaussian.append(paired(accuracies(directory, method, True, sigma, READS[key]), own))
        print(f"| {method} | " + " | ".join(against_vanilla) + " | " + " | ".join(against_gaussian) + " |")
    print()


def main(runs: Path) -> None:
    print("# Which methods survive the periphery (issue 33, item 7)\n\nWritten by results/periphery/table.py from "
          "the evaluation files of results/periphery/run.sh. 'devices': PCM-aihwkit devices with ideal "
          "converters; 'periphery': the chip preset aihwkit-inference (the same devices read through aihwkit "
          "1.2's InferenceRPUConfig periphery); 1 h and 1 y after programming.\n")
    for key, (title, sigma) in NETWORKS.items():
        if (runs / key).is_dir():
            network_tables(runs / key, title, sigma)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
