"""WRN-16-2 as in the FRSKD code (SPEC 7.6), kept under `wrn16_2` because FRSKD's numbers come from this variant.

It differs from the textbook wide ResNet: no BatchNorm before a block's first convolution, and each group of blocks
ends in its own BatchNorm whose outputs f1, f2, f3 are the stage features.
"""

from __future__ import annotations

import math

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .base import Backbone, classify
from .registry import register_model


class WideBasicBlockNoInputBN(nn.Module):
    """ReLU(x) -> Conv3x3(stride) -> BN -> ReLU -> Conv3x3, plus x (same width) or Conv1x1(ReLU(x)) (new width)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.same_width = in_channels == out_channels
        self.conv_shortcut = None if self.same_width else nn.Conv2d(in_channels, out_channels, 1, stride=stride,
                                                                    bias=False)

    def forward(self, x: Tensor) -> Tensor:
        activated = F.relu(x)
        residual = self.conv2(F.relu(self.bn2(self.conv1(activated))))
        if self.same_width:
            return x + residual
        return self.conv_shortcut(activated) + residual


class WideResNetFRSKD(Backbone):
    """FRSKD's wide ResNet: conv stem, three groups each followed by its own BN (`block{1,2,3}bn`), ReLU -> pool -> fc.

    `forward_features` returns (f1, f2, f3), the group BN outputs before ReLU. `unused_bn` is the official file's
    BatchNorm2d(128) that never runs; it is kept so the parameter count (703,060 at C = 100) matches the reference
    against which FRSKD's self-teacher size ratios are quoted.
    """

    def __init__(self, num_classes: int, depth: int = 16, widen_factor: int = 2):
        super().__init__()
        if (depth - 4) % 6 != 0:
            raise ValueError(f"wide ResNet depth must be 6n + 4, got {depth}")
        blocks_per_group = (depth - 4) // 6
        widths = [16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.stage_channels = list(widths)
        self.conv1 = nn.Conv2d(3, 16, 3, stride=1, padding=1, bias=False)
        in_channels = 16
        groups, group_bns = [], []
        for width, stride in zip(widths, (1, 2, 2)):
            blocks = []
            for block_index in range(blocks_per_group):
                blocks.append(WideBasicBlockNoInputBN(in_channels, width, stride if block_index == 0 else 1))
                in_channels = width
            groups.append(nn.Sequential(*blocks))
            group_bns.append(nn.BatchNorm2d(width))
        self.block1, self.block2, self.block3 = groups
        self.block1bn, self.block2bn, self.block3bn = group_bns
        self.unused_bn = nn.BatchNorm2d(widths[-1])
        self.fc = nn.Linear(widths[-1], num_classes)
        self._init_like_official()

    def _init_like_official(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
                nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)

    def forward_features(self, x: Tensor) -> list[Tensor]:
        f1 = self.block1bn(self.block1(self.conv1(x)))
        f2 = self.block2bn(self.block2(f1))
        f3 = self.block3bn(self.block3(f2))
        return [f1, f2, f3]

    def forward_head(self, features: list[Tensor], return_pooled: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        return classify(self.fc, F.relu(features[-1]), return_pooled)


@register_model
def wrn16_2(num_classes: int) -> WideResNetFRSKD:
    """WRN-16-2, FRSKD variant (SPEC 7.6): 703,060 parameters at C = 100 (702,804 of them used)."""
    return WideResNetFRSKD(num_classes, depth=16, widen_factor=2)
