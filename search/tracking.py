"""MLflow on the driver: the study's parent run, the one writer of every trial's child run, and nothing left
RUNNING at the end.

Tune hands the driver every report of every trial, from every node (as it does for Ray's own
MLflowLoggerCallback), so `TrackingCallback` writes every child run (tag `mlflow.parentRunId`) from them: a trial
only trains and reports (trainables/protocol.py), and never imports MLflow. The callback only queues work for one
writer thread (`TrialWriter`), in the order Tune delivered it, so Tune's event loop never waits for MLflow, a run
exists before its final status is set (no second run for a trial), and the status updates an outage kept back have
one owner. Final statuses: FINISHED, KILLED with `pruned=true` for trials ASHA stopped, FAILED with the error.

The server may go down and come back during a study: the writer keeps what it could not send and sends it with the
next request; a status update that fails is kept and sent again (while results arrive, and with backoff at the
end); `settle` fills in, from each trial's result.json, what MLflow still lacks (what the writer missed, or what a
killed driver never wrote), then says in the summary what is still missing.
"""

from __future__ import annotations

import logging
import math
import platform
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

from mlflow.entities import Metric, RunTag
from mlflow.tracking import MlflowClient
from ray import tune

from search.child_run import TRIAL_TAG, ChildRun, find_child, log_params, retry
from search.store import fail_fast_http, is_local_store, store_lock
from trainables.protocol import (
    CELL_KEY,
    FAILURE_KEY,
    RELIABILITY_KEY,
    TAGS_KEY,
    read_json_key,
    read_opening,
    read_results,
    reported,
    seed_configs,
)

KIND_TAG = "mlflow.experimentKind"  # "custom_model_development": the UI's model-training view
WRITER_TAG = "mlflow_writer"  # on every child run: "driver", the one writer
DEFAULT_EXPERIMENT = "aikd-search"


def _versions() -> dict:
    import mlflow
    import optuna
    import ray
    return {"torch": torch_version(), "ray": ray.__version__, "optuna": optuna.__version__,
            "mlflow": mlflow.__version__, "python": platform.python_version()}


def torch_version() -> str:
    """`torch.__version__` (with its build tag, e.g. +cu130, which the installed distribution's version lacks), read
    from torch/version.py: the driver never imports torch, which would cost seconds of a study's start."""
    import importlib.util
    import runpy
    spec = importlib.util.find_spec("torch")
    return runpy.run_path(str(Path(next(iter(spec.submodule_search_locations))) / "version.py"))["__version__"]


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                              cwd=Path(__file__).resolve().parent).stdout.strip()
    except Exception:
        return ""


