#!/bin/sh
# Issue 32, item 7: the LeNet-5 networks of the cpu-realistic-chip-30 grid (trained on the Gaussian RRAM1 model at
# sigma 0.35, 30 epochs, 3 seeds; vanilla at sigma 0), re-evaluated on the chips of the conductance-dependent
# device physics (docs/method.md, 'Conductance-dependent device laws', 'Realistic presets'), 20 chips each:
#   pcm-aihwkit_t*.json  PCM-aihwkit (aihwkit 1.2 PCMLikeNoiseModel) at sigma 0, read 1 h, 1 day and 1 year after
#                        programming (neft's drift_time = aihwkit's t_inference + 20 s)
#   rram-milo.json       RRAM-Milo at sigma 0 (its own programming-noise law), no drift
#   aihwkit-inference_t*.json  the chip preset aihwkit-inference (PCM-aihwkit read through aihwkit 1.2's shipped
#                        InferenceRPUConfig periphery) at sigma 0, 1 h and 1 year
#   chip-now.json        configs/chips/realistic-chip.toml at sigma 0.35 read at 1 year, with this version's physics
#                        (every device of the pair programmed, conductances clipped to [g_min, g_max]); the grid's
#                        own results.json holds the same networks on the 0.2.0 chip.
# Networks trained against PCM-aihwkit (noise-injection at sigma 0, read at 1 year, 3 seeds) are trained first.
# Run from the repository root with RUNS pointing at the grid's run directories (neft reproduce
# configs/cpu-realistic-chip-30.toml; only the cells named below are needed). Resumable: finished files are kept.
#   RUNS=runs/cpu-realistic-chip-30 nice sh results/pcm-aihwkit/run.sh
# then: python3 results/pcm-aihwkit/table.py "$RUNS" > results/pcm-aihwkit/table.md
set -e
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
NEFT="python3 -m neft"
EVAL="--runs 20 --quiet --overwrite"
for seed in 0 1 2; do
  run="$RUNS/noise-injection_device=PCM-aihwkit-s0-seed$seed"
  [ -f "$run/checkpoint.pt" ] || $NEFT train --model lenet5 --dataset mnist-5k --init torch --epochs 30 \
      --batch-size 128 --method noise-injection --sigma 0 --device-model PCM-aihwkit --drift-time 3.15e7 \
      --seed $seed --out "$run" --quiet
done
for run in "$RUNS"/vanilla-s0-seed* "$RUNS"/noise-injection-s0.35-seed* "$RUNS"/ovf-s0.35-seed* \
           "$RUNS"/irs-s0.35-seed* "$RUNS"/rcg-s0.35-seed* "$RUNS"/noise-injection_device=PCM-aihwkit-s0-seed*; do
  [ -f "$run/checkpoint.pt" ] || continue
  [ -f "$run/pcm-aihwkit_t3.15e+07.json" ] || $NEFT evaluate "$run" --device-model PCM-aihwkit --sigmas 0 \
      --drift-times 3620,86420,3.15e7 --name pcm-aihwkit $EVAL
  [ -f "$run/rram-milo.json" ] || $NEFT evaluate "$run" --device-model RRAM-Milo --sigmas 0 --name rram-milo $EVAL
  [ -f "$run/aihwkit-inference_t3.15e+07.json" ] || $NEFT evaluate "$run" --device-model aihwkit-inference \
      --sigmas 0 --drift-times 3620,3.15e7 --name aihwkit-inference $EVAL
  [ -f "$run/chip-now.json" ] || $NEFT evaluate "$run" --device-model configs/chips/realistic-chip.toml \
      --sigmas 0.35 --name chip-now $EVAL
done
