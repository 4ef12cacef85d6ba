#!/usr/bin/env bash
# The prepared GPU check of issue 11 (benchmarks/README.md, 'GPU (pending)'): under 6 minutes on one H200, no
# network, run from the repository root:
#
#   bash benchmarks/gpu.sh [--data-dir DIR] [--cpu-smoke]
#
# Runs from source (PYTHONPATH=src). Fashion-MNIST (IDX files) is read from --data-dir, else $NEFT_DATA, else data/
# (e.g. data/fashion-mnist/, copied from /usr/share/datasets/fashion-mnist/; data/ is ignored by git).
# Parts, each under its own `timeout` (a part that fails or times out is reported and the script goes on):
#   1. device check: CPU generator with a CUDA model, vmap fallback, what chips_per_pass="auto" picks;
#   2. smoke: `neft train --device cuda` (VGG8 width 0.5, 1 epoch, 5,000 images) and `neft evaluate --device cuda`;
#   3. Monte Carlo table: the authors' loop vs the engine variants, VGG8 width 1 (10,000 test images, 16 chips),
#      ResNet-18 width 1 and LeNet-5 (8 chips), sigma 0.1, RRAM1;
#   4. training images/s per method (vanilla, noise-injection, OVF, IRS), VGG8 and ResNet-18 width 1, batch 128.
# Everything printed also goes to $OUT/gpu_bench.log ($OUT: default runs/gpu-bench), with the smoke run's
# results.json. --cpu-smoke runs the same steps on the CPU at tiny sizes (~3 minutes) to check the script itself.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
data=${NEFT_DATA:-data}
smoke=0
while [ $# -gt 0 ]; do
  case $1 in
    --data-dir) data=$2; shift 2 ;;
    --cpu-smoke) smoke=1; shift ;;
    *) echo "usage: bash benchmarks/gpu.sh [--data-dir DIR] [--cpu-smoke]" >&2; exit 2 ;;
  esac
done
export NEFT_DATA=$data
out=${OUT:-runs/gpu-bench}
mkdir -p "$out"
exec > >(tee "$out/gpu_bench.log") 2>&1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [ $smoke = 1 ]; then
  device=cpu
  slow=3  # time limits x3: a shared CPU is slow and noisy, and the smoke run only checks the script
  check=(--width 0.125 --images 50)
  train=(--width 0.125 --train-subset 256 --test-subset 100)
  runs=2
  mc=(--images 100 --runs 2 --train-steps 2 --rounds 1 --batch-size 50 --naive-batch-size 32 --large-batch 100
      --matmul-size 512)
  mc_models=(vgg8:0.125 resnet18:0.125 lenet5:1)
  mc_runs=(2 2 2)
  step=(--widths 0.125 --batch 8 --warmup 0 --steps 1)
else
  device=cuda
  slow=1
  check=(--width 1 --images 1000)
  train=(--width 0.5 --train-subset 5000 --test-subset 1000)
  runs=10
  mc=(--images 10000 --train-steps 300 --rounds 2 --batch-size 1000 --naive-batch-size 128 --large-batch 2500)
  mc_models=(vgg8:1 resnet18:1 lenet5:1)
  mc_runs=(16 8 8)
  step=(--widths 1 --batch 128 --warmup 2 --steps 8)
fi
failed=0

part() {  # part SECONDS TITLE COMMAND...: one guarded step
  local limit=$(($1 * slow)) title=$2 started=$SECONDS rc
  shift 2
  echo
  echo "=== $title (limit $limit s) ==="
  timeout --kill-after=5 "$limit" "$@"
  rc=$?
  case $rc in
    0) echo "=== $title: ok, $((SECONDS - started)) s ===" ;;
    124|137) echo "=== $title: TIMED OUT after $((SECONDS - started)) s ==="; failed=$((failed + 1)) ;;
    *) echo "=== $title: FAILED (exit $rc) after $((SECONDS - started)) s ==="; failed=$((failed + 1)) ;;
  esac
}

echo "benchmarks/gpu.sh on $(hostname), $(date -u +%Y-%m-%dT%H:%M:%SZ), device $device, data $NEFT_DATA"
command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda,
           'available', torch.cuda.is_available())"

part 30 "device check" python benchmarks/device_check.py --device $device "${check[@]}"
part 45 "smoke: neft train" python -m neft train --model vgg8 --dataset fashion-mnist --method noise-injection \
  --sigma 0.1 --epochs 1 --val-runs 2 --device $device --out "$work/smoke" --quiet "${train[@]}"
part 30 "smoke: neft evaluate" python -m neft evaluate "$work/smoke" --sigmas 0,0.1 --runs $runs --test-subset 1000 \
  --device $device --quiet
cp "$work/smoke/results.json" "$out/smoke_results.json" 2> /dev/null &&
  echo "results.json: $(grep -o '"chip_device": "[a-z]*"' "$out/smoke_results.json" || echo 'no chip_device recorded')"
limits=(90 60 30)
for i in 0 1 2; do
  part ${limits[$i]} "Monte Carlo: ${mc_models[$i]}" python benchmarks/montecarlo.py --device $device \
    --data fashion-mnist --models ${mc_models[$i]} --runs ${mc_runs[$i]} --sigma 0.1 \
    --variants auto,1chip,bf16,batch,channels_last --bf16 all "${mc[@]}"
done
part 55 "training images/s" python benchmarks/train_step.py --device $device --models vgg8,resnet18 "${step[@]}"
echo
echo "benchmarks/gpu.sh: $failed part(s) failed or timed out, $SECONDS s in all; log $out/gpu_bench.log"
[ $failed = 0 ]
