"""The Ray Tune function trainable: one trial = one configuration, trained with K seeds in lockstep, so that each
report carries their mean (and std), ASHA prunes on the mean, and a checkpoint holds every seed's complete state.
Test metrics are logged, never optimised."""

from __future__ import annotations

import ray.tune

from aikd.train import NonFiniteLossError, Trainer, teacher_for
from trainables.checkpoints import TrialReporter, load_checkpoint_states
from trainables.protocol import STUDY_KEY, aggregate, closing, epoch_rows, failure, opening, reported, seed_configs


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
    reporter = TrialReporter(study, cfgs[0].epochs)
    try:
        while not trainers[0].done:
            if trainers[0].crash_due:  # (fault-injection tests) the crash comes after the reports before it
                reporter.wait()
            metrics = reported(aggregate([t.train_epoch() for t in trainers]))
            if trainers[0].done:
                metrics.update(reported(aggregate([t.final_metrics() for t in trainers])))
                metrics.update(closing(trainers[0].artifacts()))
            metrics.update(extra)
            extra = {}
            reporter.report(metrics, trainers, seeds)  # the checkpoint, when due, is written while training goes on
    except NonFiniteLossError as e:
        reporter.report({**failure(trainers[0].epoch + 1, "non-finite loss", str(e), study.get("metric")
                                   or "val_error"), **extra})
    finally:
        reporter.close()
