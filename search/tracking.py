"""MLflow on the driver: the study's parent run, trial statuses, and nothing left RUNNING at the end.

Children are created with the tag `mlflow.parentRunId` by whoever writes the trial's run (trainables/trial_log.py:
the driver for the trials on its node, else the node's agent or the trial); the driver sets every child's final
status: FINISHED, KILLED with `pruned=true` for trials ASHA stopped, FAILED with the error for trials that failed.

The server may go down and come back during a study: a status update that fails is kept and sent again (while
results arrive, and with backoff at the end), and `settle` fills in, from each trial's result.json, the per-epoch
metrics a worker could not send before its trial ended, then says in the summary what MLflow still lacks.
"""

from __future__ import annotations

import math
import platform
import subprocess
import sys
import time
from pathlib import Path

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from ray import tune

from search.store import is_local_store
from trainables.child_run import TRIAL_TAG, _param_str, _retry, fail_fast_http
from trainables.kd import read_results
from trainables.trial_log import HELD_KEY, UNLOGGED_KEY

DEFAULT_EXPERIMENT = "aikd-search"


def _versions() -> dict:
    import mlflow
    import optuna
    import ray
    import torch
    return {"torch": torch.__version__, "ray": ray.__version__, "optuna": optuna.__version__,
            "mlflow": mlflow.__version__, "python": platform.python_version()}


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                              cwd=Path(__file__).resolve().parent).stdout.strip()
    except Exception:
        return ""


