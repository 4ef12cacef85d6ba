#!/bin/sh
# Issue 33, item 7: the networks of "which method survives the periphery" (results/periphery/README.md).
# Each of the eight methods is trained twice, on the plain Gaussian model (RRAM1 at sigma 0.35 for LeNet-5, 0.3 for
# VGG8; vanilla at sigma 0) and under the chip preset aihwkit-inference (aihwkit 1.2's InferenceRPUConfig: PCM-aihwkit
# devices read one year after programming, 7-bit DAC and 9-bit ADC with abs-max input and iterative bound management,
# output noise 0.06, global drift compensation; sigma 0), 3 seeds, 30 epochs:
#   LeNet-5, PyTorch's default init, mnist-5k (5,000 real MNIST digits);
#   VGG8 width 0.25, PyTorch's default init, Fashion-MNIST, 2,000 training images (the CPU's budget), every method
#   on the Gaussian model (sigma 0.3) and under the periphery.
# distill's teacher is the vanilla network of the same seed. Resumable: a finished network (checkpoint.pt) is kept.
#   RUNS=runs/periphery nice sh results/periphery/train.sh            # both networks, one after the other
#   RUNS=runs/periphery NETS=vgg8 nice sh results/periphery/train.sh  # one of them (lenet5 or vgg8), e.g. in parallel
set -e
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
RUNS=${RUNS:-runs/periphery}
NETS=${NETS:-"lenet5 vgg8"}
NEFT="python3 -m neft"
CHIP="--device-model aihwkit-inference --sigma 0 --drift-time 3.15e7"
train() {  # train NAME ARGS...: one network into $RUNS/NAME unless it is finished
  name=$1; shift
  if [ -f "$RUNS/$name/summary.json" ]; then return; fi
  if [ -f "$RUNS/$name/config.json" ]; then $NEFT train "$@" --out "$RUNS/$name" --resume --quiet
  else $NEFT train "$@" --out "$RUNS/$name" --quiet; fi
}
# the cheap methods of every seed first, then OVF and IRS (5-10x a noise-injection run under the periphery)
case " $NETS " in *" lenet5 "*) for methods in "noise-injection rcg lipschitz correctnet distill" "ovf irs"; do
  for seed in 0 1 2; do
    L="--model lenet5 --dataset mnist-5k --init torch --epochs 30 --batch-size 128 --seed $seed"
    train lenet5/vanilla-s0-seed$seed $L --method vanilla --sigma 0
    for method in $methods; do
      teacher=""; [ $method = distill ] && teacher="--teacher $RUNS/lenet5/vanilla-s0-seed$seed"
      train lenet5/$method-s0.35-seed$seed $L --method $method --sigma 0.35 $teacher
      train lenet5/${method}_device=aihwkit-inference-s0-seed$seed $L --method $method $CHIP $teacher
    done
  done
done;; esac
# every seed's vanilla and noise-injection networks first, then the other methods on the Gaussian model (OVF and
# IRS 5x a noise-injection run), then every method under the periphery (VGG8 width 0.25: about 30 s per epoch with
# its validation chips on one core, 15 min per network)
case " $NETS " in *" vgg8 "*) for kind in gaussian others periphery; do
  for seed in 0 1 2; do
    V="--model vgg8 --width 0.25 --dataset fashion-mnist --train-subset 2000 --init torch --epochs 30 --seed $seed"
    case $kind in
      gaussian) train vgg8/vanilla-s0-seed$seed $V --method vanilla --sigma 0
                train vgg8/noise-injection-s0.3-seed$seed $V --method noise-injection --sigma 0.3;;
      others) for method in ovf irs rcg lipschitz correctnet distill; do
                teacher=""; [ $method = distill ] && teacher="--teacher $RUNS/vgg8/vanilla-s0-seed$seed"
                train vgg8/$method-s0.3-seed$seed $V --method $method --sigma 0.3 $teacher
              done;;
      periphery) for method in noise-injection ovf irs rcg lipschitz correctnet distill; do
                   teacher=""; [ $method = distill ] && teacher="--teacher $RUNS/vgg8/vanilla-s0-seed$seed"
                   train vgg8/${method}_device=aihwkit-inference-s0-seed$seed $V --method $method $CHIP $teacher
                 done;;
    esac
  done
done;; esac
