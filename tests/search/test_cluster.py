"""Multi-node studies on a real Ray cluster: `ray.cluster_utils.Cluster` starts a head and worker nodes (1 CPU
each) in this process; the driver is `search/run.py --address ...` in a subprocess, as on a real cluster.

- trials run on both nodes and the phase-1 teacher is trained once and used on both;
- `--address` joins the cluster (host:port, auto); a --storage that another node cannot see fails fast, before any
  trial (the node's view is changed with the documented test hook AIKD_STORAGE_PROBE_HIDE, see search/cluster.py);
- a worker node removed mid-study: its trial is rescheduled on the head node and the study completes.

On this single machine every node shares the disk, the teacher store and the MLflow SQLite file.
"""

import os
import time

import pytest
from mlflow.tracking import MlflowClient
from ray.cluster_utils import Cluster

from search.cluster import PROBE_HIDE_ENV
from search.store import free_port
from tests.search.conftest import run_cli
from tests.search.faults import RUN, descendants, kill_recorded, results, start_cli, stop_cli, trial_dirs, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster():
    """Head + one worker node, 1 CPU each; every process they started is gone afterwards."""
    before = set(descendants(os.getpid()))
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    c.add_node(num_cpus=1)
    c.wait_for_nodes()
    try:
        yield c
    finally:
        started = {pid: t for pid, t in descendants(os.getpid()).items() if pid not in before and pid != os.getpid()}
        try:
            c.shutdown()
        finally:
            kill_recorded(started)  # anything Cluster.shutdown left behind (workers of removed raylets)


def _study_args(storage, name, *extra):
    return ["--space", "aikd_ablation", "--dataset", "digits", "--model", "small_cnn", "--storage", str(storage),
            "--name", name, *extra]


