"""Images/second of our device-resident training loader vs the torchvision DataLoader path, side by side.

Both sides iterate whole epochs over the same CIFAR-shaped uint8 images (random pixels: the cost does not
depend on content) with the CIFAR training augmentation, batch 128, shuffled, and touch every batch (a sum):

- ours: `aikd.data.loaders.TensorLoader` over an NCHW uint8 tensor kept on the device; pad-crop-flip
  (`aikd.data.augment.pad_crop_flip`, padding 4) and normalisation run on the whole batch;
- reference: `torch.utils.data.DataLoader(num_workers=2)` over the images as PIL images with
  RandomCrop(32, padding=4) + RandomHorizontalFlip + ToTensor + Normalize, i.e. torchvision's CIFAR dataset
  as the official CS-KD / PS-KD code uses it (non-persistent workers: the worker start is part of each epoch).

The two alternate epoch by epoch (`--rounds` rounds) so that drift of the machine's load hits both alike; the
ratio is the median over rounds of (ours images/s) / (reference images/s). (Our pad_crop_flip is one `gather` with
the flip folded into the column index since 2026-11-23: 3.5x before, about 7x after, on this machine.)

On a 2-core machine shared with other jobs PyTorch's 2 OpenMP threads make every small batch op wait at a
barrier for a descheduled thread: `--threads 1` shows the loader without that effect.

    PYTHONPATH=. python benchmarks/data_path.py [--n 50000] [--rounds 3] [--workers 2] [--batch 128] [--threads 0]

Last line: `data_path ratio=X.XX`.
"""

from __future__ import annotations

import time

import torch
from _common import (
    arg_parser,
    cifar_like,
    header,
    median,
    reference_dataset,
    spread,
    tensor_loader,
    wait_for_quiet,
)


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
    p = arg_parser(__doc__, max_load_help="wait for the 1-minute load to drop below this")
    p.add_argument("--n", type=int, default=50_000, help="images (default 50k: CIFAR's training set)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers on the reference side")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch threads in the main process (0: PyTorch's default)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    header("data_path")
    data, targets = cifar_like(args.n)
    ours = tensor_loader(data, targets, args.batch)
    ref = reference_dataset(data, targets)
    # warm-up: first-touch allocations on our side, the PIL / transform imports on the reference side
    ours.set_epoch(0)
    next(iter(ours))
    epoch_reference(torch.utils.data.Subset(ref, range(4 * args.batch)), args.batch, args.workers, 0)

    rate_ours, rate_ref, ratios = [], [], []
    for r in range(args.rounds):
        load = wait_for_quiet(args.max_load, tries=3)
        t_o, n_o, _ = epoch_ours(ours, r)
        t_r, n_r, _ = epoch_reference(ref, args.batch, args.workers, r)
        rate_ours.append(n_o / t_o)
        rate_ref.append(n_r / t_r)
        ratios.append(rate_ours[-1] / rate_ref[-1])
        line = (f"round {r + 1}: ours {t_o:6.2f}s ({rate_ours[-1]:7.0f} img/s)  reference {t_r:6.2f}s "
                f"({rate_ref[-1]:6.0f} img/s)  ratio {ratios[-1]:.2f}")
        print(f"{line}  load {load:.2f}", flush=True)
    print(f"{args.n} images/epoch, batch {args.batch}, reference num_workers={args.workers}, "
          f"main process {torch.get_num_threads()} torch threads")
    print(f"ours      img/s median (min-max): {spread(rate_ours)}")
    print(f"reference img/s median (min-max): {spread(rate_ref)}")
    print(f"data_path ratio={median(ratios):.2f}")


if __name__ == "__main__":
    main()
