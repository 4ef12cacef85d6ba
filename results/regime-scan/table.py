"""Markdown table of scan.csv: per setting, the best-epoch noisy validation accuracy of every seed and how many
seeds failed (stayed below 20 %, i.e. within 10 points of chance for 10 classes).
Usage: python3 results/regime-scan/table.py > results/regime-scan/table.md"""
import csv
from pathlib import Path

rows = list(csv.DictReader((Path(__file__).parent / "scan.csv").open()))
groups: dict[tuple, list[dict]] = {}
for row in rows:
    key = (row["model"], row["width"], row["dataset"], row["train_images"], row["epochs"], row["init"],
           row["method"], row["sigma"])
    groups.setdefault(key, []).append(row)
print("| model | width | data set (train images) | epochs | init | method | sigma | noisy val. acc. per seed (%) "
      "| failed | seconds per run |")
print("|---|---|---|---|---|---|---|---|---|---|")
for (model, width, dataset, images, epochs, init, method, sigma), group in groups.items():
    accuracies = [float(r["best_val_noisy"]) for r in group]
    failed = sum(a < 20 for a in accuracies)
    seconds = sorted(int(r["seconds"]) for r in group)[len(group) // 2]
    print(f"| {model} | {width} | {dataset} ({images}) | {epochs} | {init} | {method} | {sigma} | "
          f"{', '.join(f'{a:.1f}' for a in accuracies)} | {failed}/{len(group)} | {seconds} |")
