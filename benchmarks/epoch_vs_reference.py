"""One training epoch: our trainer's path vs a loop written the way the official CS-KD / PS-KD code does it.

Data: `--n` (5,000) random CIFAR-shaped images, 100 classes, batch 128, the CIFAR training augmentation.

- ours: `TensorLoader` (images kept on the device as uint8, pad-crop-flip + normalisation on whole batches) and
  the inner loop of `aikd.train.Trainer.train_epoch` reproduced step for step with the registered `baseline`
  method (`method.training_step` under the same autocast context, zero_grad(set_to_none) / backward / step,
  the step's outputs accumulated on the device, one `.item()` per epoch). The Trainer itself cannot be pointed
  at CIFAR-shaped synthetic data: `build_data` passes only `synthetic_classes` and synthetic sets get no
  augmentation, and `train_epoch` always evaluates on test afterwards (not timed here on either side).
- reference: torchvision-style dataset (uint8 row -> PIL -> RandomCrop(32, 4) + RandomHorizontalFlip + ToTensor
  + Normalize) in a `DataLoader(num_workers=2, shuffle=True)`; per step `loss.item()` and the accuracy counted
  on the host (`predicted.eq(targets).sum().float().cpu()`), as in CS-KD's train.py and PS-KD's main.py.

Both sides: same model and initial weights, plain cross-entropy, SGD with the recipe's lr / momentum / weight
decay / nesterov, `torch.set_flush_denormal(True)`, PyTorch's default thread count in the main process.
The sides alternate epoch by epoch (`--rounds`); the ratio is the median of reference time / our time.

    PYTHONPATH=. python benchmarks/epoch_vs_reference.py [--n 5000] [--rounds 4] [--rounds-big 1]
        [--models wrn16_2,preact_resnet18] [--threads 0]

Last line: `epoch_vs_reference ratio=X.XX` for the first model (wrn16_2).
"""

from __future__ import annotations

import copy
import time
from collections import defaultdict
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from _common import (
    arg_parser,
    cifar_like,
    header,
    median,
    reference_dataset,
    tensor_loader,
    wait_for_quiet,
)

from aikd.config import TrainConfig
from aikd.methods import create_method
from aikd.train import build_model, make_optimizer, train_step

BIG = ("preact_resnet18", "resnet18", "densenet121")


def epoch_ours(model, method, optimizer, loader, epoch: int, device) -> tuple[float, float]:
    """The loop of Trainer.train_epoch up to the train statistics (no evaluation)."""
    t0 = time.perf_counter()
    loader.set_epoch(epoch)
    method.on_epoch_start(epoch)
    model.train()
    sums: dict = defaultdict(lambda: torch.zeros((), device=device))
    steps = 0
    use_amp = device.type == "cuda"
    for batch in loader:
        out = train_step(method, optimizer, batch, use_amp)
        for k, v in out.items():
            sums[k] += v.detach().float()
        steps += 1
    stats = {f"train_{k}": (v / max(steps, 1)).item() for k, v in sums.items()}
    return time.perf_counter() - t0, stats["train_loss"]


def epoch_reference(model, optimizer, dataset, batch: int, workers: int, epoch: int, device) -> tuple[float, float]:
    """CS-KD train.py / PS-KD main.py style: DataLoader of PIL transforms, .item() and host accuracy every step."""
    t0 = time.perf_counter()
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers,
                                         generator=torch.Generator().manual_seed(epoch))
    model.train()
    train_loss, correct, total = 0.0, 0.0, 0
    for batch_idx, (inputs, targets) in enumerate(loader):
        inputs, targets = inputs.to(device), targets.to(device)
        outputs = model(inputs)
        loss = F.cross_entropy(outputs, targets)
        train_loss += loss.item()
        _, predicted = torch.max(outputs, 1)
        total += targets.size(0)
        correct += predicted.eq(targets.data).sum().float().cpu().item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0, train_loss / (batch_idx + 1)


