"""The Ray Tune function trainable: one trial = one configuration, trained with K seeds in lockstep.

The seeds advance one epoch at a time together, so each report carries their mean (and std), ASHA prunes on the
mean, and a checkpoint holds every seed's complete state. Test metrics are logged, never optimised.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import ray.tune
import torch

from aikd.config import TrainConfig
from aikd.train import NonFiniteLossError, Trainer
from trainables.trial_log import open_trial_log

STATE_FILE = "state.pt"
FAILURE_KEY = "failure"
# Metrics reported per epoch (kept under ~30 keys per trial); method loss parts are added as they appear.
REPORTED = ("epoch", "lr", "train_loss", "val_error", "val_top5_error", "val_nll", "val_ece", "val_f1",
            "test_error", "test_top5_error", "test_nll", "test_ece", "test_f1", "test_error_best", "epoch_seconds",
            "gpu_peak_mem_mb")
FINAL_ONLY = ("test_ece_ts", "test_nll_ts", "temperature")
SPREAD = ("val_error", "test_error", "test_ece")


def trial_train_config(config: dict) -> tuple[dict, list[int]]:
    """The dotted TrainConfig dict and the seeds of a trial config (raw sampler variables `*__*` dropped)."""
    study = config.get("_study", {})
    flat = dict(study.get("base", {}))
    flat.update(config.get("cell", {}) or {})
    flat.update({k: v for k, v in config.items() if "." in k and "__" not in k or k in ("epochs", "seed")})
    seeds = list(study.get("seeds") or [flat.get("seed", 1)])
    return flat, seeds


def seed_configs(config: dict) -> tuple[list[TrainConfig], list[int]]:
    """The resolved TrainConfig of each of a trial's seeds, and the seeds."""
    flat, seeds = trial_train_config(config)
    return [TrainConfig.from_dict({**flat, "seed": s}).resolved() for s in seeds], seeds


def run_params(cfg: TrainConfig, seeds: list[int]) -> dict:
    """A trial's params in MLflow: its first seed's resolved config (debug switches left out) and its seeds."""
    params = {k: v for k, v in cfg.to_dict().items() if not k.startswith("debug.")}
    params["seeds"] = seeds
    return params


def aggregate(per_seed: list[dict]) -> dict:
    """Mean over seeds of every numeric metric; the sample std of the headline ones when K > 1."""
    out = {}
    keys = [k for k in per_seed[0] if isinstance(per_seed[0][k], (int, float))]
    for k in keys:
        vals = [m[k] for m in per_seed if k in m]
        out[k] = float(np.mean(vals))
        if k in SPREAD and len(vals) > 1:
            out[f"{k}_std"] = float(np.std(vals, ddof=1))
    return out


def _reported(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items()
            if k in REPORTED or k in FINAL_ONLY or k.endswith("_std") or (k.startswith("train_") and len(k) < 24)}


def epoch_rows(histories: list[list[dict]], start: int = 0) -> list[dict]:
    """The reports of epochs start+1.. that every seed's history holds (from a checkpoint), as `run_trial` made them."""
    return [{**_reported(aggregate([h[e] for h in histories])), "epoch": e + 1}
            for e in range(start, min(len(h) for h in histories))]


def read_results(path) -> list[dict]:
    """The reports in a trial's result.json (Ray's log), skipping a line cut by a killed driver."""
    out = []
    path = Path(path)
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return out


def save_checkpoint_state(directory, trainers, seeds) -> None:
    """Every seed's complete state (model, optimiser, method, RNG, per-epoch history) in one file."""
    torch.save({"states": [t.state() for t in trainers], "seeds": list(seeds)}, Path(directory) / STATE_FILE)


def load_checkpoint_states(checkpoint) -> list[dict] | None:
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as d:
        return torch.load(Path(d) / STATE_FILE, map_location="cpu", weights_only=True)["states"]


def run_trial(config: dict) -> None:
    """Ray Tune function trainable (keep this module importable: Ray pickles it by reference)."""
    cfgs, seeds = seed_configs(config)
    study = config.get("_study", {})
    ctx = ray.tune.get_context()
    trial_id, trial_name = ctx.get_trial_id(), ctx.get_trial_name()
    states = load_checkpoint_states(ray.tune.get_checkpoint())
    trainers = [Trainer(c, resume_state=states[i] if states else None) for i, c in enumerate(cfgs)]
    log = None
    if study.get("tracking"):
        params = run_params(cfgs[0], seeds)
        # epochs the checkpoint holds: a killed earlier attempt may have held some of them for its next batch
        restored = epoch_rows([t.history for t in trainers]) if states else []
        log = open_trial_log(study, trial_id, trial_name, params,
                             {"study": study.get("name", ""), "resumed": states is not None}, restored)
    try:
        _train_and_report(trainers, cfgs, seeds, study, log)
    finally:
        # A scheduler stops a trial by raising SystemExit in `ray.tune.report`: send the metrics held for the next
        # batch. What a killed worker held is filled in by the driver (HELD_KEY in the trial's last report).
        if log is not None:
            log.close(deadline_s=1.0)


def _train_and_report(trainers, cfgs, seeds, study, log) -> None:
    try:
        while not trainers[0].done:
            per_seed = [t.train_epoch() for t in trainers]
            metrics = _reported(aggregate(per_seed))
            if trainers[0].done:
                metrics.update(_reported(aggregate([t.final_metrics() for t in trainers])))
            if log is not None:
                log.log_metrics(metrics, step=int(metrics["epoch"]))
                if trainers[0].done:  # before the last report: a scheduler may stop the trial right after it
                    metrics.update(log.finish(cfgs[0].to_dict(), metrics, trainers[0].artifacts()))
                else:
                    metrics.update(log.counts())
            with tempfile.TemporaryDirectory() as d:
                save_checkpoint_state(d, trainers, seeds)
                ray.tune.report(metrics, checkpoint=ray.tune.Checkpoint.from_directory(d))
    except NonFiniteLossError as e:
        epoch = trainers[0].epoch + 1
        # the study's metric as NaN: Tune requires the key in every result; searcher and ASHA skip the value
        failure = {"epoch": epoch, FAILURE_KEY: "non-finite loss", study.get("metric") or "val_error": float("nan")}
        if log is not None:
            failure.update(log.fail({"failure": "non-finite loss", "error": str(e)[:500]}))
        ray.tune.report(failure)
