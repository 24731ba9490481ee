"""AI-KD critic (SPEC 2.4; 12 item 16): shapes, sizes, heads, norms, batching, input preparation."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn as nn

from aikd.models import Backbone, Critic, create_model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("norm,head,input_kind", list(itertools.product(
    ("batchnorm", "layernorm", "none"), ("leaky_mean", "mean", "sum", "linear"), ("logits", "probs"))))
def test_critic_maps_batch_of_class_scores_to_one_score_per_sample(norm, head, input_kind):
    critic = create_model("critic", 100, norm=norm, head=head, input=input_kind)
    logits = torch.randn(6, 100, requires_grad=True)
    scores = critic(critic.prepare(logits))
    assert scores.shape == (6,)
    scores.sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


@pytest.mark.parametrize("kwargs,expected", [
    ({}, 8_672),  # the default head (leaky_mean) adds no weights: the paper's layers and count
    ({"head": "mean"}, 8_672),
    ({"head": "sum"}, 8_672),
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
    for head in ("leaky_mean", "mean", "sum", "linear"):
        critic = create_model("critic", 10, head=head)
        with torch.no_grad():
            hidden = critic.fc2(nn.functional.leaky_relu(critic.norm(critic.fc1(x)), 0.2))
            expected = {
                "leaky_mean": lambda: torch.where(hidden > 0, hidden, 0.2 * hidden).sum(dim=1) / 32,
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


def test_default_head_is_not_a_function_of_fc2s_mean_row_alone():
    """D6: with `mean` over the linear FC2 the score sees only FC2's mean row (and mean bias), so fc2's width is a
    no-op; the default head must see every row. Two critics that share FC1, BN and FC2's mean row and mean bias,
    with different FC2 rows, must score differently (and with `mean` they score the same, so this can fail)."""
    torch.manual_seed(0)
    x = torch.randn(64, 10) * 3
    default = create_model("critic", 10)
    assert default.head_kind == "leaky_mean"
    for head, should_differ in (("leaky_mean", True), ("mean", False)):
        a = create_model("critic", 10, head=head)
        a.load_state_dict(default.state_dict())
        b = create_model("critic", 10, head=head)
        b.load_state_dict(default.state_dict())
        with torch.no_grad():
            delta = torch.randn_like(b.fc2.weight)
            b.fc2.weight += delta - delta.mean(dim=0, keepdim=True)  # rows change, their mean does not
            shift = torch.randn_like(b.fc2.bias)
            b.fc2.bias += shift - shift.mean()
            torch.testing.assert_close(b.fc2.weight.mean(dim=0), a.fc2.weight.mean(dim=0), rtol=0, atol=1e-6)
            assert not torch.allclose(b.fc2.weight, a.fc2.weight, atol=1e-2)
            diff = (a(x) - b(x)).abs().max().item()
        if should_differ:
            assert diff > 1e-2, diff
        else:
            assert diff < 1e-5, diff


def test_score_pair_joint_is_one_call_over_both_batches_and_separate_two():
    torch.manual_seed(0)
    real, fake = torch.randn(8, 10), torch.randn(8, 10) * 2 + 1
    joint = create_model("critic", 10)
    assert joint.bn_mode == "joint"
    separate = create_model("critic", 10, bn_mode="separate")
    separate.load_state_dict(joint.state_dict())
    s_real, s_fake = joint.score_pair(real, fake)
    both = joint(torch.cat([real, fake]))
    assert torch.equal(s_real, both[:8]) and torch.equal(s_fake, both[8:])
    s_real, s_fake = separate.score_pair(real, fake)
    assert torch.equal(s_real, separate(real)) and torch.equal(s_fake, separate(fake))


def test_separate_batchnorm_is_blind_to_an_affine_map_and_joint_is_not():
    """D8: after the linear FC1, a BatchNorm over one batch removes any z -> a*z + c (a > 0); one pass over the real
    and the fake batch together keeps it."""
    torch.manual_seed(0)
    z = torch.randn(32, 10) * 4
    for a, c in ((0.3, 0.0), (3.0, 0.0), (1.0, 2.0)):
        for mode, blind in (("separate", True), ("joint", False)):
            critic = create_model("critic", 10, bn_mode=mode)
            with torch.no_grad():
                s_real, s_fake = critic.score_pair(a * z + c, z)
            gap = (s_real - s_fake).abs().max().item()
            assert (gap < 1e-4) if blind else (gap > 1e-2), (mode, a, c, gap)


@pytest.mark.parametrize("kwargs", [{"norm": "groupnorm"}, {"head": "max"}, {"input": "softmax"},
                                    {"bn_mode": "shared"}])
def test_critic_rejects_unknown_options(kwargs):
    with pytest.raises(ValueError):
        create_model("critic", 10, **kwargs)
