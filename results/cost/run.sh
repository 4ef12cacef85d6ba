#!/bin/sh
# What a chip costs, at laptop scale (README.md, 'What a chip costs'; docs/method.md, 'What a chip costs').
# LeNet-5 on mnist-5k (init torch, 30 epochs; vanilla, and noise-injection, OVF, IRS and rcg trained at sigma 0.35
# on RRAM1), seeds 0, 1 and 2, evaluated on the realistic chip at sigma 0.2 with 20 chips per point: ADC bits
# {4,5,6,8} x tile rows {64,256} (TILES; 128 dropped to fit the shared 2-core machine) with 8-bit DACs, the ideal
# circuit, and for vanilla the per-chip fixes (write-verify of 1, 5, 20 % of the weights; the tuned block for 20
# and 100 steps).
# VGG8 width 0.25 on Fashion-MNIST (set VGG=1): vanilla, and noise-injection, OVF, IRS and rcg trained at sigma 0.3
# on RRAM1 (2,000 training images, init torch, 30 epochs: results/ir-drop/train.sh's networks without the drop,
# copied or trained as RUNS/vgg8-<method>-s0.3-seedN), on 1,000 test images, the same grid and fixes on the
# realistic chip at sigma 0.1 with 0.1 % of the devices stuck on and 0.1 % stuck off (at the file's 2 % and sigma
# 0.2 every VGG8 network is near chance, and the question of the cheapest ADC has no answer there); the tuned block
# for 20 steps only.
# Then every results file is costed (neft cost --attach) and table.py writes table.md and the plots.
# Resumable: a finished evaluation is skipped, a network still training (no summary.json) waits for the next run.
# Run from the repository root with RUNS pointing at copies of the run directories (evaluations write into them):
#   RUNS=/work/costgrid VGG=1 nohup nice -n 10 sh results/cost/run.sh > /tmp/cost-log.txt 2>&1 &
set -e
export OMP_NUM_THREADS=1
NEFT="python3 -m neft"
CHIP="--device-model configs/chips/realistic-chip.toml --sigmas 0.2 --runs 20 --precision fp32 --quiet --overwrite"
SEEDS=${SEEDS:-"0 1 2"}
evaluate() {  # run directory, name, flags
  [ ! -f "$RUNS/$1/summary.json" ] || [ -f "$RUNS/$1/$2.json" ] || $NEFT evaluate "$RUNS/$1" $CHIP --name "$2" $3
}
for seed in $SEEDS; do
  for net in vanilla-s0 noise-injection-s0.35 ovf-s0.35 irs-s0.35 rcg-s0.35; do
    for t in ${TILES:-64 256}; do for b in 4 5 6 8; do
      evaluate "$net-seed$seed" adc${b}_tile$t "--adc-bits $b --dac-bits 8 --tile-rows $t"
    done; done
    evaluate "$net-seed$seed" ideal ""
  done
  for p in 0.01 0.05 0.2; do evaluate "vanilla-s0-seed$seed" wv$p "--write-verify $p"; done
  for s in 20 100; do evaluate "vanilla-s0-seed$seed" tune$s "--chip-tune $s"; done
done
if [ "${VGG:-0}" = 1 ]; then
  CHIP="$CHIP --sigmas 0.1 --stuck-on 0.001 --stuck-off 0.001 --test-subset 1000"
  for seed in $SEEDS; do
    for net in vanilla-s0 noise-injection-s0.3 ovf-s0.3 irs-s0.3 rcg-s0.3; do
      for t in ${TILES:-64 256}; do for b in 4 5 6 8; do
        evaluate "vgg8-$net-seed$seed" adc${b}_tile$t "--adc-bits $b --dac-bits 8 --tile-rows $t"
      done; done
      evaluate "vgg8-$net-seed$seed" ideal ""
    done
    for p in 0.01 0.05 0.2; do evaluate "vgg8-vanilla-s0-seed$seed" wv$p "--write-verify $p"; done
    evaluate "vgg8-vanilla-s0-seed$seed" tune20 "--chip-tune 20"
  done
fi
for run in "$RUNS"/*/; do $NEFT cost "$run" --attach --overwrite > /dev/null; done
python3 results/cost/table.py "$RUNS"
