"""The Ray Tune function trainable: one trial = one configuration, trained with K seeds in lockstep.

The seeds advance one epoch at a time together, so each report carries their mean (and std), ASHA prunes on the
mean, and a checkpoint holds every seed's complete state. Test metrics are logged, never optimised.
"""

from __future__ import annotations

import json
import math
import tempfile
import threading
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import ray.tune
import torch

from aikd.config import TrainConfig
from aikd.train import NonFiniteLossError, Trainer

STATE_FILE = "state.pt"
FAILURE_KEY = "failure"
UNLOGGED_KEY = "mlflow_unlogged"  # reported, never logged to MLflow: values MLflow missed (server unreachable)
HELD_KEY = "mlflow_held"  # reported, never logged: metric values the worker holds for its next MLflow batch
# Metrics reported per epoch (kept under ~30 keys per trial); method loss parts are added as they appear.
REPORTED = ("epoch", "lr", "train_loss", "val_error", "val_top5_error", "val_nll", "val_ece", "val_f1",
            "test_error", "test_top5_error", "test_nll", "test_ece", "test_f1", "test_error_best", "epoch_seconds")
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
    flat, seeds = trial_train_config(config)
    study = config.get("_study", {})
    ctx = ray.tune.get_context()
    trial_id, trial_name = ctx.get_trial_id(), ctx.get_trial_name()
    cfgs = []
    for s in seeds:
        c = TrainConfig.from_dict({**flat, "seed": s}).resolved()
        cfgs.append(c)
    states = load_checkpoint_states(ray.tune.get_checkpoint())
    log = None
    if study.get("tracking"):
        params = {k: v for k, v in cfgs[0].to_dict().items() if not k.startswith("debug.")}
        params["seeds"] = seeds
        log = TrialLog(study["tracking"], trial_id, trial_name, params,
                       {"study": study.get("name", ""), "resumed": states is not None})
    trainers = [Trainer(c, resume_state=states[i] if states else None) for i, c in enumerate(cfgs)]
    if log is not None and states:
        # epochs the checkpoint holds: a killed earlier attempt may have held some of them for its next batch
        log.restored = [{**_reported(aggregate([t.history[e] for t in trainers])), "epoch": e + 1}
                        for e in range(min(len(t.history) for t in trainers))]
    try:
        _train_and_report(trainers, cfgs, seeds, study, log)
    finally:
        # A scheduler stops a trial by raising SystemExit in `ray.tune.report`: send the metrics held for the next
        # batch. A worker killed before this runs leaves them to the driver (HELD_KEY in its last report).
        if log is not None:
            log.close(deadline_s=1.0)


class TrialLog:
    """The trial's MLflow child run, opened in a background thread: in a fresh worker MLflow's imports and the
    run's opening take seconds of CPU, and training should not wait for them. Reports made before the run is open
    wait here and go out with the first batch after it."""

    def __init__(self, tracking: dict, trial_id: str, trial_name: str, params: dict, tags: dict):
        self.child = None
        self.restored: list[dict] = []  # a resumed trial's earlier epochs, logged where the run lacks them
        self._early: list[tuple[dict, int]] = []
        self._opening = Future()
        threading.Thread(target=self._open, args=(tracking, trial_id, trial_name, params, tags), daemon=True,
                         name="mlflow-child-run").start()

    def _open(self, *args) -> None:
        try:
            from trainables.child_run import ChildRun
            child = ChildRun(*args[:4], tags=args[4])
            import trainables.plots  # noqa: F401  (matplotlib, for the reliability diagram at the end)
            self._opening.set_result(child)
        except BaseException as e:
            self._opening.set_exception(e)

    def ready(self, wait: bool):
        """The child run once it is open (waiting for it if `wait`), else None."""
        if self.child is None and (wait or self._opening.done()):
            self.child = self._opening.result()
            for epoch, metrics in enumerate(self.restored, 1):  # skipped where the run's history has the epoch
                self.child.log_metrics(metrics, epoch)
            for metrics, step in self._early:
                self.child.log_metrics(metrics, step)
            self._early = []
        return self.child

    def log_metrics(self, metrics: dict, step: int) -> None:
        if self.ready(wait=False) is None:
            self._early.append((dict(metrics), step))
        else:
            self.child.log_metrics(metrics, step)

    def counts(self) -> dict:
        """For the driver: values MLflow did not take (server unreachable), and values waiting for a batch."""
        if self.child is None:
            return {UNLOGGED_KEY: 0, HELD_KEY: sum(len(m) for m, _ in self._early)}
        return {UNLOGGED_KEY: self.child.unlogged, HELD_KEY: self.child.held}

    def close(self, deadline_s: float = 60.0) -> int:
        """Send everything held (a second call sends nothing); returns the count MLflow missed."""
        return self.ready(wait=True).close(deadline_s=deadline_s)


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
                    _log_trial_artifacts(log.ready(wait=True), cfgs[0], trainers, metrics)
                    log.close()
                metrics.update(log.counts())
            with tempfile.TemporaryDirectory() as d:
                save_checkpoint_state(d, trainers, seeds)
                ray.tune.report(metrics, checkpoint=ray.tune.Checkpoint.from_directory(d))
    except NonFiniteLossError as e:
        epoch = trainers[0].epoch + 1
        # the study's metric as NaN: Tune requires the key in every result; searcher and ASHA skip the value
        failure = {"epoch": epoch, FAILURE_KEY: "non-finite loss", study.get("metric") or "val_error": float("nan")}
        if log is not None:
            log.ready(wait=True).set_tags({"failure": "non-finite loss", "error": str(e)[:500]})
            failure[UNLOGGED_KEY] = log.close(deadline_s=10)
        ray.tune.report(failure)


def _log_trial_artifacts(child, cfg, trainers, metrics) -> None:
    """Resolved config, reliability diagrams (val and test) and final metrics with ECE before/after TS."""
    from trainables.plots import reliability_figure
    child.log_dict(cfg.to_dict(), "config.json")
    final = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)}
    child.log_dict(final, "final_metrics.json")
    art = trainers[0].artifacts()
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "reliability.png"
        reliability_figure({k.replace("reliability_", ""): v for k, v in art.items()}, path)
        child.log_file(path)
