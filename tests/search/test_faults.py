"""Fault tolerance, end to end with real Ray, Optuna, MLflow and training on digits (issue 8).

- a trial that crashes is retried from its last checkpoint and completes, no epoch logged twice;
- a trial whose loss turns NaN stops at once, FAILED in MLflow and FAIL in Optuna, and the study goes on;
- the driver killed with SIGKILL mid-study, then `--resume`: exactly num_samples trials, the journal holds them all,
  one MLflow child per trial and none left RUNNING;
- the MLflow server killed mid-study and restarted on the same port and database: no trial dies, every metric
  ends up in MLflow;
- security: the local Ray listens on 127.0.0.1 only, the MLflow servers we start too, every torch.load is
  weights_only=True.

Every test stops what it started (Ray processes by PID, servers by process group).
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from search.searchers import RAY_TRIAL_ATTR, load_study, make_optuna_search
from search.store import HTTP_DEFAULTS
from search.tracking import StudyTracking
from spaces import get_space
from tests.search.conftest import ROOT, run_cli
from tests.search.faults import (
    RUN,
    MlflowServer,
    alive,
    cli_env,
    descendants,
    is_loopback,
    listening,
    results,
    start_cli,
    stop_cli,
    trial_dirs,
    wait_for,
)

pytestmark = pytest.mark.slow


def _children(uri: str, study: str):
    c = MlflowClient(tracking_uri=uri)
    exp = c.get_experiment_by_name("aikd-search")
    parents = c.search_runs([exp.experiment_id], filter_string=f"tags.study = '{study}' and tags.role = 'study'")
    assert len(parents) == 1
    kids = c.search_runs([exp.experiment_id],
                         filter_string=f"tags.`mlflow.parentRunId` = '{parents[0].info.run_id}'")
    return c, parents[0], kids


def _steps(c, run_id: str, key: str) -> list[int]:
    return sorted(int(m.step) for m in c.get_metric_history(run_id, key))


# ---- the searcher against a stale Ray snapshot (no Ray needed) ---------------------------------------------------

def test_searcher_restored_from_a_stale_snapshot_follows_the_journal(tmp_path):
    """The SIGKILL trap in miniature: Ray restores the searcher from its last snapshot, the journal moved on."""
    space, journal = get_space("aikd_ablation"), tmp_path / "optuna.journal"
    first = make_optuna_search(space, "tpe", 0, "st", journal, max_epochs=3, num_samples=4)
    cfg_a, _ = first.suggest("a"), first.suggest("b")
    first.on_trial_result("a", {"val_error": 30.0, "epoch": 1})
    snap = tmp_path / "snap"
    snap.mkdir()
    first.save_to_dir(str(snap))  # Ray's snapshot: trials a and b, both running
    for e in (2, 3):  # after the snapshot: a finishes and c is asked; then the driver is killed
        first.on_trial_result("a", {"val_error": 30.0 - e, "epoch": e})
    first.on_trial_complete("a", {"val_error": 27.0, "epoch": 3})
    cfg_c = first.suggest("c")

    restored = make_optuna_search(space, "tpe", 0, "st", journal, max_epochs=3, num_samples=4)
    restored.restore_from_dir(str(snap))
    # Ray reruns a from its snapshot checkpoint: Ray's stock searcher would report to a finished trial
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        restored._ot_trials["a"].report(28.0, 2)
    restored.on_trial_result("a", {"val_error": 28.0, "epoch": 2})  # ours: ignored, the journal has the truth
    restored.on_trial_complete("a", {"val_error": 26.0, "epoch": 3})
    assert load_study("st", journal).trials[0].value == 27.0
    # Ray forgot c: the next new trial takes c's Optuna trial and parameters instead of asking another
    assert restored.suggest("d") == cfg_c
    cfg_e = restored.suggest("e")
    assert cfg_e not in (cfg_a, cfg_c)  # the restored sampler was reseeded: no replayed draw
    assert restored.suggest("f") == "FINISHED"  # the journal holds num_samples trials: none is asked beyond
    for tid in ("b", "d", "e"):
        restored.on_trial_complete(tid, {"val_error": 20.0, "epoch": 3})
    trials = load_study("st", journal).trials
    assert len(trials) == 4 and all(t.state == TrialState.COMPLETE for t in trials)
    assert [t.user_attrs[RAY_TRIAL_ATTR] for t in trials] == ["a", "b", "d", "e"]


# ---- a trial that finished after Ray's last snapshot: its logs are rebuilt from its checkpoint ----------------------

def test_finished_trial_logs_rebuilt_from_its_checkpoint(tmp_path):
    """The driver copies params.json / result.json to the study folder only with its snapshots; a SIGKILL can leave a
    finished trial with its checkpoints (uploaded by the worker at once) but without those logs."""
    import numpy as np
    import optuna

    from aikd.config import TrainConfig
    from aikd.train import Trainer
    from search.report import collect_rows
    from search.resume import restore_trial_logs
    from search.searchers import SpaceSuggester
    from trainables.checkpoints import save_checkpoint_state
    from trainables.protocol import REBUILT_KEY

    space = get_space("aikd_ablation")
    study = optuna.create_study()
    ot = study.ask()
    config = SpaceSuggester(space)(ot)
    study.tell(ot, 3.0)
    frozen = study.trials[0]
    base = {"data.dataset": "digits", "model.name": "small_cnn", "epochs": 2, "method.name": "baseline"}
    seeds = [1, 2]
    trainers = [Trainer(TrainConfig.from_dict({**base, "seed": s}).resolved()) for s in seeds]
    for _ in range(2):
        for t in trainers:
            t.train_epoch()
    trial_dir = tmp_path / "trial_abc123"
    (trial_dir / "checkpoint_000001").mkdir(parents=True)
    save_checkpoint_state(trial_dir / "checkpoint_000001", trainers, seeds)
    # Ray had copied the first epoch's line, then the driver was killed
    (trial_dir / "result.json").write_text(json.dumps({"epoch": 1, "val_error": 99.0, "trial_id": "abc123"}) + "\n")

    added = restore_trial_logs(trial_dir, frozen, {"base": base, "name": "killed"}, space)
    assert added == 1
    params = json.loads((trial_dir / "params.json").read_text())
    assert params["_study"]["seeds"] == seeds and params["_study"]["base"] == base
    assert {k: params[k] for k in config} == config  # the very configuration Optuna proposed
    rows = [json.loads(x) for x in (trial_dir / "result.json").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and rows[0]["val_error"] == 99.0  # Ray's line kept as it was
    vals = [t.history[1]["val_error"] for t in trainers]
    assert rows[1]["val_error"] == pytest.approx(sum(vals) / 2)
    assert rows[1]["val_error_std"] == pytest.approx(abs(vals[0] - vals[1]) / np.sqrt(2))  # sample std of two
    # the writer that would have logged epoch 2 died with the driver: the rebuilt line says where it came from, and
    # settle() of the resumed study, whose writer never closed this trial, checks its child run
    assert rows[1][REBUILT_KEY] == "checkpoint_000001" and REBUILT_KEY not in rows[0]
    assert restore_trial_logs(trial_dir, frozen, {"base": base, "name": "killed"}, space) == 0  # idempotent
    (row,) = collect_rows(tmp_path, epochs=2)
    assert row["outcome"] == "done" and row["seeds"] == seeds and row["epochs"] == 2


def test_trial_logs_rebuilt_from_the_newest_complete_checkpoint(tmp_path):
    """A newer checkpoint folder whose write the kill cut short (only `state.pt.part`) is passed over: the logs come
    from the complete one before it."""
    import optuna

    from aikd.config import TrainConfig
    from aikd.train import Trainer
    from search.resume import restore_trial_logs
    from search.searchers import SpaceSuggester
    from trainables.checkpoints import save_checkpoint_state
    from trainables.protocol import REBUILT_KEY, STATE_FILE

    space = get_space("aikd_ablation")
    study = optuna.create_study()
    ot = study.ask()
    SpaceSuggester(space)(ot)
    study.tell(ot, 3.0)
    base = {"data.dataset": "digits", "model.name": "small_cnn", "epochs": 2, "method.name": "baseline"}
    trainer = Trainer(TrainConfig.from_dict({**base, "seed": 0}).resolved())
    trainer.train_epoch()
    trial_dir = tmp_path / "trial_def456"
    save_checkpoint_state(trial_dir / "checkpoint_000000", [trainer], [0])
    (trial_dir / "checkpoint_000001").mkdir()
    (trial_dir / "checkpoint_000001" / (STATE_FILE + ".part")).write_bytes(b"cut")
    assert restore_trial_logs(trial_dir, study.trials[0], {"base": base, "name": "killed"}, space) == 1
    rows = [json.loads(x) for x in (trial_dir / "result.json").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1] and rows[0][REBUILT_KEY] == "checkpoint_000000"
    assert rows[0]["val_error"] == pytest.approx(trainer.history[0]["val_error"])


# ---- a crashed trial is retried from its checkpoint; a NaN trial fails alone -----------------------------------

FAULT_SAMPLES, FAULT_EPOCHS = 2, 3


@pytest.fixture(scope="module")
def fault_study(tmp_path_factory, teacher_root):
    """Two trials at once, no early stopping: the one that claims the NaN marker first diverges in epoch 0 (the
    marker is created atomically), the other crashes once at the end of epoch index 1 (crash_marker) and is retried
    from its checkpoint (--max-failures 2)."""
    d = tmp_path_factory.mktemp("faults")
    uri = f"sqlite:///{d}/mlflow.db"
    out = run_cli([RUN, "--space", "aikd_ablation", "--dataset", "digits", "--model", "small_cnn",
                   "--num-samples", str(FAULT_SAMPLES), "--max-epochs", str(FAULT_EPOCHS), "--scheduler", "none",
                   "--max-concurrent", "2", "--max-failures", "2", "--storage", str(d / "studies"), "--name", "faults",
                   "--mlflow-uri", uri, "--set", f"teacher.root={teacher_root}",
                   "--set", "debug.crash_at_epoch=1", "--set", f"debug.crash_marker={d / 'crashed'}",
                   "--set", "debug.nan_at_epoch=0", "--set", f"debug.nan_marker={d / 'diverged'}"], cwd=d)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    study_dir = d / "studies" / "faults"
    trials = {p.name[len("trial_"):]: results(p) for p in trial_dirs(study_dir)}
    c, parent, kids = _children(uri, "faults")
    return {"dir": d, "study_dir": study_dir, "trials": trials, "client": c, "parent": parent, "kids": kids,
            "stdout": out.stdout}


def test_crashed_trial_continues_from_its_checkpoint(fault_study):
    assert (fault_study["dir"] / "crashed").exists()  # the crash did happen
    restored = {tid: res for tid, res in fault_study["trials"].items()
                if any(r.get("iterations_since_restore") != r.get("training_iteration") for r in res)}
    assert len(restored) == 1, {t: [(r["epoch"], r.get("iterations_since_restore")) for r in res]
                                for t, res in fault_study["trials"].items()}
    (tid, res), = restored.items()
    # epoch 1 was checkpointed before the crash: the retry starts at epoch 2, epoch 1 is not trained again.
    # (On a retry Ray copies result.json back from storage, so the first attempt's line is missing there when the
    # driver had not synced it yet; MLflow below holds every epoch.)
    epochs, since_restore = [int(r["epoch"]) for r in res], [r["iterations_since_restore"] for r in res]
    assert epochs in ([1, 2, 3], [2, 3]), epochs
    assert epochs[-2:] == [2, 3] and since_restore[-2:] == [1, 2]
    assert [r["training_iteration"] for r in res][-2:] == [2, 3]  # Ray counts the epoch from the checkpoint
    kid = next(k for k in fault_study["kids"] if k.data.tags["ray.trial_id"] == tid)
    assert kid.info.status == "FINISHED" and kid.data.tags["resumed"] == "True"
    c = fault_study["client"]
    for key in ("epoch", "val_error", "train_loss", "test_error"):  # exactly one value per epoch
        assert _steps(c, kid.info.run_id, key) == list(range(1, FAULT_EPOCHS + 1)), key


def test_nan_trial_stops_at_once_and_the_study_goes_on(fault_study):
    assert (fault_study["dir"] / "diverged").exists()
    failed = {tid: res for tid, res in fault_study["trials"].items() if res and res[-1].get("failure")}
    assert len(failed) == 1
    (tid, res), = failed.items()
    assert len(res) == 1 and res[0]["failure"] == "non-finite loss" and int(res[0]["epoch"]) == 1  # at once
    others = [r for t, r in fault_study["trials"].items() if t != tid]
    assert len(others) == FAULT_SAMPLES - 1 and all(int(r[-1]["epoch"]) == FAULT_EPOCHS for r in others)
    kids = {k.data.tags["ray.trial_id"]: k for k in fault_study["kids"]}
    assert len(kids) == FAULT_SAMPLES and len(fault_study["kids"]) == FAULT_SAMPLES  # one child per trial
    assert kids[tid].info.status == "FAILED" and kids[tid].data.tags["failure"] == "non-finite loss"
    assert "non-finite loss" in kids[tid].data.tags["error"]
    assert {k.info.status for t, k in kids.items() if t != tid} == {"FINISHED"}
    study = load_study("faults", fault_study["study_dir"] / "optuna.journal")
    by_ray = {t.user_attrs[RAY_TRIAL_ATTR]: t for t in study.trials}
    assert by_ray[tid].state == TrialState.FAIL
    assert sorted(t.state.name for t in study.trials) == ["COMPLETE", "FAIL"]
    assert fault_study["parent"].info.status == "FINISHED"
    assert "1 done, 0 pruned, 1 failed" in fault_study["stdout"]


# ---- the driver killed with SIGKILL, then --resume -----------------------------------------------------------------

KILL_SAMPLES, KILL_EPOCHS = 4, 3  # four: the kill must land before the last trial ends (workers are reused)


def test_driver_sigkill_then_resume(tmp_path, teacher_root):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    storage, name = tmp_path / "studies", "killed"
    study_dir, journal = storage / name, storage / name / "optuna.journal"
    p = start_cli(["--space", "aikd_ablation", "--dataset", "digits", "--model", "small_cnn", "--num-samples",
                   str(KILL_SAMPLES), "--max-epochs", str(KILL_EPOCHS), "--max-concurrent", "2", "--storage",
                   str(storage), "--name", name, "--mlflow-uri", uri, "--set", f"teacher.root={teacher_root}"],
                  tmp_path, tmp_path / "first.log")
    procs: dict[int, int] = {}  # every process the driver started (Ray's included), recorded while it runs

    def some_trial_finished():
        procs.update(descendants(p.pid))
        try:
            return any(t.state.is_finished() for t in load_study(name, journal).trials)
        except Exception:  # no journal or study yet
            return False
    try:
        wait_for(some_trial_finished, 400, "a finished trial in the journal", proc=p)
        procs.update(descendants(p.pid))
        os.killpg(p.pid, signal.SIGKILL)
        p.wait(timeout=30)
    finally:
        stop_cli(p, procs)
    assert not alive(procs)
    before = load_study(name, journal).trials
    assert len(before) < KILL_SAMPLES or not all(t.state.is_finished() for t in before)

    out = run_cli([RUN, "--resume", "--name", name, "--storage", str(storage)], cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    # exactly num_samples trials, everywhere
    trials = load_study(name, journal).trials
    assert len(trials) == KILL_SAMPLES and all(t.state.is_finished() for t in trials)
    assert [t.number for t in trials] == list(range(KILL_SAMPLES))
    for old, new in zip(before, trials):  # history kept, not redone (a trial killed mid-ask gets the rest)
        assert old.params.items() <= new.params.items()
    dirs = trial_dirs(study_dir)
    assert len(dirs) == KILL_SAMPLES
    assert {d.name[len("trial_"):] for d in dirs} == {t.user_attrs[RAY_TRIAL_ATTR] for t in trials}
    rows = (study_dir / "report" / "leaderboard.csv").read_text().strip().splitlines()
    assert len(rows) == KILL_SAMPLES + 1
    c, parent, kids = _children(uri, name)
    assert len(kids) == KILL_SAMPLES
    assert {k.data.tags["ray.trial_id"] for k in kids} == {d.name[len("trial_"):] for d in dirs}
    assert all(k.info.status != "RUNNING" for k in kids) and parent.info.status == "FINISHED"
    assert parent.data.tags.get("resumed") == "true"
    for k in kids:  # no epoch logged twice, even for trials rerun from an older checkpoint
        steps = _steps(c, k.info.run_id, "epoch")
        assert steps == sorted(set(steps)) and steps[0] == 1, (k.data.tags["ray.trial_id"], steps)


# ---- the MLflow server goes down mid-study and comes back ----------------------------------------------------------

@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    server = MlflowServer(tmp_path_factory.mktemp("mlflow_outage"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_mlflow_server_we_start_listens_on_loopback(mlflow_server):
    pids = descendants(mlflow_server.proc.pid)
    socks = [s for pid in pids for s in listening(pid)]
    assert socks and all(is_loopback(addr) for addr, _ in socks), socks


OUTAGE_SAMPLES, OUTAGE_EPOCHS = 2, 4


def test_mlflow_outage_mid_study(mlflow_server, tmp_path, teacher_root, monkeypatch):
    storage, name = tmp_path / "studies", "outage"
    journal = storage / name / "optuna.journal"
    p = start_cli(["--space", "aikd_ablation", "--dataset", "digits", "--model", "small_cnn", "--num-samples",
                   str(OUTAGE_SAMPLES), "--max-epochs", str(OUTAGE_EPOCHS), "--scheduler", "none",
                   "--max-concurrent", "2", "--storage", str(storage), "--name", name,
                   "--mlflow-uri", mlflow_server.url, "--set", f"teacher.root={teacher_root}"],
                  tmp_path, tmp_path / "run.log",
                  # every report its own request, so that the outage meets requests (not batches held past it)
                  env={"AIKD_MLFLOW_FLUSH_S": "0"})
    procs: dict[int, int] = {}

    def some_epoch_reported():
        procs.update(descendants(p.pid))
        try:
            return any(t.intermediate_values for t in load_study(name, journal).trials)
        except Exception:
            return False
    try:
        wait_for(some_epoch_reported, 400, "a first epoch", proc=p)
        # the driver side, in this process (its env changes are undone by monkeypatch): a status update that
        # meets the outage is kept, then sent when the server is back
        for k in HTTP_DEFAULTS:
            monkeypatch.setenv(k, os.environ.get(k, HTTP_DEFAULTS[k]))
        driver = StudyTracking(mlflow_server.url, "outage-driver")
        driver.start_parent({}, {})
        mlflow_server.stop()  # the whole process group, SIGKILL: an outage, not a shutdown
        down = time.time()
        assert driver.set_trial_status("t0", "t0", "FINISHED") is False and len(driver.deferred) == 1
        time.sleep(max(0.0, 6 - (time.time() - down)))  # trials keep training while the server is gone
        mlflow_server.start()  # same port, same database
        up = time.time()
        outage_s = up - down
        assert p.wait(timeout=500) == 0, (tmp_path / "run.log").read_text()[-4000:]
    finally:
        stop_cli(p, procs)
    log = (tmp_path / "run.log").read_text()
    # the outage really hit the trials: they reported epochs while the server was down (each report is a request
    # at once here).
    res = {d.name[len("trial_"):]: results(d) for d in trial_dirs(storage / name)}
    assert any(down - 1 <= r["timestamp"] <= up + 1 for rs in res.values() for r in rs), f"outage {outage_s:.0f}s"
    # ... and no trial died for it
    assert len(res) == OUTAGE_SAMPLES and all(int(rs[-1]["epoch"]) == OUTAGE_EPOCHS for rs in res.values())
    assert not any((d / "error.txt").exists() for d in trial_dirs(storage / name))
    assert f"trials: {OUTAGE_SAMPLES} done, 0 pruned, 0 failed" in log
    c, parent, kids = _children(mlflow_server.url, name)
    assert parent.info.status == "FINISHED" and len(kids) == OUTAGE_SAMPLES
    assert {k.info.status for k in kids} == {"FINISHED"}
    for k in kids:  # the metrics missed during the outage were filled in: every epoch, once
        for key in ("epoch", "val_error", "test_ece"):
            assert _steps(c, k.info.run_id, key) == list(range(1, OUTAGE_EPOCHS + 1)), (k.info.run_id, key)
        assert {"config.json", "final_metrics.json", "reliability.png"} <= {a.path for a in
                                                                             c.list_artifacts(k.info.run_id)}
    missed = [ln for ln in log.splitlines() if ln.startswith("MLflow: still missing")]
    assert not missed, missed
    assert driver.flush_deferred(deadline_s=60) and not driver.deferred
    assert driver.child_of("t0").info.status == "FINISHED"


def test_settle_fills_in_what_the_writer_could_not_send(tmp_path, local_study):
    """A trial whose run the writer closed while the server was down (it says how many values MLflow missed): the
    driver fills in those epochs from its result.json and the summary says what is still missing. A trial no
    writer closed (a killed driver's) is looked up and caught up."""
    tracking = local_study("gap")
    uri = tracking.uri
    c = MlflowClient(tracking_uri=uri)
    run = c.create_run(tracking.experiment_id, tags={"mlflow.parentRunId": tracking.parent_run_id,
                                                     "ray.trial_id": "t1"})
    c.log_metric(run.info.run_id, "epoch", 1.0, step=1)
    c.log_metric(run.info.run_id, "val_error", 30.0, step=1)
    trial = tmp_path / "gap" / "trial_t1"
    trial.mkdir(parents=True)
    lines = [{"epoch": 1.0, "val_error": 30.0, "trial_id": "t1", "timestamp": 1},
             {"epoch": 2.0, "val_error": 20.0, "trial_id": "t1", "timestamp": 2, "config": {"x": 1}, "pid": 7,
              "trial_tags": "{}"}]
    (trial / "result.json").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    # t2: the driver was killed before its writer sent the last two epochs; the server was up
    run2 = c.create_run(tracking.experiment_id, tags={"mlflow.parentRunId": tracking.parent_run_id,
                                                      "ray.trial_id": "t2"})
    c.log_metric(run2.info.run_id, "epoch", 1.0, step=1)
    lines2 = [{"epoch": e, "val_error": 40.0 - e, "trial_id": "t2", "timestamp": e, "trial_open": "{}"}
              for e in (1.0, 2.0, 3.0)]
    (tmp_path / "gap" / "trial_t2").mkdir()
    (tmp_path / "gap" / "trial_t2" / "result.json").write_text("\n".join(json.dumps(x) for x in lines2) + "\n")
    said = []
    summary = tracking.settle(tmp_path / "gap", out=said.append, closed={"t1": 3})
    assert summary["filled"] == {"t1": 2} and summary["lacking"] == {"t1": 1}
    assert summary["caught_up"] == {"t2": 4}  # epochs 2 and 3, two values each
    assert _steps(c, run2.info.run_id, "val_error") == [2, 3] and _steps(c, run2.info.run_id, "epoch") == [1, 2, 3]
    assert "trial_open" not in c.get_run(run2.info.run_id).data.metrics
    assert any("filled in 4 metric values of 1 trials that no writer had sent" in s for s in said)
    assert _steps(c, run.info.run_id, "epoch") == [1, 2] and _steps(c, run.info.run_id, "val_error") == [1, 2]
    assert "pid" not in c.get_run(run.info.run_id).data.metrics  # only what the trainable logs
    assert any("filled in 2 metric values of 1 trials" in s for s in said)
    assert any(s.startswith("MLflow: still missing") and "t1 (1)" in s for s in said)


def test_settle_trusts_the_writers_count_over_the_last_report(tmp_path, local_study):
    """The count the writer returns when the driver drains it decides, per trial, whether to fill in from
    result.json."""
    tracking = local_study("drained")
    uri = tracking.uri
    c = MlflowClient(tracking_uri=uri)
    runs = {}
    for tid in ("missed", "written"):
        runs[tid] = c.create_run(tracking.experiment_id, tags={"mlflow.parentRunId": tracking.parent_run_id,
                                                               "ray.trial_id": tid}).info.run_id
        c.log_metric(runs[tid], "epoch", 1.0, step=1)
        lines = [{"epoch": e, "val_error": 40.0 - e, "trial_id": tid, "timestamp": e} for e in (1.0, 2.0)]
        (tmp_path / "drained" / f"trial_{tid}").mkdir(parents=True)
        (tmp_path / "drained" / f"trial_{tid}" / "result.json").write_text(
            "\n".join(json.dumps(x) for x in lines) + "\n")
    summary = tracking.settle(tmp_path / "drained", out=lambda s: None, closed={"missed": 2, "written": 0})
    assert summary["filled"] == {"missed": 2} and not summary["lacking"] and not summary["caught_up"]
    assert _steps(c, runs["missed"], "val_error") == [2]
    assert _steps(c, runs["written"], "epoch") == [1]  # the writer said it wrote everything: nothing looked up


# ---- security -----------------------------------------------------------------------------------------------------

PROBE_RAY = r"""
import json, os, sys
from search.cluster import connect
from search.plan import parse_args
from tests.search.faults import descendants, listening
ray = connect(parse_args(["--num-cpus", "1"]))
gcs = ray.get_runtime_context().gcs_address
socks = {pid: listening(pid) for pid in descendants(os.getpid()) if pid != os.getpid()}
node = ray.nodes()[0]["NodeManagerAddress"]
ray.shutdown()
print(json.dumps({"gcs": gcs, "node": node, "socks": socks}))
"""


def test_local_ray_listens_on_loopback_only(tmp_path):
    out = subprocess.run([sys.executable, "-c", PROBE_RAY], capture_output=True, text=True, cwd=tmp_path,
                         env=cli_env(), timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert info["gcs"].startswith("127.0.0.1:") and info["node"] == "127.0.0.1", info
    socks = [s for v in info["socks"].values() for s in v]
    assert socks, info  # GCS and raylet do listen ...
    assert all(is_loopback(addr) for addr, _ in socks), socks  # ... on 127.0.0.1 only


CODE_DIRS = ("aikd", "search", "trainables", "spaces", "scripts", "benchmarks", "tests")


def _code_files():
    for d in CODE_DIRS:
        yield from sorted((ROOT / d).rglob("*.py")) if (ROOT / d).exists() else ()
        yield from sorted((ROOT / d).rglob("*.sh")) if (ROOT / d).exists() else ()


def test_every_torch_load_is_weights_only():
    calls = []
    for f in _code_files():
        text = f.read_text()
        for m in re.finditer(r"torch\.load\(", text):
            depth, i = 1, m.end()
            while depth and i < len(text):  # the call's full argument list, across lines
                depth += {"(": 1, ")": -1}.get(text[i], 0)
                i += 1
            calls.append((f.relative_to(ROOT), text[m.start():i]))
    assert calls  # checkpoints, teachers and the report all load weights
    unsafe = [(str(f), call) for f, call in calls if "weights_only=True" not in call]
    assert not unsafe, unsafe


def test_mlflow_servers_we_start_bind_loopback():
    """Every `mlflow server` / `mlflow ui` our code or tests start names --host 127.0.0.1 (or leaves MLflow's own
    default, 127.0.0.1), never all interfaces."""
    starts = []
    for f in _code_files():
        text = f.read_text()
        if "mlflow" not in text or f == Path(__file__):
            continue
        for m in re.finditer(r"""mlflow["']?,?\s*["']?(server|ui)\b|["'](server|ui)["'],\s*["']--host""", text):
            window = text[m.start():m.start() + 400]
            starts.append((str(f.relative_to(ROOT)), window))
            assert "0.0.0.0" not in window, (f, window)
            if "--host" in window:
                assert re.search(r"""--host["']?,?\s*["']?127\.0\.0\.1""", window), (f, window)
    assert any(f == "search/store.py" for f, _ in starts)  # the checker does see our servers (start_server)
