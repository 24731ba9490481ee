"""The trainable a study's driver hands Tune: `trainables.kd.run_trial`, reached without importing it here.

Ray pickles a module-level function by reference (its module and name), so the driver needs only this module to
pass the trainable on, and never imports torch (several seconds of a study's serial start) or the trainer; a trial's
process imports `trainables.kd` on the first call."""

from __future__ import annotations


def run_trial(config: dict) -> None:
    """Ray Tune function trainable: one trial (trainables/kd.py)."""
    from trainables.kd import run_trial as train_trial
    train_trial(config)
