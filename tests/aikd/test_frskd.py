"""FRSKD method (SPEC 4.3, 4.4; 12 items 25, 26): loss against a float64 recomputation, gradient routing, resume state.

Fusion-weight invariants (item 21) live in test_bifpnc.py.
"""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch

from aikd.config import TrainConfig
from aikd.data import Batch
from aikd.methods import create_method
from aikd.methods.frskd import FRSKD
from aikd.models import create_model

C = 5



def make(alpha=2.0, beta=100.0, seed=0):
    torch.manual_seed(seed)
    cfg = TrainConfig.from_dict({"data.dataset": "digits", "model.name": "small_cnn", "method.name": "frskd",
                                 "method.alpha": alpha, "method.beta": beta}).resolved()
    model = create_model("small_cnn", C)
    data = SimpleNamespace(num_classes=C, train_labels=torch.arange(20) % C)
    method = create_method(cfg, model, data, torch.device("cpu"))
    model.train()
    return method


def batch(n=6, seed=1, mixed=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 8, 8, generator=g)
    y = torch.randint(0, C, (n,), generator=g)
    if mixed:
        return Batch(x, y, torch.arange(n), y_b=torch.randint(0, C, (n,), generator=g), lam=0.3)
    return Batch(x, y, torch.arange(n))


# ---- independent float64 formulas --------------------------------------------------------------------------------
def ce_hand(z, y):
    p = torch.exp(z) / torch.exp(z).sum(1, keepdim=True)
    return -torch.log(p[torch.arange(len(y)), y]).mean()


def kd_hand(z_s, z_t, K):
    q = torch.exp(z_t / K) / torch.exp(z_t / K).sum(1, keepdim=True)
    p = torch.exp(z_s / K) / torch.exp(z_s / K).sum(1, keepdim=True)
    return K * K * (q * (torch.log(q) - torch.log(p))).sum() / z_s.shape[0]


def at_hand(feats, refined):
    total = 0.0
    for f, r in zip(feats, refined):
        b, _, h, w = f.shape
        a_f = (f ** 2).mean(1).reshape(b, -1)
        a_r = (r ** 2).mean(1).reshape(b, -1)
        a_f = a_f / a_f.norm(dim=1, keepdim=True).clamp_min(1e-12)
        a_r = a_r / a_r.norm(dim=1, keepdim=True).clamp_min(1e-12)
        total = total + ((a_f - a_r) ** 2).sum() / (b * h * w)
    return total


def reference(method, b):
    """The whole FRSKD loss recomputed in float64 on copies of the classifier and the self-teacher."""
    model = copy.deepcopy(method.model).double().train()
    teacher = copy.deepcopy(method.self_teacher).double().train()
    x = b.x.double()
    raw = model.forward_features(x)
    z_s = model.forward_head(raw)
    refined, z_t = teacher(raw)
    if b.y_b is None:
        ce, ce_t = ce_hand(z_s, b.y), ce_hand(z_t, b.y)
    else:
        ce = b.lam * ce_hand(z_s, b.y) + (1 - b.lam) * ce_hand(z_s, b.y_b)
        ce_t = b.lam * ce_hand(z_t, b.y) + (1 - b.lam) * ce_hand(z_t, b.y_b)
    kd = kd_hand(z_s, z_t, method.temperature)
    at = at_hand([torch.clamp(f, min=0) for f in raw], refined)
    return {"ce": ce, "ce_teacher": ce_t, "kd": kd, "at": at,
            "loss": ce + ce_t + method.alpha * kd + method.beta * at}


# ---- loss values ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mixed", [False, True])
def test_loss_matches_float64_formula(mixed):
    method = make(alpha=2.0, beta=100.0)
    b = batch(mixed=mixed)
    expected = reference(method, b)
    out = method.training_step(b)
    assert set(out) == {"loss", "ce", "ce_teacher", "kd", "at"}
    for key, value in expected.items():
        assert out[key].item() == pytest.approx(value.item(), rel=1e-4, abs=1e-6), key
    assert expected["at"].item() > 0 and expected["kd"].item() > 0


def test_beta_zero_drops_attention_term():
    """Item 26: FRSKD\\F is CE + CE + alpha * KD, with no AT term at all."""
    method = make(alpha=1.5, beta=0.0)
    b = batch()
    expected = reference(method, b)
    out = method.training_step(b)
    assert "at" not in out
    want = expected["ce"] + expected["ce_teacher"] + 1.5 * expected["kd"]
    assert out["loss"].item() == pytest.approx(want.item(), rel=1e-5)


