"""`search/run.py --address ray://HOST:PORT`: a study driven through Ray Client.

`ray.cluster_utils.Cluster` starts a head node in this process with the Ray Client server on a free port (what
`ray start --head --ray-client-server-port=PORT` does); the driver is `search/run.py` in a subprocess. With Ray
Client, Ray Tune runs the experiment (and the study's callbacks) inside an actor on the head, so this checks that
the teacher tasks, the trials, MLflow, the live progress lines relayed from that actor, and the summary all work.
On this single machine the head and the client share the disk, the teacher store and the MLflow SQLite file.
"""

import contextlib
import os
import re
import time

import pytest
from mlflow.tracking import MlflowClient
from ray.cluster_utils import Cluster

from search.cluster import PROBE_HIDE_ENV
from tests.search.conftest import run_cli
from tests.search.faults import RUN, descendants, free_port, kill_recorded, results, trial_dirs

pytestmark = pytest.mark.slow


@contextlib.contextmanager
def head_with_client_server(**head_args):
    """A head node running the Ray Client server on a free port: (cluster, "ray://127.0.0.1:PORT"); every process
    it started is gone afterwards."""
    before = set(descendants(os.getpid()))
    port = free_port()
    c = None
    try:
        c = Cluster(initialize_head=True, head_node_args={"include_dashboard": False, "ray_client_server_port": port,
                                                          **head_args})
        c.wait_for_nodes()
        yield c, f"ray://127.0.0.1:{port}"
    finally:
        # recorded before the shutdown: the client server's per-connection servers would be orphaned by it
        started = {pid: t for pid, t in descendants(os.getpid()).items() if pid not in before and pid != os.getpid()}
        try:
            if c is not None:
                c.shutdown()
        finally:
            kill_recorded(started)


@pytest.fixture(scope="module")
def client_cluster():
    with head_with_client_server(num_cpus=2) as c:
        yield c


def test_ray_client_address_joins_the_cluster(client_cluster, tmp_path, teacher_root):
    cluster, address = client_cluster
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    out = run_cli([RUN, "--space", "aikd_ablation", "--dataset", "digits", "--model", "small_cnn", "--num-samples",
                   "2", "--max-epochs", "2", "--scheduler", "none", "--address", address, "--storage",
                   str(tmp_path / "studies"), "--name", "viaclient", "--mlflow-uri", uri,
                   "--set", f"teacher.root={teacher_root}"], cwd=tmp_path)
    log = out.stdout[-4000:] + out.stderr[-4000:]
    assert out.returncode == 0, log
    assert f"ray address {address}" in out.stdout  # joined through Ray Client, did not start its own Ray
    # the study folder, written by Tune on the head and read back by the driver for the summary
    dirs = trial_dirs(tmp_path / "studies" / "viaclient")
    assert len(dirs) == 2 and all(int(results(d)[-1]["epoch"]) == 2 for d in dirs), dirs
    # Tune's settings reached the head, where it runs: no TensorBoard writer there either
    assert not [f for d in dirs for f in d.glob("events.out.tfevents*")], dirs
    assert "trials: 2 done, 0 pruned, 0 failed" in out.stdout, log
    assert (tmp_path / "studies" / "viaclient" / "report" / "summary.json").exists()
    assert (tmp_path / "studies" / "viaclient" / "tuner.pkl").exists()  # Tune pickled the run config, callbacks too
    # the live progress lines and the peak concurrency come from the callbacks in the Tuner actor on the head
    # (a line printed as a trial completes counts that trial as still running: "1 running, 1 done" for the last)
    assert re.search(r"\] trials: [01] running, [12] done, 0 pruned, 0 failed", out.stdout), log
    assert re.search(r"at most [12] trials ran at once", out.stdout), log
    # MLflow: the parent run from the driver, two children the trials opened, finished by the callback on the head
    c = MlflowClient(tracking_uri=uri)
    exp = c.get_experiment_by_name("aikd-search")
    parent = c.search_runs([exp.experiment_id], filter_string="tags.study = 'viaclient' and tags.role = 'study'")
    assert len(parent) == 1 and parent[0].info.status == "FINISHED"
    kids = c.search_runs([exp.experiment_id],
                         filter_string=f"tags.`mlflow.parentRunId` = '{parent[0].info.run_id}'")
    assert len(kids) == 2 and {k.info.status for k in kids} == {"FINISHED"}, [k.info.status for k in kids]
    assert {k.data.tags["ray.node_id"] for k in kids} == {cluster.head_node.node_id}


def test_ray_client_storage_the_head_cannot_see_fails_fast(tmp_path):
    """A Ray Client driver is on no node: even a one-node cluster is probed, and a --storage the head does not see
    (the documented test hook, search/cluster.py) stops the study with one line before any trial or MLflow run."""
    with head_with_client_server(num_cpus=1, env_vars={PROBE_HIDE_ENV: "1"}) as (cluster, address):
        t0 = time.time()
        out = run_cli([RUN, "--space", "aikd_ablation", "--dataset", "digits", "--model", "small_cnn",
                       "--num-samples", "1", "--max-epochs", "1", "--address", address, "--storage",
                       str(tmp_path / "studies"), "--name", "blind", "--mlflow-uri", f"sqlite:///{tmp_path}/mlflow.db"],
                      cwd=tmp_path, timeout=300)
        took = time.time() - t0
    assert out.returncode == 2, out.stdout[-2000:] + out.stderr[-2000:]
    err = out.stderr.strip().splitlines()[-1]
    assert err.startswith("error: --storage") and "not visible from 1 of 1 Ray nodes" in err, err
    assert "shared by every node and this driver" in err, err
    study = tmp_path / "studies" / "blind"
    assert not list(study.glob("trial_*")) and not (study / "study.json").exists()
    assert not list(study.glob(".probe-*"))
    assert not (tmp_path / "mlflow.db").exists()
    assert took < 120, took
