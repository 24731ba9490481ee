"""AI-KD critic (SPEC 2.4; 12 item 16): shapes, sizes, heads, norms, input preparation."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn as nn

from aikd.models import Backbone, Critic, create_model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("norm,head,input_kind", list(itertools.product(
    ("batchnorm", "layernorm", "none"), ("mean", "sum", "linear"), ("logits", "probs"))))
def test_critic_maps_batch_of_class_scores_to_one_score_per_sample(norm, head, input_kind):
    critic = create_model("critic", 100, norm=norm, head=head, input=input_kind)
    logits = torch.randn(6, 100, requires_grad=True)
    scores = critic(critic.prepare(logits))
    assert scores.shape == (6,)
    scores.sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


@pytest.mark.parametrize("kwargs,expected", [
    ({}, 8_672),
    ({"head": "linear"}, 8_672 + 33),
    ({"norm": "layernorm"}, 8_672),
    ({"norm": "none"}, 8_672 - 128),
    ({"fc1": 128, "fc2": 16}, 100 * 128 + 128 + 256 + 128 * 16 + 16),
])
def test_critic_parameter_count(kwargs, expected):
    assert count_parameters(create_model("critic", 100, **kwargs)) == expected


def test_critic_default_layers_follow_spec():
    critic = create_model("critic", 100)
    assert isinstance(critic, Critic) and not isinstance(critic, Backbone)
    assert (critic.fc1.in_features, critic.fc1.out_features) == (100, 64)
    assert (critic.fc2.in_features, critic.fc2.out_features) == (64, 32)
    assert isinstance(critic.norm, nn.BatchNorm1d)
    assert critic.norm.eps == 1e-5 and critic.norm.momentum == 0.1 and critic.norm.affine
    assert isinstance(critic.activation, nn.LeakyReLU) and critic.activation.negative_slope == 0.2
    assert create_model("critic", 10, leaky_slope=0.01).activation.negative_slope == 0.01
    assert isinstance(create_model("critic", 10, norm="layernorm").norm, nn.LayerNorm)


def test_critic_heads_reduce_the_fc2_outputs_as_documented():
    torch.manual_seed(0)
    x = torch.randn(5, 10)
    for head in ("mean", "sum", "linear"):
        critic = create_model("critic", 10, head=head)
        with torch.no_grad():
            hidden = critic.fc2(nn.functional.leaky_relu(critic.norm(critic.fc1(x)), 0.2))
            expected = {
                "mean": lambda: hidden.sum(dim=1) / 32,
                "sum": lambda: hidden.sum(dim=1),
                "linear": lambda: hidden @ critic.score_layer.weight[0] + critic.score_layer.bias[0],
            }[head]()
            torch.testing.assert_close(critic(x), expected, rtol=0, atol=1e-6)


def test_prepare_returns_logits_or_probabilities():
    logits = torch.randn(4, 7) * 3
    assert torch.equal(create_model("critic", 7).prepare(logits), logits)
    assert torch.equal(create_model("critic", 7, input="logits").prepare(logits), logits)
    probs = create_model("critic", 7, input="probs").prepare(logits)
    torch.testing.assert_close(probs, torch.softmax(logits, dim=1), rtol=0, atol=0)
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(4), rtol=0, atol=1e-6)


def test_critic_supports_the_gradient_penalty_double_backward():
    critic = create_model("critic", 10)
    inputs = torch.randn(4, 10, requires_grad=True)
    (gradient,) = torch.autograd.grad(critic(inputs).sum(), inputs, create_graph=True)
    penalty = ((gradient.norm(2, dim=1) - 1) ** 2).mean()
    penalty.backward()
    assert critic.fc1.weight.grad is not None and critic.fc1.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("kwargs", [{"norm": "groupnorm"}, {"head": "max"}, {"input": "softmax"}])
def test_critic_rejects_unknown_options(kwargs):
    with pytest.raises(ValueError):
        create_model("critic", 10, **kwargs)
