#!/usr/bin/env bash
# Train (resumably) the networks of the per-chip fixes comparison: LeNet-5 then VGG8 width 0.25 on mnist-5k.
set -euo pipefail
for preset in lenet5 vgg8; do
  neft reproduce "configs/chip-fixes-$preset.toml"
done