def compare(name: str, args, data, targets, device, out=print) -> dict:
    """Alternating epochs of both sides for model `name`: {"ratio": median reference/ours, "ours_s", "ref_s"}."""
    cfg = TrainConfig.from_dict({"data.dataset": "cifar100", "model.name": name, "method.name": "baseline",
                                 "optim.recipe": args.recipe, "epochs": 1}).resolved()
    torch.manual_seed(0)
    model_o = build_model(cfg, args.classes).to(device)
    model_r = copy.deepcopy(model_o)
    loader = tensor_loader(data, targets, args.batch, device=device)
    method = create_method(cfg, model_o, SimpleNamespace(num_classes=args.classes, train_labels=loader.labels),
                           device)
    opt_o, opt_r = make_optimizer(cfg, model_o.parameters()), make_optimizer(cfg, model_r.parameters())
    ref = reference_dataset(data, targets)
    # warm-up (oneDNN primitives, first allocations): a few steps each, on a small slice
    warm = args.warm or max(2 * args.batch, 256)
    epoch_ours(model_o, method, opt_o, tensor_loader(data[:warm], targets[:warm], args.batch, device=device), 0,
               device)
    epoch_reference(model_r, opt_r, torch.utils.data.Subset(ref, range(warm)), args.batch, args.workers, 0, device)

    rounds = args.rounds_big if name in BIG else args.rounds
    t_ours, t_ref = [], []
    out(f"{name}: {sum(p.numel() for p in model_o.parameters()) / 1e6:.2f}M parameters, {rounds} round(s), "
        f"optimizer lr {cfg.optim.lr} momentum {cfg.optim.momentum} wd {cfg.optim.weight_decay} "
        f"nesterov {cfg.optim.nesterov}")
    for r in range(rounds):
        load = wait_for_quiet(args.max_load, tries=3, out=out)
        first_ours = r % 2 == 0  # alternate which side goes first
        for side in ("ours", "ref") if first_ours else ("ref", "ours"):
            if side == "ours":
                t, loss = epoch_ours(model_o, method, opt_o, loader, r + 1, device)
                t_ours.append(t)
            else:
                t, loss = epoch_reference(model_r, opt_r, ref, args.batch, args.workers, r + 1, device)
                t_ref.append(t)
            out(f"  round {r + 1} {side:<4} {t:7.2f}s  ({args.n / t:6.0f} img/s, train loss {loss:.3f}, "
                f"load {load:.2f})")
    ratio = median([b / a for a, b in zip(t_ours, t_ref)])
    out(f"{name}: ours {median(t_ours):.2f}s/epoch, reference {median(t_ref):.2f}s/epoch, "
        f"reference/ours {ratio:.2f}")
    return {"ratio": ratio, "ours_s": median(t_ours), "ref_s": median(t_ref)}


def main(argv=None) -> None:
    p = arg_parser(__doc__)
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--classes", type=int, default=100)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers on the reference side")
    p.add_argument("--models", default="wrn16_2,preact_resnet18", help="the first one is the headline")
    p.add_argument("--rounds", type=int, default=4, help="alternating epoch pairs for small models")
    p.add_argument("--rounds-big", type=int, default=1, help="... for preact_resnet18 / resnet18 / densenet121")
    p.add_argument("--recipe", default="cskd", help="optimizer recipe (lr/momentum/wd/nesterov) for both sides")
    p.add_argument("--threads", type=int, default=0, help="torch threads in the main process (0: PyTorch's default)")
    p.add_argument("--warm", type=int, default=0, help="warm-up images per side (0: max(2 x batch, 256))")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    device = torch.device("cpu")
    header("epoch_vs_reference")
    data, targets = cifar_like(args.n, args.classes)
    print(f"{args.n} images 32x32x3, {args.classes} classes, batch {args.batch}, {device}, "
          f"{torch.get_num_threads()} threads, reference num_workers={args.workers}")
    ratios = {}
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        ratios[name] = compare(name, args, data, targets, device,
                               out=lambda line: print(line, flush=True))["ratio"]
    print("summary: " + "  ".join(f"{k} {v:.2f}x" for k, v in ratios.items()))
    print(f"epoch_vs_reference ratio={next(iter(ratios.values())):.2f}")


if __name__ == "__main__":
    main()
