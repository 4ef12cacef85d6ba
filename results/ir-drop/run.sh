#!/bin/sh
# Issue 34, item 4: every network of the grid (trained without IR drop, and through it by train.sh) on chips of
# tiles of 64, 128, 256 and 512 rows, each without IR drop (tT.json: the tiles alone) and with the wire resistance
# r = 2.32e-5 (tT-ir.json; docs/method.md, 'IR drop': NeuroSim's 22 nm cross-point wire next to a 40 kohm on-state
# device), on the training device model RRAM1 at sigma 0 (the drop alone) and at the training sigma (0.35 LeNet-5,
# 0.3 VGG8), 20 chips each; VGG8 on 2,000 test images. Resumable: finished files are kept. Then the small JSON files
# are copied into results/ir-drop/cells/ and the table is written. fp32 forwards (bit-reproducible), so that the
# differences between the files of one network are the circuit's, not bf16 rounding:
#   RUNS=/work/irgrid MODELS="lenet5 vgg8" nice sh results/ir-drop/run.sh
# (TILES="512 128" or PATTERN="*-seed0" run a part of the grid first.)
#   python3 results/ir-drop/table.py results/ir-drop/cells > results/ir-drop/table.md
set -e
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
NEFT="python3 -m neft"
R=2.32e-5
CELLS=${CELLS:-results/ir-drop/cells}
for model in ${MODELS:-lenet5 vgg8}; do
  if [ "$model" = lenet5 ]; then s=0.35; extra=""; else s=0.3; extra="--test-subset 2000"; fi
  for run in "$RUNS/$model"/${PATTERN:-*-seed*}; do
    [ -f "$run/summary.json" ] || continue
    for T in ${TILES:-512 256 128 64}; do
      for kind in ir plain; do
        if [ $kind = ir ]; then name="t$T-ir"; r=$R; else name="t$T"; r=0; fi
        [ -f "$run/$name.json" ] || $NEFT evaluate "$run" --device-model RRAM1 --sigmas "0,$s" --runs 20 --precision fp32 \
            --tile-rows "$T" --wire-resistance "$r" $extra --name "$name" --quiet --overwrite
        mkdir -p "$CELLS/$model/${run##*/}"
        cp "$run/$name.json" "$CELLS/$model/${run##*/}/"
      done
    done
  done
done
