#!/usr/bin/env bash
# Accuracy against the time after programming on the realistic chip of configs/chips/realistic-chip.toml (1 % + 1 %
# stuck devices, drift nu ~ N(0.06, 0.02), global drift compensation), for the seed-0 network of every method of
# the 30-epoch cpu-realistic-chip-30 grid, at sigma 0.35 (their training sigma; vanilla too), 20 chips per read
# time, the same chips at every time. Run after `neft reproduce configs/cpu-realistic-chip-30.toml`; writes
# results/cpu-realistic-chip-30/drift/. Optional arguments: the grid folder and the output folder (the 4-epoch
# grid's: results/cpu-realistic-chip/drift.sh).
set -euo pipefail
grid=${1:-runs/cpu-realistic-chip-30}
out=${2:-results/cpu-realistic-chip-30/drift}
times=1,3600,86400,2.6e6,3.15e7
chip=configs/chips/realistic-chip.toml
on_chip=_device=configs_chips_realistic-chip.toml
cells=(vanilla-s0-seed0)
for method in noise-injection ovf irs rcg; do
  cells+=("$method-s0.35-seed0" "$method$on_chip-s0.35-seed0")
done
results=()
for cell in "${cells[@]}"; do
  neft evaluate "$grid/$cell" --sigmas 0.35 --runs 20 --device-model "$chip" --drift-times "$times" \
    --name drift --overwrite --quiet
  mkdir -p "$out/$cell"
  cp "$grid/$cell"/drift_t*.json "$out/$cell/"
  results+=("$out/$cell"/drift_t*.json)
done
neft report "${results[@]}" --out "$out" --overwrite \
  --title "Realistic chip at sigma 0.35, networks of $(basename "$grid"): accuracy against time after programming (seed 0)"
