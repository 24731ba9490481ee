"""Phase-1 teachers trained once, before the trials, as Ray tasks with the trial resources."""

from __future__ import annotations

import ray

from aikd.config import TrainConfig, needs_teacher
from aikd.teachers import teacher_is_cached, teacher_key, teacher_path


def _train_teacher(flat: dict) -> str:
    """A Ray task: the trainer (and torch) are imported by the task's worker, never by the driver."""
    from aikd.train import get_or_train_teacher
    logs = []
    get_or_train_teacher(TrainConfig.from_dict(flat), log=logs.append)
    return "\n".join(logs)


def distinct_teacher_configs(flat_configs: list[dict]) -> list[dict]:
    """One config per distinct teacher key among the configs that need a teacher."""
    seen, out = set(), []
    for flat in flat_configs:
        cfg = TrainConfig.from_dict(flat)
        if needs_teacher(cfg):
            key = teacher_key(cfg)
            if key not in seen:
                seen.add(key)
                out.append(flat)
    return out


def pretrain_teachers(flat_configs: list[dict], cpus: float, gpus: float, log=print,
                      check_here: bool = True) -> list[str]:
    """Train (or find) every teacher the study needs, in parallel Ray tasks; returns the store paths.

    A teacher this process finds valid in the store gets no task: a task starts a worker that imports torch (seconds)
    only to find the same file. `check_here=False` where this process's disk is not the cluster's (Ray Client)."""
    needed = distinct_teacher_configs(flat_configs)
    cfgs = [TrainConfig.from_dict(flat) for flat in needed]
    paths = [teacher_path(cfg) for cfg in cfgs]
    todo = []
    for flat, cfg, path in zip(needed, cfgs, paths):
        if check_here and teacher_is_cached(cfg):
            log(f"phase-1 teacher: reusing cached {path}")
        else:
            todo.append((flat, path))
    task = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=2)(_train_teacher)
    refs = [task.remote(flat) for flat, _ in todo]
    for (_, path), ref in zip(todo, refs):
        msgs = ray.get(ref)
        log(msgs.splitlines()[0] if msgs else f"phase-1 teacher ready: {path}")
    return [str(path) for path in paths]
