"""Table of the ADC grid (results/cpu-adc/run.sh): per network family and ADC setting, the mean over training
seeds of the per-seed Monte Carlo means at sigma 0.35 with its 95 % t-interval over seeds, the mean 5th percentile
over chips, and paired differences (same network, same chips). Usage:
    python3 results/cpu-adc/table.py > results/cpu-adc/table.md
"""
import json
from pathlib import Path

from neft.evaluation.metrics import seed_interval

RUNS = Path(__file__).parent / "runs"
NETWORKS = {"vanilla-s0": "vanilla", "noise-injection-s0.35": "noise-injection", "ovf-s0.35": "ovf",
            "noise-injection-adc6-s0.35": "noise-injection trained with the 6-bit periphery"}
ADCS = {"adcnone": "no ADC", "adc8": "8 bits", "adc6": "6 bits", "adc4": "4 bits"}


def point(network: str, adc: str) -> dict[int, dict]:
    """Per training seed: the accuracy summary at sigma 0.35 of that network's evaluation ``adc``."""
    found = {}
    for run in sorted(RUNS.glob(f"{network}-seed*")):
        result = json.loads((run / f"{adc}.json").read_text())
        found[result["train_seed"]] = result["per_sigma"][0]["accuracy"]
    return found


def interval(values: list[float]) -> str:
    summary = seed_interval(values)
    return f"{summary['mean']:.2f} ± {summary['half_width']:.2f}"


print("# Does robustness survive the ADC? LeNet-5, mnist-5k, sigma 0.35 (RRAM1), 64-row tiles, 30 chips per network\n")
print("Accuracy (%): mean over training seeds ± 95 % t-interval over seeds (3 seeds); p5: mean 5th percentile over "
      "chips.\n")
print("| network | " + " | ".join(ADCS.values()) + " |")
print("|---|" + "---:|" * len(ADCS))
for network, name in NETWORKS.items():
    cells = []
    for adc in ADCS:
        by_seed = point(network, adc)
        p5 = sum(a["p5"] for a in by_seed.values()) / len(by_seed)
        cells.append(f"{interval([a['mean'] for a in by_seed.values()])} (p5 {p5:.1f})")
    print(f"| {name} | " + " | ".join(cells) + " |")
print("\nPaired over seeds, accuracy points (mean ± 95 % t-interval):\n")
for network, name in NETWORKS.items():
    none = point(network, "adcnone")
    for adc in ("adc6", "adc4"):
        other = point(network, adc)
        print(f"- {name}: {ADCS[adc]} − no ADC: {interval([other[s]['mean'] - none[s]['mean'] for s in none])}")
for adc in ADCS:
    trained, plain = point("noise-injection-adc6-s0.35", adc), point("noise-injection-s0.35", adc)
    print(f"- trained with the periphery − noise-injection, evaluated with {ADCS[adc]}: "
          f"{interval([trained[s]['mean'] - plain[s]['mean'] for s in plain])}")
