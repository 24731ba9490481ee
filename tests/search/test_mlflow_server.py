"""Studies tracked through a real `mlflow server` (REST store, SQLite backend, artifacts served over HTTP).

The server runs in its own process group on 127.0.0.1 at a free port and is stopped by PID at the end. One study
checks the parent/children layout, metric histories, statuses and artifacts as read back over HTTP; a second one in
the same server makes trials fail for real: one raises in the trainable (Ray marks it ERROR), one diverges (NaN loss:
the trainable reports `failure`), and both children must end FAILED with an `error` tag.
"""

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from search.store import free_port, start_server, stop_server
from tests.search.conftest import ROOT, run_cli

pytestmark = pytest.mark.slow
EPOCHS = 3
SAMPLES = 8  # enough that ASHA (grace 1, reduction factor 2) stops some: 4 on the noisy digits default once did not
HEALTH_TIMEOUT_S = 180  # ~14 s on an idle machine; much longer when other test sessions load the CPUs


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    d = tmp_path_factory.mktemp("mlflow_server")
    port = free_port()
    try:
        proc = start_server(f"sqlite:///{d}/db.sqlite", port, d, artifacts=d / "artifacts",
                            timeout_s=HEALTH_TIMEOUT_S)
    except RuntimeError as e:
        pytest.fail(str(e))
    try:
        yield {"url": f"http://127.0.0.1:{port}", "dir": d, "pid": proc.pid}
    finally:
        stop_server(proc)


def _study(server, tmp_path_factory, teacher_root, name, *extra):
    d = tmp_path_factory.mktemp(name)
    out = run_cli([str(ROOT / "search/run.py"), "--space", "aikd_ablation", "--dataset", "digits", "--model",
                   "small_cnn", "--storage", str(d / "studies"), "--name", name, "--mlflow-uri", server["url"],
                   "--set", f"teacher.root={teacher_root}", *extra], cwd=d)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    c = MlflowClient(tracking_uri=server["url"])
    exp = c.get_experiment_by_name("aikd-search")
    parents = c.search_runs([exp.experiment_id], filter_string=f"tags.study = '{name}' and tags.role = 'study'")
    assert len(parents) == 1, [p.info.run_id for p in parents]
    kids = c.search_runs([exp.experiment_id],
                         filter_string=f"tags.`mlflow.parentRunId` = '{parents[0].info.run_id}'")
    return {"client": c, "exp": exp, "parent": parents[0], "kids": kids, "dir": d, "stdout": out.stdout}


@pytest.fixture(scope="module")
def study(server, tmp_path_factory, teacher_root):
    # reduction factor 2 at grace 1: a trial worse than the median of those before it at a rung is stopped
    return _study(server, tmp_path_factory, teacher_root, "srv", "--num-samples", str(SAMPLES), "--max-epochs",
                  str(EPOCHS), "--grace-period", "1", "--reduction-factor", "2", "--max-concurrent", "2")


@pytest.fixture(scope="module")
def failing_study(server, tmp_path_factory, teacher_root):
    # one trial at a time: the first raises at epoch index 0 (once: the marker file then exists; no retries), the
    # second gets past epoch 0 and its loss turns NaN at epoch index 1
    marker = tmp_path_factory.mktemp("crash") / "crashed"
    return _study(server, tmp_path_factory, teacher_root, "srv-fail", "--num-samples", "2", "--max-epochs", "2",
                  "--scheduler", "none", "--max-concurrent", "1", "--max-failures", "0",
                  "--set", "debug.crash_at_epoch=0", "--set", f"debug.crash_marker={marker}",
                  "--set", "debug.nan_at_epoch=1")


def test_one_parent_one_child_per_trial(study):
    parent, kids = study["parent"], study["kids"]
    assert parent.info.status == "FINISHED"
    assert parent.data.params["space"] == "aikd_ablation" and parent.data.params["epochs"] == str(EPOCHS)
    assert len(kids) == SAMPLES
    assert len({k.data.tags["ray.trial_id"] for k in kids}) == SAMPLES
    assert all(k.data.tags["study"] == "srv" for k in kids)
    trial_dirs = {p.name for p in (study["dir"] / "studies" / "srv").iterdir() if p.name.startswith("trial_")}
    assert {f"trial_{k.data.tags['ray.trial_id']}" for k in kids} == trial_dirs
    assert "View run" not in study["stdout"]  # MLflow's per-run URL lines stay out of the progress output
    # the summary points at the parent run's page on the server (not at `mlflow ui` on a local store)
    assert f"/#/experiments/{parent.info.experiment_id}/runs/{parent.info.run_id}" in study["stdout"]


