"""End-to-end studies with real Ray, Optuna, MLflow (local SQLite store) and PyTorch training on digits."""

import csv
import json
from pathlib import Path

import optuna
import pytest
import torch
from mlflow.tracking import MlflowClient

from tests.search.conftest import ROOT, run_cli
from trainables.protocol import read_results

pytestmark = pytest.mark.slow
EPOCHS = 4
SAMPLES = 8


@pytest.fixture(scope="module")
def study(tmp_path_factory, teacher_root):
    d = tmp_path_factory.mktemp("study")
    uri = f"sqlite:///{d}/mlflow.db"
    # -X importtime: the driver's imports (its own; the trials run in Ray's worker processes) go to its stderr
    out = run_cli(["-X", "importtime", str(ROOT / "search/run.py"), "--space", "aikd_ablation", "--dataset",
                   "digits", "--model", "small_cnn", "--num-samples", str(SAMPLES), "--max-epochs", str(EPOCHS),
                   "--grace-period", "1", "--reduction-factor", "2", "--max-concurrent", "2",
                   "--storage", str(d / "studies"), "--name", "s1", "--mlflow-uri", uri,
                   "--set", f"teacher.root={teacher_root}"], cwd=d)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    imported = {line.rsplit("|", 1)[1].strip() for line in out.stderr.splitlines() if line.startswith("import time:")}
    console = [line for line in (out.stdout + out.stderr).splitlines() if not line.startswith("import time:")]
    return {"dir": d / "studies" / "s1", "uri": uri, "stdout": out.stdout, "imported": imported, "console": console}


def test_the_driver_never_imports_torch(study):
    """Importing torch costs a study's serial start seconds, and the driver needs none of it: the trials, the
    teachers' training and the best weights' extraction happen in the trials' processes."""
    assert "ray.tune" in study["imported"] and "mlflow" in study["imported"]  # the listing is the driver's
    assert not {m for m in study["imported"] if m == "torch" or m.startswith("torch.")}


def test_a_new_stores_schema_messages_stay_off_the_console(study):
    """The study made its SQLite store (the fixture's folder is new); MLflow's INFO lines about creating and
    upgrading the schema are not the researcher's business."""
    assert (study["dir"].parents[1] / "mlflow.db").exists()
    assert not [line for line in study["console"] if "database tables" in line]
    assert any("MLflow: parent run" in line for line in study["console"])


def test_summary_and_best_config(study):
    out = study["stdout"]
    assert "top trials by val_error" in out and "saved by early stopping" in out
    best = json.loads((study["dir"] / "best_config.json").read_text())
    assert best["config"]["method.name"] == "aikd" and 0 <= best["val_error"] <= 100


def test_trials_keep_tunes_json_and_csv_logs_and_no_tensorboard_files(study):
    """The report and `--resume` read result.json / params.json; TensorBoard's writer (a thread per trial in the
    driver) is off, since MLflow records the metrics."""
    dirs = [d for d in study["dir"].iterdir() if d.name.startswith("trial_")]
    assert len(dirs) == SAMPLES
    for d in dirs:
        assert {"result.json", "params.json", "progress.csv"} <= {f.name for f in d.iterdir()}, d
        assert not list(d.glob("events.out.tfevents*")), d


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
    assert parent.data.tags["version.torch"] == torch.__version__ and "command" in parent.data.tags
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
    # the best trial's weights: its last checkpoint's first-seed model, as the trial wrote them beside its state
    best = json.loads((study["dir"] / "best_config.json").read_text())["trial_id"]
    last = sorted((study["dir"] / f"trial_{best}").glob("checkpoint_*"))[-1]
    logged = torch.load(c.download_artifacts(parent.info.run_id, "best_model/best_model_weights.pt"),
                        weights_only=True)
    state = torch.load(last / "state.pt", weights_only=True)["states"][0]["model"]
    assert logged.keys() == state.keys() and all(torch.equal(logged[k], state[k]) for k in state)


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


# ---- #17: what a study learns from, in the user's terms --------------------------------------------------------------

