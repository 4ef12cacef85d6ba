#!/bin/sh
# Issue 34, item 4: networks trained THROUGH IR drop, the same settings as the networks trained without it plus
# --tile-rows 512 --wire-resistance 2.32e-5 (docs/method.md, 'IR drop': a cross-point array at NeuroSim's 22 nm
# node next to a 40 kohm on-state device; 512 rows is the largest tile the grid evaluates, where the drop costs most).
#   LeNet-5: mnist-5k, init torch, 30 epochs, batch 128, RRAM1, sigma 0.35 (vanilla at sigma 0), seeds 0-2
#   VGG8 width 0.25: Fashion-MNIST, 2,000 training images, init torch, 30 epochs, sigma 0.3, seeds 0-2
# The networks trained without IR drop are the same commands without the two circuit flags (their run directories
# are copied into $RUNS/<model>/ under the names vanilla-s0-seedN, noise-injection-s<sigma>-seedN, ovf-s<sigma>-seedN).
# Resumable: a finished run (summary.json) is skipped, a started one (config.json) resumes from its last epoch.
#   RUNS=/work/irgrid MODELS="lenet5 vgg8" nice sh results/ir-drop/train.sh
set -e
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
NEFT="python3 -m neft"
IR="--tile-rows 512 --wire-resistance 2.32e-5"
SEEDS=${SEEDS:-"0 1 2"}
train() {  # train <out dir> <flags...>
  out=$1; shift
  [ -f "$out/summary.json" ] && return 0
  resume=""; [ -f "$out/config.json" ] && resume="--resume"
  $NEFT train "$@" $IR --seed "${out##*-seed}" --out "$out" --quiet $resume
}
for model in ${MODELS:-lenet5 vgg8}; do
  if [ "$model" = lenet5 ]; then
    net="--model lenet5 --dataset mnist-5k --init torch --epochs 30 --batch-size 128 --device-model RRAM1"; s=0.35
    methods="vanilla noise-injection ovf"
  else
    net="--model vgg8 --width 0.25 --dataset fashion-mnist --train-subset 2000 --init torch --epochs 30"
    net="$net --batch-size 128 --device-model RRAM1"; s=0.3
    methods=${VGG_METHODS:-"vanilla noise-injection ovf"}
  fi
  for method in $methods; do
    for seed in $SEEDS; do
      if [ "$method" = vanilla ]; then
        train "$RUNS/$model/vanilla-s0-ir-seed$seed" $net --method vanilla --sigma 0
      else
        train "$RUNS/$model/$method-s$s-ir-seed$seed" $net --method "$method" --sigma "$s"
      fi
    done
  done
done
