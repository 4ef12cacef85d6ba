"""Tables and plots of the per-chip fixes comparison (results/chip-fixes/run.sh).

Per model, training method and fix: the mean over training seeds of the per-seed Monte Carlo means at sigma 0.35,
with its 95 % t-interval over seeds, the mean 5th percentile over chips, and what each chip's fix costs (from
``deployment_cost``). Seed 0's noise-injection LeNet-5 adds accuracy against tuning steps and against the fraction
of weights written (curves.png). Usage: python3 results/chip-fixes/table.py > results/chip-fixes/table.md
"""
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from neft.evaluation.metrics import seed_interval  # noqa: E402

HERE = Path(__file__).parent
FIXES = {"none": "no fix", "bn": "BatchNorm recalibration", "swim1": "SWIM write-verify 1 %", "tune": "tuned block"}
MODELS = {"lenet5": "LeNet-5", "vgg8": "VGG8 width 0.25"}


def cost(result: dict) -> str:
    spent = result["deployment_cost"]
    parts = []
    if spent["write_verify"]["weights_verified"]:
        parts.append(f"{spent['write_verify']['weights_verified']:,} weights verified "
                     f"({100 * spent['write_verify']['fraction']:.2f} %)")
    if spent["recalibrate_bn"]["images"]:
        parts.append(f"{spent['recalibrate_bn']['images']} images")
    tune = spent["chip_tune"]
    if tune["optimizer_steps"]:
        parts.append(f"{tune['optimizer_steps']} steps, {tune['images']:,} images, "
                     f"{tune['weights_written_verified']:,} weights written "
                     f"({100 * tune['fraction_of_weights']:.2f} %)")
    return "; ".join(parts) or "none"


def interval(values: list[float]) -> str:
    summary = seed_interval(values)
    half = f" ± {summary['half_width']:.2f}" if summary["half_width"] is not None else ""
    return f"{summary['mean']:.2f}{half}"


print("# Per-chip fixes at sigma 0.35 (mnist-5k, RRAM1)\n")
for model, model_name in MODELS.items():
    cells = sorted((HERE / "cells" / model).glob("*-seed*")) if (HERE / "cells" / model).is_dir() else []
    if not cells:
        continue
    first = json.loads(next(cells[0].glob("fix_none.json")).read_text())
    print(f"## {model_name}: {first['per_sigma'][0]['runs']} chips per network, test set of {first['test_size']}\n")
    print("| training | fix | seeds | accuracy (%, mean ± 95 % t over seeds) | 5th percentile (%) | cost per chip |")
    print("|---|---|---|---|---|---|")
    for method in ("noise-injection", "ovf", "irs"):
        for fix, fix_name in FIXES.items():
            files = sorted(HERE.glob(f"cells/{model}/{method}-s0.35-seed*/fix_{fix}.json"))
            if not files:
                continue
            results = [json.loads(f.read_text()) for f in files]
            means = [r["per_sigma"][0]["accuracy"]["mean"] for r in results]
            p5 = sum(r["per_sigma"][0]["accuracy"]["p5"] for r in results) / len(results)
            print(f"| {method} | {fix_name} | {len(results)} | {interval(means)} | {p5:.2f} | {cost(results[0])} |")
    print("\nPaired over seeds (same network, same chips), accuracy points, mean ± 95 % t:\n")
    for method in ("noise-injection", "ovf", "irs"):
        for a, b in (("tune", "swim1"), ("tune", "none"), ("bn", "none")):
            pairs = []
            for cell in sorted(HERE.glob(f"cells/{model}/{method}-s0.35-seed*")):
                if (cell / f"fix_{a}.json").is_file() and (cell / f"fix_{b}.json").is_file():
                    pairs.append(json.loads((cell / f"fix_{a}.json").read_text())["per_sigma"][0]["accuracy"]["mean"]
                                 - json.loads((cell / f"fix_{b}.json").read_text())["per_sigma"][0]["accuracy"]["mean"])
            if pairs:
                print(f"- {method}: {FIXES[a]} − {FIXES[b]}: {interval(pairs)} ({len(pairs)} seed(s))")
    print()

curves = HERE / "curves"
if curves.is_dir():
    def point(name: str) -> tuple[float, float]:
        result = json.loads((curves / name).read_text())
        return result["per_sigma"][0]["accuracy"]["mean"], result["per_sigma"][0]["accuracy"]["ci95"]

    steps = [(0, "fix_none.json")] + [(s, f"curve_tune{s}.json") for s in (10, 25)] + [(50, "fix_tune.json"),
                                                                                    (100, "curve_tune100.json")]
    steps = [(s, n) for s, n in steps if (curves / n).is_file()]
    swim = [(0.0, "fix_none.json")] + [(p, f"curve_swim_wv{p:g}.json") for p in (0.002, 0.004)] + \
        [(0.01, "fix_swim1.json"), (0.02, "curve_swim_wv0.02.json")]
    swim = [(p, n) for p, n in swim if (curves / n).is_file()]
    tuned = json.loads((curves / "fix_tune.json").read_text())
    block = tuned["deployment_cost"]["chip_tune"]["fraction_of_weights"]
    print("## Seed 0, noise-injection LeNet-5: accuracy against tuning steps and against the fraction written\n")
    print("| tuned block, steps | accuracy (%, ± 95 % CI over chips) |")
    print("|---|---|")
    for s, name in steps:
        mean, ci = point(name)
        print(f"| {s} | {mean:.2f} ± {ci:.2f} |")
    print(f"\nThe block writes {100 * block:.2f} % of the weights (exactly, verified).\n")
    print("| SWIM write-verify, fraction of weights | accuracy (%, ± 95 % CI over chips) |")
    print("|---|---|")
    for p, name in swim:
        mean, ci = point(name)
        print(f"| {100 * p:g} % | {mean:.2f} ± {ci:.2f} |")
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.errorbar([s for s, _ in steps], [point(n)[0] for _, n in steps], [point(n)[1] for _, n in steps],
                  marker="o", capsize=3)
    left.set(xlabel="tuning steps per chip", ylabel="accuracy at sigma 0.35 (%)", title="tuned block")
    right.errorbar([100 * p for p, _ in swim], [point(n)[0] for _, n in swim], [point(n)[1] for _, n in swim],
                   marker="o", capsize=3, label="SWIM write-verify")
    for s, name in steps:
        if s == 50:
            right.errorbar([100 * block], [point(name)[0]], [point(name)[1]], marker="s", capsize=3,
                           label="tuned block, 50 steps")
    right.set(xlabel="weights written with verification (%)", ylabel="accuracy at sigma 0.35 (%)",
              title="accuracy against the fraction written")
    right.legend()
    figure.suptitle("LeNet-5 noise-injection (seed 0), mnist-5k, sigma 0.35, 30 chips")
    figure.tight_layout()
    figure.savefig(HERE / "curves.png", dpi=120)