def test_ties_broken_and_said_the_same_everywhere(study):
    assert "ties broken by val_nll (min)" in study["stdout"]
    best = json.loads((study["dir"] / "best_config.json").read_text())
    assert best["tie_break"] == "val_nll" and "val_nll" in best
    summary = json.loads((study["dir"] / "report" / "summary.json").read_text())
    assert summary["best"]["trial_id"] == best["trial_id"]
    with open(study["dir"] / "report" / "leaderboard.csv") as f:  # the tie-break stands beside the metric
        board = list(csv.DictReader(f))
    assert list(board[0])[list(board[0]).index("val_error") + 1] == "val_nll"
    done = [(float(r["val_error"]), float(r["val_nll"])) for r in board if r["outcome"] == "done"]
    assert done == sorted(done) and board[0]["trial_id"] == best["trial_id"]
    c = MlflowClient(tracking_uri=study["uri"])
    exp = c.get_experiment_by_name("aikd-search")
    parent = c.search_runs([exp.experiment_id], filter_string="tags.role = 'study'")[0]
    assert parent.data.tags["best_trial_id"] == best["trial_id"]
    assert parent.data.metrics["best_val_error"] == pytest.approx(best["val_error"])
    assert exp.tags.get("mlflow.experimentKind") == "custom_model_development"  # MLflow 3's model-training view
    kids = c.search_runs([exp.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    for k in kids:  # named for a person: Tune's trial number, then the searched values
        assert k.info.run_name.startswith("t") and "omega=" in k.info.run_name, k.info.run_name
        assert "run_trial" not in k.info.run_name


def test_plots_are_computed_on_the_users_names(study):
    from search.report import plot_study
    from spaces import get_space
    space = get_space("aikd_ablation")
    plotted = plot_study(space, "s1", study["dir"] / "optuna.journal")
    names = set().union(*(t.params for t in plotted.trials))
    assert names and names <= set(space.outputs()), names
    assert not any("__" in n for n in names)  # no sampler coordinate (alpha_simplex__u2, method.omega__u, ...)
    assert {"method.omega", "method.alpha_g", "critic.fc2"} <= names


def test_warm_start_paper_is_the_first_trial(study):
    from search.searchers import load_study
    from spaces import get_space
    first = load_study("s1", study["dir"] / "optuna.journal").trials[0]
    paper = get_space("aikd_ablation").paper.best
    for k, v in paper.items():
        assert first.user_attrs[k] == pytest.approx(v), (k, first.user_attrs)
    assert "warm start  1: paper best" in study["stdout"]


def test_warm_start_from_a_finished_study_seeds_the_history(study, tmp_path, teacher_root):
    from search.searchers import WARM_START_ATTR, load_study
    storage = study["dir"].parent
    out = run_cli([str(ROOT / "search/run.py"), "--space", "aikd_ablation", "--smoke-test", "--num-samples", "2",
                   "--max-epochs", str(EPOCHS), "--storage", str(storage), "--name", "seeded", "--warm-start", "s1",
                   "--no-tracking", "--set", f"teacher.root={teacher_root}"], cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "from study s1: its completed trials seed the Optuna history" in out.stdout
    trials = load_study("seeded", storage / "seeded" / "optuna.journal").trials
    seeded = [t for t in trials if t.user_attrs.get(WARM_START_ATTR, "").startswith("s1#")]
    done_before = [t for t in load_study("s1", study["dir"] / "optuna.journal").trials if t.state.name == "COMPLETE"]
    assert len(seeded) == len(done_before) > 0
    assert len(trials) == len(seeded) + 2  # and the study's own two trials


def test_two_objective_study_reports_its_pareto_front(tmp_path, teacher_root):
    out = run_cli([str(ROOT / "search/run.py"), "--space", "aikd_ablation", "--smoke-test", "--num-samples", "6",
                   "--metric", "val_error,val_ece", "--storage", str(tmp_path), "--name", "two",
                   "--no-tracking", "--set", f"teacher.root={teacher_root}"], cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "Pareto front of val_error (min) and val_ece (min)" in out.stdout
    front = {r["trial_id"] for r in json.loads((tmp_path / "two" / "best_config.json").read_text())["front"]}
    done = []
    for d in (tmp_path / "two").glob("trial_*"):
        last = read_results(d / "result.json")[-1]
        if int(last["epoch"]) == 2:
            done.append((last["trial_id"], last["val_error"], last["val_ece"]))
    assert front and front <= {t for t, _, _ in done}

    def dominates(a, b):
        return a[1] <= b[1] and a[2] <= b[2] and (a[1], a[2]) != (b[1], b[2])
    for t in done:
        beaten = any(dominates(o, t) for o in done)
        assert (t[0] in front) == (not beaten), (t, done)
    assert (tmp_path / "two" / "report" / "pareto.png").exists()


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


def test_smoke_study_with_gpus_per_trial_auto_on_a_cpu(tmp_path, teacher_root):
    out = run_cli([str(ROOT / "search/run.py"), "--space", "aikd_ablation", "--smoke-test", "--num-samples", "1",
                   "--gpus-per-trial", "auto", "--num-gpus", "0", "--storage", str(tmp_path), "--name", "auto",
                   "--no-tracking", "--set", f"teacher.root={teacher_root}"], cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "--gpus-per-trial auto: no GPU here" in out.stdout and "trials: 1 done" in out.stdout
