"""The live progress line: trials running / done / pruned / failed and the best value so far.

"Best so far" is the best of each trial's latest value, the one the leaderboard and the searcher rank a trial on
once it ends (its last epoch), not the best epoch any trial passed through: a value that a trial reached and then
lost would name a result the study's table never shows."""

from __future__ import annotations

import math
import time

from ray import tune

from trainables.protocol import FAILURE_KEY


class ProgressCallback(tune.Callback):
    """Live progress: trials running / done / pruned / failed and the best value so far.

    `relay` (search.client.DriverRelay): with Ray Client this runs in an actor on the head; the lines and the peak
    concurrency go back to the driver through it (`out` where no driver listens)."""

    relay = None  # (class defaults: a callback pickled by an older version, restored on --resume)
    latest: dict | None = None

    def __init__(self, metric: str, mode: str, max_epochs: int, every_s: float = 10.0, out=print, relay=None):
        self.metric, self.mode, self.max_epochs, self.every_s, self.out = metric, mode, max_epochs, every_s, out
        self.relay = relay
        self.t0 = time.time()
        self.last_print = 0.0
        self.latest = {}  # trial id -> its latest finite value of the metric
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
            elif t.status == "ERROR" or last.get(FAILURE_KEY):
                counts["failed"] += 1
            elif t.status == "TERMINATED":
                counts["pruned" if int(last.get("epoch", 0)) < self.max_epochs else "done"] += 1
        best = "-" if self.best is None else f"{self.best:.3f}"
        parts = ", ".join(f"{v} {k}" for k, v in counts.items())
        return f"[{time.time() - self.t0:6.0f}s] trials: {parts} | best {self.metric} so far: {best}"

    @property
    def best(self) -> float | None:
        values = (self.latest or {}).values()
        return None if not values else (min(values) if self.mode == "min" else max(values))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if self.latest is None:
            self.latest = {}
        v = result.get(self.metric)
        if v is not None and math.isfinite(v):
            self.latest[trial.trial_id] = v
        else:  # a diverged trial's NaN: it ends failed, outside the ranking
            self.latest.pop(trial.trial_id, None)
        if time.time() - self.last_print >= self.every_s:
            self.last_print = time.time()
            self._emit(self._line(trials))

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.active.discard(trial.trial_id)
        self.last_print = time.time()
        self._emit(self._line(trials))

    def on_trial_error(self, iteration, trials, trial, **info):
        self.active.discard(trial.trial_id)
