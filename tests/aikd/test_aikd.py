"""AI-KD against SPEC 12 items 7-12 and 17-18, with each term recomputed here by formula."""

import copy

import pytest
import torch
import torch.nn.functional as F

from aikd.config import TrainConfig
from aikd.data import build_data
from aikd.methods import create_method
from aikd.models import create_model

DEV = torch.device("cpu")


@pytest.fixture(scope="module")
def data():
    # the clean split (the search default flips labels): the critic's tests need a student with confident logits
    cfg = TrainConfig.from_dict({"data.dataset": "digits", "data.batch_size": 32, "data.val_fraction": 0.1,
                                 "data.label_noise": 0}).resolved()
    return build_data(cfg, DEV)


def _cfg(**kw):
    base = {"data.dataset": "digits", "model.name": "small_cnn", "method.name": "aikd", "data.batch_size": 32}
    base.update({k.replace("__", "."): v for k, v in kw.items()})
    return TrainConfig.from_dict(base).resolved()


def _method(data, teacher=True, seed=0, **kw):
    torch.manual_seed(seed)
    cfg = _cfg(**kw)
    model = create_model("small_cnn", 10)
    t = create_model("small_cnn", 10) if teacher else None
    return create_method(cfg, model, data, DEV, teacher=t), model, t


def _first_batch(data, epoch=0):
    data.train.set_epoch(epoch)
    return next(iter(data.train))


def _kd(z, target_logits, T):
    p_t = torch.softmax(target_logits.double() / T, 1)
    log_p = torch.log_softmax(z.double() / T, 1)
    return T * T * (p_t * (torch.log(p_t) - log_p)).sum(1).mean()


def test_zero_weights_give_cross_entropy_exactly_and_build_nothing(data):
    m, model, _ = _method(data, teacher=False, method__alpha_g=0.0, method__alpha_p=0.0, method__omega=0.0)
    assert m.critic is None and m.teacher is None and m.prev_model is None
    m.on_epoch_start(0)
    b = _first_batch(data)
    out = m.training_step(b)
    model.eval(), model.train()
    torch.manual_seed(0)
    assert torch.equal(out["loss"], F.cross_entropy(model(b.x), b.y))


def test_each_term_matches_its_formula(data):
    m, model, teacher = _method(data, method__tau_g=3.0, method__tau_p=2.0)
    m.on_epoch_start(0)
    m.training_step(_first_batch(data))  # one step so that the model differs from its snapshot
    m.on_epoch_start(1)
    b = _first_batch(data, 1)
    with torch.no_grad():
        model_copy = copy.deepcopy(model)
    out = m.training_step(b)
    z = model_copy.train()(b.x)
    z_sup = teacher(b.x)
    z_prev = m.prev_model(b.x)
    ce = F.cross_entropy(z.double(), b.y)
    guide = _kd(z, z_sup, 3.0)
    prog = _kd(z, z_prev, 2.0)
    # with the critic as updated in this step, the student's batch scored in one pass beside the guide's (D8)
    adv = -m.critic(torch.cat([z_sup, z]))[len(z):].double().mean()
    assert out["ce"].item() == pytest.approx(ce.item(), abs=1e-5)
    assert out["guide"].item() == pytest.approx(guide.item(), abs=1e-5)
    assert out["progressive"].item() == pytest.approx(prog.item(), abs=1e-5)
    assert out["adv"].item() == pytest.approx(adv.item(), abs=1e-5)
    total = 0.6 * ce + 0.1 * guide + 0.3 * prog + 0.1 * adv
    assert out["loss"].item() == pytest.approx(total.item(), abs=1e-5)
    assert {"critic", "gp", "w_est"} <= set(out)


def test_guide_is_zero_when_student_equals_teacher(data):
    m, model, teacher = _method(data, method__omega=0.0, method__alpha_p=0.0)
    m.teacher = copy.deepcopy(model).eval()
    model.eval()  # same mode, same outputs
    out = m.training_step(_first_batch(data))
    assert abs(out["guide"].item()) <= 1e-6


def test_progressive_is_zero_when_student_equals_snapshot(data):
    m, model, _ = _method(data, teacher=False, method__alpha_g=0.0, method__omega=0.0)
    m.on_epoch_start(1)
    model.eval()
    out = m.training_step(_first_batch(data, 1))
    assert abs(out["progressive"].item()) <= 1e-6


def test_epoch_zero_onehot_progressive_equals_cross_entropy(data):
    m, _, _ = _method(data, teacher=False, method__alpha_g=0.0, method__omega=0.0, method__tau_p=1.0)
    m.on_epoch_start(0)
    out = m.training_step(_first_batch(data))
    assert out["progressive"].item() == pytest.approx(out["ce"].item(), abs=1e-6)


