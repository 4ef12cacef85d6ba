"""Tables and plots of results/cost/run.sh: accuracy on the realistic chip against what the chip costs, mean over
seeds with a 95 % interval (README.md, 'What a chip costs'). Copies the costed results files of RUNS into
results/cost/runs/[vgg8/]METHOD/seedN/, writes table.md and per network (LeNet-5 unprefixed, VGG8 width 0.25 as
vgg8_*) circuits_cost.png (5th-percentile accuracy against energy per inference, one point per training method and
circuit) and fixes_cost.png (5th-percentile gain against programming time per chip, one point per fix). Usage:
    python3 results/cost/table.py RUNS
"""
import json
import shutil
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).parent
SEEDS = (0, 1, 2)


@dataclass(frozen=True)
class Network:
    """One network's part of run.sh: its run directories ``{prefix}{METHODS[method]}-seedN``, its grid of ADC bits
    and tile rows, and the names of its files here (``{files}runs/...``, ``{files}circuits_cost.png``)."""
    title: str
    prefix: str
    methods: dict
    bits: tuple
    tiles: tuple
    files: str


NETWORKS = (
    Network("LeNet-5", "", {"vanilla": "vanilla-s0", "noise-injection": "noise-injection-s0.35", "ovf": "ovf-s0.35",
                            "irs": "irs-s0.35", "rcg": "rcg-s0.35"}, (4, 5, 6, 8), (64, 256), ""),
    Network("VGG8 width 0.25", "vgg8-", {"vanilla": "vanilla-s0", "noise-injection": "noise-injection-s0.3",
                                         "ovf": "ovf-s0.3", "irs": "irs-s0.3", "rcg": "rcg-s0.3"},
            (4, 5, 6, 8), (64, 256), "vgg8_"),
)
FIXES = {"wv0.01": "write-verify 1 %", "wv0.05": "write-verify 5 %", "wv0.2": "write-verify 20 %",
         "tune20": "tuned block, 20 steps", "tune100": "tuned block, 100 steps"}
T95 = {2: 12.71, 3: 4.30}  # Student t, 97.5 % quantile, n - 1 = 1, 2 degrees of freedom


def gather(runs: Path, net: Network) -> dict:
    """``{(method, seed, name): result}`` of the network's costed results files, copied into results/cost/runs/."""
    found = {}
    names = [f"adc{b}_tile{t}" for b in net.bits for t in net.tiles] + ["ideal", *FIXES]
    for method, name_ in net.methods.items():
        for seed in SEEDS:
            for name in names:
                path = runs / f"{net.prefix}{name_}-seed{seed}" / f"{name}.json"
                if not path.is_file() or "cost" not in (result := json.loads(path.read_text())):
                    continue
                copy = HERE / "runs" / net.prefix.rstrip("-") / method / f"seed{seed}" / path.name
                copy.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, copy)
                found[(method, seed, name)] = result
    return found


def p5(result: dict) -> float:
    return result["per_sigma"][0]["accuracy"]["p5"]