class StudyTracking:
    deferred: tuple = ()  # (class defaults: a tracker pickled by an older version, restored on --resume)
    _last_flush = 0.0
    interrupted: list | None = None  # the trials an interrupted study cut short (study.record_interrupted)
    _was_interrupted = False  # the parent run found on --resume says its study was interrupted

    def __init__(self, uri: str, study_name: str, experiment: str = DEFAULT_EXPERIMENT,
                 artifact_root: Path | None = None):
        self.uri, self.study_name = uri, study_name
        fail_fast_http()
        # a new store's "Creating initial MLflow database tables..." / "Updating database tables" (INFO): nothing
        # a researcher acts on, in the middle of the study's start
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
        self.deferred: list[tuple] = []  # trial status updates the server did not take (yet)
        self._last_flush = 0.0
        location = artifact_root.resolve().as_uri() if (artifact_root and is_local_store(uri)) else None
        # studies started together: one creates (or upgrades) the store's schema, which MlflowClient does at once,
        # and the experiment
        with store_lock(uri):
            self.client = MlflowClient(tracking_uri=uri)
            self.experiment_id = self._experiment(experiment, location)
        self.parent_run_id: str | None = None

    def _experiment(self, name: str, location: str | None) -> str:
        exp = retry(lambda: self.client.get_experiment_by_name(name))
        if exp is None:
            try:
                self.client.create_experiment(name, artifact_location=location)
            except Exception:  # another driver made it in the meantime (a server: no file lock between us)
                pass
            exp = retry(lambda: self.client.get_experiment_by_name(name))
        if KIND_TAG not in exp.tags:  # MLflow 3 opens an untagged experiment in its GenAI view
            retry(lambda: self.client.set_experiment_tag(exp.experiment_id, KIND_TAG, "custom_model_development"))
        return exp.experiment_id

    def start_parent(self, params: dict, tags: dict) -> str:
        """The study's parent run; an existing one (same study name) is reused on resume."""
        found = retry(lambda: self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.study = '{self.study_name}' and tags.role = 'study'",
            max_results=1))
        all_tags = {"study": self.study_name, "role": "study", "command": " ".join(sys.argv),
                    "git_commit": _git_commit(), **{f"version.{k}": v for k, v in _versions().items()}, **tags}
        all_tags = {k: str(v) for k, v in all_tags.items()}  # the REST store rejects non-string tag values
        if found:
            self.parent_run_id = found[0].info.run_id
            self._was_interrupted = found[0].data.tags.get("interrupted") == "true"
            retry(lambda: self.client.update_run(self.parent_run_id, status="RUNNING"))
            retry(lambda: self.client.log_batch(self.parent_run_id, tags=[RunTag("resumed", "true")]))
            return self.parent_run_id
        run = retry(lambda: self.client.create_run(self.experiment_id, run_name=self.study_name, tags=all_tags))
        self.parent_run_id = run.info.run_id
        log_params(self.client, self.parent_run_id, params)
        return self.parent_run_id

    def browse_hint(self) -> str:
        """How to look at the study: the parent run's page on a server, or the command that serves a local store."""
        if is_local_store(self.uri):
            return f"browse with `mlflow ui --backend-store-uri {self.uri}` (then http://127.0.0.1:5000)"
        return f"browse at {self.uri.rstrip('/')}/#/experiments/{self.experiment_id}/runs/{self.parent_run_id}"

    def trial_info(self) -> dict:
        """Where a trial's child run goes."""
        return {"uri": self.uri, "experiment_id": self.experiment_id, "parent_run_id": self.parent_run_id}

    def children(self) -> list:
        return retry(lambda: self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{self.parent_run_id}'",
            max_results=5000))

    def child_of(self, trial_id: str):
        return retry(lambda: find_child(self.client, self.experiment_id, self.parent_run_id, trial_id))

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
        run = retry(lambda: find_child(self.client, self.experiment_id, self.parent_run_id, trial_id),
                    attempts=attempts)
        if run is None:  # the trial died before opening its run: still exactly one child per trial
            run = retry(lambda: self.client.create_run(
                self.experiment_id, run_name=trial_name,
                tags={"mlflow.parentRunId": self.parent_run_id, TRIAL_TAG: trial_id}), attempts=attempts)
        if tags:
            retry(lambda: self.client.log_batch(run.info.run_id,
                                                 tags=[RunTag(k, str(v)[:5000]) for k, v in tags.items()]),
                   attempts=attempts)
        retry(lambda: self.client.set_terminated(run.info.run_id, status=status), attempts=attempts)

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
        retry(lambda: self.client.log_batch(run_id, tags=[RunTag("forgotten", "true")]))
        retry(lambda: self.client.set_terminated(run_id, status="KILLED"))
        retry(lambda: self.client.delete_run(run_id))

    def settle(self, study_dir, out=print, closed: dict | None = None) -> dict:
        """After the trials: send kept status updates, fill in from each trial's result.json (the driver's copy of
        every report) what MLflow lacks, and say what is still missing.

        `closed` ({trial id: values missed}, from the writer) is exact for the runs this driver's writer closed; any
        other trial (a killed driver's, one whose run an outage kept from closing) is looked up in MLflow."""
        self.flush_deferred(deadline_s=60)
        filled, lacking, caught_up = {}, {}, {}
        closed = closed or {}
        study_dir = Path(study_dir)
        if study_dir.is_dir():
            for d in sorted(study_dir.glob("trial_*")):
                results = read_results(d / "result.json")
                last = results[-1] if results else {}
                trial_id = last.get("trial_id") or d.name[len("trial_"):]
                missed = closed.get(trial_id)
                if missed == 0:
                    continue
                try:
                    n = self._backfill(trial_id, results)
                except Exception:
                    n = 0
                    if missed is None:
                        lacking[trial_id] = len(results)
                if missed:
                    filled[trial_id] = n
                    if n < missed:
                        lacking[trial_id] = missed - n
                elif n:  # epochs a killed driver, or a run left open, never wrote
                    caught_up[trial_id] = n
        if filled:
            out(f"MLflow: the server was unreachable during the study: filled in {sum(filled.values())} metric "
                f"values of {len(filled)} trials from their results")
        if caught_up:
            out(f"MLflow: filled in {sum(caught_up.values())} metric values of {len(caught_up)} trials that no "
                "writer had sent")
        if lacking:
            out("MLflow: still missing (artifacts, tags or metrics) for trials: "
                + ", ".join(f"{t} ({n})" for t, n in sorted(lacking.items())))
        if self.deferred:
            out(f"MLflow: final status not set for trials: {', '.join(u[0] for u in self.deferred)}")
        return {"filled": filled, "lacking": lacking, "caught_up": caught_up,
                "deferred": [u[0] for u in self.deferred]}

    def _backfill(self, trial_id: str, results: list[dict]) -> int:
        run = self.child_of(trial_id)
        if run is None:
            return 0
        have = {int(m.step) for m in retry(lambda: self.client.get_metric_history(run.info.run_id, "epoch"))}
        metrics = []
        for r in results:
            step = int(r.get("epoch", 0))
            if step in have or FAILURE_KEY in r:
                continue
            have.add(step)
            ts = int(float(r.get("timestamp", time.time())) * 1000)
            metrics += [Metric(k, float(v), ts, step) for k, v in reported(r).items()
                        if isinstance(v, (int, float)) and math.isfinite(float(v))]
        for i in range(0, len(metrics), 1000):
            retry(lambda chunk=metrics[i:i + 1000]: self.client.log_batch(run.info.run_id, metrics=chunk))
        return len(metrics)

    def close(self, status: str = "FINISHED") -> None:
        """End the parent; any child still RUNNING (interrupted study) becomes KILLED. The runs of an interrupted
        study and of its cut-short trials carry `interrupted=true` until a `--resume` finishes them."""
        self.flush_deferred(deadline_s=30)
        cut = set(self.interrupted or ())
        for run in self.children():
            rid = run.info.run_id
            if run.info.status == "RUNNING":
                if run.data.tags.get(TRIAL_TAG) in cut:
                    retry(lambda r=rid: self.client.set_tag(r, "interrupted", "true"))
                retry(lambda r=rid: self.client.set_terminated(r, status="KILLED"))
            elif run.data.tags.get("interrupted") == "true" and status == "FINISHED":
                retry(lambda r=rid: self.client.delete_tag(r, "interrupted"))
        if self.parent_run_id:
            if self.interrupted is not None:
                retry(lambda: self.client.set_tag(self.parent_run_id, "interrupted", "true"))
            elif status == "FINISHED" and self._was_interrupted:
                retry(lambda: self.client.delete_tag(self.parent_run_id, "interrupted"))
            retry(lambda: self.client.set_terminated(self.parent_run_id, status=status))

    def log_best(self, summary: dict) -> None:
        """The summary's best trial (or Pareto front) on the parent run, ranked as the summary ranks it."""
        best = summary.get("best")
        tags = {"ranking": f"{summary['metric']} ({summary['mode']}), ties by {summary['tie_break']}"}
        metrics = []
        if best:
            tags["best_trial_id"] = best["trial_id"]
            metrics = [Metric(f"best_{k}", float(best[k]), int(time.time() * 1000), 0)
                       for k in (summary["metric"], summary["tie_break"], "test_error")
                       if isinstance(best.get(k), (int, float)) and math.isfinite(best[k])]
        if summary.get("front"):
            tags["pareto_front"] = ",".join(r["trial_id"] for r in summary["front"])[:5000]
        retry(lambda: self.client.log_batch(self.parent_run_id, metrics=metrics,
                                            tags=[RunTag(k, v) for k, v in tags.items()]))

    def log_artifact(self, path, artifact_path: str | None = None, run_id: str | None = None) -> None:
        retry(lambda: self.client.log_artifact(run_id or self.parent_run_id, str(path), artifact_path))


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
    if last.get(FAILURE_KEY):
        return "FAILED", {"error": last[FAILURE_KEY]}
    if int(last.get("epoch", 0)) < max_epochs:  # epoch is a seed mean: 2.0
        return "KILLED", {"pruned": "true", "epochs_run": int(last.get("epoch", 0))}
    return "FINISHED", None


