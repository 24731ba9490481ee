"""End-to-end studies with real Ray, Optuna, MLflow (local SQLite store) and PyTorch training on digits."""

import json
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from tests.search.conftest import ROOT, run_cli
from trainables.kd import read_results

pytestmark = pytest.mark.slow
EPOCHS = 4
SAMPLES = 8


@pytest.fixture(scope="module")
def study(tmp_path_factory, teacher_root):
    d = tmp_path_factory.mktemp("study")
    uri = f"sqlite:///{d}/mlflow.db"
    out = run_cli([str(ROOT / "search/run.py"), "--space", "aikd_ablation", "--dataset", "digits", "--model",
                   "small_cnn", "--num-samples", str(SAMPLES), "--max-epochs", str(EPOCHS), "--grace-period", "1",
                   "--reduction-factor", "2", "--max-concurrent", "2", "--storage", str(d / "studies"), "--name", "s1",
                   "--mlflow-uri", uri, "--set", f"teacher.root={teacher_root}"], cwd=d)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return {"dir": d / "studies" / "s1", "uri": uri, "stdout": out.stdout}


def test_summary_and_best_config(study):
    out = study["stdout"]
    assert "top trials by val_error" in out and "saved by early stopping" in out
    best = json.loads((study["dir"] / "best_config.json").read_text())
    assert best["config"]["method.name"] == "aikd" and 0 <= best["val_error"] <= 100


