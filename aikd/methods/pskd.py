"""PS-KD (SPEC 6.2): the target is a growing mix of the hard label and the model's own last-epoch prediction.

The table P (N x C) holds each training sample's softmax from its last visit. It starts as the one-hot labels,
which makes epoch-0 targets one-hot (the official code writes one-hot rows before their first use) and leaves a
valid distribution for a sample whose batch was skipped.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from aikd.losses import soft_cross_entropy
from aikd.methods.base import Method, register_method


@register_method("pskd")
class PSKD(Method):
    name = "pskd"

    def __init__(self, cfg, model, num_classes, data, device, teacher=None):
        super().__init__(cfg, model, num_classes, data, device, teacher)
        self.alpha_T = float(cfg.method.alpha_T)
        self.total_epochs = int(cfg.epochs)
        labels = torch.as_tensor(data.train_labels, device=device).long()
        self.table = F.one_hot(labels, num_classes).float()
        self.alpha_t = self.alpha_T / self.total_epochs

    def on_epoch_start(self, epoch):
        super().on_epoch_start(epoch)
        self.alpha_t = self.alpha_T * (epoch + 1) / self.total_epochs

    def targets(self, batch) -> torch.Tensor:
        """q = (1 - alpha_t) * onehot(y) + alpha_t * P[idx]; one-hot at epoch 0."""
        onehot = F.one_hot(batch.y, self.num_classes).float()
        past = onehot if self.epoch == 0 else self.table[batch.idx]
        return (1.0 - self.alpha_t) * onehot + self.alpha_t * past

    def training_step(self, batch):
        z = self.model(batch.x)
        loss = soft_cross_entropy(z, self.targets(batch))
        self.table[batch.idx] = F.softmax(z.detach().float(), dim=1)  # this step's forward, before the update
        ce = F.cross_entropy(z.detach().float(), batch.y)
        return {"loss": loss, "ce": ce, "alpha_t": torch.tensor(self.alpha_t, device=z.device)}

    def state_dict(self):
        return {"table": self.table}

    def load_state_dict(self, state):
        self.table.copy_(state["table"])
