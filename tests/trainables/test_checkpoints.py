"""A trial's checkpoints (trainables/checkpoints.py): which epochs, written where Ray registers them, exact resume
from what is written. Ray's own StorageContext and Bracket classes, no cluster."""

import math
import os

import pytest
import torch
from ray.train import Checkpoint
from ray.train._internal.storage import StorageContext
from ray.tune.schedulers.async_hyperband import _Bracket

from aikd.config import TrainConfig
from aikd.train import Trainer, fit
from search.plan import decision_epochs, study_schedule
from search.report import best_weights
from trainables.checkpoints import DEFAULT_EVERY, TrialReporter, checkpoint_payload, write_payload
from trainables.protocol import STATE_FILE, WEIGHTS_FILE, newest_checkpoint


@pytest.mark.parametrize("max_t, grace, rf", [(200, 20, 3.0), (9, 1, 3.0), (3, 1, 3.0), (100, 10, 2.5), (50, 1, 2.0),
                                              (81, 1, 3.0), (30, 3, 4.0)])
def test_decision_epochs_are_where_ray_asha_decides(max_t, grace, rf):
    """Ray's bracket decides on the first report whose epoch reaches a milestone; the last epoch is not among them."""
    milestones = [m for m, _ in _Bracket(grace, max_t, rf, 0)._rungs]
    assert decision_epochs(max_t, grace, rf) == sorted({math.ceil(m) for m in milestones if math.ceil(m) < max_t})


def test_study_schedule_by_formula():
    # grace 2, rf 3, 30 epochs: 2, 6, 18 (54 is past the end)
    assert study_schedule(4, 30, 2, 3.0) == {"checkpoint_every": 4, "checkpoint_epochs": [2, 6, 18]}
    assert study_schedule(None, 30, None, 3.0) == {"checkpoint_epochs": []}  # no ASHA; the trials' default


def _due(study: dict, epochs: int) -> list[int]:
    r = TrialReporter(study, epochs)
    try:
        return [e for e in range(1, epochs + 1) if r.checkpoint_due(e)]
    finally:
        r.close()


def test_checkpoint_epochs_every_k_the_rungs_and_the_last():
    assert _due({"checkpoint_every": 3, "checkpoint_epochs": [1, 4]}, 10) == [1, 3, 4, 6, 9, 10]
    assert _due({"checkpoint_every": 4}, 10) == [4, 8, 10]
    assert _due({}, 5) == [e for e in range(1, 6) if e % DEFAULT_EVERY == 0 or e == 5]


def test_checkpoint_written_in_place_is_the_one_ray_registers(tmp_path):
    """What `ray.tune.report` does with a checkpoint (StorageContext: the index first, then persist) leaves the file
    written into the next checkpoint folder as it is, and registers that folder: no second copy."""
    storage = StorageContext(str(tmp_path / "studies"), "study", trial_dir_name="trial_x")
    storage.current_checkpoint_index = 4  # a trial resumed after five checkpoints
    target = os.path.join(storage.trial_fs_path, "checkpoint_000005")
    payload = {"states": [{"w": torch.arange(6.0).reshape(2, 3), "epoch": 7}], "seeds": [1]}
    write_payload(payload, target, storage.storage_filesystem)
    inode = os.stat(os.path.join(target, STATE_FILE)).st_ino
    empty = tmp_path / "empty"
    empty.mkdir()
    storage._update_checkpoint_index({})
    persisted = storage.persist_current_checkpoint(Checkpoint.from_directory(str(empty)))
    assert persisted.path == target and storage.checkpoint_dir_name == "checkpoint_000005"
    assert os.listdir(target) == [STATE_FILE]  # no temporary name left behind
    assert os.stat(os.path.join(target, STATE_FILE)).st_ino == inode  # the very file written, not a copy
    loaded = torch.load(os.path.join(target, STATE_FILE), map_location="cpu", weights_only=True)
    assert torch.equal(loaded["states"][0]["w"], payload["states"][0]["w"]) and loaded["seeds"] == [1]


def test_the_last_epochs_checkpoint_also_holds_the_first_seeds_weights(tmp_path):
    """What the report logs as the best trial's model, a file it copies (the driver imports no torch)."""
    payload = {"states": [{"model": {"w": torch.arange(3.0)}, "epoch": 2}, {"model": {"w": torch.zeros(3)}}],
               "seeds": [1, 2]}
    write_payload(payload, str(tmp_path / "last"), last=True)
    assert sorted(os.listdir(tmp_path / "last")) == sorted([STATE_FILE, WEIGHTS_FILE])
    assert torch.equal(torch.load(tmp_path / "last" / WEIGHTS_FILE, weights_only=True)["w"], torch.arange(3.0))
    write_payload(payload, str(tmp_path / "earlier"))
    assert os.listdir(tmp_path / "earlier") == [STATE_FILE]


