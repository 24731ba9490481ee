"""FRSKD's self-teacher BiFPNc (SPEC 4.2) and its uniform-width BiFPN variant, as in the FRSKD code.

It reads the classifier's stage features, fuses them top-down then bottom-up with fast normalised fusion, and
returns refined feature maps (targets of the attention loss) and its own logits (target of the KD loss).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .base import global_average_pool
from .registry import register_model

FUSION_EPSILON = 1e-6


def normalized_fusion_weights(raw: Tensor, epsilon: float = FUSION_EPSILON) -> Tensor:
    """Fast normalised fusion: ReLU(w_j) / (sum_k ReLU(w_k) + epsilon); non-negative, summing to at most 1."""
    clipped = F.relu(raw)
    return clipped / (clipped.sum(dim=0) + epsilon)


def same_padding_size(size: int, kernel_size: int = 3, stride: int = 2) -> tuple[int, int]:
    """TensorFlow "same" padding (before, after) of one spatial dimension; the output size is ceil(size / stride)."""
    total = (math.ceil(size / stride) - 1) * stride - size + kernel_size
    return total // 2, total - total // 2


class MaxPool2dSamePadding(nn.Module):
    """Max-pool 3x3 / stride 2 with TensorFlow "same" zero padding (EfficientDet's pool, kept by FRSKD)."""

    def __init__(self, kernel_size: int = 3, stride: int = 2):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        top, bottom = same_padding_size(x.shape[-2], self.kernel_size, self.stride)
        left, right = same_padding_size(x.shape[-1], self.kernel_size, self.stride)
        x = F.pad(x, [left, right, top, bottom])
        return F.max_pool2d(x, self.kernel_size, self.stride)


def conv1x1_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """`Conv1` of SPEC 4.2: 1x1 conv (no bias) -> BN -> ReLU; the laterals and the resampling convolutions."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU())


class DepthwiseSeparableBlock(nn.Module):
    """`DS` of SPEC 4.2: `depth` x [depthwise 3x3 -> pointwise 1x1 -> BN], ReLU between repeats, none at the end."""

    def __init__(self, channels: int, depth: int = 2):
        super().__init__()
        if depth < 1:
            raise ValueError(f"depthwise-separable block depth must be >= 1, got {depth}")
        units = []
        for index in range(depth):
            layers = [nn.ReLU()] if index > 0 else []
            layers += [
                nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False),
                nn.Conv2d(channels, channels, 1, bias=False),
                nn.BatchNorm2d(channels),
            ]
            units.append(nn.Sequential(*layers))
        self.conv = nn.Sequential(*units)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class UpsampleNearest(nn.Module):
    """`Up_i`: nearest-neighbour upsampling to the finer level's size (x2 in practice), then an optional Conv1.

    Resizing to the target size instead of a fixed x2 gives the same result whenever the finer map is exactly twice
    as large, and still works when it is not (e.g. 1x1 maps on tiny inputs).
    """

    def __init__(self, in_channels: int, out_channels: int, with_conv: bool):
        super().__init__()
        self.conv = conv1x1_bn_relu(in_channels, out_channels) if with_conv else nn.Identity()

    def forward(self, x: Tensor, size: torch.Size) -> Tensor:
        return self.conv(F.interpolate(x, size=tuple(size), mode="nearest"))


class DownsampleMaxPool(nn.Module):
    """`Down_i`: "same"-padded max-pool 3x3 / 2 (output ceil(H/2)), then an optional Conv1."""

    def __init__(self, in_channels: int, out_channels: int, with_conv: bool):
        super().__init__()
        self.pool = MaxPool2dSamePadding(3, 2)
        self.conv = conv1x1_bn_relu(in_channels, out_channels) if with_conv else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(self.pool(x))


class BiFPNc(nn.Module):
    """One bidirectional feature-pyramid layer over `n` backbone stages, plus a linear classifier.

    Levels are indexed from 0 (shallowest). `level_channels[i]` is the width of level i: `width * c_i` for BiFPNc,
    a constant for the uniform BiFPN (which also has bare resampling, `resample_convs=False`).
    `forward(feats)` takes the raw stage outputs F_i (ReLU is applied inside) and returns
    `(refined, logits)` with `refined[i] = ReLU(T_i)` of shape (B, level_channels[i], H_i, W_i).
    """

    def __init__(self, stage_channels: list[int], num_classes: int, level_channels: list[int], depth: int = 2,
                 resample_convs: bool = True):
        super().__init__()
        if len(stage_channels) < 2 or len(level_channels) != len(stage_channels):
            raise ValueError("BiFPNc needs >= 2 stages and one level width per stage")
        num_levels = len(stage_channels)
        self.stage_channels = list(stage_channels)
        self.level_channels = list(level_channels)
        self.lateral = nn.ModuleList(conv1x1_bn_relu(c, d) for c, d in zip(stage_channels, level_channels))
        self.lateral2 = nn.ModuleList(
            conv1x1_bn_relu(stage_channels[i], level_channels[i]) for i in range(1, num_levels))
        self.upsample = nn.ModuleList(
            UpsampleNearest(level_channels[i + 1], level_channels[i], resample_convs) for i in range(num_levels - 1))
        self.top_down_blocks = nn.ModuleList(
            DepthwiseSeparableBlock(level_channels[i], depth) for i in range(num_levels - 1))
        self.top_down_weights = nn.ParameterList(nn.Parameter(torch.ones(2)) for _ in range(num_levels - 1))
        self.downsample = nn.ModuleList(
            DownsampleMaxPool(level_channels[i - 1], level_channels[i], resample_convs) for i in range(1, num_levels))
        self.bottom_up_blocks = nn.ModuleList(
            DepthwiseSeparableBlock(level_channels[i], depth) for i in range(1, num_levels))
        self.bottom_up_weights = nn.ParameterList(
            nn.Parameter(torch.ones(3 if i < num_levels - 1 else 2)) for i in range(1, num_levels))
        self.fc = nn.Linear(level_channels[-1], num_classes)

    def forward(self, feats: list[Tensor]) -> tuple[list[Tensor], Tensor]:
        num_levels = len(self.stage_channels)
        if len(feats) != num_levels:
            raise ValueError(f"BiFPNc expects {num_levels} feature maps, got {len(feats)}")
        activated = [F.relu(f) for f in feats]
        laterals = [conv(f) for conv, f in zip(self.lateral, activated)]
        laterals2 = [None] + [conv(f) for conv, f in zip(self.lateral2, activated[1:])]

        top_down: list[Tensor] = [None] * num_levels  # P_i
        top_down[-1] = laterals[-1]
        for i in range(num_levels - 2, -1, -1):
            w = normalized_fusion_weights(self.top_down_weights[i])
            upsampled = self.upsample[i](F.relu(top_down[i + 1]), laterals[i].shape[-2:])
            top_down[i] = self.top_down_blocks[i](w[0] * F.relu(laterals[i]) + w[1] * upsampled)

        bottom_up = [top_down[0]]  # T_i
        for i in range(1, num_levels):
            w = normalized_fusion_weights(self.bottom_up_weights[i - 1])
            downsampled = self.downsample[i - 1](F.relu(bottom_up[-1]))
            if i < num_levels - 1:
                fused = w[0] * F.relu(laterals2[i]) + w[1] * F.relu(top_down[i]) + w[2] * downsampled
            else:
                fused = w[0] * F.relu(laterals2[i]) + w[1] * downsampled
            bottom_up.append(self.bottom_up_blocks[i - 1](fused))

        refined = [F.relu(t) for t in bottom_up]
        logits = self.fc(global_average_pool(refined[-1]))
        return refined, logits


@register_model
def bifpnc(num_classes: int, stage_channels: list[int] = (64, 128, 256, 512), width: int = 2, depth: int = 2,
           arch: str = "bifpnc", channels: int = 128) -> BiFPNc:
    """FRSKD self-teacher for a backbone with `stage_channels`.

    `arch="bifpnc"`: level widths `width * c_i` with Conv1 in the resampling paths (SPEC 4.2, the default).
    `arch="bifpn"`: every level `channels` wide, bare upsampling / max-pool (FRSKD Table 6 "BiFPN"; `width` unused).
    """
    stage_channels = list(stage_channels)
    if arch == "bifpnc":
        return BiFPNc(stage_channels, num_classes, [width * c for c in stage_channels], depth, resample_convs=True)
    if arch == "bifpn":
        return BiFPNc(stage_channels, num_classes, [channels] * len(stage_channels), depth, resample_convs=False)
    raise ValueError(f"bifpnc: unknown arch {arch!r}; expected 'bifpnc' or 'bifpn'")
