"""AI-KD (SPEC 2-3): CE + guide from the frozen S_sup + progressive from S_{t-1} + a WGAN-GP adversary.

One class serves the presets `aikd`, `aikd_no_adv`, `aikd_only_progressive` and `aikd_only_guide`; a term whose
weight is zero is skipped entirely (no teacher, no snapshot, no critic built), so that zero weights give CE
exactly and omega = 0 reproduces the No-Adv run number for number.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from aikd.data.augment import epoch_seed, to_device
from aikd.losses import gradient_penalty, mixed_cross_entropy, soft_target_kl
from aikd.methods.base import Method, freeze, register_method
from aikd.models import create_model


@register_method("aikd", "aikd_no_adv", "aikd_only_progressive", "aikd_only_guide")
class AIKD(Method):
    name = "aikd"
    needs_teacher = True

    def __init__(self, cfg, model, num_classes, data, device, teacher=None):
        super().__init__(cfg, model, num_classes, data, device, teacher)
        m = cfg.method
        self.alpha_g, self.alpha_p, self.omega = float(m.alpha_g), float(m.alpha_p), float(m.omega)
        self.alpha_ce = 1.0 - self.alpha_g - self.alpha_p
        self.tau_g, self.tau_p = float(m.tau_g), float(m.tau_p)
        self.prev_mode, self.prev_epoch0 = m.prev_mode, m.prev_epoch0
        if (self.alpha_g > 0 or self.omega > 0) and teacher is None:
            raise ValueError("AI-KD with a guide or adversarial term needs the phase-1 teacher S_sup")
        self.teacher = freeze(teacher) if (self.alpha_g > 0 or self.omega > 0) else None
        self.prev_model = None
        self.init_model = None
        if self.alpha_p > 0 and self.prev_mode == "snapshot" and self.prev_epoch0 == "init":
            self.init_model = freeze(copy.deepcopy(model))
        if self.alpha_p > 0 and self.prev_mode == "cache":
            n = len(data.train_labels)
            self.cache = torch.zeros(n, num_classes, device=device)
            self.cache_next = torch.zeros(n, num_classes, device=device)
            self.cache_writes = torch.zeros(n, dtype=torch.int32, device=device)
        self.critic = None
        if self.omega > 0:
            c = cfg.critic
            self.critic = create_model("critic", num_classes, fc1=c.fc1, fc2=c.fc2, norm=c.norm,
                                       leaky_slope=c.leaky_slope, head=c.head, input=c.input,
                                       bn_mode=c.bn_mode).to(device)
            self.critic.train()
            self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=c.lr, betas=tuple(c.betas),
                                               eps=1e-8, weight_decay=0.0)
            self.eps_gen = torch.Generator()

    # ---- epochs ------------------------------------------------------------------------------------------------
    def on_epoch_start(self, epoch):
        super().on_epoch_start(epoch)
        if self.alpha_p > 0 and epoch >= 1:
            if self.prev_mode == "snapshot":
                if self.prev_model is None:
                    self.prev_model = freeze(copy.deepcopy(self.model))
                else:  # parameters and buffers as after the last step of epoch t-1 (SPEC 2.3)
                    self.prev_model.load_state_dict(self.model.state_dict())
            else:
                self.cache, self.cache_next = self.cache_next.clone(), self.cache_next
                self.cache_writes.zero_()
        if self.critic is not None:
            self.eps_gen.manual_seed(epoch_seed(self.cfg.seed, epoch, 3))  # own stream (SPEC D14)
            if self.cfg.critic.lr_schedule == "follow_student":
                o = self.cfg.optim
                lr = self.cfg.critic.lr * o.gamma ** sum(epoch >= ms for ms in o.milestones)
                for g in self.critic_opt.param_groups:
                    g["lr"] = lr

    # ---- one step ----------------------------------------------------------------------------------------------
    def _onehot_target(self, batch):
        t = F.one_hot(batch.y, self.num_classes).float()
        if batch.y_b is not None:
            t = batch.lam * t + (1 - batch.lam) * F.one_hot(batch.y_b, self.num_classes).float()
        return t

    def _progressive_target(self, batch):
        """q_prev for this batch, or None when L_P is skipped (epoch 0 with prev_epoch0=skip)."""
        if self.epoch == 0 and self.prev_epoch0 != "init":
            return None if self.prev_epoch0 == "skip" else self._onehot_target(batch)
        if self.prev_mode == "cache":
            return F.softmax(self.cache[batch.idx] / self.tau_p, dim=1)
        prev = self.init_model if self.epoch == 0 else self.prev_model
        with torch.no_grad():
            return F.softmax(prev(batch.x) / self.tau_p, dim=1)

    def critic_step(self, z_sup, z_t):
        """`n_critic` WGAN-GP updates of the critic on (real = z_sup, fake = z_t); returns (L_D, GP, W_est).

        Runs in float32 with autocast off, whatever the student's precision: the penalty is a double backward of a
        unit-norm gradient, and Adam's moments of it, which bf16 (8 significant bits) would round coarsely.
        """
        with torch.autocast(device_type=z_t.device.type, enabled=False):
            real, fake = self.critic.prepare(z_sup.float()), self.critic.prepare(z_t.detach().float())
            for _ in range(self.cfg.critic.n_critic):
                s_real, s_fake = self.critic.score_pair(real, fake)
                eps = to_device(torch.rand(real.shape[0], 1, generator=self.eps_gen), real.device).to(real.dtype)
                gp = gradient_penalty(self.critic, real, fake, eps)  # the interpolates in their own call
                w_est = (s_real.mean() - s_fake.mean()).detach()
                loss_d = s_fake.mean() - s_real.mean() + self.cfg.critic.gp_weight * gp
                self.critic_opt.zero_grad(set_to_none=True)
                loss_d.backward()
                self.critic_opt.step()
                self.critic_opt.zero_grad(set_to_none=True)  # nothing of L_D lingers into the student's step
        return loss_d.detach(), gp.detach(), w_est

    def adversarial_loss(self, z_sup, z_t):
        """L_A = -mean s(z_t), scored by the same `score_pair` as the critic step (the student's batch beside the
        guide's), in float32; the graph runs through the critic into z_t, the critic's weights get no gradient."""
        self.critic.requires_grad_(False)  # L_A must not train the critic (SPEC 2.6 step 4)
        try:
            with torch.autocast(device_type=z_t.device.type, enabled=False):
                _, s_fake = self.critic.score_pair(self.critic.prepare(z_sup.float()),
                                                   self.critic.prepare(z_t.float()))
                return -s_fake.mean()
        finally:
            self.critic.requires_grad_(True)

    def training_step(self, batch):
        z_t = self.model(batch.x)
        out = {}
        ce = mixed_cross_entropy(z_t, batch.y, batch.y_b, batch.lam)
        loss = self.alpha_ce * ce if self.alpha_ce != 1.0 else ce
        out["ce"] = ce.detach()
        z_sup = None
        if self.teacher is not None:
            with torch.no_grad():
                z_sup = self.teacher(batch.x)
        if self.alpha_g > 0:
            guide = soft_target_kl(z_t, F.softmax(z_sup / self.tau_g, dim=1), self.tau_g)
            loss = loss + self.alpha_g * guide
            out["guide"] = guide.detach()
        if self.alpha_p > 0:
            q_prev = self._progressive_target(batch)
            if q_prev is not None:
                prog = soft_target_kl(z_t, q_prev, self.tau_p)
                loss = loss + self.alpha_p * prog
                out["progressive"] = prog.detach()
            if self.prev_mode == "cache":
                self.cache_next[batch.idx] = z_t.detach().float()
                self.cache_writes[batch.idx] += 1
        if self.critic is not None:
            out["critic"], out["gp"], out["w_est"] = self.critic_step(z_sup, z_t)
            adv = self.adversarial_loss(z_sup, z_t)
            loss = loss + self.omega * adv
            out["adv"] = adv.detach()
        out["loss"] = loss
        return out

    # ---- resume ------------------------------------------------------------------------------------------------
    def state_dict(self):
        """What the epochs after this one need (states are taken between epochs): S_init only while epoch 0 is
        ahead or has just ended, and of the cache only the predictions the next epoch reads (on_epoch_start
        replaces `cache` with a copy of `cache_next`)."""
        state = {}
        if self.critic is not None:
            state["critic"] = self.critic.state_dict()
            state["critic_opt"] = self.critic_opt.state_dict()
        if self.init_model is not None and self.epoch == 0:
            state["init_model"] = self.init_model.state_dict()
        if self.alpha_p > 0 and self.prev_mode == "cache":
            state["cache_next"] = self.cache_next
        return state

    def load_state_dict(self, state):
        if self.critic is not None:
            self.critic.load_state_dict(state["critic"])
            self.critic_opt.load_state_dict(state["critic_opt"])
        if self.init_model is not None and "init_model" in state:
            self.init_model.load_state_dict(state["init_model"])
        if "cache_next" in state:
            if "cache" in state:  # a checkpoint written before the cache was left out
                self.cache.copy_(state["cache"])
            self.cache_next.copy_(state["cache_next"])
