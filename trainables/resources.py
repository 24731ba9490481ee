"""Trial resources: `--gpus-per-trial` / `--cpus-per-trial` as `tune.with_resources` requests."""

from __future__ import annotations

from ray import tune


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


def with_trial_resources(trainable, cpus: float, gpus: float):
    return tune.with_resources(trainable, trial_resources(cpus, gpus))
