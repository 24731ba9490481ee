"""AI-KD's critic D (SPEC 2.4): a small MLP on class scores that gives WGAN-GP one scalar per sample.

The paper's layers are FC1 -> BatchNorm1d -> LeakyReLU -> FC2 (32 outputs); the scalar head (mean by default),
the normalisation and the input kind (logits or probabilities) are configurable [D6-D9].
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

from .registry import register_model

NORMS = ("batchnorm", "layernorm", "none")
HEADS = ("mean", "sum", "linear")
INPUTS = ("logits", "probs")


class Critic(nn.Module):
    """Maps (B, C) class scores to (B,) critic scores: FC1 -> norm -> LeakyReLU -> FC2 -> head.

    `head="mean"` averages the fc2 outputs, `"sum"` adds them, `"linear"` applies an extra Linear(fc2 -> 1).
    `prepare(logits)` turns logits into the critic's input (identity or softmax at T = 1); callers apply it
    before interpolating real and fake inputs so the penalty sees the same inputs as the scores.
    """

    def __init__(self, num_classes: int, fc1: int = 64, fc2: int = 32, norm: str = "batchnorm",
                 leaky_slope: float = 0.2, head: str = "mean", input: str = "logits"):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"critic: unknown norm {norm!r}; expected one of {NORMS}")
        if head not in HEADS:
            raise ValueError(f"critic: unknown head {head!r}; expected one of {HEADS}")
        if input not in INPUTS:
            raise ValueError(f"critic: unknown input {input!r}; expected one of {INPUTS}")
        self.head_kind = head
        self.input_kind = input
        self.fc1 = nn.Linear(num_classes, fc1)
        if norm == "batchnorm":
            self.norm = nn.BatchNorm1d(fc1)
        elif norm == "layernorm":
            self.norm = nn.LayerNorm(fc1)
        else:
            self.norm = nn.Identity()
        self.activation = nn.LeakyReLU(negative_slope=leaky_slope)
        self.fc2 = nn.Linear(fc1, fc2)
        self.score_layer = nn.Linear(fc2, 1) if head == "linear" else None

    def prepare(self, logits: Tensor) -> Tensor:
        """The critic's input for these logits: unchanged (`input="logits"`) or softmax over classes (`"probs"`)."""
        if self.input_kind == "probs":
            return torch.softmax(logits, dim=1)
        return logits

    def forward(self, x: Tensor) -> Tensor:
        hidden = self.fc2(self.activation(self.norm(self.fc1(x))))
        if self.head_kind == "mean":
            return hidden.mean(dim=1)
        if self.head_kind == "sum":
            return hidden.sum(dim=1)
        return self.score_layer(hidden).squeeze(1)


@register_model
def critic(num_classes: int, fc1: int = 64, fc2: int = 32, norm: str = "batchnorm", leaky_slope: float = 0.2,
           head: str = "mean", input: str = "logits") -> Critic:
    """AI-KD critic (SPEC 2.4): 8,672 parameters at C = 100 with (64, 32); head "linear" adds 33."""
    return Critic(num_classes, fc1=fc1, fc2=fc2, norm=norm, leaky_slope=leaky_slope, head=head, input=input)
