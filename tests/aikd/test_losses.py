"""Loss functions against formulas computed independently here (SPEC 12 items 1-6, 13-15, 24-25)."""

import math

import pytest
import torch
import torch.nn.functional as F

from aikd.losses import attention_loss, attention_map, gradient_penalty, interpolate, soft_target_kl

torch.manual_seed(0)


def _kl_by_hand(z, q, T):
    """T^2 / B * sum_b sum_c q log(q / softmax(z/T)), float64, 0 log 0 = 0."""
    z, q = z.double(), q.double()
    p = torch.exp(z / T) / torch.exp(z / T).sum(1, keepdim=True)
    terms = torch.where(q > 0, q * (torch.log(q) - torch.log(p)), torch.zeros_like(q))
    return T * T * terms.sum() / z.shape[0]


@pytest.mark.parametrize("T", [1.0, 3.0, 4.0])
def test_kl_is_zero_against_own_softmax(T):
    z = torch.randn(8, 10)
    assert abs(soft_target_kl(z, torch.softmax(z / T, 1), T).item()) <= 1e-6


@pytest.mark.parametrize("T", [1.0, 2.0, 6.0])
def test_kl_matches_formula(T):
    z = torch.randn(16, 7)
    q = torch.distributions.Dirichlet(torch.ones(7)).sample((16,))
    assert soft_target_kl(z, q, T).item() == pytest.approx(_kl_by_hand(z, q, T).item(), abs=1e-5, rel=1e-5)


def test_kl_with_onehot_equals_cross_entropy_without_nan():
    z, y = torch.randn(12, 5), torch.randint(0, 5, (12,))
    v = soft_target_kl(z, F.one_hot(y, 5).float(), 1.0)
    assert torch.isfinite(v)
    assert v.item() == pytest.approx(F.cross_entropy(z, y).item(), abs=1e-6)


def test_kl_scaled_by_t_squared():
    z, zt, T = torch.randn(6, 9), torch.randn(6, 9), 4.0
    q = torch.softmax(zt / T, 1)
    plain = F.kl_div(F.log_softmax(z / T, 1), q, reduction="batchmean")
    assert (soft_target_kl(z, q, T) / T**2).item() == pytest.approx(plain.item(), abs=1e-6)


def test_kl_sends_no_gradient_to_the_target():
    z = torch.randn(4, 6, requires_grad=True)
    zt = torch.randn(4, 6, requires_grad=True)
    soft_target_kl(z, torch.softmax(zt, 1), 2.0).backward()
    assert zt.grad is None and z.grad is not None


def test_elementwise_mean_kl_is_batchmean_over_classes():
    z, zt, C = torch.randn(5, 11), torch.randn(5, 11), 11
    q = torch.softmax(zt, 1)
    mean_red = F.kl_div(F.log_softmax(z, 1), q, reduction="mean")
    assert mean_red.item() == pytest.approx(soft_target_kl(z, q, 1.0).item() / C, abs=1e-6)


def test_interpolation_endpoints():
    r, f = torch.randn(3, 4), torch.randn(3, 4)
    assert torch.equal(interpolate(r, f, torch.ones(3, 1)), r)
    assert torch.equal(interpolate(r, f, torch.zeros(3, 1)), f)


@pytest.mark.parametrize("norm", [1.0, 2.5, 0.3])
def test_gradient_penalty_of_a_linear_critic(norm):
    w = torch.randn(10)
    w = w / w.norm() * norm
    critic = lambda x: x @ w + 0.7  # noqa: E731
    r, f = torch.randn(8, 10), torch.randn(8, 10)
    assert gradient_penalty(critic, r, f).item() == pytest.approx((norm - 1) ** 2, abs=1e-6)


def test_gradient_penalty_of_a_constant_critic_is_one_and_loss_is_lambda():
    critic = lambda x: 0 * x.sum(1) + 3.0  # noqa: E731
    r, f = torch.randn(5, 4), torch.randn(5, 4)
    gp = gradient_penalty(critic, r, f)
    assert gp.item() == 1.0
    loss_d = critic(f).mean() - critic(r).mean() + 10 * gp
    assert loss_d.item() == pytest.approx(10.0)


def test_gradient_penalty_with_mean_head_over_a_linear_map():
    lin = torch.nn.Linear(6, 4)
    critic = lambda x: lin(x).mean(1)  # noqa: E731
    expected = (lin.weight.mean(0).norm().item() - 1) ** 2
    assert gradient_penalty(critic, torch.randn(7, 6), torch.randn(7, 6)).item() == pytest.approx(expected, abs=1e-6)


def test_gradient_penalty_uses_given_eps_and_shapes():
    seen = {}

    def critic(x):
        seen["x"] = x.detach().clone()
        return x.sum(1)
    r, f = torch.randn(4, 3), torch.randn(4, 3)
    eps = torch.tensor([[0.0], [1.0], [0.5], [0.25]])
    gradient_penalty(critic, r, f, eps)
    assert torch.allclose(seen["x"], eps * r + (1 - eps) * f)


def _attention_by_hand(x):
    b = x.shape[0]
    v = (x.double() ** 2).mean(1).reshape(b, -1)
    return v / v.norm(dim=1, keepdim=True).clamp_min(1e-12)


def test_attention_map_unit_norm_and_formula():
    x = torch.randn(3, 5, 4, 4)
    a = attention_map(x)
    assert torch.allclose(a.norm(dim=1), torch.ones(3), atol=1e-6)
    assert torch.allclose(a.double(), _attention_by_hand(x), atol=1e-6)


def test_attention_loss_matches_formula_across_channel_counts():
    s = [torch.randn(2, 8, 8, 8), torch.randn(2, 16, 4, 4)]
    t = [torch.randn(2, 32, 8, 8), torch.randn(2, 64, 4, 4)]
    expected = sum(((_attention_by_hand(a) - _attention_by_hand(b)) ** 2).sum() / (a.shape[0] * a.shape[2] * a.shape[3])
                   for a, b in zip(s, t))
    assert attention_loss(s, t).item() == pytest.approx(expected.item(), abs=1e-6)


def test_attention_loss_invariances_and_detach():
    f = torch.randn(2, 4, 6, 6, requires_grad=True)
    r = torch.randn(2, 9, 6, 6, requires_grad=True)
    assert attention_loss([f], [f.detach().clone()]).item() == 0.0
    assert attention_loss([3.0 * f], [r]).item() == pytest.approx(attention_loss([f], [r]).item(), abs=1e-6)
    attention_loss([f], [r]).backward()
    assert r.grad is None and f.grad is not None
    assert not math.isnan(f.grad.sum().item())
