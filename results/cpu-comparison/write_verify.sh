#!/usr/bin/env bash
# Selective write-verify on networks of the cpu-comparison grid (seed 0): accuracy at sigma 0.35 against the
# fraction of weights write-verified (exact after verification), chosen by magnitude or by SWIM's second-derivative
# sensitivity. Run after `neft reproduce configs/cpu-comparison.toml`; writes results/cpu-comparison/write-verify/.
set -euo pipefail
grid=${1:-runs/cpu-comparison}
out=results/cpu-comparison/write-verify
fractions=0,0.005,0.01,0.02,0.05,0.1,0.2
mkdir -p "$out"
for cell in noise-injection-s0.35-seed0 ovf-s0.35-seed0; do
  for select in magnitude swim; do
    neft evaluate "$grid/$cell" --sigmas 0.35 --runs 100 --write-verify "$fractions" --verify-select "$select" \
      --name "wv_$select" --overwrite --quiet
  done
done
results=()
for cell in noise-injection-s0.35-seed0 ovf-s0.35-seed0; do
  mkdir -p "$out/$cell"
  cp "$grid/$cell"/wv_*.json "$out/$cell/"
  results+=("$out/$cell"/wv_magnitude_wv0.json)
  for select in magnitude swim; do
    for f in ${fractions//,/ }; do
      [ "$f" = 0 ] || results+=("$out/$cell/wv_${select}_wv$f.json")
    done
  done
done
neft report "${results[@]}" --out "$out" --title "Selective write-verify at sigma 0.35: magnitude vs SWIM (seed 0)"