def stats(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95 % t-interval over seeds (0 for one seed)."""
    mean = statistics.fmean(values)
    return mean, (T95[len(values)] * statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else 0.0)


def fmt(pair: tuple[float, float]) -> str:
    return f"{pair[0]:.2f} +- {pair[1]:.2f}"


def circuits(found: dict, net: Network) -> dict:
    """``{method: {name: (seeds, mean accuracy stats, p5 stats, energy nJ, latency us, area mm^2)}}``."""
    table = {}
    for method in net.methods:
        for b in net.bits:
            for t in net.tiles:
                name = f"adc{b}_tile{t}"
                results = [found[(method, s, name)] for s in SEEDS if (method, s, name) in found]
                if not results:
                    continue
                cost = results[0]["cost"]
                table.setdefault(method, {})[name] = (
                    len(results), stats([r["per_sigma"][0]["accuracy"]["mean"] for r in results]),
                    stats([p5(r) for r in results]), statistics.fmean(r["cost"]["energy_J"] for r in results) * 1e9,
                    cost["latency_s"] * 1e6, cost["area_m2"] * 1e6)
    return table


def best_by_bits(rows: dict) -> str:
    """The best mean p5 over tile sizes at each ADC bit count."""
    best = {}
    for name, row in rows.items():
        bits = int(name.removeprefix("adc").split("_")[0])
        best[bits] = max(best.get(bits, -1.0), row[2][0])
    return "; ".join(f"{bits} bits {value:.2f}" for bits, value in sorted(best.items()))


def circuits_section(table: dict) -> list[str]:
    lines = ["| method | ADC bits | tile rows | seeds | mean (%) | p5 (%) | energy (nJ/inference) | latency (us) | "
             "area (mm^2) |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    q1, q3 = [], []
    for method, rows in table.items():
        for name, (n, mean, p5s, energy, latency, area) in rows.items():
            bits, tile = name.removeprefix("adc").split("_tile")
            lines.append(f"| {method} | {bits} | {tile} | {n} | {fmt(mean)} | {fmt(p5s)} | {energy:.1f} | "
                         f"{latency:.2f} | {area:.3f} |")
        best_name, best = max(rows.items(), key=lambda item: item[1][2][0])
        near = sorted((row[3], name) for name, row in rows.items() if row[2][0] >= best[2][0] - 1)
        energy, name = near[0]
        q1.append(f"- **{method}**: best p5 {fmt(best[2])} % (`{best_name}`); the lowest energy within 1 point is "
                  f"`{name}` (p5 {fmt(rows[name][2])} %, {energy:.1f} nJ per inference)")
        fewest = min(int(name.removeprefix("adc").split("_")[0]) for name, row in rows.items()
                     if row[2][0] >= best[2][0] - 1)
        q3.append(f"- **{method}**: fewest ADC bits within 1 point of its own best p5: **{fewest}**; best p5 over "
                  f"tile sizes by ADC bits: {best_by_bits(rows)} %")
    return [*lines, "", "**Lowest energy at a p5 within 1 point of the best** (mean over seeds):", "", *q1, "",
            "**Does a training method let the chip use a cheaper ADC?**", "", *q3]


def fixes(found: dict) -> dict:
    """``{fix: (seeds, p5 stats, p5 gain stats, fix seconds stats, fix joules, gain per second stats)}`` for vanilla
    (each seed's gain over its own ideal-circuit p5)."""
    table = {}
    for name, label in FIXES.items():
        gains, seconds, joules, rates, p5s = [], [], [], [], []
        for seed in SEEDS:
            if ("vanilla", seed, name) not in found or ("vanilla", seed, "ideal") not in found:
                continue
            result = found[("vanilla", seed, name)]
            programming = result["cost"]["programming"]
            fix = [programming[t] for t in ("write_verify", "recalibrate_bn", "chip_tune")]
            gain = p5(result) - p5(found[("vanilla", seed, "ideal")])
            p5s.append(p5(result))
            gains.append(gain)
            seconds.append(sum(t["seconds"] for t in fix))
            joules.append(sum(t["joules"] for t in fix))
            rates.append(gain / seconds[-1])
        if gains:
            table[label] = (len(gains), stats(p5s), stats(gains), stats(seconds), statistics.fmean(joules),
                            stats(rates))
    return table


def fixes_section(table: dict, found: dict) -> list[str]:
    ideal = [p5(found[("vanilla", s, "ideal")]) for s in SEEDS if ("vanilla", s, "ideal") in found]
    if not ideal:
        return []
    lines = [f"Vanilla without a fix (no ADC, no DAC): p5 {fmt(stats(ideal))} % over {len(ideal)} seeds.", "",
             "| fix (vanilla, no ADC) | seeds | p5 (%) | p5 gain (points) | the fix's programming per chip (s) | "
             "the fix (J) | p5 points per second |", "|---|---:|---:|---:|---:|---:|---:|"]
    for label, (n, p5s, gain, seconds, joules, rate) in table.items():
        lines.append(f"| {label} | {n} | {fmt(p5s)} | {fmt(gain)} | {fmt(seconds)} | {joules:.2e} | {fmt(rate)} |")
    if table:
        label = max(table, key=lambda k: table[k][5][0])
        lines += ["", f"**Most p5 per second of programming:** {label} ({fmt(table[label][5])} points per second)."]
    return lines


def plots(circuit_table: dict, fix_table: dict, net: Network) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method, rows in circuit_table.items():
        xs = [row[3] for row in rows.values()]
        ax.errorbar(xs, [row[2][0] for row in rows.values()], yerr=[row[2][1] for row in rows.values()], fmt="o",
                    capsize=2, label=method, alpha=0.8)
        for x, (name, row) in zip(xs, rows.items()):
            ax.annotate(name.removeprefix("adc").split("_")[0], (x, row[2][0]), fontsize=6, xytext=(2, 2),
                        textcoords="offset points")
    ax.set(xlabel="energy per inference (nJ, 45 nm)", ylabel="5th-percentile accuracy over chips (%)",
           title=f"{net.title} on the realistic chip: ADC bits (labels) x tile rows, mean of the seeds")
    ax.title.set_fontsize(8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(HERE / f"{net.files}circuits_cost.png", dpi=120)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, (n, p5s, gain, seconds, joules, rate) in fix_table.items():
        ax.errorbar([seconds[0]], [gain[0]], xerr=[seconds[1]], yerr=[gain[1]], fmt="o", capsize=3, label=label)
    ax.set(xscale="log", xlabel="the fix's programming time per chip (s)", ylabel="p5 gain over no fix (points)",
           title=f"{net.title} vanilla on the realistic chip: per-chip fixes, mean of the seeds")
    ax.title.set_fontsize(8)
    if fix_table:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(HERE / f"{net.files}fixes_cost.png", dpi=120)
    plt.close(fig)


def main() -> None:
    shutil.rmtree(HERE / "runs", ignore_errors=True)
    text = ["# What a chip costs on the realistic chip, 20 chips per point, up to 3 seeds (each row says how many)", "",
            "LeNet-5 on mnist-5k (init torch, 30 epochs; vanilla, and noise-injection, OVF, IRS, rcg trained at "
            "sigma 0.35 on RRAM1) evaluated at sigma 0.2; VGG8 width 0.25 on Fashion-MNIST (2,000 training images, "
            "init torch, 30 epochs; vanilla, and noise-injection, OVF, IRS, rcg trained at sigma 0.3 on RRAM1) "
            "evaluated at sigma 0.1 with 0.1 % of the devices stuck on and 0.1 % stuck off (`--stuck-on 0.001 "
            "--stuck-off 0.001`) on 1,000 test images; seeds 0-2, on `configs/chips/realistic-chip.toml` "
            "(results/cost/run.sh); costs from `neft cost` with the 45 nm defaults (docs/method.md, 'What a chip "
            "costs'). p5: the 5th percentile over 20 chips. Accuracies: mean over seeds +- the half-width of the "
            "95 % t-interval over seeds (t = 4.30 for 3 seeds). Energy, latency and area barely depend on the seed "
            "(the programmed levels), the mean is shown."]
    for net in NETWORKS:
        found = gather(Path(sys.argv[1]), net)
        if not found:
            continue
        circuit_table, fix_table = circuits(found, net), fixes(found)
        text += ["", f"## {net.title}: ADC bits x tile rows (8-bit DACs)", "", *circuits_section(circuit_table), "",
                 f"## {net.title}: per-chip fixes", "", *fixes_section(fix_table, found)]
        plots(circuit_table, fix_table, net)
    (HERE / "table.md").write_text("\n".join([*text, ""]))


if __name__ == "__main__":
    main()