def test_epoch_zero_skip_leaves_progressive_out(data):
    m, _, _ = _method(data, teacher=False, method__alpha_g=0.0, method__omega=0.0, method__prev_epoch0="skip")
    m.on_epoch_start(0)
    assert "progressive" not in m.training_step(_first_batch(data))


def test_gradients_reach_student_only(data):
    m, model, teacher = _method(data)
    m.on_epoch_start(0)
    m.training_step(_first_batch(data))
    m.on_epoch_start(1)
    critic_before = copy.deepcopy(m.critic.state_dict())
    out = m.training_step(_first_batch(data, 1))
    critic_after_update = copy.deepcopy(m.critic.state_dict())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    opt.zero_grad()
    out["loss"].backward()
    opt.step()
    assert all(p.grad is None for p in teacher.parameters())
    assert all(p.grad is None for p in m.prev_model.parameters())
    assert all(p.grad is None for p in m.critic.parameters())  # L_A does not train the critic
    for k, v in m.critic.state_dict().items():
        assert torch.equal(v, critic_after_update[k])
    assert any(not torch.equal(v, critic_before[k]) for k, v in critic_after_update.items())  # critic did step
    assert m.prev_model.training is False
    assert all(p.grad is not None for p in model.parameters())


def test_adversarial_term_sends_gradient_into_student_logits(data):
    m, model, _ = _method(data)
    b = _first_batch(data)
    z = model(b.x).detach().requires_grad_(True)
    adv = m.adversarial_loss(teacher_logits := model(b.x).detach() * 2, z)
    (g,) = torch.autograd.grad(adv, z)
    assert g.abs().sum() > 0
    assert teacher_logits.grad is None and all(p.grad is None for p in m.critic.parameters())
    assert all(p.requires_grad for p in m.critic.parameters())  # the critic step can train it again


def test_omega_zero_builds_no_critic(data):
    m, _, _ = _method(data, method__omega=0.0)
    assert m.critic is None
    assert "critic" not in m.state_dict()


def test_critic_steps_do_not_change_the_data_stream(data):
    m, _, _ = _method(data)
    m.on_epoch_start(0)
    data.train.set_epoch(0)
    with_critic = []
    for i, b in enumerate(data.train):
        with_critic.append((b.idx.clone(), b.x.clone()))
        m.training_step(b)
        if i == 3:
            break
    data.train.set_epoch(0)
    for (idx, x), b in zip(with_critic, data.train):
        assert torch.equal(idx, b.idx) and torch.equal(x, b.x)


def test_snapshot_copies_parameters_and_buffers(data):
    m, model, _ = _method(data, method__omega=0.0)
    m.on_epoch_start(0)
    for i, b in enumerate(data.train):
        m.training_step(b)["loss"].backward()
        if i == 2:
            break
    m.on_epoch_start(1)
    ref = model.state_dict()
    for k, v in m.prev_model.state_dict().items():
        assert torch.equal(v, ref[k]), k
    assert not m.prev_model.training
    assert all(not p.requires_grad for p in m.prev_model.parameters())


def test_cache_written_once_per_sample_and_used_as_target(data):
    m, model, _ = _method(data, teacher=False, method__alpha_g=0.0, method__omega=0.0, method__prev_mode="cache",
                          method__tau_p=2.0)
    m.on_epoch_start(0)
    data.train.set_epoch(0)
    for b in data.train:
        m.training_step(b)
    assert torch.equal(m.cache_writes, torch.ones_like(m.cache_writes))
    written = m.cache_next.clone()
    m.on_epoch_start(1)
    b = _first_batch(data, 1)
    q = m._progressive_target(b)
    assert torch.allclose(q, torch.softmax(written[b.idx] / 2.0, 1))


# ---- the critic sees scale and shift (D8), in float32 (SPEC 2.6) -------------------------------------------------

class _AffineOf(torch.nn.Module):
    """A guide whose logits are a * z + c of the student's z."""

    def __init__(self, student, a, c):
        super().__init__()
        self.student, self.a, self.c = student, a, c

    def forward(self, x):
        return self.a * self.student(x) + self.c


