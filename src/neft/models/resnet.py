"""CIFAR-style ResNet-18 (docs/method.md, 'Models'): 3x3 stride-1 stem, no max-pool, BasicBlocks [2, 2, 2, 2]."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from neft.models.width import scaled


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with a residual connection; a 1x1 strided conv + BN shortcut when the shape changes.

    Input ``[B, in_planes, H, W]``, output ``[B, planes, H / stride, W / stride]``.
    """

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 for 32x32 (or 64x64) inputs: ``stem`` conv-BN-ReLU, ``layer1..layer4`` of two BasicBlocks each
    (64/128/256/512 channels times ``width``), global average pool, ``fc`` Linear(512, classes).

    Input ``[B, in_channels, H, W]``, output logits ``[B, num_classes]``.
    IRS taps (docs/method.md, 'IRS'): ``stem`` (pool 6), ``layer1`` (6), ``layer2`` (4), ``layer3`` (3).
    Tuned-block taps [ours] (:mod:`neft.deployment.tuned_block`): after both blocks of ``layer1`` (64 channels at
    width 1: one shared 64x64 block, 0.04 % of the weights).
    """

    irs_taps = (("stem", 6), ("layer1", 6), ("layer2", 4), ("layer3", 3))
    chip_tune_taps = ("layer1.0", "layer1.1")

    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: float = 1.0) -> None:
        super().__init__()
        planes = [scaled(c, width) for c in (64, 128, 256, 512)]
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, planes[0], 3, padding=1, bias=False), nn.BatchNorm2d(planes[0]),
            nn.ReLU(inplace=True)
        )
        layers, in_planes = [], planes[0]
        for index, out in enumerate(planes):
            stride = 1 if index == 0 else 2
            layers.append(nn.Sequential(BasicBlock(in_planes, out, stride), BasicBlock(out, out, 1)))
            in_planes = out
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
        return self.fc(torch.flatten(self.pool(x), 1))
