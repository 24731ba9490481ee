"""DenseNet-121 with two stems: the CS-KD/PS-KD CIFAR DenseNet-BC (SPEC 7.2) and torchvision's 224 network (7.4).

Stage convention for both (used by `forward_features`): stage 1 = stem + dense block 1, stage i > 1 = transition
i-1 + dense block i; each stage output is the dense block's concatenated output, before any BN/ReLU.
`stage_channels` = [256, 512, 1024, 1024]; spatial sizes 32/16/8/4 (CIFAR at 32x32) or 56/28/14/7 (224x224).
The head is the final BN -> ReLU -> global pool -> linear.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .base import Backbone, classify, pick_stem
from .registry import register_model

GROWTH_RATE = 32
BLOCK_LAYERS = (6, 12, 24, 16)


class DenseBottleneck(nn.Module):
    """BN -> ReLU -> Conv1x1(in -> 4k) -> BN -> ReLU -> Conv3x3(4k -> k); output concatenated as [new, input]."""

    def __init__(self, in_channels: int, growth_rate: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, 4 * growth_rate, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(4 * growth_rate)
        self.conv2 = nn.Conv2d(4 * growth_rate, growth_rate, 3, padding=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        return torch.cat([out, x], 1)


class DenseTransition(nn.Module):
    """BN -> ReLU -> Conv1x1(c -> floor(c/2)) -> AvgPool 2x2."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(in_channels)
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(self.conv(F.relu(self.bn(x))), 2)


class DenseNet121Cifar(Backbone):
    """CIFAR DenseNet-121 (growth 32): bare Conv3x3/1 stem (no BN, ReLU or pooling), PyTorch default init."""

    def __init__(self, num_classes: int, growth_rate: int = GROWTH_RATE, block_layers=BLOCK_LAYERS):
        super().__init__()
        channels = 2 * growth_rate
        self.conv1 = nn.Conv2d(3, channels, 3, padding=1, bias=False)
        self.stage_channels = []
        dense_blocks, transitions = [], []
        for index, num_layers in enumerate(block_layers):
            layers = []
            for _ in range(num_layers):
                layers.append(DenseBottleneck(channels, growth_rate))
                channels += growth_rate
            dense_blocks.append(nn.Sequential(*layers))
            self.stage_channels.append(channels)
            if index < len(block_layers) - 1:
                reduced = int(math.floor(channels * 0.5))
                transitions.append(DenseTransition(channels, reduced))
                channels = reduced
        self.dense1, self.dense2, self.dense3, self.dense4 = dense_blocks
        self.trans1, self.trans2, self.trans3 = transitions
        self.bn = nn.BatchNorm2d(channels)
        self.linear = nn.Linear(channels, num_classes)

    def forward_features(self, x: Tensor) -> list[Tensor]:
        f1 = self.dense1(self.conv1(x))
        f2 = self.dense2(self.trans1(f1))
        f3 = self.dense3(self.trans2(f2))
        f4 = self.dense4(self.trans3(f3))
        return [f1, f2, f3, f4]

    def forward_head(self, features: list[Tensor], return_pooled: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        return classify(self.linear, F.relu(self.bn(features[-1])), return_pooled)


@functools.cache
def imagenet_stem_class() -> type:
    """`DenseNet121ImageNetStem`, made on first use: it subclasses torchvision's DenseNet, and importing torchvision
    loads torch._dynamo, a cost every `import aikd` (the search driver's too) would otherwise pay for a model that
    only the fine-grained sets use."""
    from torchvision.models.densenet import DenseNet as TorchvisionDenseNet

    class DenseNet121ImageNetStem(Backbone, TorchvisionDenseNet):
        """torchvision's `densenet121` (structure, parameter names, init) with the Backbone interface.

        One change: the transitions' 2x2 average pools use `ceil_mode=True`, so a 1x1 map stays 1x1 instead of
        vanishing; outputs are identical whenever the map entering a transition has even size (e.g. 56/28/14 at
        224x224), and 8x8 inputs can run (SPEC 12 item 34).
        """

        def __init__(self, num_classes: int):
            super().__init__(growth_rate=GROWTH_RATE, block_config=BLOCK_LAYERS, num_init_features=64, bn_size=4,
                             num_classes=num_classes)
            for index in range(1, len(BLOCK_LAYERS)):
                transition = getattr(self.features, f"transition{index}")
                transition.pool = nn.AvgPool2d(kernel_size=2, stride=2, ceil_mode=True)
            self.stage_channels = []
            channels = 64
            for index, num_layers in enumerate(BLOCK_LAYERS):
                channels += num_layers * GROWTH_RATE
                self.stage_channels.append(channels)
                if index < len(BLOCK_LAYERS) - 1:
                    channels //= 2

        def forward_features(self, x: Tensor) -> list[Tensor]:
            features = []
            out = x
            for name, module in self.features.named_children():
                if name == "norm5":
                    break
                out = module(out)
                if name.startswith("denseblock"):
                    features.append(out)
            return features

        def forward_head(self, features: list[Tensor], return_pooled: bool = False) -> Tensor | tuple[Tensor, Tensor]:
            return classify(self.classifier, F.relu(self.features.norm5(features[-1])), return_pooled)

    return DenseNet121ImageNetStem


@register_model
def densenet121(num_classes: int, stem: str = "imagenet") -> Backbone:
    """DenseNet-121; `stem="imagenet"` is torchvision's (SPEC 7.4), `stem="cifar"` the CS-KD CIFAR one (7.2)."""
    return pick_stem("densenet121", stem, imagenet=lambda n: imagenet_stem_class()(n),
                      cifar=DenseNet121Cifar)(num_classes)