@pytest.fixture(scope="module")
def trained_student(data):
    """small_cnn after two epochs of CE on digits: logits with a realistic spread (an untrained net's are ~0.1)."""
    torch.manual_seed(0)
    student = create_model("small_cnn", 10)
    opt = torch.optim.SGD(student.parameters(), lr=0.1, momentum=0.9)
    for epoch in range(2):
        data.train.set_epoch(epoch)
        for b in data.train:
            loss = F.cross_entropy(student(b.x), b.y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    student.eval()
    with torch.no_grad():
        data.train.set_epoch(0)
        logits = [student(b.x) for b in data.train]
    return student, logits


STEPS = 400


@pytest.mark.parametrize("bn_mode", ["joint", "separate"])
@pytest.mark.parametrize("a, c", [(1.0, 0.0), (0.3, 0.0), (3.0, 0.0), (1.0, 2.0)])
def test_critic_estimates_a_distance_between_affinely_related_logits(data, trained_student, bn_mode, a, c):
    """Frozen student, guide = a * student + c: only the critic trains. With `joint` BatchNorm its Wasserstein
    estimate becomes clearly positive whenever the guide differs; with `separate` it stays at zero (the critic is
    invariant to the affine map), which is why `joint` is the default. Identical logits give zero either way."""
    student, logits = trained_student
    torch.manual_seed(0)
    cfg = _cfg(critic__bn_mode=bn_mode)
    m = create_method(cfg, student, data, DEV, teacher=_AffineOf(student, a, c))
    m.on_epoch_start(0)
    w = []
    for i in range(STEPS):
        z = logits[i % len(logits)]
        w.append(m.critic_step(a * z + c, z)[2].item())
    w_late = sum(w[-50:]) / 50
    if (a, c) == (1.0, 0.0):
        assert abs(w_late) < 1e-6, w_late
    elif bn_mode == "joint":
        assert w_late > 0.05, w_late
    else:
        assert abs(w_late) < 1e-3, w_late


def test_training_step_reports_the_critics_estimate_for_a_shifted_guide(data, trained_student):
    student, _ = trained_student
    torch.manual_seed(0)
    m = create_method(_cfg(), student, data, DEV, teacher=_AffineOf(student, 1.0, 2.0))
    m.on_epoch_start(0)
    data.train.set_epoch(0)
    for i, b in enumerate(data.train):
        out = m.training_step(b)
        if i == 40:
            break
    assert out["w_est"].item() > 0.02 and out["adv"].requires_grad is False


def test_critic_step_runs_in_float32_under_bf16_autocast(data):
    """SPEC 2.6: the critic's update and its gradient penalty run in float32 whatever the student's precision.
    Every layer of the critic must compute in float32 during the step, and the penalty must equal the one computed
    here without autocast (bf16 would differ by ~1e-2 relative)."""
    import aikd.losses as L
    m, model, teacher = _method(data)
    m.on_epoch_start(0)
    b = _first_batch(data)
    with torch.no_grad():
        z_t, z_sup = model(b.x), teacher(b.x)
    reference = copy.deepcopy(m.critic)
    eps_state = m.eps_gen.get_state()
    dtypes = []
    hooks = [mod.register_forward_hook(lambda _m, _i, o: dtypes.append(o.dtype))
             for mod in m.critic.modules() if isinstance(mod, (torch.nn.Linear, torch.nn.BatchNorm1d))]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.nn.functional.linear(z_t, torch.eye(10)).dtype == torch.bfloat16  # autocast is on here
        loss_d, gp, w_est = m.critic_step(z_sup.bfloat16(), z_t.bfloat16())
    for h in hooks:
        h.remove()
    assert dtypes and set(dtypes) == {torch.float32}
    assert gp.dtype == loss_d.dtype == w_est.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in m.critic.parameters())
    assert all(v.dtype == torch.float32 for s in m.critic_opt.state.values() for v in s.values() if v.numel() > 1)
    eps = torch.rand(len(z_t), 1, generator=torch.Generator().set_state(eps_state))
    real, fake = z_sup.bfloat16().float(), z_t.bfloat16().float()
    expected_gp = L.gradient_penalty(reference, real, fake, eps)
    torch.testing.assert_close(gp, expected_gp.detach(), rtol=1e-5, atol=1e-6)
    s = reference(torch.cat([real, fake]))
    expected_w = s[: len(real)].mean() - s[len(real):].mean()
    torch.testing.assert_close(w_est, expected_w.detach(), rtol=1e-5, atol=1e-6)
def test_critic_and_penalty_stay_float32_under_bf16_autocast(data):
    """The trainer runs steps under bf16 autocast on a GPU; the CPU's autocast puts Linear layers in bf16 the same
    way, so this checks the critic's own region opts out of it."""
    m, model, _ = _method(data)
    m.on_epoch_start(1)
    seen = {"critic": set(), "student": set()}
    handles = [mod.register_forward_hook(lambda _m, _i, o: seen["critic"].add(o.dtype)) for mod in m.critic.modules()]
    handles.append(model.register_forward_hook(lambda _m, _i, o: seen["student"].add(o.dtype)))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m.training_step(_first_batch(data, 1))
    for h in handles:
        h.remove()
    assert torch.bfloat16 in seen["student"]  # autocast was on for the student
    assert seen["critic"] == {torch.float32}
    assert out["gp"].dtype == out["critic"].dtype == out["adv"].dtype == torch.float32
    assert torch.isfinite(out["loss"])
