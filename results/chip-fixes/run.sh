#!/usr/bin/env bash
# Per-chip fixes at equal deployment cost on the networks of configs/chip-fixes-{lenet5,vgg8}.toml (train them first
# with results/chip-fixes/train.sh): every trained cell is evaluated at sigma 0.35 on the same chips (seed 0) with
# no fix, BatchNorm recalibration (VGG8 only: LeNet-5 has no BatchNorm), SWIM write-verify of 1 % (the paper's
# second-derivative rule) and the tuned block (0.4 % of LeNet-5's weights, 0.5 % of VGG8's, written exactly).
# Sized for a shared 2-core CPU: LeNet-5 30 chips and 50 tuning steps of 64 images; VGG8 width 0.25 10 chips and
# 20 steps of 32 images. Seed 0's noise-injection LeNet-5 also gets accuracy against tuning steps and against the
# fraction of weights written. Resumable (finished result files are kept); SEEDS="1 2" limits it to those training
# seeds (e.g. to run two at once). Then results/chip-fixes/table.py.
set -euo pipefail
out=results/chip-fixes
evaluate() {  # cell, name, chips, extra flags...
  local cell=$1 name=$2 chips=$3; shift 3
  [ -f "$cell/$name.json" ] || neft evaluate "$cell" --sigmas 0.35 --runs "$chips" --name "$name" --quiet "$@"
}
for model in lenet5 vgg8; do
  if [ $model = lenet5 ]; then chips=30; tune=(--chip-tune 50); bn=(); else
    chips=10; tune=(--chip-tune 20 --chip-tune-batch 32); bn=(--recalibrate-bn 256); fi
  for seed in ${SEEDS:-0 1 2}; do
    for method in noise-injection ovf irs; do
      cell=runs/chip-fixes-$model/$method-s0.35-seed$seed
      [ -f "$cell/checkpoint.pt" ] && [ -f "$cell/summary.json" ] || continue
      evaluate "$cell" fix_none "$chips"
      [ ${#bn[@]} -eq 0 ] || evaluate "$cell" fix_bn "$chips" "${bn[@]}"
      evaluate "$cell" fix_swim1 "$chips" --write-verify 0.01 --verify-select swim
      evaluate "$cell" fix_tune "$chips" "${tune[@]}"
      mkdir -p "$out/cells/$model/$(basename "$cell")"
      cp "$cell"/config.json "$cell"/summary.json "$cell"/fix_*.json "$out/cells/$model/$(basename "$cell")/"
    done
  done
done
# accuracy against tuning steps and against the fraction of weights written (seed 0, noise-injection, LeNet-5)
cell=runs/chip-fixes-lenet5/noise-injection-s0.35-seed0
if [ -f "$cell/summary.json" ] && [[ " ${SEEDS:-0} " == *" 0 "* ]]; then
  for steps in 10 25 100; do evaluate "$cell" "curve_tune$steps" 30 --chip-tune "$steps"; done
  [ -f "$cell/curve_swim_wv0.02.json" ] || neft evaluate "$cell" --sigmas 0.35 --runs 30 --write-verify 0.002,0.004,0.02 \
    --verify-select swim --name curve_swim --quiet --overwrite
  mkdir -p "$out/curves"
  cp "$cell"/curve_*.json "$cell"/fix_none.json "$cell"/fix_swim1.json "$cell"/fix_tune.json "$out/curves/"
fi
