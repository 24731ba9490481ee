"""PS-KD method (SPEC 6.2; 12 item 33): alpha_t schedule, targets, loss by formula and the prediction table."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch

from aikd.config import TrainConfig
from aikd.data import Batch
from aikd.methods import create_method
from aikd.models import create_model

C, N, E = 5, 12, 4



LABELS = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1])
IMAGES = torch.randn(N, 3, 8, 8, generator=torch.Generator().manual_seed(3))


def make(alpha_T=0.8, epochs=E):
    torch.manual_seed(0)
    cfg = TrainConfig.from_dict({"data.dataset": "digits", "model.name": "small_cnn", "method.name": "pskd",
                                 "method.alpha_T": alpha_T, "epochs": epochs}).resolved()
    model = create_model("small_cnn", C).train()
    data = SimpleNamespace(num_classes=C, train_labels=LABELS)
    return create_method(cfg, model, data, torch.device("cpu"))


def batch(idx):
    idx = torch.as_tensor(idx)
    return Batch(IMAGES[idx], LABELS[idx], idx)


def epoch_batches(epoch):
    order = torch.randperm(N, generator=torch.Generator().manual_seed(epoch))
    return [batch(i) for i in order.split(4)]


def run_epoch(method, opt, epoch, record=None):
    method.on_epoch_start(epoch)
    for b in epoch_batches(epoch):
        if record is not None:
            handle = method.model.register_forward_hook(
                lambda m, i, out, b=b: record.update({int(k): out.detach()[j].clone() for j, k in enumerate(b.idx)}))
        out = method.training_step(b)
        if record is not None:
            handle.remove()
        opt.zero_grad()
        out["loss"].backward()
        opt.step()


def test_alpha_t_schedule():
    method = make(alpha_T=0.8, epochs=E)
    for t in range(E):
        method.on_epoch_start(t)
        assert method.alpha_t == pytest.approx(0.8 * (t + 1) / E, abs=1e-12)
    assert method.alpha_t == pytest.approx(0.8)


def test_epoch_zero_targets_are_one_hot_and_loss_is_cross_entropy():
    method = make()
    method.on_epoch_start(0)
    b = batch([0, 3, 7, 11])
    assert torch.equal(method.targets(b), torch.nn.functional.one_hot(b.y, C).float())
    out = method.training_step(b)
    assert out["loss"].item() == pytest.approx(out["ce"].item(), rel=1e-6)
    assert out["alpha_t"].item() == pytest.approx(0.8 / E)


def test_alpha_zero_gives_cross_entropy_after_epoch_zero():
    method = make(alpha_T=0.0)
    opt = torch.optim.SGD(method.model.parameters(), lr=0.1)
    run_epoch(method, opt, 0)
    method.on_epoch_start(1)
    out = method.training_step(batch([1, 2, 5, 9]))
    assert out["loss"].item() == pytest.approx(out["ce"].item(), rel=1e-6)


def test_table_holds_each_samples_last_softmax_and_targets_sum_to_one():
    method = make()
    opt = torch.optim.SGD(method.model.parameters(), lr=0.1, momentum=0.9)
    logits = {}
    run_epoch(method, opt, 0, record=logits)
    assert sorted(logits) == list(range(N))
    for i, z in logits.items():
        z = z.double()
        torch.testing.assert_close(method.table[i].double(), torch.exp(z) / torch.exp(z).sum(), rtol=0, atol=1e-6)
    # a second visit within an epoch overwrites the row with the newer prediction
    method.on_epoch_start(1)
    first = method.table[2].clone()
    method.training_step(batch([2, 4]))
    assert not torch.equal(method.table[2], first)
    for t in range(1, E):
        method.on_epoch_start(t)
        for b in epoch_batches(t):
            torch.testing.assert_close(method.targets(b).sum(1), torch.ones(len(b.idx)), rtol=0, atol=1e-6)


def test_loss_matches_float64_formula_at_a_later_epoch():
    method = make(alpha_T=0.8, epochs=E)
    opt = torch.optim.SGD(method.model.parameters(), lr=0.1)
    run_epoch(method, opt, 0)
    method.on_epoch_start(2)
    b = batch([0, 4, 6, 8, 10])
    stored = method.table[b.idx].double().clone()
    z = copy.deepcopy(method.model).double().train()(b.x.double())
    alpha_t = 0.8 * 3 / E
    q = (1 - alpha_t) * torch.nn.functional.one_hot(b.y, C).double() + alpha_t * stored
    log_p = z - torch.log(torch.exp(z).sum(1, keepdim=True))
    expected = -(q * log_p).sum(1).mean()
    out = method.training_step(b)
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert out["ce"].item() == pytest.approx(-log_p[torch.arange(5), b.y].mean().item(), rel=1e-5)
    # the row now holds this step's forward (the model has not been updated yet)
    torch.testing.assert_close(method.table[b.idx].double(), torch.exp(log_p), rtol=0, atol=1e-6)


def test_state_dict_round_trip():
    a, b = make(), make()
    opt = torch.optim.SGD(a.model.parameters(), lr=0.1)
    run_epoch(a, opt, 0)
    b.load_state_dict(copy.deepcopy(a.state_dict()))
    assert torch.equal(a.table, b.table) and a.table.shape == (N, C)
