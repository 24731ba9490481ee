"""CS-KD (SPEC 5): match the prediction of each anchor to that of a same-class partner image.

The loader (PairBatchSampler) yields k anchors followed by their k partners. The partner prediction is a fixed
target computed in train mode without a graph, after the anchor forward, as in the official code (SPEC 5.2).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from aikd.losses import soft_target_kl
from aikd.methods.base import Method, register_method


@register_method("cskd")
class CSKD(Method):
    name = "cskd"
    pair_batches = True

    def __init__(self, cfg, model, num_classes, data, device, teacher=None):
        super().__init__(cfg, model, num_classes, data, device, teacher)
        self.temperature = float(cfg.method.temperature)
        self.lambda_cls = float(cfg.method.lambda_cls)

    def training_step(self, batch):
        n = batch.x.shape[0]
        if n % 2:
            raise ValueError(f"CS-KD expects anchors + partners (an even batch), got {n} rows")
        k = n // 2
        x_a, x_p, y_a = batch.x[:k], batch.x[k:], batch.y[:k]
        z_a = self.model(x_a)
        with torch.no_grad():  # train mode: BN uses (and records) the partner half's statistics
            z_p = self.model(x_p)
        T = self.temperature
        ce = F.cross_entropy(z_a, y_a)
        cls = soft_target_kl(z_a, F.softmax(z_p.float() / T, dim=1), T)
        loss = ce + self.lambda_cls * cls
        return {"loss": loss, "ce": ce.detach(), "cls": cls.detach()}
