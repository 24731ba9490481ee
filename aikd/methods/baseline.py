"""Plain cross-entropy: phase 1 of AI-KD and the "Baseline" row of every table."""

from __future__ import annotations

from aikd.losses import mixed_cross_entropy
from aikd.methods.base import Method, register_method


@register_method("baseline")
class Baseline(Method):
    name = "baseline"

    def training_step(self, batch):
        logits = self.model(batch.x)
        ce = mixed_cross_entropy(logits, batch.y, batch.y_b, batch.lam)
        return {"loss": ce, "ce": ce.detach()}
