"""Common interface of every classification backbone, so methods (FRSKD, Recall@1) never special-case a model."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor


def global_average_pool(x: Tensor) -> Tensor:
    """Adaptive global average pooling to a (B, C) vector; adaptive so 8x8 inputs work (SPEC D23)."""
    return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


def stage_outputs(x: Tensor, stages) -> list[Tensor]:
    """Run `stages` in order on `x`; the output of each (the features methods such as FRSKD read)."""
    features = []
    for stage in stages:
        x = stage(x)
        features.append(x)
    return features


def classify(fc: nn.Module, last: Tensor, return_pooled: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """Every backbone's head after its own final norm / activation: the logits of `last` globally pooled, and the
    pooled vector itself when asked (Recall@1 reads it)."""
    pooled = global_average_pool(last)
    logits = fc(pooled)
    return (logits, pooled) if return_pooled else logits


def pick_stem(model: str, stem: str, **variants):
    """What the keyword `stem` names among `variants` (a model's class, or a function of num_classes, per stem); a
    ValueError listing the stems there are otherwise, worded alike for every model that has several."""
    for name, variant in variants.items():
        if stem == name:
            return variant
    expected = " or ".join(repr(name) for name in variants)
    raise ValueError(f"{model}: unknown stem {stem!r}; expected {expected}")


class Backbone(nn.Module):
    """A classifier split into stages and a head: `forward(x) == forward_head(forward_features(x))`.

    Subclasses set `stage_channels` (channels of each `forward_features` output) and implement
    `forward_features` (raw stage outputs, no extra activation) and `forward_head` (everything after the stages).
    """

    stage_channels: list[int]

    def forward_features(self, x: Tensor) -> list[Tensor]:
        raise NotImplementedError

    def forward_head(self, features: list[Tensor], return_pooled: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))
