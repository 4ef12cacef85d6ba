"""Table of the 30-epoch realistic-chip grid (configs/cpu-realistic-chip-30.toml): per method and training chip,
the mean over training seeds of the per-seed Monte Carlo means on the realistic chip at sigma 0 and 0.35 with its
95 % t-interval over seeds, the mean 5th percentile over chips, the clean test accuracy, and paired differences
(trained on the chip − trained on RRAM1, same seed, same chips). Usage:
    python3 results/cpu-realistic-chip-30/table.py > results/cpu-realistic-chip-30/table.md
"""
import json
from pathlib import Path

from neft.evaluation.metrics import seed_interval

CELLS = Path(__file__).parent / "cells"
ON_CHIP = "_device=configs_chips_realistic-chip.toml"
NETWORKS = [("vanilla", "vanilla-s0", "no variation")]
for method in ("noise-injection", "ovf", "irs", "rcg"):
    NETWORKS += [(method, f"{method}-s0.35", "RRAM1"), (method, f"{method}{ON_CHIP}-s0.35", "the chip")]
SIGMAS = (0.0, 0.35)


def by_seed(cell: str) -> dict[int, tuple[dict, dict]]:
    """Per training seed: ({sigma: accuracy summary on the realistic chip}, the training summary)."""
    found = {}
    for run in sorted(CELLS.glob(f"{cell}-seed*")):
        result = json.loads((run / "results.json").read_text())
        found[result["train_seed"]] = ({p["sigma"]: p["accuracy"] for p in result["per_sigma"]},
                                       json.loads((run / "summary.json").read_text()))
    return found


def interval(values: list[float]) -> str:
    summary = seed_interval(values)
    return f"{summary['mean']:.2f} ± {summary['half_width']:.2f}"


def mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


print("# Which methods keep their robustness on a realistic chip? LeNet-5, mnist-5k, 30 epochs at sigma 0.35\n")
print("Evaluated on the realistic chip of configs/chips/realistic-chip.toml (8/2-bit differential mapping, 1 % + 1 % "
      "stuck devices, drift read at one year, global drift compensation), 20 chips per sigma and network. Accuracy "
      "(%): mean over the 3 training seeds ± 95 % t-interval over seeds; p5: mean over seeds of the 5th percentile "
      "over chips; clean: test accuracy of the trained network without variation.\n")
print("| method | trained on | sigma 0 | sigma 0.35 | p5 at sigma 0 / 0.35 | clean test |")
print("|---|---|---:|---:|---:|---:|")
for method, cell, trained_on in NETWORKS:
    seeds = by_seed(cell)
    accuracy = [interval([chip[sigma]["mean"] for chip, _ in seeds.values()]) for sigma in SIGMAS]
    p5 = " / ".join(f"{mean(chip[sigma]['p5'] for chip, _ in seeds.values()):.1f}" for sigma in SIGMAS)
    clean = mean(summary["test_accuracy_clean"] for _, summary in seeds.values())
    print(f"| {method} | {trained_on} | {accuracy[0]} | {accuracy[1]} | {p5} | {clean:.1f} |")
print("\nPaired by training seed on the same chips, sigma 0.35, points (mean ± 95 % t-interval over seeds):\n")
vanilla = by_seed("vanilla-s0")
for method in ("noise-injection", "ovf", "irs", "rcg"):
    plain, chip = by_seed(f"{method}-s0.35"), by_seed(f"{method}{ON_CHIP}-s0.35")
    for name, key in (("mean", "mean"), ("p5", "p5")):
        print(f"- {method}, {name}: trained on the chip − trained on RRAM1: "
              f"{interval([chip[s][0][0.35][key] - plain[s][0][0.35][key] for s in plain])}")
    print(f"- {method} trained on the chip − vanilla, mean: "
          f"{interval([chip[s][0][0.35]['mean'] - vanilla[s][0][0.35]['mean'] for s in plain])}")
noise = by_seed(f"noise-injection{ON_CHIP}-s0.35")
for method in ("ovf", "irs", "rcg"):
    other = by_seed(f"{method}{ON_CHIP}-s0.35")
    print(f"- {method} − noise-injection, both trained on the chip, mean: "
          f"{interval([other[s][0][0.35]['mean'] - noise[s][0][0.35]['mean'] for s in noise])}")