class JobThread:
    """One daemon thread that runs queued calls in the order they came; a call that raises is printed and the next
    one runs (the writer keeps writing for the other trials; `settle` fills in from result.json)."""

    def __init__(self, name: str):
        self._jobs = queue.SimpleQueue()
        threading.Thread(target=self._run, daemon=True, name=name).start()

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                job()
            except Exception as e:
                print(f"MLflow writer: {type(e).__name__}: {e}", flush=True)

    def put(self, job) -> None:
        self._jobs.put(job)

    def wait(self, timeout: float) -> bool:
        """Wait until every call queued so far has run; False if that took longer than `timeout`."""
        done = threading.Event()
        self._jobs.put(done.set)
        return done.wait(timeout=timeout)


def run_params(cfg, seeds: list[int]) -> dict:
    """A trial's params in MLflow: its first seed's resolved config (debug switches left out) and its seeds."""
    params = {k: v for k, v in cfg.to_dict().items() if not k.startswith("debug.")}
    params["seeds"] = seeds
    return params


def run_name(number: int, config: dict) -> str:
    """A child run's name for a person: the trial's number in the study (the order the writer first heard of it) and
    the values searched, e.g. `t07 omega=0.05 tau_g=4` (Tune's trial name, the trainable's and a hash, says
    nothing)."""
    head = f"t{number:02d}"
    searched = {**(config.get(CELL_KEY) or {}),
                **{k: v for k, v in config.items() if "." in k and "__" not in k}}
    def label(k):  # the key's last part (`method.name`: its section)
        section, _, last = k.rpartition(".")
        return section if last == "name" else last
    parts = [f"{label(k)}={v:.3g}" if isinstance(v, float) else f"{label(k)}={v}" for k, v in searched.items()]
    return " ".join([head, *parts])[:250]


