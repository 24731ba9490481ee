"""A tiny three-stage CNN so tests and the offline digits set run in seconds (SPEC 7.8); not from any paper."""

from __future__ import annotations

import torch.nn as nn
from torch import Tensor

from .base import Backbone, classify, stage_outputs
from .registry import register_model


class SmallCNN(Backbone):
    """Three Conv3x3-BN-ReLU stages (16/32/64 channels, strides 1/2/2) -> global pool -> linear.

    `forward_features` returns the three stage outputs (post-ReLU); the head is pool -> linear.
    """

    def __init__(self, num_classes: int, widths: tuple[int, ...] = (16, 32, 64)):
        super().__init__()
        self.stage_channels = list(widths)
        stages = []
        in_channels = 3
        for width, stride in zip(widths, (1, 2, 2)):
            stages.append(nn.Sequential(
                nn.Conv2d(in_channels, width, 3, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ))
            in_channels = width
        self.stages = nn.ModuleList(stages)
        self.fc = nn.Linear(in_channels, num_classes)

    def forward_features(self, x: Tensor) -> list[Tensor]:
        return stage_outputs(x, self.stages)

    def forward_head(self, features: list[Tensor], return_pooled: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        return classify(self.fc, features[-1], return_pooled)


@register_model
def small_cnn(num_classes: int) -> SmallCNN:
    """Tiny CNN for tests (about 25k parameters at C = 10)."""
    return SmallCNN(num_classes)
