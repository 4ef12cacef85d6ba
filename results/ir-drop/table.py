"""Issue 34, item 4: which tile size a method tolerates under IR drop (results/ir-drop/run.sh's evaluations).

Reads CELLS/<model>/<run>/t<T>.json (tiles of T rows, no IR drop) and t<T>-ir.json (the same chips with the wire
resistance of run.sh) and writes, per model and sigma:
  1. accuracy (%) of each method trained without IR drop and through it (train.sh), on tiles of 64-512 rows with
     the drop: the mean over seeds of each network's mean over chips +- the std over seeds (seeds), then the mean
     5th percentile over chips; the same without the drop;
  2. paired differences over seeds (mean +- 95 % t-interval half-width): what the drop costs (drop - no drop, same
     network and chips) and what training through it recovers (trained through - trained without, same seed,
     both on chips with the drop).
Usage: python3 results/ir-drop/table.py results/ir-drop/cells > results/ir-drop/table.md
       python3 results/ir-drop/table.py results/ir-drop/cells --plot results/ir-drop/accuracy_vs_tile.png
"""

import statistics
import sys
from pathlib import Path

from scipy import stats

from neft.reporting.results import accuracy_at as accuracy

TILES = (64, 128, 256, 512)
SIGMA = {"lenet5": 0.35, "vgg8": 0.3}
TITLE = {"lenet5": "LeNet-5, mnist-5k", "vgg8": "VGG8 width 0.25, Fashion-MNIST (2,000 train, 2,000 test images)"}
METHODS = ("vanilla", "noise-injection", "ovf")
SEEDS = (0, 1, 2)


def run_name(model: str, method: str, through: bool, seed: int) -> str:
    """Run directory name of train.sh / the copied networks, e.g. ``ovf-s0.35-ir-seed1``."""
    sigma = "0" if method == "vanilla" else f"{SIGMA[model]:g}"
    return f"{method}-s{sigma}{'-ir' if through else ''}-seed{seed}"


def per_seed(cells: Path, model: str, method: str, through: bool, name: str, sigma: float) -> dict:
    """{seed: (mean, p5)} of the seeds whose network has the file ``name``.json."""
    found = {s: accuracy(cells / model / run_name(model, method, through, s) / f"{name}.json", sigma) for s in SEEDS}
    return {s: v for s, v in found.items() if v is not None}


def level(values: dict) -> str:
    """``mean +- std over seeds (n); mean p5``."""
    if not values:
        return "-"
    means = [v[0] for v in values.values()]
    p5 = statistics.fmean(v[1] for v in values.values())
    spread = f" +- {statistics.stdev(means):.2f}" if len(means) > 1 else ""
    return f"{statistics.fmean(means):.2f}{spread} ({len(means)}); {p5:.1f}"


def paired(a: dict, b: dict) -> str:
    """``mean +- 95 % t half-width (n)`` of a - b over the seeds both have."""
    diffs = [a[s][0] - b[s][0] for s in SEEDS if s in a and s in b]
    if not diffs:
        return "-"
    if len(diffs) == 1:
        return f"{diffs[0]:+.2f} (1)"
    half = stats.t.ppf(0.975, len(diffs) - 1) * statistics.stdev(diffs) / len(diffs) ** 0.5
    return f"{statistics.fmean(diffs):+.2f} +- {half:.2f} ({len(diffs)})"


def tables(cells: Path, model: str, sigma: float) -> list[str]:
    """The markdown of one model at one sigma."""
    head = "| " + " | ".join(f"{t} rows" for t in TILES) + " |"
    rule = "|---|---|" + "---:|" * len(TILES)
    out = [f"### {TITLE[model]}, sigma {sigma:g}", "",
           "Accuracy (%): mean over seeds of the mean over 20 chips +- std over seeds (seeds); mean 5th percentile.",
           "", "| method | trained | IR drop " + head, rule.replace("|---|---|", "|---|---|---|")]
    for method in METHODS:
        for through in (False, True):
            for drop in (True, False):
                row = [level(per_seed(cells, model, method, through, f"t{t}{'-ir' if drop else ''}", sigma))
                       for t in TILES]
                out.append(f"| {method} | {'through' if through else 'without'} | {'yes' if drop else 'no'} | "
                           + " | ".join(row) + " |")
    out += ["", "Paired differences (points), mean +- 95 % t-interval over seeds (seeds):", "",
            "| method | difference " + head, rule]
    for method in METHODS:
        for label, a, b in (("drop - no drop, trained without", (False, "-ir"), (False, "")),
                            ("drop - no drop, trained through", (True, "-ir"), (True, "")),
                            ("through - without, with the drop", (True, "-ir"), (False, "-ir")),
                            ("through - without, no drop", (True, ""), (False, ""))):
            row = [paired(per_seed(cells, model, method, a[0], f"t{t}{a[1]}", sigma),
                          per_seed(cells, model, method, b[0], f"t{t}{b[1]}", sigma)) for t in TILES]
            out.append(f"| {method} | {label} | " + " | ".join(row) + " |")
    return out + [""]


def plot(cells: Path, out: Path) -> None:
    """Accuracy against tile size with the drop (solid: trained without, dashed: through), one panel per model
    and sigma; the dotted lines are the tiles without the drop (trained without)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels = [(m, s) for m in SIGMA for s in (0.0, SIGMA[m])]
    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5), squeeze=False)
    for ax, (model, sigma) in zip(axes.flat, panels):
        for i, method in enumerate(METHODS):
            for through, drop, style in ((False, True, "-"), (True, True, "--"), (False, False, ":")):
                ys = [per_seed(cells, model, method, through, f"t{t}{'-ir' if drop else ''}", sigma) for t in TILES]
                pts = [(t, statistics.fmean(v[0] for v in y.values())) for t, y in zip(TILES, ys) if y]
                if pts:
                    label = f"{method}, {'through' if through else 'without'}{'' if drop else ', no drop'}"
                    ax.plot(*zip(*pts), style, marker="o", color=f"C{i}", label=label)
        ax.set_xscale("log", base=2)
        ax.set_xticks(TILES, [str(t) for t in TILES])
        ax.set_title(f"{TITLE[model].split(',')[0]}, sigma {sigma:g}", fontsize=9)
        ax.set_xlabel("tile rows")
        ax.set_ylabel("accuracy (%)")
    axes[0][1].legend(fontsize=7)
    fig.suptitle("IR drop, r = 2.32e-5 (mean over seeds of 20 chips each)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def main(cells: Path) -> None:
    print("# Which tile size a method tolerates under IR drop (results/ir-drop)\n")
    for model in SIGMA:
        for sigma in (0.0, SIGMA[model]):
            print("\n".join(tables(cells, model, sigma)))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[2] == "--plot":
        plot(Path(sys.argv[1]), Path(sys.argv[3]))
    else:
        main(Path(sys.argv[1]))