def _cfg(epochs):
    return TrainConfig.from_dict({"data.dataset": "digits", "model.name": "small_cnn", "method.name": "baseline",
                                  "epochs": epochs}).resolved()


def test_host_snapshot_is_a_copy_and_resumes_exactly(tmp_path):
    """The state the reporter writes is taken at the epoch's end: later training does not change it, and a trainer
    built from the file continues as if never stopped."""
    t = Trainer(_cfg(3))
    t.train_epoch()
    payload = checkpoint_payload([t], [1], host=True)
    state = payload["states"][0]
    live = dict(t.model.state_dict())
    for k, v in state["model"].items():
        assert v.device.type == "cpu" and v.data_ptr() != live[k].data_ptr() and torch.equal(v, live[k])
    before = {k: v.clone() for k, v in state["model"].items()}
    t.train_epoch()
    assert all(torch.equal(before[k], state["model"][k]) for k in before)
    assert "config" not in state and state["epoch"] == 1

    write_payload(payload, str(tmp_path / "ck"))
    saved = torch.load(tmp_path / "ck" / STATE_FILE, map_location="cpu", weights_only=True)["states"][0]
    resumed = Trainer(_cfg(3), resume_state=saved)
    while not resumed.done:
        resumed.train_epoch()
    assert resumed.final_metrics() == fit(_cfg(3))


@pytest.mark.parametrize("mode, kept, left_out", [
    ("cache", {"cache_next"}, {"cache", "init_model"}),
    ("snapshot", set(), {"init_model"}),  # S_init serves epoch 0 only; S_prev is taken at the next epoch's start
])
def test_aikd_checkpoint_holds_only_what_the_next_epochs_read(mode, kept, left_out):
    cfg = TrainConfig.from_dict({"data.dataset": "digits", "model.name": "small_cnn", "method.name": "aikd",
                                 "method.alpha_g": 0.0, "method.omega": 0.0, "method.alpha_p": 0.5,
                                 "method.prev_mode": mode, "epochs": 3,
                                 **({"method.prev_epoch0": "init"} if mode == "snapshot" else {})}).resolved()
    t = Trainer(cfg)
    assert mode == "cache" or "init_model" in t.state(host=True)["method"]  # before epoch 0 it is needed
    t.train_epoch()
    t.train_epoch()
    method_state = t.state(host=True)["method"]
    assert kept <= set(method_state) and not left_out & set(method_state)


def test_a_write_that_fails_leaves_no_partial_file(tmp_path):
    """torch.save cannot pickle a lambda: the error reaches the caller and neither state.pt nor its .part stays."""
    payload = {"states": [{"model": {"w": torch.zeros(2)}, "bad": lambda: None}], "seeds": [0]}
    with pytest.raises(Exception):
        write_payload(payload, str(tmp_path / "checkpoint_000000"))
    assert sorted(os.listdir(tmp_path / "checkpoint_000000")) == []


def test_newest_checkpoint_skips_a_write_cut_short(tmp_path):
    """A folder whose write was cut (only `state.pt.part`, or nothing yet) was never registered: the newest complete
    one is the trial's newest checkpoint; Ray's zero-padded names order numerically (9 before 10)."""
    trial = tmp_path / "trial_x"
    assert newest_checkpoint(trial) is None
    for i, w in ((9, 9.0), (10, 10.0)):
        write_payload({"states": [{"model": {"w": torch.full((2,), w)}}], "seeds": [0]},
                      str(trial / f"checkpoint_{i:06d}"), last=True)
    (trial / "checkpoint_000011").mkdir()
    (trial / "checkpoint_000011" / (STATE_FILE + ".part")).write_bytes(b"PK\x03\x04 cut")
    (trial / "checkpoint_000012").mkdir()
    assert newest_checkpoint(trial) == trial / "checkpoint_000010"
    row = {"dir": str(trial)}
    out = best_weights(row, tmp_path / "best.pt")  # what the report logs as the best trial's model
    assert torch.equal(torch.load(out, weights_only=True)["w"], torch.full((2,), 10.0))
    os.remove(trial / "checkpoint_000010" / WEIGHTS_FILE)  # a checkpoint from before the last epoch: from its state
    out = best_weights(row, tmp_path / "best2.pt")
    assert torch.equal(torch.load(out, weights_only=True)["w"], torch.full((2,), 10.0))
    for i in (9, 10):
        os.remove(trial / f"checkpoint_{i:06d}" / STATE_FILE)
    assert newest_checkpoint(trial) is None and best_weights(row, tmp_path / "none.pt") is None
