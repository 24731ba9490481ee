"""TF-KD method (SPEC 6.1; 12 items 31, 32): both variants against the official elementwise-mean formula."""

from __future__ import annotations

import copy
import math
from types import SimpleNamespace

import pytest
import torch

from aikd.config import TrainConfig
from aikd.data import Batch
from aikd.methods import create_method
from aikd.methods.tfkd import tfkd_reg_prior
from aikd.models import create_model

C = 6



def make(variant="self", alpha=None, T=None, m=None, teacher="random"):
    torch.manual_seed(0)
    cfg = TrainConfig.from_dict({"data.dataset": "digits", "model.name": "small_cnn", "method.name": "tfkd",
                                 "method.variant": variant, "method.alpha": alpha, "method.temperature": T,
                                 "method.multiplier": m}).resolved()
    model = create_model("small_cnn", C).train()
    if teacher == "random":
        teacher = create_model("small_cnn", C)
    elif teacher == "copy":
        teacher = copy.deepcopy(model)
    data = SimpleNamespace(num_classes=C, train_labels=torch.arange(12) % C)
    return create_method(cfg, model, data, torch.device("cpu"), teacher=teacher)


def batch(n=7, seed=1, mixed=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 8, 8, generator=g)
    y = torch.randint(0, C, (n,), generator=g)
    if mixed:
        return Batch(x, y, torch.arange(n), y_b=torch.randint(0, C, (n,), generator=g), lam=0.4)
    return Batch(x, y, torch.arange(n))


def softmax64(z, T=1.0):
    z = z.double() / T
    return torch.exp(z) / torch.exp(z).sum(1, keepdim=True)


def ce64(z, y):
    return -torch.log(softmax64(z)[torch.arange(len(y)), y]).mean()


def kl_elementwise_mean(q, p):
    """PyTorch's KLDivLoss() default: sum_bc q (log q - log p) / (B * C)."""
    return (q * (torch.log(q) - torch.log(p))).sum() / q.numel()


def test_presets_follow_the_model_family():
    cfg = TrainConfig.from_dict({"data.dataset": "cifar100", "method.name": "tfkd"}).resolved()
    assert (cfg.method.alpha, cfg.method.temperature, cfg.method.multiplier) == (0.95, 6.0, 50.0)
    cfg = TrainConfig.from_dict({"data.dataset": "cifar100", "method.name": "tfkd", "method.variant": "reg"})
    m = cfg.resolved().method
    assert (m.alpha, m.temperature, m.multiplier) == (0.1, 20.0, 100.0)


# ---- self variant -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mixed", [False, True])
def test_self_loss_matches_official_formula(mixed):
    """L = (1 - alpha) CE + alpha * T^2 * m * KLmean(softmax(z_t/T) || softmax(z/T)); teacher sees the same batch."""
    method = make("self", alpha=0.9, T=4.0, m=50.0)
    b = batch(mixed=mixed)
    student = copy.deepcopy(method.model).double().train()
    z, z_t = student(b.x.double()), copy.deepcopy(method.teacher).double()(b.x.double())
    ce = ce64(z, b.y) if not mixed else b.lam * ce64(z, b.y) + (1 - b.lam) * ce64(z, b.y_b)
    kd = 16.0 * 50.0 * kl_elementwise_mean(softmax64(z_t, 4.0), softmax64(z, 4.0))
    out = method.training_step(b)
    assert set(out) == {"loss", "ce", "kd"}
    assert out["ce"].item() == pytest.approx(ce.item(), rel=1e-5)
    assert out["kd"].item() == pytest.approx(kd.item(), rel=1e-4)
    assert out["loss"].item() == pytest.approx((0.1 * ce + 0.9 * kd).item(), rel=1e-5)


def test_self_alpha_zero_is_cross_entropy():
    """Item 31."""
    method = make("self", alpha=0.0, T=6.0, m=50.0)
    b = batch()
    ce = ce64(copy.deepcopy(method.model).double()(b.x.double()), b.y)
    assert method.training_step(b)["loss"].item() == pytest.approx(ce.item(), rel=1e-5)


def test_self_teacher_equal_to_student_gives_zero_kl():
    """Item 31: same weights, both in eval mode, so the logits coincide."""
    method = make("self", alpha=0.95, T=6.0, m=50.0, teacher="copy")
    method.model.eval()
    out = method.training_step(batch())
    assert abs(out["kd"].item()) / (6.0**2 * 50.0 / C) < 1e-7  # the bare KL is zero up to float32 rounding
    assert out["loss"].item() == pytest.approx(0.05 * out["ce"].item(), rel=1e-4)


def test_self_teacher_is_frozen_and_gets_no_gradient():
    method = make("self")
    assert not method.teacher.training
    assert all(not p.requires_grad for p in method.teacher.parameters())
    seen = []
    method.teacher.register_forward_hook(lambda m, i, out: seen.append((i[0], out.requires_grad)))
    b = batch(mixed=True)
    method.training_step(b)["loss"].backward()
    assert seen[0][0] is b.x and seen[0][1] is False  # exactly the student's (mixed) batch, no graph
    assert all(p.grad is None for p in method.teacher.parameters())


def test_self_without_teacher_is_an_error():
    with pytest.raises(ValueError, match="teacher"):
        make("self", teacher=None)


# ---- reg variant ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("T", [1.0, 20.0, 40.0])
def test_reg_prior_rows_and_true_class_entry(T):
    """Item 32."""
    q = tfkd_reg_prior(C, T).double()
    torch.testing.assert_close(q.sum(1), torch.ones(C, dtype=torch.float64), rtol=0, atol=1e-6)
    true = math.exp(0.99 / T) / (math.exp(0.99 / T) + (C - 1) * math.exp(0.01 / ((C - 1) * T)))
    torch.testing.assert_close(q.diagonal(), torch.full((C,), true, dtype=torch.float64), rtol=1e-6, atol=0)
    off_diagonal = q[~torch.eye(C, dtype=torch.bool)]
    assert torch.all(off_diagonal < q.diagonal().min())


@pytest.mark.parametrize("mixed", [False, True])
def test_reg_loss_matches_official_formula(mixed):
    """L = (1 - alpha) CE + alpha * m * KLmean(q || softmax(z)), student at T = 1 and no T^2."""
    method = make("reg", alpha=0.1, T=20.0, m=100.0, teacher=None)
    b = batch(mixed=mixed)
    z = copy.deepcopy(method.model).double().train()(b.x.double())
    off = 0.01 / (C - 1)

    def prior(y):
        u = torch.full((len(y), C), off, dtype=torch.float64)
        u[torch.arange(len(y)), y] = 0.99
        return softmax64(u, 20.0)

    q = prior(b.y) if not mixed else b.lam * prior(b.y) + (1 - b.lam) * prior(b.y_b)
    ce = ce64(z, b.y) if not mixed else b.lam * ce64(z, b.y) + (1 - b.lam) * ce64(z, b.y_b)
    kd = 100.0 * kl_elementwise_mean(q, softmax64(z))
    out = method.training_step(b)
    assert method.teacher is None
    assert out["kd"].item() == pytest.approx(kd.item(), rel=1e-5)
    assert out["loss"].item() == pytest.approx((0.9 * ce + 0.1 * kd).item(), rel=1e-5)
