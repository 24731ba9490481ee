"""CS-KD method (SPEC 5.2, 5.3; 12 items 29, 30): partner forward without graph in train mode, loss by formula."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch

from aikd.config import TrainConfig
from aikd.data import Batch, build_data
from aikd.methods import create_method
from aikd.methods.cskd import CSKD
from aikd.models import create_model

C = 4



def make(temperature=4.0, lambda_cls=1.0, seed=0):
    torch.manual_seed(seed)
    cfg = TrainConfig.from_dict({"data.dataset": "digits", "model.name": "small_cnn", "method.name": "cskd",
                                 "method.temperature": temperature, "method.lambda_cls": lambda_cls}).resolved()
    model = create_model("small_cnn", C).train()
    data = SimpleNamespace(num_classes=C, train_labels=torch.arange(16) % C)
    return create_method(cfg, model, data, torch.device("cpu"))


def pair_batch(k=5, seed=1, same_images=False):
    g = torch.Generator().manual_seed(seed)
    x_a = torch.randn(k, 3, 8, 8, generator=g)
    x_p = x_a.clone() if same_images else torch.randn(k, 3, 8, 8, generator=g)
    y_a = torch.randint(0, C, (k,), generator=g)
    return Batch(torch.cat([x_a, x_p]), torch.cat([y_a, y_a]), torch.arange(2 * k))


def loss_by_hand(model, b, T, lam):
    """CE(z_a, y_a) + lambda * T^2 * mean_b KL(softmax(z_p/T) || softmax(z_a/T)), float64, train-mode forwards."""
    m = copy.deepcopy(model).double().train()
    k = len(b.x) // 2
    z_a, z_p = m(b.x[:k].double()), m(b.x[k:].double())
    p_a = torch.exp(z_a) / torch.exp(z_a).sum(1, keepdim=True)
    ce = -torch.log(p_a[torch.arange(k), b.y[:k]]).mean()
    q = torch.exp(z_p / T) / torch.exp(z_p / T).sum(1, keepdim=True)
    s = torch.exp(z_a / T) / torch.exp(z_a / T).sum(1, keepdim=True)
    kl = (q * (torch.log(q) - torch.log(s))).sum(1).mean()
    return ce, T * T * kl, ce + lam * T * T * kl


@pytest.mark.parametrize("T,lam", [(4.0, 1.0), (1.0, 3.0)])
def test_loss_matches_float64_formula(T, lam):
    """Item 30."""
    method = make(T, lam)
    b = pair_batch()
    ce, cls, loss = loss_by_hand(method.model, b, T, lam)
    out = method.training_step(b)
    assert set(out) == {"loss", "ce", "cls"}
    assert out["ce"].item() == pytest.approx(ce.item(), rel=1e-5)
    assert out["cls"].item() == pytest.approx(cls.item(), rel=1e-4, abs=1e-7)
    assert out["loss"].item() == pytest.approx(loss.item(), rel=1e-5)
    assert cls.item() > 0


def test_loss_is_cross_entropy_when_partner_logits_equal_anchor_logits():
    """Item 30: identical halves give identical train-mode logits, so the class-wise term vanishes."""
    method = make(lambda_cls=2.0)
    b = pair_batch(same_images=True)
    ce, _, _ = loss_by_hand(method.model, b, 4.0, 2.0)
    out = method.training_step(b)
    assert abs(out["cls"].item()) < 1e-6
    assert out["loss"].item() == pytest.approx(ce.item(), rel=1e-5)


def test_partner_forward_builds_no_graph_and_runs_in_train_mode():
    """Item 29: two forwards, anchor with graph then partner without; both in train mode; BN stats updated twice."""
    method = make()
    calls = []
    method.model.register_forward_hook(lambda m, i, out: calls.append((len(i[0]), out.requires_grad, m.training)))
    bn = method.model.stages[0][1]
    tracked = bn.num_batches_tracked.item()
    method.training_step(pair_batch(k=5))
    assert calls == [(5, True, True), (5, False, True)]
    assert bn.num_batches_tracked.item() == tracked + 2


def test_cross_entropy_uses_anchors_only_and_partners_get_no_gradient():
    method = make()
    b = pair_batch()
    out = method.training_step(b)
    relabelled = Batch(b.x, torch.cat([b.y[:5], (b.y[5:] + 1) % C]), b.idx)
    assert method.training_step(relabelled)["ce"].item() == pytest.approx(out["ce"].item(), rel=1e-6)
    x = b.x.clone().requires_grad_(True)
    method.training_step(Batch(x, b.y, b.idx))["loss"].backward()
    assert x.grad[:5].abs().sum() > 0
    assert torch.equal(x.grad[5:], torch.zeros_like(x.grad[5:]))


def test_odd_batch_is_rejected():
    method = make()
    b = pair_batch()
    with pytest.raises(ValueError, match="even"):
        method.training_step(Batch(b.x[:7], b.y[:7], b.idx[:7]))


def test_train_loader_yields_same_class_pairs_for_cskd():
    assert CSKD.pair_batches is True
    cfg = TrainConfig.from_dict({"data.dataset": "digits", "model.name": "small_cnn", "method.name": "cskd",
                                 "data.batch_size": 100}).resolved()
    data = build_data(cfg, torch.device("cpu"), pair_sampler=True)
    data.train.set_epoch(0)
    sizes, anchors = [], []
    for b in data.train:
        k = len(b.idx) // 2
        assert len(b.idx) == 2 * k
        assert torch.equal(b.y[:k], b.y[k:])
        assert torch.equal(b.y, data.train_labels[b.idx])
        sizes.append(k)
        anchors.append(b.idx[:k])
    n = len(data.train_labels)
    assert sorted(torch.cat(anchors).tolist()) == list(range(n))
    assert sizes[:-1] == [100] * (len(sizes) - 1) and len(sizes) == -(-n // 100)


def test_final_batch_with_a_single_anchor_is_skipped():
    """SPEC D24 for pair batches: one anchor (2 rows) would put a single sample through train-mode BatchNorm."""
    cfg = TrainConfig.from_dict({"data.dataset": "digits", "model.name": "small_cnn", "method.name": "cskd"})
    n = len(build_data(cfg.resolved(), torch.device("cpu")).train_labels)
    cfg.data.batch_size = (n - 1) // 2  # two full batches, then a single anchor
    data = build_data(cfg.resolved(), torch.device("cpu"), pair_sampler=True)
    sizes = [len(b.idx) for b in data.train]
    assert len(data.train) == 3 and sizes == [n - 1, n - 1]
