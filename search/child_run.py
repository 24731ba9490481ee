"""A trial's MLflow child run, written by the driver's writer (search/tracking.py) through the tracking URI.

The run is found by its trial-id tag before one is created, so a retried or resumed trial keeps exactly one
child run, and an epoch that a retried or resumed trial trains again is not logged twice (the steps already in the
run's `epoch` history are skipped). Metrics go out as `log_batch` requests at most every `flush_interval_s`
(AIKD_MLFLOW_FLUSH_S, default 10 s): an epoch slower than that is sent at once, faster ones travel several to a
request, and `close()` (the trial ended or was stopped) sends what is held. When the server is unreachable nothing
here raises: the run is opened later if it could not be at the start, and metrics, tags and artifacts that could
not be sent are kept and sent with the next request, so what was missed during an outage is filled in when the
server returns; `close()` keeps retrying with backoff until its deadline and counts what still could not be sent,
which the driver fills in from the trial's result.json at the end of the study (or lists in the summary).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from search.plots import reliability_figure
from search.store import fail_fast_http

TRIAL_TAG = "ray.trial_id"
MAX_PENDING = 10_000


def retry(fn, attempts=4, base_delay=0.5):
    for i in range(attempts):
        try:
            return fn()
        except Exception:
            if i == attempts - 1:
                raise
            time.sleep(base_delay * 2**i)


def find_child(client, experiment_id: str, parent_run_id: str, trial_id: str):
    """The child run of a trial (by its trial-id tag), or None."""
    found = client.search_runs([experiment_id], filter_string=f"tags.`{TRIAL_TAG}` = '{trial_id}' and "
                                                              f"tags.`mlflow.parentRunId` = '{parent_run_id}'",
                               max_results=1)
    return found[0] if found else None


def log_params(client, run_id: str, params: dict) -> None:
    """A run's params, in requests of at most 100 (MLflow's limit per batch)."""
    items = [Param(k, param_str(v)) for k, v in sorted(params.items())]
    for i in range(0, len(items), 100):
        retry(lambda chunk=items[i:i + 100]: client.log_batch(run_id, params=chunk))


class ChildRun:
    OPEN_ATTEMPTS = 3  # ~1.5 s at the start of the trial; after that the run is opened with a later request

    def __init__(self, tracking: dict, trial_id: str, trial_name: str, params: dict, tags: dict | None = None,
                 flush_interval_s: float | None = None, started: float | None = None):
        """`started`: when the trial started (seconds since the epoch), for a run created later than that."""
        fail_fast_http()
        self.started_ms = int(started * 1000) if started else None
        self.flush_interval_s = flush_interval_s if flush_interval_s is not None else \
            float(os.environ.get("AIKD_MLFLOW_FLUSH_S", "10"))
        self._last_flush = time.monotonic()
        self._failing = False  # the last request failed: retry with every report until one gets through
        self.client = MlflowClient(tracking_uri=tracking["uri"])
        self.trial_id, self.trial_name = trial_id, trial_name
        self.experiment_id, self.parent = tracking["experiment_id"], tracking["parent_run_id"]
        all_tags = {"mlflow.parentRunId": self.parent, TRIAL_TAG: trial_id, **(tags or {})}
        # tag values must be strings: a SQL store coerces them, the REST store (mlflow server) raises TypeError
        self._tags = {k: str(v) for k, v in all_tags.items()}
        self._params = params
        self.run_id: str | None = None
        self.logged_through = 0  # epochs an earlier attempt of this trial logged already
        self.pending: list[Metric] = []
        self.pending_tags: dict = {}
        self.pending_files: list[tuple[str, str | None]] = []
        self.missed = 0
        self._spool: str | None = None
        self._open(attempts=self.OPEN_ATTEMPTS)

    # -- opening the run --------------------------------------------------------------------------------------
    def _open(self, attempts: int = 1) -> bool:
        if self.run_id is None:
            try:
                retry(self._open_once, attempts=attempts)
            except Exception:
                return False
            self.pending = [m for m in self.pending if m.step > self.logged_through]
        return True

    def _open_once(self) -> None:
        run = find_child(self.client, self.experiment_id, self.parent, self.trial_id)
        if run is not None:
            self.client.update_run(run.info.run_id, status="RUNNING")
            self.client.log_batch(run.info.run_id, tags=[RunTag(k, v) for k, v in self._tags.items()])
            if not run.data.params:
                log_params(self.client, run.info.run_id, self._params)
            history = self.client.get_metric_history(run.info.run_id, "epoch")
            self.logged_through = max((int(m.step) for m in history), default=0)
        else:
            run = self.client.create_run(self.experiment_id, run_name=self.trial_name, tags=self._tags,
                                         start_time=self.started_ms)
            log_params(self.client, run.info.run_id, self._params)
        self.run_id = run.info.run_id

    # -- logging ----------------------------------------------------------------------------------------------
    def log_metrics(self, metrics: dict, step: int) -> None:
        """Held until `flush_interval_s` has passed since the last request, then sent with everything held."""
        if step <= self.logged_through:
            return  # an epoch trained again after a retry or resume: logged once already
        ts = int(time.time() * 1000)
        self.pending += [Metric(k, float(v), ts, step) for k, v in metrics.items()
                         if isinstance(v, (int, float)) and math.isfinite(float(v))]
        if self._failing or time.monotonic() - self._last_flush >= self.flush_interval_s:
            self.flush()

    def set_tags(self, tags: dict) -> None:
        self.pending_tags.update({k: str(v) for k, v in tags.items()})
        self.flush()

    def log_dict(self, data: dict, name: str) -> None:
        path = Path(tempfile.mkdtemp(dir=self._spool_dir())) / name
        path.write_text(json.dumps(data, indent=1, sort_keys=True, default=str))
        self.pending_files.append((str(path), None))
        self.flush()

    def log_file(self, path, artifact_path: str | None = None) -> None:
        kept = Path(tempfile.mkdtemp(dir=self._spool_dir())) / Path(path).name
        shutil.copyfile(path, kept)  # the caller may delete its file before the server is back
        self.pending_files.append((str(kept), artifact_path))
        self.flush()

    def _spool_dir(self) -> str:
        if self._spool is None:
            self._spool = tempfile.mkdtemp(prefix="aikd-mlflow-")
        return self._spool

    @property
    def unlogged(self) -> int:
        """Metric values, tags and files that MLflow did not take (server unreachable), or lost."""
        kept = len(self.pending) + len(self.pending_tags) + len(self.pending_files) if self._failing else 0
        return kept + self.missed

    @property
    def held(self) -> int:
        """Metric values waiting for the next batch (the server took the last request)."""
        return 0 if self._failing else len(self.pending)

    def flush(self) -> bool:
        """One attempt to send everything pending; False (and everything kept) if the server is unreachable."""
        self._last_flush = time.monotonic()
        self._failing = not self._send()
        return not self._failing

    def _send(self) -> bool:
        if not self._open():
            self._cap()
            return False
        try:
            if self.pending_tags:
                self.client.log_batch(self.run_id, tags=[RunTag(k, v) for k, v in self.pending_tags.items()])
                self.pending_tags = {}
            while self.pending:
                batch = self.pending[:1000]
                self.client.log_batch(self.run_id, metrics=batch)
                self.pending = self.pending[len(batch):]
            while self.pending_files:
                path, artifact_path = self.pending_files[0]
                self.client.log_artifact(self.run_id, path, artifact_path)
                self.pending_files.pop(0)
        except Exception:
            self._cap()
            return False
        return True

    def _cap(self) -> None:
        if len(self.pending) > MAX_PENDING:
            self.missed += len(self.pending) - MAX_PENDING
            self.pending = self.pending[-MAX_PENDING:]

    def finish(self, config: dict, final: dict, reliability: dict, deadline_s: float = 60.0) -> int:
        """A trial's end: resolved config, final metrics (ECE before/after temperature scaling), reliability diagrams
        (val, test); then everything sent. Returns the count missed."""
        self.log_dict(config, "config.json")
        self.log_dict({k: v for k, v in final.items() if isinstance(v, (int, float)) and math.isfinite(v)},
                      "final_metrics.json")
        path = Path(tempfile.mkdtemp(dir=self._spool_dir())) / "reliability.png"
        reliability_figure({k.replace("reliability_", ""): v for k, v in reliability.items()}, path)
        self.pending_files.append((str(path), None))
        return self.close(deadline_s)

    def close(self, deadline_s: float = 60.0) -> int:
        """Send what is still pending (retrying with backoff until the deadline); returns the count missed."""
        delay, end = 0.5, time.time() + deadline_s
        while not self.flush() and time.time() < end:
            time.sleep(min(delay, max(0.0, end - time.time())))
            delay = min(delay * 2, 8.0)
        self.missed += len(self.pending) + len(self.pending_tags) + len(self.pending_files)
        self.pending, self.pending_tags, self.pending_files = [], {}, []
        if self._spool is not None:
            shutil.rmtree(self._spool, ignore_errors=True)
            self._spool = None
        return self.missed


def param_str(v) -> str:
    s = json.dumps(v) if isinstance(v, (list, tuple, dict)) else str(v)
    return s[:6000]
