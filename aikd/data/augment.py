"""Augmentations applied to whole batches on the device (no per-sample Python in the hot loop).

Every random draw comes from a generator seeded by (seed, epoch), so an epoch's batches are a pure function of
the seed and the epoch number: a run resumed at an epoch boundary sees exactly the same data.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def to_device(t: torch.Tensor, device) -> torch.Tensor:
    """`t.to(device)` without making the host wait: a CPU tensor bound for a GPU goes through pinned memory with an
    asynchronous copy. A plain copy from pageable memory synchronises with the GPU's stream, once per call, so
    the random indices drawn on the CPU each step would otherwise stall the host every step. PyTorch's caching
    host allocator reuses the pinned block only after the copy has run."""
    device = torch.device(device)
    if device.type == "cuda" and t.device.type == "cpu":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def epoch_seed(seed: int, epoch: int, stream: int = 0) -> int:
    """A distinct 63-bit seed per (run seed, epoch, stream)."""
    return int(np.random.SeedSequence([seed, epoch, stream]).generate_state(1, dtype=np.uint64)[0] >> 1)


def pad_crop_flip(x: torch.Tensor, gen: torch.Generator, padding: int = 4, flip: bool = True) -> torch.Tensor:
    """RandomCrop(size, padding) with zero fill, then RandomHorizontalFlip, for a batch (B, C, H, W).

    One `gather` over the padded batch, the flip folded into the column index: ~2x the images/s of indexing with
    three index tensors and a `where` (benchmarks/data_path.py). Draws: dy, dx (when padding), then the flips."""
    b, c, h, w = x.shape
    p = padding
    rows = torch.arange(h)[None, :].expand(b, h)
    cols = torch.arange(w)[None, :].expand(b, w)
    if p:
        rows = rows + torch.randint(0, 2 * p + 1, (b,), generator=gen)[:, None]
        cols = cols + torch.randint(0, 2 * p + 1, (b,), generator=gen)[:, None]
    if flip:
        flips = torch.rand(b, generator=gen) < 0.5
        cols = torch.where(flips[:, None], cols.flip(1), cols)
    idx = to_device((rows[:, :, None] * (w + 2 * p) + cols[:, None, :]).reshape(b, 1, h * w), x.device)
    idx = idx.expand(b, c, h * w)
    xp = F.pad(x, (p, p, p, p)) if p else x
    return xp.reshape(b, c, -1).gather(2, idx).view(b, c, h, w)


def random_resized_crop_flip(x: torch.Tensor, gen: torch.Generator, size: int,
                             scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)) -> torch.Tensor:
    """RandomResizedCrop(size) + flip for a batch, by bilinear sampling of one affine box per image."""
    b, _, h, w = x.shape
    area = torch.empty(b).uniform_(scale[0], scale[1], generator=gen)
    log_r = torch.empty(b).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=gen)
    aspect = torch.exp(log_r)
    cw = torch.sqrt(area * aspect).clamp(max=1.0)  # fraction of the width
    ch = torch.sqrt(area / aspect).clamp(max=1.0)
    cx = (torch.rand(b, generator=gen) * (1 - cw) + cw / 2) * 2 - 1  # box centre in [-1, 1]
    cy = (torch.rand(b, generator=gen) * (1 - ch) + ch / 2) * 2 - 1
    sign = torch.where(torch.rand(b, generator=gen) < 0.5, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = cw * sign
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = ch
    theta[:, 1, 2] = cy
    grid = F.affine_grid(to_device(theta, x.device).to(x.dtype), (b, x.shape[1], size, size), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def cutout(x: torch.Tensor, gen: torch.Generator, size: int) -> torch.Tensor:
    """One square hole per image, centre uniform over the image, clipped at the border, filled with 0."""
    b, _, h, w = x.shape
    cy = to_device(torch.randint(0, h, (b,), generator=gen), x.device)
    cx = to_device(torch.randint(0, w, (b,), generator=gen), x.device)
    ys = torch.arange(h, device=x.device)[None, :]
    xs = torch.arange(w, device=x.device)[None, :]
    half = size // 2
    in_y = (ys >= (cy[:, None] - half)) & (ys < (cy[:, None] - half + size))
    in_x = (xs >= (cx[:, None] - half)) & (xs < (cx[:, None] - half + size))
    hole = in_y[:, :, None] & in_x[:, None, :]
    return x.masked_fill(hole[:, None], 0.0)


def mixup(x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator, gen: torch.Generator, alpha: float):
    """x = lam x + (1 - lam) x[perm]; returns (x, y_a, y_b, lam), one lam per batch."""
    lam = float(rng.beta(alpha, alpha))
    perm = to_device(torch.randperm(x.shape[0], generator=gen), x.device)
    return lam * x + (1 - lam) * x[perm], y, y[perm], lam


def cutmix(x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator, gen: torch.Generator, alpha: float):
    """Paste a box of area ratio 1 - lam from x[perm]; lam is recomputed from the clipped box."""
    lam = float(rng.beta(alpha, alpha))
    _, _, h, w = x.shape
    perm = to_device(torch.randperm(x.shape[0], generator=gen), x.device)
    cut = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(h * cut), int(w * cut)
    cy, cx = int(rng.integers(h)), int(rng.integers(w))
    y1, y2 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, h)
    x1, x2 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, w)
    x = x.clone()
    x[:, :, y1:y2, x1:x2] = x[perm, :, y1:y2, x1:x2]
    lam = 1.0 - (y2 - y1) * (x2 - x1) / float(h * w)
    return x, y, y[perm], lam
