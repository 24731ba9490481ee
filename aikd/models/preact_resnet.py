"""PreAct ResNet-18, CIFAR variant (SPEC 7.1), the coarse-set backbone of AI-KD, CS-KD, PS-KD and TF-KD.

Kept faithful to the CS-KD / PS-KD code, including its quirk: the identity shortcut carries the pre-activated
`ReLU(BN1(x))` rather than `x`. PyTorch default initialisation.
"""

from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .base import Backbone, classify, stage_outputs
from .registry import register_model


class PreActBlock(nn.Module):
    """Pre-activation basic block; the shortcut (identity or 1x1 conv without BN) reads the pre-activated input."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        preactivated = F.relu(self.bn1(x))
        shortcut = self.shortcut(preactivated)
        out = self.conv1(preactivated)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet18(Backbone):
    """3x3 stride-1 stem (conv-BN-ReLU, no max-pool), four stages of two pre-activation blocks, pool -> linear.

    `forward_features` returns each stage's raw block output (pre-activation, no ReLU); the head pools the last
    stage directly (no final BN-ReLU), as the official code does.
    """

    def __init__(self, num_classes: int, blocks_per_stage: tuple[int, ...] = (2, 2, 2, 2)):
        super().__init__()
        widths = [64, 128, 256, 512]
        self.stage_channels = list(widths)
        self.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        in_channels = 64
        stages = []
        for width, stride, num_blocks in zip(widths, (1, 2, 2, 2), blocks_per_stage):
            blocks = []
            for block_stride in [stride] + [1] * (num_blocks - 1):
                blocks.append(PreActBlock(in_channels, width, block_stride))
                in_channels = width
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.linear = nn.Linear(512, num_classes)

    def forward_features(self, x: Tensor) -> list[Tensor]:
        out = F.relu(self.bn1(self.conv1(x)))
        return stage_outputs(out, (self.layer1, self.layer2, self.layer3, self.layer4))

    def forward_head(self, features: list[Tensor], return_pooled: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        return classify(self.linear, features[-1], return_pooled)


@register_model
def preact_resnet18(num_classes: int) -> PreActResNet18:
    """PreAct ResNet-18 for 32x32 inputs (SPEC 7.1): 11,217,444 parameters at C = 100."""
    return PreActResNet18(num_classes)