class StudyTracking:
    deferred: tuple = ()  # (class defaults: a tracker pickled by an older version, restored on --resume)
    _last_flush = 0.0

    def __init__(self, uri: str, study_name: str, experiment: str = DEFAULT_EXPERIMENT,
                 artifact_root: Path | None = None):
        self.uri, self.study_name = uri, study_name
        fail_fast_http()
        self.client = MlflowClient(tracking_uri=uri)
        self.deferred: list[tuple] = []  # trial status updates the server did not take (yet)
        self._last_flush = 0.0
        exp = _retry(lambda: self.client.get_experiment_by_name(experiment))
        if exp is None:
            location = artifact_root.resolve().as_uri() if (artifact_root and is_local_store(uri)) else None
            self.experiment_id = _retry(lambda: self.client.create_experiment(experiment, artifact_location=location))
        else:
            self.experiment_id = exp.experiment_id
        self.parent_run_id: str | None = None

    def start_parent(self, params: dict, tags: dict) -> str:
        """The study's parent run; an existing one (same study name) is reused on resume."""
        found = _retry(lambda: self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.study = '{self.study_name}' and tags.role = 'study'",
            max_results=1))
        all_tags = {"study": self.study_name, "role": "study", "command": " ".join(sys.argv),
                    "git_commit": _git_commit(), **{f"version.{k}": v for k, v in _versions().items()}, **tags}
        all_tags = {k: str(v) for k, v in all_tags.items()}  # the REST store rejects non-string tag values
        if found:
            self.parent_run_id = found[0].info.run_id
            _retry(lambda: self.client.update_run(self.parent_run_id, status="RUNNING"))
            _retry(lambda: self.client.log_batch(self.parent_run_id, tags=[RunTag("resumed", "true")]))
            return self.parent_run_id
        run = _retry(lambda: self.client.create_run(self.experiment_id, run_name=self.study_name, tags=all_tags))
        self.parent_run_id = run.info.run_id
        items = [Param(k, _param_str(v)) for k, v in sorted(params.items())]
        for i in range(0, len(items), 100):
            _retry(lambda chunk=items[i:i + 100]: self.client.log_batch(self.parent_run_id, params=chunk))
        return self.parent_run_id

    def browse_hint(self) -> str:
        """How to look at the study: the parent run's page on a server, or the command that serves a local store."""
        if is_local_store(self.uri):
            return f"browse with `mlflow ui --backend-store-uri {self.uri}` (then http://127.0.0.1:5000)"
        return f"browse at {self.uri.rstrip('/')}/#/experiments/{self.experiment_id}/runs/{self.parent_run_id}"

    def trial_info(self) -> dict:
        """What a trial needs to open its child run from any node."""
        return {"uri": self.uri, "experiment_id": self.experiment_id, "parent_run_id": self.parent_run_id}

    def children(self) -> list:
        return _retry(lambda: self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{self.parent_run_id}'",
            max_results=5000))

    def child_of(self, trial_id: str):
        runs = _retry(lambda: self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.`{TRIAL_TAG}` = '{trial_id}' and "
                                                f"tags.`mlflow.parentRunId` = '{self.parent_run_id}'",
            max_results=1))
        return runs[0] if runs else None

    def set_trial_status(self, trial_id: str, trial_name: str, status: str, tags: dict | None = None) -> bool:
        """Set a child's final status; if the server is unreachable the update is kept and sent later."""
        update = (trial_id, trial_name, status, tags)
        self.deferred = [u for u in self.deferred if u[0] != trial_id]
        try:
            self._set_status(*update)
            return True
        except Exception as e:
            self.deferred.append(update)
            print(f"warning: MLflow status of trial {trial_id} not set ({type(e).__name__}); will retry",
                  file=sys.stderr)
            return False

    def _set_status(self, trial_id, trial_name, status, tags, attempts: int = 4) -> None:
        runs = _retry(lambda: self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.`{TRIAL_TAG}` = '{trial_id}' and "
                                                f"tags.`mlflow.parentRunId` = '{self.parent_run_id}'",
            max_results=1), attempts=attempts)
        run = runs[0] if runs else None
        if run is None:  # the trial died before opening its run: still exactly one child per trial
            run = _retry(lambda: self.client.create_run(
                self.experiment_id, run_name=trial_name,
                tags={"mlflow.parentRunId": self.parent_run_id, TRIAL_TAG: trial_id}), attempts=attempts)
        if tags:
            _retry(lambda: self.client.log_batch(run.info.run_id,
                                                 tags=[RunTag(k, str(v)[:5000]) for k, v in tags.items()]),
                   attempts=attempts)
        _retry(lambda: self.client.set_terminated(run.info.run_id, status=status), attempts=attempts)

    def flush_deferred(self, deadline_s: float = 0.0) -> bool:
        """Send the kept status updates: one attempt each, repeated with backoff until the deadline."""
        delay, end = 1.0, time.time() + deadline_s
        while self.deferred:
            self._last_flush = time.time()
            for update in list(self.deferred):
                try:
                    self._set_status(*update, attempts=1)
                    self.deferred.remove(update)
                except Exception:
                    break  # still unreachable: no point trying the others now
            if not self.deferred or time.time() + delay > end:
                break
            time.sleep(delay)
            delay = min(delay * 2, 15.0)
        return not self.deferred

    def maybe_flush_deferred(self, every_s: float = 10.0) -> None:
        if self.deferred and time.time() - self._last_flush >= every_s:
            self.flush_deferred()

    def forget_child(self, run_id: str) -> None:
        """Delete (MLflow's soft delete) the child of a trial that Ray forgot and reruns under a new id."""
        _retry(lambda: self.client.log_batch(run_id, tags=[RunTag("forgotten", "true")]))
        _retry(lambda: self.client.set_terminated(run_id, status="KILLED"))
        _retry(lambda: self.client.delete_run(run_id))

    def settle(self, study_dir, out=print, closed: dict | None = None) -> dict:
        """After the trials: send kept status updates, fill in metrics workers could not send (from each trial's
        result.json, the driver's copy of every report), and say what MLflow still lacks.

        `closed` ({trial id: values missed}, from `drain_agents`) is exact for the trials a live writer closed; for
        the others the counts in the trial's last report say whether to look."""
        self.flush_deferred(deadline_s=60)
        filled, lacking, caught_up = {}, {}, {}
        closed = closed or {}
        study_dir = Path(study_dir)
        if study_dir.is_dir():
            for d in sorted(study_dir.glob("trial_*")):
                results = read_results(d / "result.json")
                last = results[-1] if results else {}
                trial_id = last.get("trial_id") or d.name[len("trial_"):]
                if trial_id in closed:
                    unlogged, held = int(closed[trial_id]), 0
                else:
                    unlogged, held = int(last.get(UNLOGGED_KEY, 0)), int(last.get(HELD_KEY, 0))
                if not unlogged and not held:
                    continue
                try:
                    n = self._backfill(trial_id, results)
                except Exception:
                    n = 0
                    if not unlogged:  # held values that neither the worker nor this backfill could send
                        lacking[trial_id] = held
                if unlogged:
                    filled[trial_id] = n
                    if n < unlogged:
                        lacking[trial_id] = unlogged - n
                elif n:  # a worker that ended before sending what it held for its next batch
                    caught_up[trial_id] = n
        if filled:
            out(f"MLflow: the server was unreachable during the study: filled in {sum(filled.values())} metric "
                f"values of {len(filled)} trials from their results")
        if caught_up:
            out(f"MLflow: filled in {sum(caught_up.values())} metric values that {len(caught_up)} stopped trials "
                "held for their next batch")
        if lacking:
            out("MLflow: still missing (artifacts, tags or metrics) for trials: "
                + ", ".join(f"{t} ({n})" for t, n in sorted(lacking.items())))
        if self.deferred:
            out(f"MLflow: final status not set for trials: {', '.join(u[0] for u in self.deferred)}")
        return {"filled": filled, "lacking": lacking, "caught_up": caught_up,
                "deferred": [u[0] for u in self.deferred]}

    def _backfill(self, trial_id: str, results: list[dict]) -> int:
        from trainables.kd import FAILURE_KEY, _reported
        run = self.child_of(trial_id)
        if run is None:
            return 0
        have = {int(m.step) for m in _retry(lambda: self.client.get_metric_history(run.info.run_id, "epoch"))}
        metrics = []
        for r in results:
            step = int(r.get("epoch", 0))
            if step in have or FAILURE_KEY in r:
                continue
            have.add(step)
            ts = int(float(r.get("timestamp", time.time())) * 1000)
            metrics += [Metric(k, float(v), ts, step) for k, v in _reported(r).items()
                        if isinstance(v, (int, float)) and math.isfinite(float(v))]
        for i in range(0, len(metrics), 1000):
            _retry(lambda chunk=metrics[i:i + 1000]: self.client.log_batch(run.info.run_id, metrics=chunk))
        return len(metrics)

    def close(self, status: str = "FINISHED") -> None:
        """End the parent; any child still RUNNING (interrupted study) becomes KILLED."""
        self.flush_deferred(deadline_s=30)
        for run in self.children():
            if run.info.status == "RUNNING":
                _retry(lambda r=run: self.client.set_terminated(r.info.run_id, status="KILLED"))
        if self.parent_run_id:
            _retry(lambda: self.client.set_terminated(self.parent_run_id, status=status))

    def log_artifact(self, path, artifact_path: str | None = None, run_id: str | None = None) -> None:
        _retry(lambda: self.client.log_artifact(run_id or self.parent_run_id, str(path), artifact_path))