def test_statuses_and_metric_history(study):
    c, kids = study["client"], study["kids"]
    assert {k.info.status for k in kids} <= {"FINISHED", "KILLED"}
    running = c.search_runs([study["exp"].experiment_id], filter_string="attributes.status = 'RUNNING'")
    assert running == []
    done = [k for k in kids if k.info.status == "FINISHED"]
    killed = [k for k in kids if k.info.status == "KILLED"]
    assert done and killed, [(k.info.status, k.data.tags.get("pruned")) for k in kids]
    for k in done:
        hist = c.get_metric_history(k.info.run_id, "val_error")
        assert sorted(m.step for m in hist) == list(range(1, EPOCHS + 1))
        assert sorted(m.step for m in c.get_metric_history(k.info.run_id, "epoch")) == list(range(1, EPOCHS + 1))
    for k in killed:
        assert k.data.tags.get("pruned") == "true"
        run_epochs = int(k.data.tags["epochs_run"])
        assert 1 <= run_epochs < EPOCHS
        steps = sorted(m.step for m in c.get_metric_history(k.info.run_id, "val_error"))
        assert steps == list(range(1, run_epochs + 1))


def test_child_artifacts_over_http(study, tmp_path):
    c = study["client"]
    assert study["exp"].artifact_location.startswith("mlflow-artifacts:")  # proxied by the server, not a path
    k = next(k for k in study["kids"] if k.info.status == "FINISHED")
    assert k.info.artifact_uri.startswith("mlflow-artifacts:")
    arts = {a.path for a in c.list_artifacts(k.info.run_id)}
    assert {"config.json", "final_metrics.json", "reliability.png"} <= arts
    final = json.loads(Path(c.download_artifacts(k.info.run_id, "final_metrics.json", str(tmp_path))).read_text())
    assert final["epoch"] == EPOCHS and "test_ece" in final and "test_ece_ts" in final
    config = json.loads(Path(c.download_artifacts(k.info.run_id, "config.json", str(tmp_path))).read_text())
    assert config["method.name"] == "aikd" and config["model.name"] == "small_cnn"
    png = Path(c.download_artifacts(k.info.run_id, "reliability.png", str(tmp_path))).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_parent_report_artifacts_over_http(study, tmp_path):
    c, parent = study["client"], study["parent"]
    report = {a.path for a in c.list_artifacts(parent.info.run_id, "report")}
    assert {"report/leaderboard.csv", "report/leaderboard.md", "report/summary.json"} <= report
    rows = Path(c.download_artifacts(parent.info.run_id, "report/leaderboard.csv", str(tmp_path))).read_text()
    assert len(rows.strip().splitlines()) == SAMPLES + 1
    best = [a.path for a in c.list_artifacts(parent.info.run_id, "best_model")]
    assert any(p.endswith("weights.pt") for p in best)


def test_artifacts_stored_by_the_server(study, server):
    stored = {p.name for p in (server["dir"] / "artifacts").rglob("*") if p.is_file()}
    assert {"config.json", "final_metrics.json", "reliability.png", "leaderboard.csv"} <= stored


def test_failed_trials(failing_study):
    parent, kids = failing_study["parent"], failing_study["kids"]
    assert parent.info.status == "FINISHED"  # the study itself completes; its trials failed
    assert len(kids) == 2 and [k.info.status for k in kids] == ["FAILED", "FAILED"]
    errors = sorted(k.data.tags.get("error", "") for k in kids)
    assert any("injected crash" in e for e in errors), errors  # raised in the trainable: Ray's error file
    diverged = [k for k in kids if k.data.tags.get("failure") == "non-finite loss"]
    assert len(diverged) == 1 and "non-finite loss" in diverged[0].data.tags["error"]
    c = failing_study["client"]
    assert sorted(m.step for m in c.get_metric_history(diverged[0].info.run_id, "val_error")) == [1]
    assert "2 failed" in failing_study["stdout"]
