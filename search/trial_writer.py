"""The driver's MLflow writer: the child runs of the trials on the driver's own node, and every child's final status.

Why the driver: a writer process on its node (a Ray worker that imports MLflow and SQLAlchemy, ~4-5 s of CPU with
the worker's start) would start just when the first trials start, and compete with them for the cores. The driver
has MLflow loaded already, and Tune hands it every report, so a trial there only adds to its reports what the
driver cannot know (trainables.trial_log.DriverLog). Trials on other nodes keep their node's agent
(trainables/trial_log.py).

Everything the driver writes while the trials run goes through one thread, in the order Tune delivered it: Tune's
event loop never waits for MLflow, a run exists before its final status is set (so no second run is created for
the trial), and the status updates an outage kept back have one owner.
"""

from __future__ import annotations

import json

from trainables.child_run import ChildRun
from trainables.kd import FAILURE_KEY, _reported, run_params, seed_configs
from trainables.trial_log import OPEN_KEY, RELIABILITY_KEY, TAGS_KEY, WRITER_KEY, WRITER_TAG, JobThread, finish_child

_WRITERS: dict = {}  # study name -> DriverWriter in this process


def driver_writer(tracking) -> DriverWriter:
    """The study's writer in this process: the first caller's tracker is the one it writes with (run.py's; on
    --resume Tune runs an unpickled copy of the callbacks, which finds the same writer by the study's name)."""
    writer = _WRITERS.get(tracking.study_name)
    if writer is None:
        writer = _WRITERS[tracking.study_name] = DriverWriter(tracking)
    return writer


def drain_driver_writer(study: str, deadline_s: float = 60.0) -> dict:
    """Close what is still open and wait for the writer; returns {trial id: values MLflow never took} for the trials
    it wrote (empty when this process has no writer for the study)."""
    writer = _WRITERS.pop(study, None)
    return writer.drain(deadline_s) if writer is not None else {}


class _Trial:
    def __init__(self):
        self.child: ChildRun | None = None
        self.config: dict = {}  # the resolved config of its first seed: config.json
        self.last_step = 0  # the newest epoch handed to the run: a retry's restored epochs are not logged twice
        self.final: tuple | None = None  # (last report's metrics, reliability bins) of a trial that trained to the end
        self.started: float | None = None  # when Tune started it: the run, created at its first report, starts then


class DriverWriter:
    """One per study in the driver's process (see `driver_writer`); its methods only queue work for its thread."""

    def __init__(self, tracking):
        self.tracking = tracking
        self.trials: dict[str, _Trial] = {}  # only the writer thread touches this
        self.missed: dict[str, int] = {}  # trial id -> values MLflow never took, for each run closed here
        self._jobs = JobThread("mlflow-driver-writer")

    def started(self, trial_id: str, when: float) -> None:
        """Tune started the trial (any node: a trial's node is known from its first report)."""
        def job():
            self.trials.setdefault(trial_id, _Trial()).started = when
        self._jobs.put(job)

    def report(self, trial_id: str, trial_name: str, config: dict, result: dict) -> None:
        """A report of a trial on this node (it carries WRITER_KEY)."""
        result = dict(result)
        self._jobs.put(lambda: self._report(trial_id, trial_name, config, result))

    def end(self, trial_id: str, trial_name: str, status: str, tags: dict | None = None) -> None:
        """Tune ended the trial: send what its run holds, then its final status (any trial, any node)."""
        self._jobs.put(lambda: self._end(trial_id, trial_name, status, tags))

    def flush_deferred(self, deadline_s: float = 0.0) -> None:
        self._jobs.put(lambda: self.tracking.flush_deferred(deadline_s))

    def maybe_flush_deferred(self) -> None:
        if self.tracking.deferred:
            self._jobs.put(self.tracking.maybe_flush_deferred)

    def wait(self, timeout: float) -> bool:
        return self._jobs.wait(timeout)

    def drain(self, deadline_s: float) -> dict:
        """Close the runs an interrupted study left open (tracking.close marks them KILLED) and wait for the rest."""
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
        opening = json.loads(result[OPEN_KEY]) if OPEN_KEY in result else {"tags": {}, "restored": []}
        if trial.child is None:
            cfgs, seeds = seed_configs(config)
            trial.config = cfgs[0].to_dict()
            trial.child = ChildRun(self.tracking.trial_info(), trial_id, trial_name, run_params(cfgs[0], seeds),
                                   tags={**opening["tags"], WRITER_TAG: "driver"}, started=trial.started)
        elif opening["tags"]:  # the trial's next attempt (a retry): `resumed` now
            trial.child.set_tags(opening["tags"])
        for epoch, row in enumerate(opening["restored"], 1):
            self._log(trial, row, epoch)
        if FAILURE_KEY in result:
            if TAGS_KEY in result:
                trial.child.set_tags(json.loads(result[TAGS_KEY]))
            return
        metrics = _reported(result)
        self._log(trial, metrics, int(result["epoch"]))
        if RELIABILITY_KEY in result:
            trial.final = (metrics, json.loads(result[RELIABILITY_KEY]))

    @staticmethod
    def _log(trial: _Trial, metrics: dict, step: int) -> None:
        if step > trial.last_step:
            trial.child.log_metrics(metrics, step)
            trial.last_step = step

    def _end(self, trial_id: str, trial_name: str, status: str, tags: dict | None) -> None:
        trial = self.trials.pop(trial_id, None)
        if trial is not None and trial.child is not None:
            if trial.final is not None:
                self.missed[trial_id] = finish_child(trial.child, trial.config, *trial.final)
            else:
                self.missed[trial_id] = trial.child.close(deadline_s=10.0)
        self.tracking.set_trial_status(trial_id, trial_name, status, tags)


def is_driver_report(result: dict) -> bool:
    return result.get(WRITER_KEY) == "driver"
