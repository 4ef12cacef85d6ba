"""Tables and plots of results/cost/run.sh: accuracy on the realistic chip against what the chip costs (README.md,
'What a chip costs'). Copies the costed results files of RUNS into results/cost/runs/, writes table.md, and the
reports circuits (circuits_cost.png: accuracy against energy per inference) and fixes (fixes_cost.png: accuracy
against programming time per chip). Usage:
    python3 results/cost/table.py RUNS
"""
import json
import shutil
import sys
from pathlib import Path

from neft.reporting import write_report

HERE = Path(__file__).parent
NETWORKS = {"vanilla-s0-seed0": "vanilla", "noise-injection-s0.35-seed0": "noise-injection",
            "ovf-s0.35-seed0": "ovf",
            "noise-injection_device=configs_chips_realistic-chip.toml-s0.35-seed0": "noise-injection (chip-trained)"}
CIRCUITS = [f"adc{bits}_tile{rows}" for bits in (4, 5, 6, 8) for rows in (64, 128, 256)]
FIXES = {"ideal": "no fix", "wv0.01": "write-verify 1 %", "wv0.05": "write-verify 5 %", "wv0.2": "write-verify 20 %",
         "tune20": "tuned block, 20 steps", "tune100": "tuned block, 100 steps"}


def gather(runs: Path) -> dict:
    """``{(network, name): result}`` of the costed results files, copied into results/cost/runs/."""
    found = {}
    for directory, network in NETWORKS.items():
        for name in [*CIRCUITS, *FIXES]:
            path = runs / directory / f"{name}.json"
            if not path.is_file():
                continue
            result = json.loads(path.read_text())
            if "cost" not in result:
                continue
            copy = HERE / "runs" / network.split(" ")[0] / (("chip-" if "chip" in network else "") + path.name)
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, copy)
            found[(network, name)] = (result, copy)
    return found


def accuracy(result: dict) -> tuple[float, float]:
    point = result["per_sigma"][0]["accuracy"]
    return point["mean"], point["p5"]


def circuits_table(found: dict) -> list[str]:
    lines = ["| network | ADC bits | tile rows | mean (%) | p5 (%) | energy (nJ/inference) | latency (us) | "
             "area (mm^2) |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    answers = []
    for network in NETWORKS.values():
        points = [(name, found[(network, name)][0]) for name in CIRCUITS if (network, name) in found]
        if not points:
            continue
        for name, result in points:
            bits, rows = name.removeprefix("adc").split("_tile")
            mean, p5 = accuracy(result)
            cost = result["cost"]
            lines.append(f"| {network} | {bits} | {rows} | {mean:.2f} | {p5:.2f} | {cost['energy_J'] * 1e9:.1f} | "
                         f"{cost['latency_s'] * 1e6:.2f} | {cost['area_m2'] * 1e6:.3f} |")
        best = max(accuracy(result)[1] for _, result in points)
        near = [(result["cost"]["energy_J"], name, accuracy(result)[1]) for name, result in points
                if accuracy(result)[1] >= best - 1]
        energy, name, p5 = min(near)
        cheapest = min((result["cost"]["energy_J"], name) for name, result in points)
        answers.append(f"- **{network}**: best p5 {best:.2f} %; the cheapest configuration within 1 point of it is "
                       f"`{name}` (p5 {p5:.2f} %, {energy * 1e9:.1f} nJ per inference; the cheapest of all, "
                       f"`{cheapest[1]}`, costs {cheapest[0] * 1e9:.1f} nJ)")
    return lines + [""] + answers


def fixes_table(found: dict) -> list[str]:
    network = "vanilla"
    if (network, "ideal") not in found:
        return []
    base_mean, base_p5 = accuracy(found[(network, "ideal")][0])
    lines = ["| fix (vanilla, no ADC) | mean (%) | p5 (%) | p5 gain (points) | programming per chip (s) | "
             "of which the fix (s) | the fix (J) | p5 points per second of the fix |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, label in FIXES.items():
        if (network, name) not in found:
            continue
        result = found[(network, name)][0]
        mean, p5 = accuracy(result)
        programming = result["cost"]["programming"]
        fix = {term: programming[term] for term in ("write_verify", "recalibrate_bn", "chip_tune")}
        seconds = sum(term["seconds"] for term in fix.values())
        joules = sum(term["joules"] for term in fix.values())
        rate = f"{(p5 - base_p5) / seconds:.2f}" if seconds else ""
        lines.append(f"| {label} | {mean:.2f} | {p5:.2f} | {p5 - base_p5:+.2f} | "
                     f"{programming['total']['seconds']:.3f} | {seconds:.3f} | {joules:.2e} | {rate} |")
    return lines


def reports(found: dict) -> None:
    circuits = [(f"{network.split(' ')[0]}{'-chip' if 'chip' in network else ''} {name}", copy)
                for (network, name), (_, copy) in found.items() if name in CIRCUITS]
    write_report([copy for _, copy in circuits], HERE, "LeNet-5 on the realistic chip: ADC bits x tile rows",
                 name="circuits", labels=[label for label, _ in circuits], overwrite=True)
    fixes = [(FIXES[name], copy) for (network, name), (_, copy) in found.items()
             if network == "vanilla" and name in FIXES]
    write_report([copy for _, copy in fixes], HERE, "LeNet-5 vanilla on the realistic chip: per-chip fixes",
                 name="fixes", labels=[label for label, _ in fixes], overwrite=True)


def main() -> None:
    found = gather(Path(sys.argv[1]))
    text = ["# What a chip costs: LeNet-5 on the realistic chip at sigma 0.2, 20 chips per point", "",
            "Networks of `configs/cpu-realistic-chip-30.toml` (seed 0), evaluated on "
            "`configs/chips/realistic-chip.toml` "
            "(results/cost/run.sh); costs from `neft cost` with the 45 nm defaults (docs/method.md, 'What a chip "
            "costs'). p5: the 5th percentile over chips.", "", "## ADC bits x tile rows (8-bit DACs)", "",
            *circuits_table(found), "", "## Per-chip fixes", "", *fixes_table(found), ""]
    (HERE / "table.md").write_text("\n".join(text))
    reports(found)


if __name__ == "__main__":
    main()
