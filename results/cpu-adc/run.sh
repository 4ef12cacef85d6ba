#!/bin/sh
# Resumable: finished trainings and result files are kept. Run from the repository root:
#   nohup nice -n 10 sh results/cpu-adc/run.sh > results/cpu-adc/log.txt 2>&1 &
set -e
export OMP_NUM_THREADS=1
NEFT="python3 -m neft"
OUT=results/cpu-adc/runs
$NEFT reproduce configs/cpu-adc.toml
for seed in 0 1 2; do  # noise-injection trained with the periphery it is evaluated on
  run=$OUT/noise-injection-adc6-s0.35-seed$seed
  [ -f $run/summary.json ] || $NEFT train --model lenet5 --dataset mnist-5k --init torch --epochs 30 --batch-size 128 \
      --method noise-injection --sigma 0.35 --seed $seed --tile-rows 64 --adc-bits 6 --out $run --resume --quiet
done
for run in $OUT/*-seed*; do
  for bits in 8 6 4; do
    [ -f $run/adc$bits.json ] || $NEFT evaluate $run --quiet --sigmas 0.35 --runs 30 --tile-rows 64 \
        --adc-bits $bits --name adc$bits
  done
  [ -f $run/adcnone.json ] || $NEFT evaluate $run --quiet --sigmas 0.35 --runs 30 --name adcnone
done
