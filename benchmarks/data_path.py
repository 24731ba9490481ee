"""Images/second of our device-resident training loader vs the torchvision DataLoader path, side by side.

Both sides iterate whole epochs over the same CIFAR-shaped uint8 images (random pixels: the cost does not
depend on content) with the CIFAR training augmentation, batch 128, shuffled, and touch every batch (a sum):

- ours: `aikd.data.loaders.TensorLoader` over an NCHW uint8 tensor kept on the device; pad-crop-flip
  (`aikd.data.augment.pad_crop_flip`, padding 4) and normalisation run on the whole batch;
- reference: `torch.utils.data.DataLoader(num_workers=2)` over the images as PIL images with
  RandomCrop(32, padding=4) + RandomHorizontalFlip + ToTensor + Normalize, i.e. torchvision's CIFAR dataset
  as the official CS-KD / PS-KD code uses it (non-persistent workers: the worker start is part of each epoch).

The two alternate epoch by epoch (`--rounds` rounds) so that drift of the machine's load hits both alike; the
ratio is the median over rounds of (ours images/s) / (reference images/s). A third column (not in the headline;
`--no-proposed` drops it) runs our loader with `pad_crop_flip_gather`, a proposed bit-identical replacement of
`aikd.data.augment.pad_crop_flip` that does the crop and the flip as one `gather`.

On a 2-core machine shared with other jobs PyTorch's 2 OpenMP threads make every small batch op wait at a
barrier for a descheduled thread: `--threads 1` shows the loader without that effect.

    PYTHONPATH=. python benchmarks/data_path.py [--n 50000] [--rounds 3] [--workers 2] [--batch 128] [--threads 0]

Last line: `data_path ratio=X.XX`.
"""

from __future__ import annotations

import argparse
import time

import torch
from _common import (
    ArrayPILDataset,
    cifar_like,
    header,
    median,
    reference_train_transform,
    spread,
    tensor_loader,
    wait_for_quiet,
)


def pad_crop_flip_gather(x: torch.Tensor, gen: torch.Generator, padding: int = 4, flip: bool = True) -> torch.Tensor:
    """Proposed drop-in for `aikd.data.augment.pad_crop_flip`: the same random draws in the same order and the same
    output bit for bit, but the crop and the flip are one `gather` over the padded batch (flip folded into the
    column index) instead of a 3-tensor advanced index, a permute and a `where`."""
    b, c, h, w = x.shape
    p = padding
    dy = torch.randint(0, 2 * p + 1, (b,), generator=gen)
    dx = torch.randint(0, 2 * p + 1, (b,), generator=gen)
    cols = dx[:, None] + torch.arange(w)[None, :]
    if flip:
        flips = torch.rand(b, generator=gen) < 0.5
        cols = torch.where(flips[:, None], cols.flip(1), cols)
    rows = dy[:, None] + torch.arange(h)[None, :]
    idx = (rows[:, :, None] * (w + 2 * p) + cols[:, None, :]).view(b, 1, h * w).to(x.device).expand(b, c, h * w)
    xp = torch.nn.functional.pad(x, (p, p, p, p))
    return xp.view(b, c, -1).gather(2, idx).view(b, c, h, w)


def epoch_ours(loader, epoch: int) -> tuple[float, int, float]:
    loader.set_epoch(epoch)
    t0 = time.perf_counter()
    total, n = torch.zeros(()), 0
    for batch in loader:
        total += batch.x.sum()
        n += len(batch.y)
    checksum = float(total)  # one host sync at the end, as the Trainer does
    return time.perf_counter() - t0, n, checksum


def epoch_reference(dataset, batch: int, workers: int, epoch: int) -> tuple[float, int, float]:
    gen = torch.Generator().manual_seed(epoch)
    t0 = time.perf_counter()
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers,
                                         generator=gen)
    total, n = 0.0, 0
    for x, y in loader:
        total += x.sum().item()
        n += len(y)
    return time.perf_counter() - t0, n, total


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=50_000, help="images (default 50k: CIFAR's training set)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers on the reference side")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch threads in the main process (0: PyTorch's default)")
    p.add_argument("--no-proposed", action="store_true", help="skip the proposed single-gather pad_crop_flip")
    p.add_argument("--max-load", type=float, default=1.5, help="wait for the 1-minute load to drop below this")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    header("data_path")
    data, targets = cifar_like(args.n)
    ours = tensor_loader(data, targets, args.batch)
    proposed = None
    if not args.no_proposed:
        proposed = tensor_loader(data, targets, args.batch)
        proposed.augment_fn = lambda x, gen: pad_crop_flip_gather(x, gen, padding=4)
        g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
        x = torch.rand(8, 3, 32, 32)
        assert torch.equal(ours.augment_fn(x, g1), proposed.augment_fn(x, g2)), "proposed output differs"
    ref = ArrayPILDataset(data, targets, reference_train_transform())
    # warm-up: first-touch allocations on our side, the PIL / transform imports on the reference side
    ours.set_epoch(0)
    next(iter(ours))
    epoch_reference(torch.utils.data.Subset(ref, range(4 * args.batch)), args.batch, args.workers, 0)

    rate_ours, rate_ref, rate_prop, ratios, ratios_prop = [], [], [], [], []
    for r in range(args.rounds):
        load = wait_for_quiet(args.max_load, tries=3)
        t_o, n_o, _ = epoch_ours(ours, r)
        t_r, n_r, _ = epoch_reference(ref, args.batch, args.workers, r)
        rate_ours.append(n_o / t_o)
        rate_ref.append(n_r / t_r)
        ratios.append(rate_ours[-1] / rate_ref[-1])
        line = (f"round {r + 1}: ours {t_o:6.2f}s ({rate_ours[-1]:7.0f} img/s)  reference {t_r:6.2f}s "
                f"({rate_ref[-1]:6.0f} img/s)  ratio {ratios[-1]:.2f}")
        if proposed is not None:
            t_p, n_p, _ = epoch_ours(proposed, r)
            rate_prop.append(n_p / t_p)
            ratios_prop.append(rate_prop[-1] / rate_ref[-1])
            line += f"  | proposed gather {t_p:6.2f}s ({rate_prop[-1]:7.0f} img/s) ratio {ratios_prop[-1]:.2f}"
        print(f"{line}  load {load:.2f}", flush=True)
    print(f"{args.n} images/epoch, batch {args.batch}, reference num_workers={args.workers}, "
          f"main process {torch.get_num_threads()} torch threads")
    print(f"ours      img/s median (min-max): {spread(rate_ours)}")
    print(f"reference img/s median (min-max): {spread(rate_ref)}")
    if rate_prop:
        print(f"ours with the proposed gather pad_crop_flip img/s median (min-max): {spread(rate_prop)}, "
              f"ratio {median(ratios_prop):.2f}")
    print(f"data_path ratio={median(ratios):.2f}")


if __name__ == "__main__":
    main()
