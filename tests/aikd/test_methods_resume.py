"""Exact resume of FRSKD, CS-KD, TF-KD and PS-KD: stopping after epoch 2 and resuming equals the uninterrupted run.

Each method's state (self-teacher, sampler position, prediction table) must travel in `state_fn()`.
"""

from __future__ import annotations

import copy
import math

import pytest

from aikd.config import TrainConfig
from aikd.train import fit, teacher_for


class StoreState:
    """Keeps a deep copy of the resume state at one epoch (state_fn's tensors alias the live model)."""

    def __init__(self, at_epoch):
        self.at_epoch, self.state, self.epochs = at_epoch, None, []

    def on_epoch_end(self, epoch, metrics, state_fn):
        self.epochs.append(epoch)
        if epoch == self.at_epoch:
            self.state = copy.deepcopy(state_fn())


@pytest.mark.parametrize("method,extra", [
    ("frskd", {}),
    ("cskd", {}),
    ("tfkd", {}),
    ("tfkd", {"method.variant": "reg"}),
    ("pskd", {}),
])
def test_resume_after_epoch_two_matches_uninterrupted_run(tmp_path, method, extra):
    cfg = TrainConfig.from_dict({"data.dataset": "digits", "model.name": "small_cnn", "method.name": method,
                                 "epochs": 4, "teacher.root": str(tmp_path), **extra})
    store = StoreState(at_epoch=1)
    full = fit(cfg, callbacks=[store], teacher=teacher_for(cfg))
    assert store.state["epoch"] == 2
    again = StoreState(at_epoch=-1)
    resumed = fit(cfg, callbacks=[again], resume_state=store.state, teacher=teacher_for(cfg))
    assert again.epochs == [2, 3]
    assert set(full) == set(resumed)
    for key, value in full.items():
        if isinstance(value, float):
            assert math.isfinite(value) or key == "val_error", key
            assert resumed[key] == pytest.approx(value, abs=1e-5), key
    assert {f"train_{k}" for k in {"frskd": ("at", "kd", "ce_teacher"), "cskd": ("cls",), "tfkd": ("kd",),
                                   "pskd": ("alpha_t",)}[method]} <= set(full)
