"""Trial resources: `--gpus-per-trial` / `--cpus-per-trial` as `tune.with_resources` requests."""

from __future__ import annotations

import torch
from ray import tune

from aikd.config import TrainConfig
from aikd.probe import choose_gpu_fraction, probe


class ResourceError(ValueError):
    pass


def check_gpus_per_trial(gpus: float) -> float:
    """0, a whole number, or 1/k (k trials share one GPU: 0.5, 0.25, 0.2, ...)."""
    if gpus < 0:
        raise ResourceError(f"--gpus-per-trial={gpus:g} is negative: allowed 0, a whole number or 1/k")
    if gpus == 0 or float(gpus).is_integer():
        return float(gpus)
    k = 1 / gpus
    if gpus > 1 or abs(k - round(k)) > 1e-6:
        raise ResourceError(f"--gpus-per-trial={gpus:g} does not divide one GPU evenly: allowed 0, a whole number "
                            "or 1/k such as 0.5, 0.25, 0.2")
    return float(gpus)


def check_cpus_per_trial(cpus: float) -> float:
    if cpus <= 0:
        raise ResourceError(f"--cpus-per-trial={cpus:g} must be > 0")
    return float(cpus)


def trial_resources(cpus: float, gpus: float) -> dict:
    return {"cpu": check_cpus_per_trial(cpus), "gpu": check_gpus_per_trial(gpus)}


def trial_slots(cluster: dict, cpus: float, gpus: float) -> int:
    """How many trials the cluster can hold at once (summed over nodes; at least 1)."""
    slots = cluster.get("CPU", 0) // check_cpus_per_trial(cpus)
    if check_gpus_per_trial(gpus) > 0:
        slots = min(slots, round(cluster.get("GPU", 0) / gpus, 6) // 1)
    return max(1, int(slots))


def with_trial_resources(trainable, cpus: float, gpus: float):
    return tune.with_resources(trainable, trial_resources(cpus, gpus))


def auto_gpus_per_trial(cfg: TrainConfig, steps: int = 40, margin: float = 0.8) -> tuple[float, str]:
    """`--gpus-per-trial auto`: (GPUs per trial, the one line to print), decided before any trial starts.

    Without a visible GPU: 0 (trials run on CPUs). Otherwise `cfg` (a trial's configuration: the largest model
    and batch of the study is the safe one to pass) is probed on this process's first GPU for `steps` steps, and
    `choose_gpu_fraction` turns its memory held (the caching allocator's peak, which is what the other trials
    sharing the GPU cannot use) and its throughput alone into 1/k, assuming k trials fill the time one leaves
    the GPU idle (`aikd.probe.estimate_throughput`). The probe leaves this process a CUDA context, no memory."""
    if not torch.cuda.is_available():
        return 0.0, "--gpus-per-trial auto: no GPU visible here, so 0 GPUs per trial (trials run on CPUs)"
    r = probe(cfg, steps, "cuda")
    fraction, k, reason = choose_gpu_fraction(r["peak_reserved_bytes"], r["total_bytes"], {1: r["images_per_s"]},
                                              margin=margin, busy_fraction=r["gpu_busy_fraction"])
    busy = "n/a" if r["gpu_busy_fraction"] is None else f"{r['gpu_busy_fraction']:.0%}"
    return fraction, (f"--gpus-per-trial auto: {fraction:g} on {r['device']} ({reason}; probe: {r['steps']} steps, "
                      f"{r['images_per_s']:,.0f} img/s alone, GPU busy {busy})")