class _Trial:
    def __init__(self):
        self.child: ChildRun | None = None
        self.config: dict = {}  # the resolved config of its first seed: config.json
        self.last_step = 0  # the newest epoch handed to the run: a retry's restored epochs are not logged twice
        self.final: tuple | None = None  # (last report's metrics, reliability bins) of a trial that trained to the end
        self.started: float | None = None  # when Tune started it: the run, created at its first report, starts then


class TrialWriter:
    """The study's one writer of child runs, in the process where Tune runs its callbacks (the driver; with Ray
    Client, the Tuner's actor on the head). Its methods only queue work for its thread."""

    def __init__(self, tracking: StudyTracking):
        self.tracking = tracking
        self.trials: dict[str, _Trial] = {}  # only the writer thread touches this
        self.missed: dict[str, int] = {}  # trial id -> values MLflow never took, for each run closed here
        self.named = 0  # child runs this writer created
        self._jobs = JobThread("mlflow-writer")

    def started(self, trial_id: str, when: float) -> None:
        def job():
            self.trials.setdefault(trial_id, _Trial()).started = when
        self._jobs.put(job)

    def report(self, trial_id: str, trial_name: str, config: dict, result: dict) -> None:
        result = dict(result)
        self._jobs.put(lambda: self._report(trial_id, trial_name, config, result))

    def end(self, trial_id: str, trial_name: str, status: str, tags: dict | None = None) -> None:
        """Tune ended the trial: send what its run holds, then its final status."""
        self._jobs.put(lambda: self._end(trial_id, trial_name, status, tags))

    def flush_deferred(self, deadline_s: float = 0.0) -> None:
        self._jobs.put(lambda: self.tracking.flush_deferred(deadline_s))

    def maybe_flush_deferred(self) -> None:
        if self.tracking.deferred:
            self._jobs.put(self.tracking.maybe_flush_deferred)

    def wait(self, timeout: float) -> bool:
        return self._jobs.wait(timeout)

    def drain(self, deadline_s: float) -> dict:
        """Close the runs an interrupted study left open (tracking.close marks them KILLED), wait for the rest;
        returns {trial id: values MLflow never took} for every run closed here."""
        def close_open():
            for trial_id, trial in list(self.trials.items()):
                if trial.child is not None:
                    self.missed[trial_id] = trial.child.close(deadline_s=min(deadline_s, 1.0))
            self.trials.clear()
        self._jobs.put(close_open)
        self._jobs.wait(timeout=deadline_s + 20)
        return dict(self.missed)

    # -- in the writer thread -----------------------------------------------------------------------------------
    def _report(self, trial_id: str, trial_name: str, config: dict, result: dict) -> None:
        trial = self.trials.setdefault(trial_id, _Trial())
        opening = read_opening(result)
        # the node the attempt runs on (the trial says: Tune's result has its IP only) and Tune's own host fields
        tags = {**opening["tags"], "ray.node_ip": result.get("node_ip", ""), "hostname": result.get("hostname", "")}
        if trial.child is None:
            cfgs, seeds = seed_configs(config)
            trial.config = cfgs[0].to_dict()
            self.named += 1
            trial.child = ChildRun(self.tracking.trial_info(), trial_id, run_name(self.named, config),
                                   run_params(cfgs[0], seeds),
                                   tags={**tags, "study": self.tracking.study_name, WRITER_TAG: "driver"},
                                   started=trial.started)
        elif opening["tags"]:  # the trial's next attempt (a retry, perhaps on another node): `resumed` now
            trial.child.set_tags(tags)
        for epoch, row in enumerate(opening["restored"], 1):
            self._log(trial, row, epoch)
        if FAILURE_KEY in result:
            trial.child.set_tags(read_json_key(result, TAGS_KEY) or {FAILURE_KEY: result[FAILURE_KEY]})
            return
        metrics = reported(result)
        self._log(trial, metrics, int(result["epoch"]))
        if RELIABILITY_KEY in result:
            trial.final = (metrics, read_json_key(result, RELIABILITY_KEY))

    @staticmethod
    def _log(trial: _Trial, metrics: dict, step: int) -> None:
        if step > trial.last_step:
            trial.child.log_metrics(metrics, step)
            trial.last_step = step

    def _end(self, trial_id: str, trial_name: str, status: str, tags: dict | None) -> None:
        trial = self.trials.pop(trial_id, None)
        if trial is not None and trial.child is not None:
            if trial.final is not None:
                self.missed[trial_id] = trial.child.finish(trial.config, *trial.final)
            else:
                self.missed[trial_id] = trial.child.close(deadline_s=10.0)
        self.tracking.set_trial_status(trial_id, trial_name, status, tags)


