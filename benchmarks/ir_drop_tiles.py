"""Which tile size a method tolerates under IR drop (docs/method.md, 'IR drop'): a small grid.

LeNet-5 on mnist-5k, trained with each method of ``--methods`` (training sigma ``--sigma``; vanilla at 0) for
``--epochs`` epochs and ``--seeds`` seeds, once without IR drop and once through it (``--train-tile-rows`` rows,
``--wire-resistance``), then evaluated by Monte Carlo (``--runs`` chips at sigma ``--sigma``, the full test split)
on tiles of 64, 128, 256 and 512 rows with that wire resistance, and on the same tiles without it. Prints one row
per (method, trained through IR drop or not, tile rows): the mean accuracy over seeds without and with IR drop and
the difference.

    nice -n 10 python benchmarks/ir_drop_tiles.py --seeds 1 --epochs 3 --runs 10       # the reduced grid
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import warnings
from pathlib import Path

import torch

import neft
from neft import data
from neft.store import checkpoint

TILES = (64, 128, 256, 512)


def train_run(out: Path, method: str, sigma: float, epochs: int, seed: int, through: dict) -> torch.nn.Module:
    config = neft.TrainConfig(model="lenet5", dataset="mnist-5k", method=method,
                              sigma=sigma if method != "vanilla" else 0.0, epochs=epochs, seed=seed, val_runs=2,
                              **through)
    neft.train(config, out, progress=False)
    return checkpoint.load(out)


def accuracy(model, images, labels, sigma: float, runs: int, seed: int, **circuit) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a tile beyond the approximation warns; counted anyway
        result = neft.evaluate(model, images, labels, [sigma], runs=runs, seed=seed, progress=False, **circuit)
    return result["per_sigma"][0]["accuracy"]["mean"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default="vanilla,noise-injection")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--sigma", type=float, default=0.1)
    parser.add_argument("--wire-resistance", type=float, default=3e-5)
    parser.add_argument("--train-tile-rows", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(1)
    dataset = data.load("mnist-5k")
    images, labels = dataset.preprocess(dataset.splits["test"][0]), dataset.splits["test"][1]
    trainings = {"no": {}, "yes": {"tile_rows": args.train_tile_rows, "wire_resistance": args.wire_resistance}}
    table: dict[tuple, list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for method in args.methods.split(","):
            for through, settings in trainings.items():
                for seed in range(args.seeds):
                    model = train_run(Path(tmp) / f"{method}-{through}-{seed}", method, args.sigma, args.epochs,
                                      seed, settings)
                    for rows in TILES:
                        plain = accuracy(model, images, labels, args.sigma, args.runs, seed, tile_rows=rows)
                        dropped = accuracy(model, images, labels, args.sigma, args.runs, seed, tile_rows=rows,
                                           wire_resistance=args.wire_resistance)
                        table.setdefault((method, through, rows), []).append((plain, dropped))
                        print(f"{method} through={through} seed {seed} rows {rows}: {plain:.2f} -> {dropped:.2f}",
                              flush=True)
    print(f"\nLeNet-5 mnist-5k, {args.epochs} epochs, {args.seeds} seed(s), {args.runs} chips at sigma {args.sigma}, "
          f"wire_resistance {args.wire_resistance:g} (trained through it on {args.train_tile_rows}-row tiles)")
    print("| method | trained through IR drop | tile rows | acc. without IR drop (%) | with IR drop (%) | cost |")
    print("|---|---|---:|---:|---:|---:|")
    for (method, through, rows), values in table.items():
        plain = statistics.fmean(v[0] for v in values)
        dropped = statistics.fmean(v[1] for v in values)
        print(f"| {method} | {through} | {rows} | {plain:.2f} | {dropped:.2f} | {dropped - plain:+.2f} |")


if __name__ == "__main__":
    main()
