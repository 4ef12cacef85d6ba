"""LeNet-5 [ours] (docs/method.md, 'Models'): a small network so experiments fit a laptop CPU."""

from __future__ import annotations

import torch
from torch import nn

from neft.models.width import scaled


class LeNet5(nn.Module):
    """LeNet-5 for 32x32 inputs: ``features.0`` conv5x5(6)-ReLU-maxpool, ``features.1`` conv5x5(16)-ReLU-maxpool,
    then Linear(16*5*5, 120), ReLU, Linear(120, 84), ReLU, Linear(84, classes) (widths times ``width``).

    Input ``[B, in_channels, 32, 32]``, output logits ``[B, num_classes]``.
    IRS taps [ours]: after each conv block (``features.0`` pool 4, ``features.1`` pool 2). Tuned-block tap
    [ours] (:mod:`neft.deployment.tuned_block`): after ``features.1`` (16 channels: a 16x16 block, 0.4 % of the
    weights).
    """

    irs_taps = (("features.0", 4), ("features.1", 2))
    chip_tune_taps = ("features.1",)

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: float = 1.0) -> None:
        super().__init__()
        c1, c2 = scaled(6, width), scaled(16, width)
        h1, h2 = scaled(120, width), scaled(84, width)
        self.features = nn.Sequential(
            nn.Sequential(nn.Conv2d(in_channels, c1, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2)),
            nn.Sequential(nn.Conv2d(c1, c2, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2)),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c2 * 5 * 5, h1),
            nn.ReLU(inplace=True),
            nn.Linear(h1, h2),
            nn.ReLU(inplace=True),
            nn.Linear(h2, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
