"""The Ray Tune function trainable: one trial = one configuration, trained with K seeds in lockstep.

The seeds advance one epoch at a time together, so each report carries their mean (and std), ASHA prunes on the
mean, and a checkpoint holds every seed's complete state. Test metrics are logged, never optimised.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import ray.tune
import torch

from aikd.train import NonFiniteLossError, Trainer, teacher_for
from trainables.protocol import STUDY_KEY, aggregate, closing, epoch_rows, failure, opening, reported, seed_configs

STATE_FILE = "state.pt"


def save_checkpoint_state(directory, trainers, seeds) -> None:
    """Every seed's complete state (model, optimiser, method, RNG, per-epoch history) in one file."""
    torch.save({"states": [t.state() for t in trainers], "seeds": list(seeds)}, Path(directory) / STATE_FILE)


def load_checkpoint_states(checkpoint) -> list[dict] | None:
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as d:
        return torch.load(Path(d) / STATE_FILE, map_location="cpu", weights_only=True)["states"]


def run_trial(config: dict) -> None:
    """Ray Tune function trainable (keep this module importable: Ray pickles it by reference). It only trains and
    reports: the driver writes the trial's MLflow run from the reports Tune hands it."""
    cfgs, seeds = seed_configs(config)
    study = config.get(STUDY_KEY, {})
    states = load_checkpoint_states(ray.tune.get_checkpoint())
    # every seed's trainer shares the one teacher, pre-trained by the driver (a file in the store)
    teacher = teacher_for(cfgs[0])
    trainers = [Trainer(c, resume_state=states[i] if states else None, teacher=teacher) for i, c in enumerate(cfgs)]
    # the epochs the checkpoint holds: the attempt before this one may have died before the driver logged them
    restored = epoch_rows([t.history for t in trainers]) if states else []
    extra = opening(ray.get_runtime_context().get_node_id(), states is not None, restored)
    try:
        while not trainers[0].done:
            metrics = reported(aggregate([t.train_epoch() for t in trainers]))
            if trainers[0].done:
                metrics.update(reported(aggregate([t.final_metrics() for t in trainers])))
                metrics.update(closing(trainers[0].artifacts()))
            metrics.update(extra)
            extra = {}
            with tempfile.TemporaryDirectory() as d:
                save_checkpoint_state(d, trainers, seeds)
                ray.tune.report(metrics, checkpoint=ray.tune.Checkpoint.from_directory(d))
    except NonFiniteLossError as e:
        ray.tune.report({**failure(trainers[0].epoch + 1, "non-finite loss", str(e), study.get("metric")
                                   or "val_error"), **extra})
