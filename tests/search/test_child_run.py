"""A trial's MLflow child run (written by the driver's writer) against a real SQLite tracking store: batching by
time, and what is counted as held or unlogged."""

import time

from mlflow.tracking import MlflowClient

from search.child_run import ChildRun
from tests.search.faults import free_port

KEYS = ("epoch", "val_error", "train_loss")


def _setup(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    c = MlflowClient(tracking_uri=uri)
    exp = c.create_experiment("child-run")
    parent = c.create_run(exp).info.run_id
    return c, {"uri": uri, "experiment_id": exp, "parent_run_id": parent}


def _counting(child):
    """Count the log_batch requests the child sends (the real client still sends them)."""
    calls = []
    real = child.client.log_batch

    def log_batch(run_id, metrics=(), **kw):
        calls.append(len(metrics))
        return real(run_id, metrics=metrics, **kw)

    child.client.log_batch = log_batch
    return calls


def _report(epoch):
    return {"epoch": epoch, "val_error": 50.0 / epoch, "train_loss": 1.0 / epoch}


def _steps(c, run_id, key):
    return sorted(int(m.step) for m in c.get_metric_history(run_id, key))


def test_fast_epochs_are_held_and_sent_together_at_close(tmp_path):
    c, tracking = _setup(tmp_path)
    child = ChildRun(tracking, "t1", "trial_1", {"optim.lr": 0.1}, flush_interval_s=3600)
    calls = _counting(child)
    for e in range(1, 6):
        child.log_metrics(_report(e), step=e)
    assert calls == [] and _steps(c, child.run_id, "val_error") == []
    assert child.held == 5 * len(KEYS) and child.unlogged == 0
    assert child.close(deadline_s=5) == 0
    assert calls == [5 * len(KEYS)]  # one request for the five epochs
    for k in KEYS:
        assert _steps(c, child.run_id, k) == [1, 2, 3, 4, 5]
    hist = {int(m.step): m.value for m in c.get_metric_history(child.run_id, "val_error")}
    assert hist == {e: 50.0 / e for e in range(1, 6)}
    assert child.held == 0


def test_an_epoch_slower_than_the_interval_is_sent_at_once(tmp_path):
    c, tracking = _setup(tmp_path)
    child = ChildRun(tracking, "t2", "trial_2", {}, flush_interval_s=1.5)
    calls = _counting(child)
    time.sleep(1.6)
    child.log_metrics(_report(1), step=1)
    assert calls == [len(KEYS)] and _steps(c, child.run_id, "epoch") == [1]
    child.log_metrics(_report(2), step=2)  # right after the last request: held
    assert calls == [len(KEYS)] and child.held == len(KEYS)
    time.sleep(1.6)
    child.log_metrics(_report(3), step=3)  # carries epoch 2 along
    assert calls == [len(KEYS), 2 * len(KEYS)] and _steps(c, child.run_id, "epoch") == [1, 2, 3]
    child.close(deadline_s=5)


def test_unreachable_server_counts_unlogged_not_held(tmp_path):
    tracking = {"uri": f"http://127.0.0.1:{free_port()}", "experiment_id": "1", "parent_run_id": "p"}
    child = ChildRun(tracking, "t3", "trial_3", {}, flush_interval_s=3600)
    assert child.run_id is None  # could not open; it will be opened with a later request
    child.log_metrics(_report(1), step=1)
    assert child.held == len(KEYS) and child.unlogged == 0  # not tried yet
    assert child.flush() is False
    assert child.held == 0 and child.unlogged == len(KEYS)
    child.log_metrics(_report(2), step=2)  # a failing child retries with every report, interval or not
    assert child.unlogged == 2 * len(KEYS)
    assert child.close(deadline_s=0) == 2 * len(KEYS)
