"""Markdown table of scan.csv: per setting, the best-epoch noisy validation accuracy of every seed and how many
seeds failed: best noisy validation accuracy below 30 % (chance is 10 %; the release-init VGG8 runs that failed on a GPU
reached 22-29 %, the PyTorch-init run 80 %), with the clean test accuracy of the selected network per seed.
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
      "| failed | clean test acc. per seed (%) | seconds per run |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for (model, width, dataset, images, epochs, init, method, sigma), group in groups.items():
    accuracies = [float(r["best_val_noisy"]) for r in group]
    failed = sum(a < 30 for a in accuracies)
    clean = ", ".join(f"{float(r['test_clean']):.1f}" for r in group)
    seconds = sorted(int(r["seconds"]) for r in group)[len(group) // 2]
    print(f"| {model} | {width} | {dataset} ({images}) | {epochs} | {init} | {method} | {sigma} | "
          f"{', '.join(f'{a:.1f}' for a in accuracies)} | {failed}/{len(group)} | {clean} | {seconds} |")
