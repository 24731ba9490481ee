"""How much of a GPU one trial needs, measured before a study starts: `probe(cfg, steps, device)`.

It trains a trial's configuration (model, method, batch size, augmentation, bf16 autocast: the trainer's own
pieces and its `train_step`) for a few dozen steps on random images of the configured dataset's shape, held on
the device the way `build_data` holds them, with a randomly initialised S_sup where the method needs one (the
teacher's weights change neither memory nor time). So it needs neither the data set nor a trained teacher, and
it returns the figures `choose_gpu_fraction` turns into `--gpus-per-trial`: the trial's peak memory, its
images/s alone on the GPU, and how busy it keeps the GPU (what k trials sharing it can fill).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from aikd.config import TrainConfig, needs_teacher
from aikd.data.datasets import DATASETS
from aikd.data.loaders import TensorLoader, train_batch_transforms
from aikd.data.samplers import PairBatchSampler
from aikd.methods import create_method
from aikd.methods.base import _METHODS
from aikd.train import build_model, make_optimizer, predict, prepare_device, train_step

# (train, test) images per dataset (SPEC 8.1; digits' 80/20 split of 1,797; the synthetic set's defaults)
SPLIT_SIZES = {"cifar10": (50_000, 10_000), "cifar100": (50_000, 10_000), "tinyimagenet": (100_000, 10_000),
               "cub200": (5_994, 5_794), "dogs": (12_000, 8_580), "mit67": (5_360, 1_340),
               "aircraft": (6_667, 3_333), "stanford40": (4_000, 5_532), "digits": (1_437, 360),
               "synthetic": (1_000, 200)}
TIE = 0.05  # aggregate throughputs within 5% of the best count as equal: the smaller k wins


@dataclass
class SyntheticTrial:
    """One trial's model, method, optimiser and training loader over random images of its dataset's shape."""

    cfg: TrainConfig
    device: torch.device
    model: torch.nn.Module
    method: object
    optimizer: torch.optim.Optimizer
    loader: TensorLoader
    eval_loader: TensorLoader
    held: torch.Tensor  # stands for the validation and test images the trainer keeps on the device
    epoch: int = 1


def trial_shape(cfg: TrainConfig) -> tuple[int, int, int, int, int]:
    """(classes, image side, training images, images the trainer keeps on the device besides them, eval batch)."""
    d = cfg.data
    info = DATASETS[d.dataset]
    classes = d.synthetic_classes if d.dataset == "synthetic" else info.num_classes
    side = d.tiny_size if d.dataset == "tinyimagenet" else info.input_size
    n, n_test = SPLIT_SIZES[d.dataset]
    n_val = round(n * d.val_fraction)
    held = n_val + n_test if info.kind == "array" else 0  # image folders are read from disk batch by batch
    n_train = n - n_val if not d.train_per_class else min(n - n_val, d.train_per_class * classes)
    return classes, side, n_train, held, min(d.eval_batch_size, n_test)


def build_trial(cfg: TrainConfig, device, n_train: int | None = None, seed: int = 0) -> SyntheticTrial:
    """The trial of `cfg` on `device`, as `Trainer` builds it, at steady state (epoch 1: AI-KD's S_prev exists).

    `n_train` overrides the number of training images (tests and CPU smoke runs); an image-folder dataset keeps
    only a pool of a few batches, as its loader never holds the whole set."""
    cfg = cfg.resolved()
    device = torch.device(device)
    prepare_device(device)
    classes, side, n, n_held, n_eval = trial_shape(cfg)
    bs = cfg.data.batch_size
    if n_train is not None:
        n, n_held, n_eval = n_train, 0, min(n_eval, n_train)
    files = DATASETS[cfg.data.dataset].kind == "files"
    pool = min(n, max(4 * bs, n_eval)) if files else n
    gen = torch.Generator(device=device).manual_seed(seed)
    images = torch.randint(0, 256, (pool, 3, side, side), dtype=torch.uint8, device=device, generator=gen)
    labels_np = np.random.default_rng(seed).integers(0, classes, n)
    labels = torch.as_tensor(labels_np, device=device)
    held = torch.empty((n_held, 3, side, side), dtype=torch.uint8, device=device)
    mean, std = torch.full((3,), 0.5, device=device), torch.full((3,), 0.25, device=device)
    augment_fn, regularizer = train_batch_transforms(cfg, side)
    pair = getattr(_METHODS.get(cfg.method.name), "pair_batches", False)
    sampler = PairBatchSampler(labels_np[:pool], bs, seed=seed) if pair else None
    loader = TensorLoader(images, labels[:pool], bs, mean=mean, std=std, seed=seed, train=True,
                          augment_fn=augment_fn, regularizer=regularizer, batch_sampler=sampler)
    eval_loader = TensorLoader(images[:n_eval], labels[:n_eval], n_eval, mean=mean, std=std)

    torch.manual_seed(seed)
    model = build_model(cfg, classes).to(device)
    teacher = build_model(cfg.teacher_config(), classes).to(device) if needs_teacher(cfg) else None
    data = _Shape(classes, labels)
    method = create_method(cfg, model, data, device, teacher=teacher)
    optimizer = make_optimizer(cfg, list(model.parameters()) + list(method.extra_parameters()))
    trial = SyntheticTrial(cfg, device, model, method, optimizer, loader, eval_loader, held)
    method.on_epoch_start(trial.epoch)
    loader.set_epoch(trial.epoch)
    model.train()
    return trial


@dataclass
class _Shape:
    """What a method reads of `Data`: the class count and the training labels (PS-KD's table, AI-KD's cache)."""

    num_classes: int
    train_labels: torch.Tensor


def run_steps(trial: SyntheticTrial, steps: int) -> tuple[int, torch.Tensor]:
    """`steps` training steps as `Trainer.train_epoch` runs them (a new epoch when the loader runs out).

    Returns the rows trained and the per-step losses, left on the device: nothing here waits for the GPU."""
    losses = torch.empty(steps, device=trial.device)
    use_amp = trial.device.type == "cuda"
    rows = i = 0
    while i < steps:
        start = i
        for batch in trial.loader:
            losses[i] = train_step(trial.method, trial.optimizer, batch, use_amp)["loss"].detach().float()
            rows += batch.x.shape[0]
            i += 1
            if i == steps:
                break
        else:
            if i == start:
                raise ValueError(f"{trial.cfg.data.dataset}: the training loader yields no batch")
            trial.epoch += 1
            trial.method.on_epoch_start(trial.epoch)
            trial.loader.set_epoch(trial.epoch)
    return rows, losses


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def probe(cfg: TrainConfig, steps: int, device, *, n_train: int | None = None, profile_steps: int = 5) -> dict:
    """Train `cfg` for `steps` steps on `device`; returns what sizing trials that share a GPU needs.

    Keys: `images_per_s` (rows trained per second after the first quarter of the steps, which absorb cuDNN's
    autotuning; CS-KD's rows count anchors and partners), `peak_bytes` / `peak_reserved_bytes` (the most memory
    allocated / held by PyTorch's caching allocator, counted from what this process held before the probe),
    `total_bytes` (the device's memory), `gpu_busy_fraction` (GPU time of a step's kernels and copies, from the
    profiler over `profile_steps` more steps, over the wall time of an unprofiled step; None where the profiler
    gives no device events), `loss_finite`, `steps`, `rows_per_step`, `device`. Memory and busy figures are None
    on a CPU. One evaluation pass (eval batch size, float32) runs too, since its peak can exceed training's."""
    device = torch.device(device)
    cuda = device.type == "cuda"
    if steps < 2:
        raise ValueError(f"probe: steps={steps} must be >= 2 (a quarter of them warm up)")
    if cuda:
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base, base_reserved = torch.cuda.memory_allocated(device), torch.cuda.memory_reserved(device)
    trial = build_trial(cfg, device, n_train=n_train)
    warm = max(1, steps // 4)
    _, warm_losses = run_steps(trial, warm)
    synchronize(device)
    t0 = time.perf_counter()
    rows, losses = run_steps(trial, steps - warm)
    synchronize(device)
    seconds = time.perf_counter() - t0
    predict(trial.model, trial.eval_loader)
    trial.model.train()
    busy = _busy_fraction(trial, profile_steps, seconds / (steps - warm)) if cuda and profile_steps else None
    out = {"device": torch.cuda.get_device_name(device) if cuda else "cpu", "steps": steps - warm,
           "rows_per_step": rows / (steps - warm), "images_per_s": rows / seconds,
           "loss_finite": bool(torch.isfinite(torch.cat([warm_losses, losses])).all().item()),
           "peak_bytes": None, "peak_reserved_bytes": None, "total_bytes": None, "gpu_busy_fraction": busy}
    if cuda:
        out["peak_bytes"] = torch.cuda.max_memory_allocated(device) - base
        out["peak_reserved_bytes"] = torch.cuda.max_memory_reserved(device) - base_reserved
        out["total_bytes"] = torch.cuda.get_device_properties(device).total_memory
    del trial
    if cuda:
        torch.cuda.empty_cache()  # the caller (a study's driver) keeps no probe memory while its trials run
    return out


def _busy_fraction(trial: SyntheticTrial, steps: int, wall_per_step: float) -> float | None:
    """GPU time per step (the profiler's kernel and copy durations; one stream, so they do not overlap) over the
    wall time per step measured without the profiler, which slows the host but not the kernels."""
    try:
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            run_steps(trial, steps)
            synchronize(trial.device)
    except RuntimeError:  # no CUPTI on this machine: the figure is unknown, the probe's others still hold
        return None
    device_us = sum(e.self_device_time_total for e in prof.events()
                    if e.device_type == DeviceType.CUDA and not getattr(e, "is_user_annotation", False))
    if device_us <= 0:
        return None
    return min(1.0, device_us * 1e-6 / steps / wall_per_step)


def estimate_throughput(images_per_s_by_k: dict[int, float] | None, k: int,
                        busy_fraction: float | None) -> tuple[float | None, str]:
    """Aggregate images/s of k trials sharing one GPU, and where the figure comes from.

    Measured where `images_per_s_by_k` has k. When only one trial alone was measured (x1, the probe's case) and
    the share of time it keeps the GPU busy b is known, the assumption is x1 * min(k, 1/b): each further trial
    fills time the others leave idle (host-side work, kernel launches) until the GPU is busy, and sharing costs
    nothing (time slicing between processes is not free, so this is an upper bound that a measurement replaces).
    Otherwise an unmeasured k is assumed to give no more than the largest measured k below it: no gain is
    claimed beyond what was measured.
    """
    measured = dict(images_per_s_by_k or {})
    if k in measured:
        return measured[k], "measured"
    if set(measured) == {1} and busy_fraction:
        return measured[1] * min(k, 1.0 / busy_fraction), f"estimated: 1 trial x min(k, 1/busy {busy_fraction:.2f})"
    below = [m for m in measured if m < k]
    if below:
        return measured[max(below)], f"assumed equal to k={max(below)}"
    return None, "unknown"


def choose_gpu_fraction(peak_bytes: int, total_bytes: int, images_per_s_by_k: dict[int, float] | None,
                        margin: float = 0.8, ks=(1, 2, 4, 8), busy_fraction: float | None = None
                        ) -> tuple[float, int, str]:
    """The rule of `--gpus-per-trial auto`: (1/k, k, reason) for the k of `ks` with the highest aggregate
    images/s among those whose k trials fit in memory, k * peak_bytes <= margin * total_bytes.

    Throughput per k comes from `estimate_throughput` (measured figures, or the stated assumption). Figures
    within 5% of the best tie, and a tie goes to the smaller k: less memory at stake, and each trial (which
    ASHA judges by epochs, not wall time) runs faster. When not even one trial fits the margin, or nothing is
    known of throughput, the answer is one trial per GPU, and the reason says so.
    """
    if peak_bytes <= 0 or total_bytes <= 0:
        raise ValueError(f"choose_gpu_fraction: peak_bytes={peak_bytes} and total_bytes={total_bytes} must be > 0")
    if not 0 < margin <= 1:
        raise ValueError(f"choose_gpu_fraction: margin={margin} must be in (0, 1]")
    budget = margin * total_bytes
    gib = 2**30
    fits = [k for k in sorted(ks) if k * peak_bytes <= budget]
    mem = f"{peak_bytes / gib:.2f} GiB per trial, {margin:.0%} of {total_bytes / gib:.1f} GiB"
    if not fits:
        return 1.0, 1, f"k=1: not even one trial fits ({mem}); one trial per GPU"
    rates = {k: estimate_throughput(images_per_s_by_k, k, busy_fraction) for k in fits}
    known = {k: r for k, (r, _) in rates.items() if r is not None}
    if not known:
        return 1.0, 1, f"k=1: no throughput figures ({mem}, up to {max(fits)} fit); one trial per GPU"
    best = max(known.values())
    k = min(k for k, r in known.items() if r >= (1 - TIE) * best)
    others = ", ".join(f"k={j}: {r:,.0f}" for j, r in sorted(known.items()) if j != k)
    reason = (f"k={k}: {known[k]:,.0f} img/s aggregate ({rates[k][1]}); {others or 'no other k'}; {mem}, up to "
              f"{max(fits)} fit")
    return 1.0 / k, k, reason
