"""ResNet-18 with two stems: torchvision's 224x224 network (SPEC 7.3) and FRSKD's CIFAR-stem network (SPEC 7.5).

Both are the standard post-activation ResNet-18; they differ only in the stem, the initialisation and where the
block's last ReLU sits (the CIFAR one follows the FRSKD code, which applies it at the next block's input).
"""

from __future__ import annotations

import functools

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .base import Backbone, classify, pick_stem, stage_outputs
from .registry import register_model

RESNET18_STAGE_CHANNELS = [64, 128, 256, 512]


@functools.cache
def imagenet_stem_class() -> type:
    """`ResNet18ImageNetStem`, made on first use: it subclasses torchvision's ResNet, and importing torchvision
    loads torch._dynamo, a cost every `import aikd` (the search driver's too) would otherwise pay for a model that
    only the fine-grained sets use."""
    from torchvision.models.resnet import BasicBlock as TorchvisionBasicBlock
    from torchvision.models.resnet import ResNet as TorchvisionResNet

    class ResNet18ImageNetStem(Backbone, TorchvisionResNet):
        """Exactly torchvision's `resnet18` (structure, parameter names and Kaiming init) with the Backbone
        interface.

        Stem Conv7x7/2 -> BN -> ReLU -> MaxPool3x3/2 (224 -> 56 before the first stage). `forward_features` returns
        the four stages' outputs (post-ReLU, as torchvision's blocks end in ReLU); the head is pool -> fc.
        """

        def __init__(self, num_classes: int):
            super().__init__(TorchvisionBasicBlock, [2, 2, 2, 2], num_classes=num_classes)
            self.stage_channels = list(RESNET18_STAGE_CHANNELS)

        def forward_features(self, x: Tensor) -> list[Tensor]:
            out = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            return stage_outputs(out, (self.layer1, self.layer2, self.layer3, self.layer4))

        def forward_head(self, features: list[Tensor], return_pooled: bool = False) -> Tensor | tuple[Tensor, Tensor]:
            return classify(self.fc, features[-1], return_pooled)

    return ResNet18ImageNetStem


class ReluInputBasicBlock(nn.Module):
    """FRSKD's post-activation basic block: the ReLU that usually ends a block is applied to this block's input.

    The block output is therefore the pre-ReLU sum, which is what FRSKD calls the stage output (F_i = ReLU(it)).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        else:
            self.downsample = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return out + self.downsample(x)


class ResNet18CifarStem(Backbone):
    """FRSKD's CIFAR ResNet-18 (SPEC 7.5): Conv3x3/1 -> BN stem, no max-pool, PyTorch default init.

    `forward_features` returns the four stages' pre-ReLU outputs; the head is ReLU -> pool -> fc.
    """

    def __init__(self, num_classes: int):
        super().__init__()
        self.stage_channels = list(RESNET18_STAGE_CHANNELS)
        self.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        in_channels = 64
        stages = []
        for width, stride in zip(RESNET18_STAGE_CHANNELS, (1, 2, 2, 2)):
            first_block = ReluInputBasicBlock(in_channels, width, stride)
            stages.append(nn.Sequential(first_block, ReluInputBasicBlock(width, width)))
            in_channels = width
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.fc = nn.Linear(512, num_classes)

    def forward_features(self, x: Tensor) -> list[Tensor]:
        out = self.bn1(self.conv1(x))  # the stem's ReLU is applied at the first block's input
        return stage_outputs(out, (self.layer1, self.layer2, self.layer3, self.layer4))

    def forward_head(self, features: list[Tensor], return_pooled: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        return classify(self.fc, F.relu(features[-1]), return_pooled)


@register_model
def resnet18(num_classes: int, stem: str = "imagenet") -> Backbone:
    """ResNet-18; `stem="imagenet"` is torchvision's (SPEC 7.3), `stem="cifar"` FRSKD's CIFAR network (SPEC 7.5)."""
    return pick_stem("resnet18", stem, imagenet=lambda n: imagenet_stem_class()(n),
                      cifar=ResNet18CifarStem)(num_classes)


@register_model
def resnet18_cifar(num_classes: int) -> ResNet18CifarStem:
    """FRSKD's post-activation CIFAR-stem ResNet-18 (SPEC 7.5): 11,220,132 parameters at C = 100."""
    return ResNet18CifarStem(num_classes)
