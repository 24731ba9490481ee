"""Loss pieces shared by the methods (SPEC 1.5, 2.5, 4.3), as small pure functions tested against formulas."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_target_kl(student_logits: torch.Tensor, target_probs: torch.Tensor, T: float) -> torch.Tensor:
    """T^2 * mean_b KL(target || softmax(student / T)); the target is a constant (detached here)."""
    log_p = F.log_softmax(student_logits / T, dim=1)
    return (T * T) * F.kl_div(log_p, target_probs.detach(), reduction="batchmean")


def mixed_cross_entropy(logits: torch.Tensor, y_a: torch.Tensor, y_b: torch.Tensor | None = None,
                        lam: float = 1.0) -> torch.Tensor:
    """CE with hard labels, or lam * CE(y_a) + (1 - lam) * CE(y_b) for mixup/cutmix batches (SPEC 1.2)."""
    if y_b is None or lam == 1.0:
        return F.cross_entropy(logits, y_a)
    return lam * F.cross_entropy(logits, y_a) + (1.0 - lam) * F.cross_entropy(logits, y_b)


def soft_cross_entropy(logits: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """mean_b -sum_c q log softmax(z) with a detached soft target (PS-KD, SPEC 1.3)."""
    return -(target_probs.detach() * F.log_softmax(logits, dim=1)).sum(1).mean()


def interpolate(real: torch.Tensor, fake: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """x_hat = eps * real + (1 - eps) * fake, eps of shape (B, 1) broadcast over classes (WGAN-GP)."""
    return eps * real + (1.0 - eps) * fake


def gradient_penalty(critic, real: torch.Tensor, fake: torch.Tensor, eps: torch.Tensor | None = None,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """mean_b (||d s(x_hat)_b / d x_hat_b||_2 - 1)^2 for a critic mapping (B, C) to scores (B,)."""
    if eps is None:
        eps = torch.rand(real.shape[0], 1, device=real.device, dtype=real.dtype, generator=generator)
    x_hat = interpolate(real.detach(), fake.detach(), eps).requires_grad_(True)
    scores = critic(x_hat)
    (grad,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(2, dim=1) - 1.0) ** 2).mean()


def attention_map(x: torch.Tensor) -> torch.Tensor:
    """a(X): channel-mean of squares, flattened and L2-normalised per sample (SPEC 4.3)."""
    return F.normalize(x.pow(2).mean(1).flatten(1), dim=1)


def attention_loss(student_feats, teacher_feats) -> torch.Tensor:
    """Sum over levels of the mean squared difference of attention maps; teacher side detached (SPEC 4.3)."""
    total = None
    for s, t in zip(student_feats, teacher_feats, strict=True):
        term = (attention_map(s) - attention_map(t.detach())).pow(2).mean()
        total = term if total is None else total + term
    return total
