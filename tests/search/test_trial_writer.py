"""The driver's one MLflow writer against a real SQLite tracking store, fed the reports trials make
(trainables/protocol.py), as Tune would hand them to the driver."""

import json
import time

from mlflow.tracking import MlflowClient

from search.tracking import TrialWriter
from trainables.protocol import closing, failure, opening

CONFIG = {"_study": {"base": {"data.dataset": "digits", "model.name": "small_cnn", "optim.lr": 0.05},
                     "seeds": [1, 2]}}
BINS = {"edges": [0.0, 0.5, 1.0], "accuracy": [0.2, 0.9], "confidence": [0.3, 0.8], "count": [3, 7]}


def _report(epoch):
    return {"epoch": float(epoch), "val_error": 50.0 / epoch, "train_loss": 1.0 / epoch}


def _steps(c, run_id, key):
    return sorted(int(m.step) for m in c.get_metric_history(run_id, key))


def _attempt(writer, trial_id, epochs, resumed=False, restored=(), last=None, node="node-a"):
    """One attempt of a trial: its reports as Tune hands them over (metrics plus the protocol's keys, and Tune's own
    fields); returns the last one."""
    extra = opening(node, resumed, list(restored))
    for e in epochs:
        metrics = _report(e)
        if e == last:
            metrics.update(closing({"reliability_val": BINS, "reliability_test": BINS}))
        result = {**metrics, **extra, "training_iteration": e, "time_this_iter_s": 0.5, "node_ip": "127.0.0.1",
                  "hostname": "here"}
        extra = {}
        writer.report(trial_id, f"trial_{trial_id}", CONFIG, result)
    return result


def test_driver_writes_every_trial_and_sets_their_statuses(tmp_path, local_study):
    tracking = local_study("written-by-driver")
    uri = tracking.uri
    writer = TrialWriter(tracking)

    started = time.time() - 60  # Tune started the trial a minute before its first report
    writer.started("done", started)
    _attempt(writer, "done", [1, 2, 3], last=3)
    writer.end("done", "trial_done", "FINISHED")
    _attempt(writer, "pruned", [1])
    writer.end("pruned", "trial_pruned", "KILLED", {"pruned": "true"})
    # a retried trial: the second attempt restarts on another node from the checkpoint of epoch 2 and sends what it
    # restored
    _attempt(writer, "retried", [1, 2])
    _attempt(writer, "retried", [3], resumed=True, restored=[_report(1), _report(2)], last=3, node="node-b")
    writer.end("retried", "trial_retried", "FINISHED")
    failed = {**failure(1, "non-finite loss", "loss is nan at step 3", "val_error"), **opening("node-a", False, [])}
    writer.report("failed", "trial_failed", CONFIG, failed)
    writer.end("failed", "trial_failed", "FAILED", {"error": "non-finite loss"})
    writer.end("forgotten", "trial_forgotten", "FAILED", {"error": "worker died"})  # never reported

    assert writer.drain(deadline_s=30) == {"done": 0, "pruned": 0, "retried": 0, "failed": 0}
    c = MlflowClient(tracking_uri=uri)
    kids = {r.data.tags["ray.trial_id"]: r for r in tracking.children()}
    assert sorted(kids) == ["done", "failed", "forgotten", "pruned", "retried"]  # one run per trial
    assert {t: k.info.status for t, k in kids.items()} == {
        "done": "FINISHED", "pruned": "KILLED", "retried": "FINISHED", "failed": "FAILED", "forgotten": "FAILED"}
    for t in ("done", "pruned", "retried", "failed"):
        assert kids[t].data.tags["mlflow_writer"] == "driver" and kids[t].data.tags["study"] == "written-by-driver"
        assert kids[t].data.params["data.dataset"] == "digits" and kids[t].data.params["seeds"] == "[1, 2]"
    for t, epochs in (("done", [1, 2, 3]), ("pruned", [1]), ("retried", [1, 2, 3]), ("failed", [])):
        for key in ("epoch", "val_error", "train_loss"):  # exactly one value per epoch; nothing of Tune's own
            assert _steps(c, kids[t].info.run_id, key) == epochs, (t, key)
        assert "training_iteration" not in kids[t].data.metrics and "time_this_iter_s" not in kids[t].data.metrics
    assert kids["retried"].data.tags["resumed"] == "True" and kids["done"].data.tags["resumed"] == "False"
    assert kids["retried"].data.tags["ray.node_id"] == "node-b" and kids["done"].data.tags["ray.node_id"] == "node-a"
    assert kids["pruned"].data.tags["pruned"] == "true"
    assert kids["done"].info.start_time == int(started * 1000)  # the run's duration is the trial's, in the UI
    assert kids["pruned"].info.start_time > int(started * 1000)  # (no start known: created at its first report)
    assert kids["failed"].data.tags["failure"] == "non-finite loss"
    assert kids["failed"].data.tags["error"] == "non-finite loss"  # the final status's tags come last
    for t in ("done", "retried"):
        assert {"config.json", "final_metrics.json", "reliability.png"} <= {
            a.path for a in c.list_artifacts(kids[t].info.run_id)}
    config = json.loads(open(c.download_artifacts(kids["done"].info.run_id, "config.json",
                                                  str(tmp_path))).read())
    assert config["optim.lr"] == 0.05 and config["seed"] == 1  # the first seed's resolved config
    assert not c.list_artifacts(kids["pruned"].info.run_id)


def test_resume_sets_the_status_a_killed_driver_did_not(tmp_path, local_study):
    """Ray's snapshot may record a trial's end before the driver's writer set the child's status, and then the driver
    dies (SIGKILL): Ray will not end the trial again, so `--resume` sets the status from the trial's last report."""
    from search.resume import reconcile
    tracking = local_study("killed-writer")
    uri = tracking.uri
    c = MlflowClient(tracking_uri=uri)
    study_dir = tmp_path / "killed-writer"
    (study_dir / ".").mkdir()
    (study_dir / "study.json").write_text(json.dumps({"name": "killed-writer", "epochs": 3}))
    ended = {"done": 3, "pruned": 1, "running": 2}
    for tid, epochs in ended.items():
        c.create_run(tracking.experiment_id, tags={"mlflow.parentRunId": tracking.parent_run_id,
                                                   "ray.trial_id": tid})
        (study_dir / f"trial_{tid}").mkdir()
        (study_dir / f"trial_{tid}" / "result.json").write_text(
            "".join(json.dumps({**_report(e), "trial_id": tid}) + "\n" for e in range(1, epochs + 1)))
    status = {"done": "TERMINATED", "pruned": "TERMINATED", "running": "RUNNING"}
    (study_dir / "experiment_state-2026-12-02_00-00-00.json").write_text(json.dumps(
        {"trial_data": [[json.dumps({"trial_id": t, "status": s}), "{}"] for t, s in status.items()]}))
    done = reconcile(study_dir, "killed-writer", tracking, out=lambda s: None)
    assert sorted(done["closed"]) == ["done", "pruned"]
    kids = {r.data.tags["ray.trial_id"]: r for r in tracking.children()}
    assert {t: k.info.status for t, k in kids.items()} == {"done": "FINISHED", "pruned": "KILLED",
                                                          "running": "RUNNING"}  # Ray resumes that one
    assert kids["pruned"].data.tags["pruned"] == "true"