def test_optuna_holds_stopped_trials_as_pruned(study):
    s = optuna.load_study(study_name="s1", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(study["dir"] / "optuna.journal"))))
    states = [t.state for t in s.trials]
    assert len(states) == SAMPLES
    pruned = [t for t in s.trials if t.state == optuna.trial.TrialState.PRUNED]
    complete = [t for t in s.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert pruned, states  # reduction factor 2 at grace 1 always stops some of 8 trials
    assert all(max(t.intermediate_values) < EPOCHS for t in pruned)
    assert all(max(t.intermediate_values) == EPOCHS for t in complete)


def test_mlflow_parent_children_statuses_metrics_artifacts(study):
    c = MlflowClient(tracking_uri=study["uri"])
    exp = c.get_experiment_by_name("aikd-search")
    parents = c.search_runs([exp.experiment_id], filter_string="tags.role = 'study'")
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED" and parent.data.params["space"] == "aikd_ablation"
    assert "version.torch" in parent.data.tags and "command" in parent.data.tags
    kids = c.search_runs([exp.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert len(kids) == SAMPLES
    assert len({k.data.tags["ray.trial_id"] for k in kids}) == SAMPLES
    assert all(k.info.status in ("FINISHED", "KILLED") for k in kids)
    assert {k.data.tags["mlflow_writer"] for k in kids} == {"driver"}  # the driver wrote for the trials on its node
    killed = [k for k in kids if k.info.status == "KILLED"]
    assert killed and all(k.data.tags.get("pruned") == "true" for k in killed)
    # every epoch a trial ran is in its history, also for trials stopped while their metrics waited for a batch
    for k in kids:
        ran = [int(r["epoch"]) for r in read_results(study["dir"] / f"trial_{k.data.tags['ray.trial_id']}"
                                                     / "result.json")]
        assert sorted(m.step for m in c.get_metric_history(k.info.run_id, "val_error")) == ran, k.info.status
    done = [k for k in kids if k.info.status == "FINISHED"]
    assert done
    k = done[0]
    assert k.data.params["method.name"] == "aikd" and "critic.fc1" in k.data.params
    hist = c.get_metric_history(k.info.run_id, "val_error")
    assert sorted(m.step for m in hist) == list(range(1, EPOCHS + 1))
    assert len(k.data.metrics) <= 32
    arts = {a.path for a in c.list_artifacts(k.info.run_id)}
    assert {"config.json", "final_metrics.json", "reliability.png"} <= arts
    final = json.loads(Path(c.download_artifacts(k.info.run_id, "final_metrics.json")).read_text())
    assert "test_ece" in final and "test_ece_ts" in final
    report = {a.path for a in c.list_artifacts(parent.info.run_id, "report")}
    assert {"report/leaderboard.csv", "report/leaderboard.md", "report/optimization_history.png"} <= report
    assert any(a.path.endswith("weights.pt") for a in c.list_artifacts(parent.info.run_id, "best_model"))


def test_report_rebuilds_from_storage(study, tmp_path):
    (study["dir"] / "report" / "leaderboard.csv").unlink()
    out = run_cli([str(ROOT / "search/report.py"), str(study["dir"]), "--no-tracking"], cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    rows = (study["dir"] / "report" / "leaderboard.csv").read_text().splitlines()
    assert len(rows) == SAMPLES + 1


def test_seeds_reported_as_mean_and_std(tmp_path, teacher_root):
    out = run_cli([str(ROOT / "search/run.py"), "--space", "aikd_ablation", "--smoke-test", "--num-samples", "1",
                   "--seeds", "3", "--scheduler", "none", "--storage", str(tmp_path), "--name", "seeds",
                   "--no-tracking", "--set", f"teacher.root={teacher_root}"], cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "+/-" in out.stdout
    trial = next(p for p in (tmp_path / "seeds").iterdir() if (p / "result.json").exists())
    last = json.loads((trial / "result.json").read_text().splitlines()[-1])
    assert last["val_error_std"] >= 0 and "test_error_std" in last


def test_quarter_gpu_trials_run_four_at_once(tmp_path, teacher_root):
    out = run_cli([str(ROOT / "search/run.py"), "--space", "aikd_ablation", "--dataset", "digits", "--model",
                   "wrn16_2", "--num-samples", "4", "--max-epochs", "10", "--scheduler", "none", "--num-gpus", "1",
                   "--num-cpus", "4", "--gpus-per-trial", "0.25", "--storage", str(tmp_path), "--name", "gpu",
                   "--no-tracking", "--set", f"teacher.root={teacher_root}"], cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    finished = [t for t in (tmp_path / "gpu").iterdir() if (t / "result.json").exists()]
    assert len(finished) == 4
    # Ray granted all four 0.25-GPU requests at the same moment (one logical GPU, 4 CPUs)
    assert "at most 4 trials ran at once" in out.stdout, out.stdout[-3000:]


def test_paper_table_grid_runs_in_the_paper_protocol_and_its_table_says_so(tmp_path, teacher_root):
    """`--space aikd_omega --dataset digits --seeds 3` (2 epochs to stay fast): the whole training set for the
    students and their phase-1 teacher, no validation metrics, last-epoch test error mean +/- std per cell, and the
    protocol named in the plan and in the paper table."""
    teachers = tmp_path / "teachers"  # its own store: the whole-training-set teacher is not the session's
    out = run_cli([str(ROOT / "search/run.py"), "--space", "aikd_omega", "--dataset", "digits", "--seeds", "3",
                   "--max-epochs", "2", "--storage", str(tmp_path), "--name", "omega", "--no-tracking",
                   "--set", f"teacher.root={teachers}"], cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    line = "paper (whole training set, last-epoch test metrics)"
    assert f"protocol    {line}" in out.stdout and f"protocol: {line}" in out.stdout
    table = (tmp_path / "omega" / "report" / "paper_table.md").read_text().splitlines()
    assert table[0] == f"protocol: {line}"
    rows = [r for r in table if r.startswith("| method.omega=")]
    assert len(rows) == 8
    for r in rows:
        cells = [c.strip() for c in r.strip("|").split("|")]
        assert "+/-" in cells[1] and cells[3] == "-" and cells[4] == "done", r  # ours over 3 seeds; no val split
    assert "top trials by test_error" in out.stdout
    trials = [p for p in (tmp_path / "omega").iterdir() if (p / "result.json").exists()]
    assert len(trials) == 8
    for t in trials:
        params = json.loads((t / "params.json").read_text())
        assert params["_study"]["base"]["data.val_fraction"] == 0.0 and params["_study"]["seeds"] == [1, 2, 3]
        last = read_results(t / "result.json")[-1]
        assert last["epoch"] == 2 and "test_error_std" in last and "test_ece_ts" in last
        assert not any(k.startswith("val_") for k in last)
    metas = [json.loads(p.read_text()) for p in teachers.glob("*.json")]
    assert len(metas) == 1 and metas[0]["config"]["data.val_fraction"] == 0.0  # one teacher, whole training set
    assert json.loads((tmp_path / "omega" / "study.json").read_text())["protocol"] == "paper"
    (tmp_path / "omega" / "report" / "paper_table.md").unlink()
    rebuilt = run_cli([str(ROOT / "search/report.py"), str(tmp_path / "omega"), "--no-tracking"], cwd=tmp_path)
    assert rebuilt.returncode == 0, rebuilt.stderr[-3000:]
    assert (tmp_path / "omega" / "report" / "paper_table.md").read_text().splitlines() == table