def test_presets_and_temperature():
    cfg = TrainConfig.from_dict({"data.dataset": "cifar100", "method.name": "frskd"}).resolved()
    assert (cfg.method.alpha, cfg.method.beta, cfg.method.temperature) == (2.0, 100.0, 4.0)


# ---- gradient routing (item 25) --------------------------------------------------------------------------------
def grads(method, b):
    method.model.zero_grad(set_to_none=True)
    method.self_teacher.zero_grad(set_to_none=True)
    method.training_step(b)["loss"].backward()
    return ({n: p.grad.clone() for n, p in method.model.named_parameters()},
            {n: p.grad.clone() if p.grad is not None else torch.zeros_like(p)
             for n, p in method.self_teacher.named_parameters()})


def test_kd_and_attention_send_no_gradient_into_the_self_teacher():
    """The self-teacher's gradients are those of its own CE alone, whatever alpha and beta are."""
    b = batch()
    _, teacher_full = grads(make(alpha=3.0, beta=200.0), b)
    _, teacher_ce_only = grads(make(alpha=0.0, beta=0.0), b)
    for name in teacher_full:
        torch.testing.assert_close(teacher_full[name], teacher_ce_only[name], rtol=1e-5, atol=1e-7)


def test_teacher_cross_entropy_reaches_the_backbone():
    """Features enter BiFPNc undetached: the backbone stages get CE(z_T)'s gradient, the student's fc does not."""
    b = batch()
    method = make(alpha=0.0, beta=0.0)
    student_plus_teacher, _ = grads(method, b)
    reference_model = copy.deepcopy(method.model)
    reference_model.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(reference_model(b.x), b.y).backward()
    student_only = {n: p.grad for n, p in reference_model.named_parameters()}
    diff = {n: (student_plus_teacher[n] - student_only[n]).abs().max().item() for n in student_only}
    assert all(diff[n] > 1e-6 for n in diff if n.startswith("stages.")), diff
    assert diff["fc.weight"] < 1e-7 and diff["fc.bias"] < 1e-7


def test_gradient_at_the_self_teacher_outputs_is_its_cross_entropy_only():
    """Item 25 at the outputs: d loss / d z_T is CE's (softmax - onehot) / B; refined maps feeding only AT get none."""
    method = make(alpha=2.0, beta=100.0)
    seen = []
    method.self_teacher.register_forward_hook(lambda m, i, out: seen.append(out))
    b = batch()
    out = method.training_step(b)
    refined, z_t = seen[0]
    z_t.retain_grad()
    for r in refined:
        r.retain_grad()
    out["loss"].backward()
    z = z_t.detach().double()
    p = torch.exp(z) / torch.exp(z).sum(1, keepdim=True)
    expected = (p - torch.nn.functional.one_hot(b.y, C).double()) / len(b.y)
    torch.testing.assert_close(z_t.grad.double(), expected, rtol=1e-4, atol=1e-7)
    assert all(r.grad is None for r in refined[:-1])  # used by AT only (the last one also feeds the pooled logits)


# ---- trainer integration: extra parameters, modes, resume state -------------------------------------------------
def test_self_teacher_parameters_are_trained_by_the_trainer_optimizer():
    method = make()
    params = list(method.model.parameters()) + method.extra_parameters()
    assert {id(p) for p in method.extra_parameters()} == {id(p) for p in method.self_teacher.parameters()}
    opt = torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=1e-4)
    before = [p.detach().clone() for p in method.self_teacher.parameters()]
    opt.zero_grad()
    method.training_step(batch())["loss"].backward()
    opt.step()
    changed = [not torch.equal(a, p) for a, p in zip(before, method.self_teacher.parameters())]
    assert all(changed)  # weight decay alone moves every parameter, fusion weights included


def test_self_teacher_mode_follows_the_student():
    method = make()
    method.self_teacher.eval()
    method.model.train()
    method.training_step(batch())
    assert method.self_teacher.training
    method.model.eval()
    with torch.no_grad():
        method.training_step(batch())
    assert not method.self_teacher.training


def test_state_dict_round_trip_restores_self_teacher():
    a, b = make(seed=0), make(seed=5)
    a.training_step(batch())  # moves BN running statistics
    b.load_state_dict(copy.deepcopy(a.state_dict()))
    for (n, x), (_, y) in zip(a.self_teacher.state_dict().items(), b.self_teacher.state_dict().items()):
        assert torch.equal(x, y), n
    assert isinstance(a, FRSKD) and set(a.state_dict()) == {"self_teacher"}
