"""Cost of one training step per method, measured side by side in one run on the same model and batch.

Not a test: it asserts nothing. Each method is built directly (no teacher training: S_sup / the TF-KD teacher are
frozen randomly initialised copies of the student architecture), gets its own model and the trainer's SGD, and is
timed on the trainer's `train_step` (training_step under bf16 autocast on a GPU, zero_grad, backward, SGD step).
Methods are interleaved round-robin, one step each per
round (the first method rotating), so that drift of the machine (other load, thermal) spreads over all of them;
the ratio to the baseline is the median over rounds of the per-round ratio.

CS-KD's step holds anchors and partners: it gets batch/2 anchors + batch/2 partners, so every method pushes the
same number of images through the network per step (the partner half without a graph).
AI-KD is timed as at epoch >= 1 (S_prev exists / the cache is filled), i.e. the steady-state cost.

    PYTHONPATH=. python benchmarks/step_cost.py [--model preact_resnet18] [--batch 64] [--size 32] [--steps 10]
        [--warmup 2] [--threads N] [--max-load 1.5]

The last line reads: step_cost aikd_snapshot/baseline=X.XX aikd_cache/baseline=Y.YY
"""

from __future__ import annotations

import statistics
import time
from types import SimpleNamespace

import torch
from _common import arg_parser, header, wait_for_quiet

from aikd.config import TrainConfig
from aikd.data import Batch
from aikd.methods import create_method
from aikd.train import build_model, make_optimizer, select_device, train_step

# label -> (method.name, extra config); the order is the order of the table
METHODS = {
    "baseline": ("baseline", {}),
    "aikd_snapshot": ("aikd", {"method.prev_mode": "snapshot", "method.omega": 0.1}),
    "aikd_cache": ("aikd", {"method.prev_mode": "cache", "method.omega": 0.1}),
    "aikd_no_adv": ("aikd", {"method.prev_mode": "snapshot", "method.omega": 0.0}),
    "frskd": ("frskd", {}),
    "cskd": ("cskd", {}),
    "tfkd": ("tfkd", {}),
    "pskd": ("pskd", {}),
}


def build(label, args, device, x, y, num_train):
    """One method with its own model (same initial weights for all), optimiser and batch."""
    name, extra = METHODS[label]
    cfg = TrainConfig.from_dict({"data.dataset": "cifar100", "model.name": args.model, "method.name": name,
                                 "epochs": 10, **extra}).resolved()
    torch.manual_seed(0)
    model = build_model(cfg, args.classes).to(device).train()
    teacher = None
    if label.startswith("aikd") or name == "tfkd":
        torch.manual_seed(1)
        teacher = build_model(cfg, args.classes).to(device)
    data = SimpleNamespace(num_classes=args.classes, train_labels=torch.randint(0, args.classes, (num_train,),
                                                                                  device=device))
    method = create_method(cfg, model, data, device, teacher=teacher)
    method.on_epoch_start(1)  # steady state: AI-KD has S_prev (snapshot) or a filled cache
    opt = make_optimizer(cfg, list(model.parameters()) + list(method.extra_parameters()))
    idx = torch.arange(len(y), device=device)
    if name == "cskd":  # batch/2 anchors then their partners (same labels)
        k = len(y) // 2
        batch = Batch(x[: 2 * k], torch.cat([y[:k], y[:k]]), idx[: 2 * k])
    else:
        batch = Batch(x, y, idx)
    return method, opt, batch


def step(method, opt, batch, device):
    """One trainer step (bf16 autocast on a GPU, as the trainer runs it), timed from an idle device to idle."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    train_step(method, opt, batch, use_amp=device.type == "cuda")
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def measure(args, labels, device, out=print) -> tuple[dict, dict]:
    """Per-step times of each method in `labels` (the baseline added first if missing), interleaved round-robin;
    returns (times in s per label, median per-round ratio to the baseline per label)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 3, args.size, args.size, generator=g).to(device)
    y = torch.randint(0, args.classes, (args.batch,), generator=g).to(device)
    if "baseline" not in labels:
        labels = ["baseline", *labels]
    runs = {label: build(label, args, device, x, y, num_train=10 * args.batch) for label in labels}
    out(f"model {args.model}, {args.batch} images of {args.size}x{args.size} per step, {args.classes} classes, "
        f"{device.type}, {torch.get_num_threads()} threads, {args.steps} rounds of one timed step per method "
        f"(+{args.warmup} warm-up steps)")
    for label in labels:
        for _ in range(args.warmup):
            step(*runs[label], device)
    times = {label: [] for label in labels}
    loads = []
    for r in range(args.steps):
        loads.append(wait_for_quiet(args.max_load, tries=3, out=out) if device.type == "cpu" else 0.0)
        k = r % len(labels)  # rotate the starting method so that no method always runs first
        for label in labels[k:] + labels[:k]:
            times[label].append(step(*runs[label], device))
    base = times["baseline"]
    ratios = {label: statistics.median(t / b for t, b in zip(times[label], base)) for label in labels}
    out(f"load average per round: {' '.join(f'{v:.1f}' for v in loads)}")
    out(f"{'method':<15}{'median ms/step':>16}{'min ms':>10}{'max ms':>10}{'x baseline':>12}{'min/min':>9}")
    for label in labels:
        t = times[label]
        out(f"{label:<15}{1e3 * statistics.median(t):>16.1f}{1e3 * min(t):>10.1f}{1e3 * max(t):>10.1f}"
            f"{ratios[label]:>12.2f}{min(t) / min(base):>9.2f}")
    out("(x baseline: median over rounds of the method's step time / the baseline's in that round; min/min: "
        "ratio of the fastest steps, the least disturbed by other load)")
    return times, ratios


def main(argv=None) -> None:
    p = arg_parser(__doc__, max_load_help="before each round, wait for the load to drop below")
    p.add_argument("--model", default="preact_resnet18")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--classes", type=int, default=100)
    p.add_argument("--steps", type=int, default=10, help="timed steps per method, one per round")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per method before the first round")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: leave PyTorch's default)")
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of " + ",".join(METHODS))
    args = p.parse_args(argv)

    torch.set_flush_denormal(True)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = select_device(args.device)
    header("step_cost")
    labels = [m.strip() for m in args.methods.split(",") if m.strip()]
    _, ratios = measure(args, labels, device, out=lambda line: print(line, flush=True))
    print("step_cost " + " ".join(f"{k}/baseline={ratios[k]:.2f}" for k in ("aikd_snapshot", "aikd_cache")
                                  if k in ratios))


if __name__ == "__main__":
    main()
