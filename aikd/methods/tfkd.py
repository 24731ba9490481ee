"""TF-KD (SPEC 6.1): distil from a pre-trained copy of the student (`self`) or from a hand-made prior (`reg`).

Both variants keep the official code's elementwise-mean KL (`KLDivLoss()` default, = batchmean / C), which
produced TF-KD's numbers; it is computed here as batchmean / C because PyTorch's "mean" reduction is deprecated
for KL. The logged `kd` is the term that `alpha` weights: loss = (1 - alpha) * CE + alpha * kd.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from aikd.losses import mixed_cross_entropy, soft_target_kl
from aikd.methods.base import Method, freeze, register_method


def tfkd_reg_prior(num_classes: int, T: float, device=None) -> torch.Tensor:
    """Row c = softmax(u_c / T) with u_c = 0.99 on class c and 0.01 / (C - 1) elsewhere (C x C)."""
    off = 0.01 / (num_classes - 1)
    u = torch.full((num_classes, num_classes), off, device=device)
    u.fill_diagonal_(0.99)
    return F.softmax(u / T, dim=1)


@register_method("tfkd")
class TFKD(Method):
    name = "tfkd"
    needs_teacher = True  # `self` only; config.needs_teacher(cfg) is what the trainer asks

    def __init__(self, cfg, model, num_classes, data, device, teacher=None):
        super().__init__(cfg, model, num_classes, data, device, teacher)
        m = cfg.method
        self.variant = m.variant
        self.alpha, self.temperature, self.multiplier = float(m.alpha), float(m.temperature), float(m.multiplier)
        if self.variant == "self":
            if teacher is None:
                raise ValueError("TF-KD self needs the pre-trained teacher (the phase-1 model S_sup)")
            self.teacher = freeze(teacher)
        else:
            self.teacher = None
            self.prior = tfkd_reg_prior(num_classes, self.temperature, device)

    def _kd(self, z, batch):
        C, T = self.num_classes, self.temperature
        if self.variant == "self":
            with torch.no_grad():  # same (possibly mixed) batch as the student
                z_t = self.teacher(batch.x)
            return (self.multiplier / C) * soft_target_kl(z, F.softmax(z_t.float() / T, dim=1), T)
        q = self.prior[batch.y]
        if batch.y_b is not None and batch.lam != 1.0:  # mixed labels: the same mix of the two priors
            q = batch.lam * q + (1.0 - batch.lam) * self.prior[batch.y_b]
        return (self.multiplier / C) * soft_target_kl(z, q, 1.0)  # student at T = 1, no T^2

    def training_step(self, batch):
        z = self.model(batch.x)
        ce = mixed_cross_entropy(z, batch.y, batch.y_b, batch.lam)
        kd = self._kd(z, batch)
        loss = (1.0 - self.alpha) * ce + self.alpha * kd
        return {"loss": loss, "ce": ce.detach(), "kd": kd.detach()}