def _error_text(trial) -> str:
    path = getattr(trial, "error_file", None) or ""
    try:
        text = Path(path).read_text() if path else ""
    except OSError:
        text = ""
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "trial failed"


def final_status(last: dict, max_epochs: int) -> tuple[str, dict | None]:
    """A trial's final MLflow status and tags from its last report: FAILED, KILLED (pruned) or FINISHED."""
    if last.get("failure"):
        return "FAILED", {"error": last["failure"]}
    if int(last.get("epoch", 0)) < max_epochs:  # epoch is a seed mean: 2.0
        return "KILLED", {"pruned": "true", "epochs_run": int(last.get("epoch", 0))}
    return "FINISHED", None


class TrialStatusCallback(tune.Callback):
    """Hands the driver's writer (search/trial_writer.py) the reports of the trials on this node and each trial's
    end, with the child run's final status: FINISHED, KILLED with `pruned=true`, or FAILED with the error.

    `relay` (search.client.DriverRelay): with Ray Client this runs in an actor on the head; the status updates the
    server did not take by the end are sent back to the driver's tracker, which reports them and retries on close."""

    relay = None  # (class default: a callback pickled by an older version, restored on --resume)

    def __init__(self, tracking: StudyTracking, max_epochs: int, relay=None):
        self.tracking, self.max_epochs, self.relay = tracking, max_epochs, relay

    def _writer(self):
        from search.trial_writer import driver_writer
        return driver_writer(self.tracking)

    def on_trial_start(self, iteration, trials, trial, **info):
        self._writer().started(trial.trial_id, time.time())

    def on_trial_complete(self, iteration, trials, trial, **info):
        status, tags = final_status(trial.last_result or {}, self.max_epochs)
        self._writer().end(trial.trial_id, str(trial), status, tags)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._writer().end(trial.trial_id, str(trial), "FAILED", {"error": _error_text(trial)})

    def on_trial_result(self, iteration, trials, trial, result, **info):
        from search.trial_writer import is_driver_report
        writer = self._writer()
        if is_driver_report(result):
            writer.report(trial.trial_id, str(trial), trial.config, result)
        writer.maybe_flush_deferred()  # the server may be back: send the statuses it missed

    def on_experiment_end(self, trials, **info):
        writer = self._writer()
        writer.flush_deferred(deadline_s=120)
        writer.wait(timeout=300)
        if self.relay is not None:
            self.relay.send("deferred", list(writer.tracking.deferred))


