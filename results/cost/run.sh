#!/bin/sh
# What a chip costs, at laptop scale (README.md, 'What a chip costs'; docs/method.md, 'What a chip costs').
# LeNet-5 on mnist-5k from the cpu-realistic-chip-30 grid (seed 0: vanilla, noise-injection and OVF trained at
# sigma 0.35 on RRAM1, noise-injection trained against the realistic chip), evaluated on the realistic chip at
# sigma 0.2 with 20 chips per point: ADC bits {4,5,6,8} x tile rows {64,128,256} with 8-bit DACs, the ideal circuit,
# and for vanilla the per-chip fixes (write-verify of 1, 5, 20 % of the weights; the tuned block for 20 and 100
# steps). Then every results file is costed (neft cost --attach) and table.py writes table.md and the plots.
# Run from the repository root with RUNS pointing at copies of the grid's run directories:
#   RUNS=/tmp/c35runs nohup nice -n 10 sh results/cost/run.sh > /tmp/cost-log.txt 2>&1 &
set -e
export OMP_NUM_THREADS=1
NEFT="python3 -m neft"
CHIP="--device-model configs/chips/realistic-chip.toml --sigmas 0.2 --runs 20 --precision fp32 --quiet --overwrite"
for run in vanilla-s0-seed0 noise-injection-s0.35-seed0 ovf-s0.35-seed0 \
           "noise-injection_device=configs_chips_realistic-chip.toml-s0.35-seed0"; do
  for t in 64 128 256; do for b in 4 5 6 8; do
    [ -f "$RUNS/$run/adc${b}_tile${t}.json" ] || $NEFT evaluate "$RUNS/$run" $CHIP --adc-bits $b --dac-bits 8 \
        --tile-rows $t --name adc${b}_tile${t}
  done; done
  [ -f "$RUNS/$run/ideal.json" ] || $NEFT evaluate "$RUNS/$run" $CHIP --name ideal
done
for p in 0.01 0.05 0.2; do
  [ -f "$RUNS/vanilla-s0-seed0/wv$p.json" ] || $NEFT evaluate "$RUNS/vanilla-s0-seed0" $CHIP --write-verify $p --name wv$p
done
for s in 20 100; do
  [ -f "$RUNS/vanilla-s0-seed0/tune$s.json" ] || $NEFT evaluate "$RUNS/vanilla-s0-seed0" $CHIP --chip-tune $s --name tune$s
done
for run in "$RUNS"/*/; do $NEFT cost "$run" --attach --overwrite > /dev/null; done
python3 results/cost/table.py "$RUNS"
