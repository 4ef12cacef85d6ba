"""VGG8 as used by the paper (docs/method.md, 'Models'): six bias-free 3x3 convs with BatchNorm and ReLU, three
max-pools."""

from __future__ import annotations

import torch
from torch import nn

from neft.models.width import scaled

# (output channels, max-pool after) for the six conv blocks: 64, 128, P, 256, 256, P, 512, 512, P.
_BLOCKS = ((64, False), (128, True), (256, False), (256, True), (512, False), (512, True))


class VGG8(nn.Module):
    """VGG8 for 32x32 inputs: ``features.0..5`` are conv-BN-ReLU(-maxpool) blocks, then Linear(512*4*4, 1024),
    ReLU, Linear(1024, classes) (channel counts times ``width``).

    Input ``[B, in_channels, 32, 32]``, output logits ``[B, num_classes]``.
    IRS taps (docs/method.md, 'IRS'): after conv1 (``features.0``, pool 6), conv2+pool (``features.1``, pool 4) and
    conv4+pool (``features.3``, pool 3). Tuned-block taps [ours] (:mod:`neft.deployment.tuned_block`): after conv3 and
    conv4 (``features.2``, ``features.3``; 256 channels at width 1: one shared 256x256 block, 0.5 % of the weights).
    """

    irs_taps = (("features.0", 6), ("features.1", 4), ("features.3", 3))
    chip_tune_taps = ("features.2", "features.3")

    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: float = 1.0) -> None:
        super().__init__()
        blocks, channels = [], in_channels
        for out, pool in _BLOCKS:
            out = scaled(out, width)
            layers = [nn.Conv2d(channels, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            if pool:
                layers.append(nn.MaxPool2d(2))
            blocks.append(nn.Sequential(*layers))
            channels = out
        self.features = nn.Sequential(*blocks)
        hidden = scaled(1024, width)
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(channels * 4 * 4, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
