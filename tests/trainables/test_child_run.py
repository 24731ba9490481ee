"""A trial's MLflow child run against a real SQLite tracking store: batching by time, and what is counted as held
or unlogged for the driver."""

import time

from mlflow.tracking import MlflowClient

from tests.search.faults import free_port
from trainables.child_run import ChildRun

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


def test_trial_log_without_an_agent_opens_in_the_background_and_finishes(tmp_path):
    """The fallback for a node without the study's MLflow agent: reports made before the run is open wait, then
    every epoch, the restored ones of an earlier attempt included, lands once, with the trial's artifacts."""
    from trainables.trial_log import HELD_KEY, UNLOGGED_KEY, TrialLog

    c, tracking = _setup(tmp_path)
    restored = [_report(1), _report(2)]
    log = TrialLog(tracking, "t4", "trial_4", {"optim.lr": 0.1}, {"study": "s"}, restored)
    for e in (3, 4):
        log.log_metrics(_report(e), step=e)
    counts = log.counts()
    assert counts[UNLOGGED_KEY] == 0 and counts[HELD_KEY] >= 0
    bins = {"edges": [0.0, 0.5, 1.0], "accuracy": [0.2, 0.9], "confidence": [0.3, 0.8], "count": [3, 7]}
    counts = log.finish({"optim.lr": 0.1}, {"test_ece": 1.5, "test_ece_ts": 1.2, "bad": float("nan")},
                        {"reliability_val": bins, "reliability_test": bins})
    assert counts == {UNLOGGED_KEY: 0, HELD_KEY: 0}  # written before it returned
    run = c.search_runs([tracking["experiment_id"]], filter_string="tags.`ray.trial_id` = 't4'")[0]
    assert run.data.tags["mlflow.parentRunId"] == tracking["parent_run_id"]
    for k in KEYS:
        assert _steps(c, run.info.run_id, k) == [1, 2, 3, 4]
    assert {"config.json", "final_metrics.json", "reliability.png"} <= {a.path for a in
                                                                         c.list_artifacts(run.info.run_id)}
    log.close()  # the trial's `finally`: nothing left to send, nothing sent twice
    assert _steps(c, run.info.run_id, "epoch") == [1, 2, 3, 4]


def test_node_agent_queues_for_its_writer_and_drains_exactly(tmp_path):
    """The per-node writer (here in this process, as Ray would host it in an actor): calls return at once with what
    is still held; at the end `drain` closes what stopped trials left open and says, per trial, what MLflow missed."""
    from trainables.trial_log import HELD_KEY, UNLOGGED_KEY, TrackingAgent

    c, tracking = _setup(tmp_path)
    agent = TrackingAgent()
    agent.open(tracking, "done", "trial_done", {"optim.lr": 0.1}, {"study": "s"}, [_report(1)])
    agent.open(tracking, "pruned", "trial_pruned", {"optim.lr": 0.2}, {"study": "s"}, [])
    for e in (2, 3):
        counts = agent.log_metrics("done", _report(e), step=e)
        assert counts[UNLOGGED_KEY] == 0 and counts[HELD_KEY] > 0  # batched by time, or still queued
    agent.log_metrics("pruned", _report(1), step=1)
    agent.close("pruned", 1.0)  # a stopped trial does not wait
    bins = {"edges": [0.0, 0.5, 1.0], "accuracy": [0.2, 0.9], "confidence": [0.3, 0.8], "count": [3, 7]}
    last = agent.finish("done", {"optim.lr": 0.1}, {"test_ece": 1.5},
                        {"reliability_val": bins, "reliability_test": bins})
    assert last[HELD_KEY] > 0  # the last report does not wait for the writing
    assert agent.drain(deadline_s=30) == {"done": 0, "pruned": 0}
    runs = {r.data.tags["ray.trial_id"]: r for r in c.search_runs([tracking["experiment_id"]])
            if r.info.run_id != tracking["parent_run_id"]}
    assert set(runs) == {"done", "pruned"}
    for k in KEYS:
        assert _steps(c, runs["done"].info.run_id, k) == [1, 2, 3]
        assert _steps(c, runs["pruned"].info.run_id, k) == [1]
    assert {"config.json", "final_metrics.json", "reliability.png"} <= {
        a.path for a in c.list_artifacts(runs["done"].info.run_id)}
