#!/usr/bin/env bash
# Where does noise-injection training with the release's init (Kaiming fan_out) fail at CPU-affordable sizes?
# Each line trains one network and records the noisy validation accuracy of its best epoch (3 chips at the
# training sigma) from summary.json. Usage: bash results/regime-scan/scan.sh [OUT]  (resumable: finished runs skip)
set -u
OUT=${1:-runs/regime-scan}
mkdir -p "$OUT"
TABLE=results/regime-scan/scan.csv
[ -f "$TABLE" ] || echo "setting,model,width,dataset,train_images,epochs,init,method,sigma,seed,best_val_noisy,test_clean,seconds" > "$TABLE"
run() {  # run NAME MODEL WIDTH DATASET SUBSET EPOCHS INIT METHOD SIGMA SEED
  local name=$1 model=$2 width=$3 dataset=$4 subset=$5 epochs=$6 init=$7 method=$8 sigma=$9 seed=${10}
  local dir="$OUT/$name-$init-$method-s$sigma-seed$seed"
  [ -f "$dir/summary.json" ] && return
  local sub=(); [ "$subset" != full ] && sub=(--train-subset "$subset")
  neft train --model "$model" --width "$width" --dataset "$dataset" "${sub[@]}" --epochs "$epochs" --init "$init" \
    --method "$method" --sigma "$sigma" --seed "$seed" --out "$dir" --resume --quiet > "$dir.log" 2>&1 || { echo "FAILED $dir"; return; }
  python3 - "$dir" "$name,$model,$width,$dataset,$subset,$epochs,$init,$method,$sigma,$seed" >> "$TABLE" <<'PY'
import json, sys
s = json.load(open(sys.argv[1] + "/summary.json"))
print(f"{sys.argv[2]},{s['best_val_accuracy']:.2f},{s['test_accuracy_clean']:.2f},{s['seconds']:.0f}")
PY
}
for sigma in 0.3 0.35 0.4; do for seed in 0 1 2 3 4; do
  run lenet5-mnist5k lenet5 1 mnist-5k full 30 kaiming noise-injection $sigma $seed
done; done
for seed in 0 1 2; do run lenet5-mnist5k lenet5 1 mnist-5k full 30 torch noise-injection 0.35 $seed; done
for seed in 0 1 2; do run lenet5-fmnist10k lenet5 1 fashion-mnist 10000 10 kaiming noise-injection 0.35 $seed; done
for seed in 0 1 2; do run vgg8w025-fmnist10k vgg8 0.25 fashion-mnist 10000 5 kaiming noise-injection 0.35 $seed; done
for seed in 0 1; do run vgg8w05-fmnist10k vgg8 0.5 fashion-mnist 10000 4 kaiming noise-injection 0.35 $seed; done
for seed in 0 1 2; do run vgg8w025-mnist5k vgg8 0.25 mnist-5k full 10 kaiming noise-injection 0.35 $seed; done
# where the failure starts: LeNet-5 on mnist-5k at lower sigma
for sigma in 0.2 0.25; do for seed in 0 1 2; do
  run lenet5-mnist5k lenet5 1 mnist-5k full 30 kaiming noise-injection $sigma $seed
done; done
