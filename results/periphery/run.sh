#!/bin/sh
# Issue 33, item 7: every network of results/periphery/train.sh evaluated under the chip preset aihwkit-inference
# (aihwkit 1.2's InferenceRPUConfig(): PCM-aihwkit devices, 7-bit DAC / 9-bit ADC with abs-max input and iterative
# bound management, output noise 0.06, global drift compensation on the outputs; sigma 0) and, for the
# weight-noise-only answer, on the same devices without the periphery (PCM-aihwkit, ideal converters), read 1 h
# and 1 year after programming (drift_time = aihwkit's t_inference + 20 s), 20 chips each:
#   periphery_t3620.json, periphery_t3.15e+07.json   aihwkit-inference
#   devices_t3620.json, devices_t3.15e+07.json       PCM-aihwkit alone
# VGG8 (2,000 Fashion-MNIST test images), every seed of vanilla, noise-injection, OVF, IRS and of the networks trained
# under the periphery, also with the per-chip fixes on top, under aihwkit-inference at 1 year:
#   periphery-bn.json    BatchNorm recalibrated on 256 training images per chip
#   periphery-tuned.json the tuned block, 20 steps per chip, 5 chips (tuning through
#                                  the managed periphery costs minutes per chip on this CPU)
# FIXES=0 leaves the per-chip fixes out (a later run adds them). Resumable: finished files are kept.
#   RUNS=runs/periphery nice sh results/periphery/run.sh
# The small files of every network (config, summary, evaluations) are then copied into results/periphery/cells/:
#   python3 results/periphery/table.py results/periphery/cells > results/periphery/table.md
set -e
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
RUNS=${RUNS:-runs/periphery}
NEFT="python3 -m neft"
# VGG8 in order of priority for a CPU's budget: vanilla and the paper's methods first, then the other methods,
# then the networks trained under the periphery
VGG8=""
for method in vanilla ovf irs noise-injection rcg lipschitz correctnet distill; do
  VGG8="$VGG8 $(ls -d "$RUNS"/vgg8/$method-s* 2>/dev/null | tr '\n' ' ')"
done
VGG8="$VGG8 $(ls -d "$RUNS"/vgg8/*_device=* 2>/dev/null | tr '\n' ' ')"
for run in "$RUNS"/lenet5/* $VGG8; do
  [ -f "$run/summary.json" ] || continue
  case $run in */vgg8/*) EVAL="--runs 20 --quiet --overwrite --test-subset 2000";;
               *) EVAL="--runs 20 --quiet --overwrite --precision fp32";; esac
  [ -f "$run/periphery_t3.15e+07.json" ] || $NEFT evaluate "$run" --device-model aihwkit-inference --sigmas 0 \
      --drift-times 3620,3.15e7 --name periphery $EVAL
  [ -f "$run/devices_t3.15e+07.json" ] || $NEFT evaluate "$run" --device-model PCM-aihwkit --sigmas 0 \
      --drift-times 3620,3.15e7 --name devices $EVAL
  [ "${FIXES:-1}" = 0 ] && continue
  case $run in */vgg8/vanilla-s0-seed*|*/vgg8/noise-injection-s0.3-seed*|*/vgg8/ovf-s0.3-seed*|*/vgg8/irs-s0.3-seed*\
               |*/vgg8/*_device=aihwkit-inference-s0-seed*)
    [ -f "$run/periphery-bn.json" ] || $NEFT evaluate "$run" --device-model aihwkit-inference --sigmas 0 \
        --drift-times 3.15e7 --recalibrate-bn 256 --name periphery-bn $EVAL
    [ -f "$run/periphery-tuned.json" ] || $NEFT evaluate "$run" --device-model aihwkit-inference \
        --sigmas 0 --drift-times 3.15e7 --chip-tune 20 --name periphery-tuned $EVAL --runs 5;;
  esac
done
CELLS=${CELLS:-results/periphery/cells}
for run in "$RUNS"/lenet5/* "$RUNS"/vgg8/*; do
  [ -f "$run/summary.json" ] || continue
  mkdir -p "$CELLS/${run#"$RUNS"/}"
  for file in "$run"/config.json "$run"/summary.json "$run"/periphery*.json "$run"/devices*.json; do
    [ -f "$file" ] && cp "$file" "$CELLS/${run#"$RUNS"/}/"
  done
done