class ProgressCallback(tune.Callback):
    """Live progress: trials running / done / pruned / failed and the best value so far.

    `relay` (search.client.DriverRelay): with Ray Client this runs in an actor on the head; the lines and the peak
    concurrency go back to the driver through it (`out` where no driver listens)."""

    relay = None  # (class default: a callback pickled by an older version, restored on --resume)

    def __init__(self, metric: str, mode: str, max_epochs: int, every_s: float = 10.0, out=print, relay=None):
        self.metric, self.mode, self.max_epochs, self.every_s, self.out = metric, mode, max_epochs, every_s, out
        self.relay = relay
        self.t0 = time.time()
        self.last_print = 0.0
        self.best = None
        self.active: set[str] = set()  # trials whose actor holds its resources now
        self.peak_concurrent = 0  # the most trials that held resources at one moment: shows fractional-GPU packing

    def on_trial_start(self, iteration, trials, trial, **info):
        self.active.add(trial.trial_id)
        if len(self.active) > self.peak_concurrent:
            self.peak_concurrent = len(self.active)
            if self.relay is not None:
                self.relay.send("peak", self.peak_concurrent)

    def _emit(self, line: str) -> None:
        if self.relay is None or not self.relay.send("line", line):
            self.out(line)

    def _line(self, trials) -> str:
        counts = {"running": 0, "done": 0, "pruned": 0, "failed": 0, "pending": 0}
        for t in trials:
            last = t.last_result or {}
            if t.status == "RUNNING":
                counts["running"] += 1
            elif t.status == "PENDING":
                counts["pending"] += 1
            elif t.status == "ERROR" or last.get("failure"):
                counts["failed"] += 1
            elif t.status == "TERMINATED":
                counts["pruned" if int(last.get("epoch", 0)) < self.max_epochs else "done"] += 1
        best = "-" if self.best is None else f"{self.best:.3f}"
        parts = ", ".join(f"{v} {k}" for k, v in counts.items())
        return f"[{time.time() - self.t0:6.0f}s] trials: {parts} | best {self.metric} so far: {best}"

    def on_trial_result(self, iteration, trials, trial, result, **info):
        v = result.get(self.metric)
        if v is not None and not math.isfinite(v):  # a diverged trial's NaN
            v = None
        if v is not None and (self.best is None or (v < self.best if self.mode == "min" else v > self.best)):
            self.best = v
        if time.time() - self.last_print >= self.every_s:
            self.last_print = time.time()
            self._emit(self._line(trials))

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.active.discard(trial.trial_id)
        self.last_print = time.time()
        self._emit(self._line(trials))

    def on_trial_error(self, iteration, trials, trial, **info):
        self.active.discard(trial.trial_id)
