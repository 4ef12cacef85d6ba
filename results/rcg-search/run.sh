#!/usr/bin/env bash
# The RCG authors' search of the training-noise scale, sized for a shared 2-core CPU: LeNet-5 on mnist-5k
# (PyTorch's init), rcg at k = 1, training sigma 0.35 (RRAM1), 10 epochs per network (the authors train 20),
# golden-section search over scales 0.5 .. 2.5 with 4 points x 3 seeds (the authors: 5 iterations), each point
# scored by the mean over seeds of the 5th percentile of the accuracy over 50 validation chips. Afterwards every
# network is evaluated on the test set (100 chips at sigma 0.35) and reported. Resumable. Usage: results/rcg-search/run.sh [work folder]
set -euo pipefail
work=${1:-runs/rcg-search}
out=results/rcg-search
neft rcg-search --model lenet5 --dataset mnist-5k --init torch --sigma 0.35 --censor-k 1 --epochs 10 \
  --low 0.5 --high 2.5 --points 4 --seeds 0,1,2 --score p5 --val-chips 50 --out "$work" --quiet
cp "$work"/search.json "$work"/search.csv "$out"/
results=()
for run in "$work"/scale*-seed*; do
  [ -f "$run/results.json" ] || neft evaluate "$run" --sigmas 0.35 --runs 100 --quiet
  mkdir -p "$out/cells/$(basename "$run")"
  cp "$run"/config.json "$run"/summary.json "$run"/validation.json "$run"/results.json "$out/cells/$(basename "$run")/"
  results+=("$out/cells/$(basename "$run")/results.json")
done
neft report "${results[@]}" --out "$out" --overwrite \
  --title "rcg k=1 on LeNet-5 / mnist-5k at sigma 0.35: test accuracy of every scale the search trained (3 seeds)"