_WRITERS: dict = {}  # study name -> TrialWriter in this process


def writer_for(tracking: StudyTracking) -> TrialWriter:
    """The study's writer in this process: the first caller's tracker is the one it writes with (the driver's; on
    --resume Tune runs an unpickled copy of the callback, which finds the resumed driver's writer by the study's
    name; with Ray Client the callback in the head's Tuner actor makes its own)."""
    writer = _WRITERS.get(tracking.study_name)
    if writer is None:
        writer = _WRITERS[tracking.study_name] = TrialWriter(tracking)
    return writer


def drain_writer(study: str, deadline_s: float = 60.0) -> dict:
    """Close what is still open and wait for the study's writer in this process; {trial id: values missed}."""
    writer = _WRITERS.pop(study, None)
    return writer.drain(deadline_s) if writer is not None else {}


class TrackingCallback(tune.Callback):
    """Hands the study's writer every trial's start, reports and end, with the child run's final status.

    `relay` (search.client.DriverRelay): with Ray Client this runs in an actor on the head; what the writer missed
    and the status updates the server did not take by the end go back to the driver, which fills them in and
    retries on close."""

    relay = None  # (class default: a callback pickled by an older version, restored on --resume)

    def __init__(self, tracking: StudyTracking, max_epochs: int, relay=None):
        self.tracking, self.max_epochs, self.relay = tracking, max_epochs, relay

    def on_trial_start(self, iteration, trials, trial, **info):
        writer_for(self.tracking).started(trial.trial_id, time.time())

    def on_trial_result(self, iteration, trials, trial, result, **info):
        writer = writer_for(self.tracking)
        writer.report(trial.trial_id, str(trial), trial.config, result)
        writer.maybe_flush_deferred()  # the server may be back: send the statuses it missed

    def on_trial_complete(self, iteration, trials, trial, **info):
        status, tags = final_status(trial.last_result or {}, self.max_epochs)
        writer_for(self.tracking).end(trial.trial_id, str(trial), status, tags)

    def on_trial_error(self, iteration, trials, trial, **info):
        writer_for(self.tracking).end(trial.trial_id, str(trial), "FAILED", {"error": _error_text(trial)})

    def on_experiment_end(self, trials, **info):
        writer = writer_for(self.tracking)
        writer.flush_deferred(deadline_s=120)
        writer.wait(timeout=300)
        if self.relay is not None:
            self.relay.send("deferred", list(writer.tracking.deferred))
            self.relay.send("missed", dict(writer.missed))
