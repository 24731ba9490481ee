"""FRSKD (SPEC 4): a BiFPNc self-teacher refines the classifier's stage features and distils back into it.

The self-teacher is trained jointly by the trainer's SGD (its parameters come from `extra_parameters`), by its own
CE on features that are *not* detached (SPEC 1.6 rule 3), so the backbone also receives that gradient. The KD and
attention terms use the self-teacher's outputs as detached targets.
"""

from __future__ import annotations

import torch.nn.functional as F

from aikd.losses import attention_loss, mixed_cross_entropy, soft_target_kl
from aikd.methods.base import Method, register_method
from aikd.models import create_model


@register_method("frskd")
class FRSKD(Method):
    name = "frskd"

    def __init__(self, cfg, model, num_classes, data, device, teacher=None):
        super().__init__(cfg, model, num_classes, data, device, teacher)
        m = cfg.method
        self.alpha = float(m.alpha)
        self.beta = float(m.beta)
        self.temperature = float(m.temperature)
        self.self_teacher = create_model("bifpnc", num_classes, stage_channels=model.stage_channels,
                                         width=m.width, depth=m.depth, arch=m.teacher_arch,
                                         channels=m.channels).to(device)

    def training_step(self, batch):
        self.self_teacher.train(self.model.training)  # BN mode follows the student
        raw = self.model.forward_features(batch.x)
        z_s = self.model.forward_head(raw)
        refined, z_t = self.self_teacher(raw)  # not detached: CE(z_T) reaches the backbone
        ce = mixed_cross_entropy(z_s, batch.y, batch.y_b, batch.lam)
        ce_t = mixed_cross_entropy(z_t, batch.y, batch.y_b, batch.lam)
        K = self.temperature
        kd = soft_target_kl(z_s, F.softmax(z_t.detach().float() / K, dim=1), K)
        loss = ce + ce_t + self.alpha * kd
        out = {"ce": ce.detach(), "ce_teacher": ce_t.detach(), "kd": kd.detach()}
        if self.beta > 0:
            # float32 maps: under bf16 autocast the small differences of normalised maps would lose precision
            at = attention_loss([F.relu(f).float() for f in raw], [r.float() for r in refined])
            loss = loss + self.beta * at
            out["at"] = at.detach()
        out["loss"] = loss
        return out

    def extra_parameters(self):
        return list(self.self_teacher.parameters())

    # ---- resume: the self-teacher's weights and BN statistics (its momentum buffers live in the trainer's SGD) --
    def state_dict(self):
        return {"self_teacher": self.self_teacher.state_dict()}

    def load_state_dict(self, state):
        self.self_teacher.load_state_dict(state["self_teacher"])
