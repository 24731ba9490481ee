"""A study stopped by SIGINT (Ctrl-C) or SIGTERM (a cluster scheduler) mid-way: it says so, exits 130 / 143, keeps its
parent run KILLED with `interrupted=true`, and `--resume` finishes it with each cut-short trial continued from its
checkpoint."""

import os
import re
import signal

import pytest
from mlflow.tracking import MlflowClient
from ray.tune import ExperimentAnalysis

from search.searchers import RAY_TRIAL_ATTR, load_study
from tests.search.conftest import run_cli
from tests.search.faults import RUN, descendants, results, start_cli, stop_cli, trial_dirs, wait_for

pytestmark = pytest.mark.slow

SAMPLES, EPOCHS = 3, 8


def _runs(uri, name):
    c = MlflowClient(tracking_uri=uri)
    exp = c.get_experiment_by_name("aikd-search")
    parent = c.search_runs([exp.experiment_id], filter_string=f"tags.study = '{name}' and tags.role = 'study'")
    assert len(parent) == 1
    kids = c.search_runs([exp.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent[0].info.run_id}'")
    return c, parent[0], kids


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_stops_the_study_and_resume_finishes_it(tmp_path, teacher_root, sig, code):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    storage, name = tmp_path / "studies", f"stopped-{sig.name.lower()}"
    journal = storage / name / "optuna.journal"
    p = start_cli(["--space", "aikd_ablation", "--dataset", "digits", "--model", "small_cnn", "--num-samples",
                   str(SAMPLES), "--max-epochs", str(EPOCHS), "--scheduler", "none", "--max-concurrent", "2",
                   "--storage", str(storage), "--name", name, "--mlflow-uri", uri,
                   "--set", f"teacher.root={teacher_root}"], tmp_path, tmp_path / "first.log")
    procs: dict[int, int] = {}

    def training():  # a trial has reported two epochs, and none has finished yet
        # (Tune fetches a trial's second result only after it registered the checkpoint of the first)
        procs.update(descendants(p.pid))
        try:
            trials = load_study(name, journal).trials
        except Exception:
            return False
        return (any(len(t.intermediate_values) >= 2 for t in trials)
                and not any(t.state.is_finished() for t in trials))
    try:
        wait_for(training, 400, "a trial in the middle of its epochs", proc=p)
        os.kill(p.pid, sig)
        assert p.wait(timeout=300) == code, (tmp_path / "first.log").read_text()[-4000:]
    finally:
        stop_cli(p, procs)
    log = (tmp_path / "first.log").read_text()
    said = re.search(r"interrupted after (\d+) of (\d+) trials", log)
    assert said and int(said.group(2)) == SAMPLES, log[-3000:]
    assert f"python search/run.py --resume --name {name} --storage {storage}" in log
    assert "Tuner.restore" not in log and "Traceback" not in log and "no complete trials" not in log.lower()
    assert re.search(r"trials: \d+ done, 0 pruned, 0 failed, [1-9]\d* interrupted", log), log[-3000:]
    c, parent, kids = _runs(uri, name)
    assert parent.info.status == "KILLED" and parent.data.tags.get("interrupted") == "true"
    cut = {k.data.tags["ray.trial_id"] for k in kids if k.data.tags.get("interrupted") == "true"}
    assert cut and all(k.info.status != "RUNNING" for k in kids)
    marked = {t.user_attrs[RAY_TRIAL_ATTR] for t in load_study(name, journal).trials
              if t.user_attrs.get("interrupted")}
    assert cut <= marked  # the journal says so too (the trials stay unfinished there: resume continues them)
    assert not any(t.state.name == "PRUNED" for t in load_study(name, journal).trials)

    # the cut-short trials with a checkpoint continue from it (one cut before its first checkpoint starts again).
    # A checkpoint counts once Tune's last snapshot holds it: a state.pt on disk whose report the signal overtook is
    # not one, nor is one whose report reached the driver (its result row names `checkpoint_dir_name`) but whose
    # save, Tune's second round trip to the trial, the stop cut off. Tune restarts such a trial.
    checkpointed = {t.trial_id for t in ExperimentAnalysis(str(storage / name)).trials if t.checkpoint} & cut
    assert checkpointed, cut
    out = run_cli([RUN, "--resume", "--name", name, "--storage", str(storage)], cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    c, parent, kids = _runs(uri, name)
    assert len(kids) == SAMPLES and parent.info.status == "FINISHED" and "interrupted" not in parent.data.tags
    assert all(k.info.status == "FINISHED" for k in kids), [k.info.status for k in kids]
    by_trial = {k.data.tags["ray.trial_id"]: k for k in kids}
    for tid in cut:
        # the full budget in MLflow, each epoch once; trained on from the checkpoint, not restarted
        steps = sorted(int(m.step) for m in c.get_metric_history(by_trial[tid].info.run_id, "epoch"))
        assert steps == list(range(1, EPOCHS + 1)), (tid, steps)
        rows = results(storage / name / f"trial_{tid}")
        assert int(rows[-1]["epoch"]) == EPOCHS
        restored = rows[-1]["iterations_since_restore"] < rows[-1]["training_iteration"]
        assert restored == (tid in checkpointed), (tid, checkpointed, rows[-1])
        assert "interrupted" not in by_trial[tid].data.tags
    assert len(trial_dirs(storage / name)) == SAMPLES


def test_two_studies_started_together_on_a_new_store_both_complete(tmp_path, teacher_root):
    """Both make the same new SQLite store and, with default names, may pick the same second for their names."""
    uri = f"sqlite:///{tmp_path}/fresh/mlflow.db"
    args = ["--space", "aikd_ablation", "--dataset", "digits", "--model", "small_cnn", "--num-samples", "2",
            "--max-epochs", "2", "--scheduler", "none", "--num-cpus", "1", "--storage", str(tmp_path / "studies"),
            "--mlflow-uri", uri, "--set", f"teacher.root={teacher_root}"]
    procs = [start_cli(args, tmp_path, tmp_path / f"run{i}.log") for i in range(2)]
    recorded: dict[int, int] = {}
    try:
        for p in procs:
            while p.poll() is None:
                recorded.update(descendants(p.pid))
                try:
                    p.wait(timeout=1)
                except Exception:
                    pass
    finally:
        stop_cli(procs, recorded)
    logs = [(tmp_path / f"run{i}.log").read_text() for i in range(2)]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(log[-3000:] for log in logs)
    assert not any("Traceback" in log for log in logs)
    c = MlflowClient(tracking_uri=uri)
    exp = c.get_experiment_by_name("aikd-search")
    parents = c.search_runs([exp.experiment_id], filter_string="tags.role = 'study'")
    assert len(parents) == 2 and len({p.data.tags["study"] for p in parents}) == 2
    for parent in parents:
        assert parent.info.status == "FINISHED"
        kids = c.search_runs([exp.experiment_id],
                             filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
        assert len(kids) == 2 and {k.info.status for k in kids} == {"FINISHED"}
    assert len(list((tmp_path / "studies").iterdir())) == 2
