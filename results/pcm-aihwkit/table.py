"""Issue 32, item 7: one table of the cpu-realistic-chip-30 LeNet-5 networks on the 0.2.0 realistic chip, on this
version's realistic chip, on PCM-aihwkit (1 h, 1 day, 1 year), on RRAM-Milo and under the chip preset
aihwkit-inference (PCM-aihwkit read through aihwkit 1.2's shipped periphery, 1 h and 1 year); per method the mean
over seeds of each network's mean accuracy over 20 chips, with a 95 % t-interval over seeds, and the mean 5th
percentile.

Usage: python3 results/pcm-aihwkit/table.py RUNS > results/pcm-aihwkit/table.md (RUNS as in run.sh).
"""

import sys
import warnings
from pathlib import Path

from scipy import stats

from neft.reporting.results import accuracy_at as accuracy

METHODS = {"vanilla": "vanilla-s0-seed", "noise-injection": "noise-injection-s0.35-seed", "ovf": "ovf-s0.35-seed",
           "irs": "irs-s0.35-seed", "rcg": "rcg-s0.35-seed",
           "noise-injection (trained on PCM-aihwkit, 1 y)": "noise-injection_device=PCM-aihwkit-s0-seed"}
CHIPS = {"0.2.0 chip, sigma 0.35, 1 y": ("results.json", 0.35), "this chip, sigma 0.35, 1 y": ("chip-now.json", 0.35),
         "PCM-aihwkit 1 h": ("pcm-aihwkit_t3620.json", 0.0), "PCM-aihwkit 1 day": ("pcm-aihwkit_t86420.json", 0.0),
         "PCM-aihwkit 1 y": ("pcm-aihwkit_t3.15e+07.json", 0.0), "RRAM-Milo": ("rram-milo.json", 0.0),
         "aihwkit-inference 1 h": ("aihwkit-inference_t3620.json", 0.0),
         "aihwkit-inference 1 y": ("aihwkit-inference_t3.15e+07.json", 0.0)}


def cell(values: list[tuple[float, float]]) -> str:
    """``mean +- half-width (n seeds); p5`` over the seeds that have the file."""
    if not values:
        return "-"
    means = [v[0] for v in values]
    mean, p5 = sum(means) / len(means), sum(v[1] for v in values) / len(values)
    if len(means) < 2:
        return f"{mean:.2f} (1 seed); {p5:.1f}"
    with warnings.catch_warnings():  # seeds with equal means: a zero-width interval, not a precision problem
        warnings.simplefilter("ignore", RuntimeWarning)
        spread = stats.tstd(means)
    half = stats.t.ppf(0.975, len(means) - 1) * spread / len(means) ** 0.5
    return f"{mean:.2f} +- {half:.2f} ({len(means)}); {p5:.1f}"


def main(runs: Path) -> None:
    print("| method | " + " | ".join(CHIPS) + " |")
    print("|---|" + "---:|" * len(CHIPS))
    for method, prefix in METHODS.items():
        row = []
        for name, sigma in CHIPS.values():
            found = [accuracy(runs / f"{prefix}{seed}" / name, sigma) for seed in range(3)]
            row.append(cell([v for v in found if v is not None]))
        print(f"| {method} | " + " | ".join(row) + " |")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