def _kids(uri, study):
    c = MlflowClient(tracking_uri=uri)
    exp = c.get_experiment_by_name("aikd-search")
    parent = c.search_runs([exp.experiment_id], filter_string=f"tags.study = '{study}' and tags.role = 'study'")[0]
    return c, parent, c.search_runs([exp.experiment_id],
                                    filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")


def test_study_runs_on_both_nodes_with_one_teacher(cluster, tmp_path):
    teachers = tmp_path / "teachers"  # empty: the teacher is trained in this study, on the cluster
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    # one trial per node: both placement groups are staged at once (the head holds one trial), and with
    # --no-reuse-actors a trial that finishes early cannot hand its worker on the head to the other trial before
    # that trial's worker has started on the second node (seen in CI once MLflow no longer slowed the trials)
    out = run_cli([RUN, *_study_args(tmp_path / "studies", "multi", "--num-samples", "2", "--max-epochs", "4",
                                     "--scheduler", "none", "--address", cluster.address, "--mlflow-uri", uri,
                                     "--no-reuse-actors", "--set", f"teacher.root={teachers}")], cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "ray address " + cluster.address in out.stdout  # joined the cluster, did not start its own Ray
    c, parent, kids = _kids(uri, "multi")
    assert len(kids) == 2 and {k.info.status for k in kids} == {"FINISHED"}
    nodes = {k.data.tags["ray.node_id"] for k in kids}
    cluster_nodes = {n.node_id for n in cluster.list_all_nodes()}
    assert nodes == cluster_nodes and len(nodes) == 2, (nodes, cluster_nodes)
    assert {k.data.tags["mlflow_writer"] for k in kids} == {"driver"}  # one writer, for the trials of both nodes
    # the phase-1 teacher: trained once (one log line, one file), never rewritten by a trial on either node
    assert out.stdout.count("phase-1 teacher: training") == 1
    stored = sorted(teachers.glob("*.pt"))
    assert len(stored) == 1
    trained_at = stored[0].stat().st_mtime
    starts = [r[0]["timestamp"] - r[0]["time_this_iter_s"] for r in map(results, trial_dirs(tmp_path / "studies" /
                                                                                          "multi"))]
    assert len(starts) == 2 and trained_at <= min(starts) + 1  # timestamps are whole seconds


@pytest.mark.parametrize("form", ["host:port", "auto"])
def test_storage_not_shared_fails_fast(cluster, tmp_path, form):
    """A node that does not see --storage: exit 2 with one clear line, before any trial or MLflow run."""
    hidden = cluster.add_node(num_cpus=1, env_vars={PROBE_HIDE_ENV: "1"})
    try:
        cluster.wait_for_nodes()
        address, env = (cluster.address, {}) if form == "host:port" else ("auto", {"RAY_ADDRESS": cluster.address})
        t0 = time.time()
        out = run_cli([RUN, *_study_args(tmp_path / "studies", "blind", "--num-samples", "2", "--max-epochs", "1",
                                         "--address", address, "--mlflow-uri", f"sqlite:///{tmp_path}/mlflow.db")],
                      cwd=tmp_path, env=env)
        took = time.time() - t0
    finally:
        cluster.remove_node(hidden)
    assert out.returncode == 2, out.stdout[-2000:] + out.stderr[-2000:]
    err = out.stderr.strip().splitlines()[-1]
    assert err.startswith("error: --storage") and "not visible from 1 of 3 Ray nodes" in err, err
    assert hidden.node_id[:12] in err and "shared by every node" in err
    study = tmp_path / "studies" / "blind"
    assert not list(study.glob("trial_*")) and not (study / "study.json").exists()
    assert not list(study.glob(".probe-*"))  # the probe cleaned up after itself
    assert not (tmp_path / "mlflow.db").exists()  # failed before the MLflow parent run
    assert took < 120, took


@pytest.mark.parametrize("scheme", ["ray://", ""])
def test_unreachable_address_fails_fast(tmp_path, scheme):
    """host:port with nothing listening, or ray:// (Ray Client; needs `ray[client]`): exit 2 with one line, at once
    (Ray itself would wait for minutes for a GCS that does not answer)."""
    address = f"{scheme}127.0.0.1:{free_port()}"
    t0 = time.time()
    out = run_cli([RUN, *_study_args(tmp_path / "studies", "nowhere", "--num-samples", "1", "--max-epochs", "1",
                                     "--address", address, "--no-tracking")], cwd=tmp_path, timeout=300)
    assert out.returncode == 2, out.stdout[-2000:] + out.stderr[-2000:]
    err = out.stderr.strip().splitlines()[-1]
    assert err.startswith(f"error: --address {address}: cannot join the Ray cluster"), err
    assert time.time() - t0 < 120


LOST_EPOCHS = 8


def test_worker_node_removed_mid_study(cluster, tmp_path, teacher_root):
    worker = next(iter(cluster.worker_nodes))
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    # enough epochs that the trial on the worker is still training when the node goes (an epoch takes ~1 s);
    # both trials start at once (the driver stages as many trials as the cluster holds), one on each node
    p = start_cli(_study_args(tmp_path / "studies", "lost", "--num-samples", "2", "--max-epochs", str(LOST_EPOCHS),
                              "--scheduler", "none", "--address", cluster.address, "--mlflow-uri", uri,
                              "--set", f"teacher.root={teacher_root}"), tmp_path, tmp_path / "run.log",
                  env={"AIKD_MLFLOW_FLUSH_S": "0"})  # each epoch in MLflow at once: the test waits for one
    try:
        def running_on_worker():  # a trial on the worker node that has logged an epoch
            # only once the driver has made the store: a second process opening a new SQLite store runs MLflow's
            # migrations too, and the two collide ("table _alembic_tmp_... already exists")
            log = tmp_path / "run.log"
            if not log.exists() or "MLflow: parent run" not in log.read_text():
                return None
            try:
                _, _, kids = _kids(uri, "lost")
            except Exception:
                return None
            return next((k for k in kids if k.data.tags.get("ray.node_id") == worker.node_id
                         and k.info.status == "RUNNING" and "epoch" in k.data.metrics), None)
        victim = wait_for(running_on_worker, 400, "a trial running on the worker node", proc=p)
        cluster.remove_node(worker)
        assert p.wait(timeout=500) == 0, (tmp_path / "run.log").read_text()[-4000:]
    finally:
        stop_cli(p)
    log = (tmp_path / "run.log").read_text()
    assert "trials: 2 done, 0 pruned, 0 failed" in log
    tid = victim.data.tags["ray.trial_id"]
    res = results(tmp_path / "studies" / "lost" / f"trial_{tid}")
    assert [int(r["epoch"]) for r in res][-1] == LOST_EPOCHS  # rescheduled and finished
    assert any(r["iterations_since_restore"] < r["training_iteration"] for r in res)  # from its checkpoint
    c, parent, kids = _kids(uri, "lost")
    assert len(kids) == 2 and {k.info.status for k in kids} == {"FINISHED"}
    moved = next(k for k in kids if k.data.tags["ray.trial_id"] == tid)
    assert moved.data.tags["ray.node_id"] == cluster.head_node.node_id  # now on the node that is left
    assert sorted(int(m.step) for m in c.get_metric_history(moved.info.run_id, "epoch")) == list(
        range(1, LOST_EPOCHS + 1))  # each epoch logged once, across the two attempts

