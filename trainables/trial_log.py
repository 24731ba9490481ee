"""How a trial's reports reach its MLflow child run (trainables/child_run.py does the writing).

A fresh trial worker that wrote to MLflow itself would first import MLflow and SQLAlchemy: about 3 s of CPU per
worker, spent while the trials train and compete for the same cores. So nothing in a trial writes to MLflow
where something else can:

- on the driver's node, the driver writes (search/trial_writer.py): it has MLflow loaded already and Tune hands it
  every report, so the trial only adds what the driver cannot know to its reports (`DriverLog`): the epochs its
  checkpoint restored, the reliability bins at the end, the tags of a failure;
- on every other node, one `TrackingAgent` per node, started as soon as Ray is up, imports all that once and writes
  for every trial on its node through the tracking URI (nodes need network access to the server, not a shared
  disk); a trial sends its reports to it without waiting (`AgentLog`);
- on a node without an agent (one that joined after the study started) the trial writes itself, opening its run in
  a background thread (`TrialLog`).

Each counts, for the driver, what MLflow did not take (UNLOGGED_KEY) and what is not known to be in it yet
(HELD_KEY); the driver fills in from the trial's result.json what a dead worker, agent or driver never sent.
"""

from __future__ import annotations

import json
import math
import queue
import tempfile
import threading
from concurrent.futures import Future
from pathlib import Path

import ray

UNLOGGED_KEY = "mlflow_unlogged"  # reported, never logged to MLflow: values MLflow missed (server unreachable)
HELD_KEY = "mlflow_held"  # reported, never logged: metric values not yet known to be in MLflow
AGENT_PREFIX = "aikd-mlflow-agent-"
WRITER_TAG = "mlflow_writer"  # on the child run: who wrote it ("driver", "node agent" or "trial")
# In the reports of a trial the driver writes for (DriverLog); strings, so that no searcher or logger takes them for
# metrics. OPEN_KEY comes with an attempt's first report, RELIABILITY_KEY with the last, TAGS_KEY with a failure.
WRITER_KEY = WRITER_TAG
OPEN_KEY = "mlflow_open"
RELIABILITY_KEY = "mlflow_reliability"
TAGS_KEY = "mlflow_tags"
KV_NAMESPACE = "aikd"
# MLflow's REST client retries a refused connection inside every call for ~4 minutes (7 retries, backoff factor
# 2): that would stall training (worker) or Tune's event loop (driver) for a whole outage. Our callers retry with
# their own backoff and keep what they could not send, so each call fails fast instead. Values set by the user win.
# (They live here, not in child_run: the driver reads them before it may import MLflow.)
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
                 # with a server URI, set_terminated otherwise fetches the run once more and prints two "View run"
                 # lines per trial into the study's progress output (run.py prints the parent's URL once)
                 "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}
FINISH_DEADLINE_S = 60.0  # a trial's last request retries this long through a server outage
OPEN_WAIT_S = 120.0  # a trial's last report waits at most this long for its agent to open its run


def metric_values(metrics: dict) -> int:
    """How many values of a report MLflow would take as metrics: what HELD_KEY and UNLOGGED_KEY count."""
    return sum(isinstance(v, (int, float)) for v in metrics.values())


def agent_name(study: str, node_id: str) -> str:
    return f"{AGENT_PREFIX}{study}-{node_id}"


class JobThread:
    """One daemon thread that runs queued calls in the order they came; a call that raises is printed and the next
    one runs (a writer keeps writing for the other trials; the driver fills in from result.json)."""

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


def log_trial_artifacts(child, config: dict, final: dict, reliability: dict) -> None:
    """Resolved config, final metrics with ECE before/after temperature scaling, reliability diagrams (val, test)."""
    from trainables.plots import reliability_figure
    child.log_dict(config, "config.json")
    child.log_dict({k: v for k, v in final.items() if isinstance(v, (int, float)) and math.isfinite(v)},
                   "final_metrics.json")
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "reliability.png"
        reliability_figure({k.replace("reliability_", ""): v for k, v in reliability.items()}, path)
        child.log_file(path)


def replay(child, restored: list[dict]) -> None:
    """Epochs a resumed trial's checkpoint holds (an earlier attempt may have died holding them for its next batch);
    the child run skips those its history already has."""
    for epoch, metrics in enumerate(restored, 1):
        child.log_metrics(metrics, epoch)


def finish_child(child, config: dict, final: dict, reliability: dict) -> int:
    """A trial's last report: artifacts, then the run closed FINISHED; returns the metric values MLflow missed."""
    log_trial_artifacts(child, config, final, reliability)
    return child.close(deadline_s=FINISH_DEADLINE_S)


def fail_child(child, tags: dict) -> int:
    child.set_tags(tags)
    return child.close(deadline_s=10)


# ---- one writer per node -----------------------------------------------------------------------------------------

class _AgentTrial:
    """One trial's run on its agent. `sent` (calls) and `handed` (writer thread) have one writer each, so that their
    difference, the values still queued, needs no lock."""

    def __init__(self):
        self.child = None
        self.opened = threading.Event()
        self.sent = 0
        self.handed = 0


class TrackingAgent:
    """Ray actor (one per node, see `start_agents`): the child runs of the trials on its node. Calls only queue work
    for one writer thread, in the order they arrive (a trial's calls arrive in the order it made them), so a trial
    never waits for MLflow; its last report waits only until its run exists, because the driver sets the run's
    final status as soon as the trial ends."""

    def __init__(self):
        # Imports only: the store (and a new database file) waits for the first trial, after the input checks.
        import mlflow.tracking  # noqa: F401

        import trainables.plots  # noqa: F401  (Pillow, for the reliability diagrams)
        from trainables.child_run import ChildRun, fail_fast_http
        fail_fast_http()
        self._child_run = ChildRun
        self.trials: dict[str, _AgentTrial] = {}
        self.missed: dict[str, int] = {}  # trial id -> values MLflow never took, for each run this agent closed
        self._jobs = JobThread("mlflow-writer")

    def _counts(self, trial: _AgentTrial) -> dict:
        child = trial.child
        return {UNLOGGED_KEY: child.unlogged if child else 0,
                HELD_KEY: (child.held if child else 0) + trial.sent - trial.handed}

    def open(self, tracking: dict, trial_id: str, trial_name: str, params: dict, tags: dict,
             restored: list[dict]) -> None:
        old = self.trials.get(trial_id)  # an earlier attempt of this trial that died without closing
        trial = self.trials[trial_id] = _AgentTrial()

        def job():
            try:
                if old is not None and old.child is not None:
                    old.child.close(deadline_s=0)
                trial.child = self._child_run(tracking, trial_id, trial_name, params, tags=tags)
                replay(trial.child, restored)
            finally:
                trial.opened.set()
        self._jobs.put(job)

    def log_metrics(self, trial_id: str, metrics: dict, step: int) -> dict:
        trial = self.trials[trial_id]
        values = metric_values(metrics)
        trial.sent += values

        def job():
            if trial.child is not None:
                trial.child.log_metrics(metrics, step)
            trial.handed += values
        self._jobs.put(job)
        return self._counts(trial)

    def _end(self, trial_id: str, end, *args) -> dict:
        """Queue the trial's last request (`end(child, *args)` returns the values missed). The driver sets the run's
        final status as soon as the trial ends, so the run must exist in MLflow first: if the server kept it from
        opening (an outage), wait here for the last request, which retries, as the trial used to."""
        trial = self.trials.pop(trial_id, None)
        if trial is None:
            return {UNLOGGED_KEY: 0, HELD_KEY: 0}
        trial.opened.wait(timeout=OPEN_WAIT_S)
        done = threading.Event()

        def job():
            try:
                self.missed[trial_id] = end(trial.child, *args) if trial.child is not None else trial.sent
            finally:
                done.set()
        self._jobs.put(job)
        if trial.child is not None and trial.child.run_id is not None:
            return self._counts(trial)
        done.wait(timeout=FINISH_DEADLINE_S + 30)
        return {UNLOGGED_KEY: self.missed.get(trial_id, trial.sent), HELD_KEY: 0}

    def finish(self, trial_id: str, config: dict, final: dict, reliability: dict) -> dict:
        return self._end(trial_id, finish_child, config, final, reliability)

    def fail(self, trial_id: str, tags: dict) -> dict:
        return self._end(trial_id, fail_child, tags)

    def close(self, trial_id: str, deadline_s: float = 1.0) -> dict:
        return self._end(trial_id, lambda child: child.close(deadline_s=deadline_s))

    def drain(self, deadline_s: float) -> dict:
        """At the end of the study: close what stopped trials left open, wait for the writer; returns, per trial
        this agent closed, the values MLflow never took."""
        for trial_id in list(self.trials):
            self.close(trial_id, deadline_s)
        self._jobs.wait(timeout=deadline_s + 20)
        return dict(self.missed)


def start_agents(study: str, skip_node: str | None = None) -> list:
    """One agent per alive node but `skip_node` (the driver's, which writes for its trials itself), pinned there;
    returns their handles without waiting for them to start."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
    actor = ray.remote(num_cpus=0, max_restarts=0)(TrackingAgent)
    return [actor.options(name=agent_name(study, n["NodeID"]), lifetime="non_detached",
                          scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
            .remote()
            for n in ray.nodes() if n.get("Alive") and n["NodeID"] != skip_node]


def drain_agents(agents: list, deadline_s: float = 60.0) -> dict:
    """Let the agents write what they hold and close the runs stopped trials left open; returns {trial id: values
    MLflow never took} for the trials they closed (an agent that died reports nothing: the driver's fallback is the
    trials' result.json)."""
    missed = {}
    for ref in [a.drain.remote(deadline_s) for a in agents]:
        try:
            missed.update(ray.get(ref, timeout=deadline_s + 40))
        except Exception:
            pass
    return missed


def _driver_key(study: str) -> str:
    return f"driver-node-{study}"


def announce_driver_node(study: str) -> str:
    """Tell the study's trials which node the driver writes for (its own); returns that node's id. Kept in Ray's
    key-value store, not in the trial config, so that a resumed study's driver (another node id) is found too."""
    from ray.experimental.internal_kv import _internal_kv_put
    node = ray.get_runtime_context().get_node_id()
    _internal_kv_put(_driver_key(study), node, namespace=KV_NAMESPACE)
    return node


def driver_writes_here(study: str) -> bool:
    """Is this trial on the node whose trials the study's driver writes for?"""
    try:
        from ray.experimental.internal_kv import _internal_kv_get
        node = _internal_kv_get(_driver_key(study), namespace=KV_NAMESPACE)
        return node is not None and node.decode() == ray.get_runtime_context().get_node_id()
    except Exception:  # no Ray here, or another version's API: an agent or the trial writes
        return False


def find_agent(study: str):
    """This node's agent, or None (no agent started here, or tracking is off)."""
    try:
        return ray.get_actor(agent_name(study, ray.get_runtime_context().get_node_id()))
    except Exception:
        return None


class AgentLog:
    """A trial's side of its node's agent: reports go out without waiting; only the last one waits."""

    def __init__(self, agent, tracking: dict, trial_id: str, trial_name: str, params: dict, tags: dict,
                 restored: list[dict]):
        self.agent, self.trial_id = agent, trial_id
        self._counts = {UNLOGGED_KEY: 0, HELD_KEY: 0}
        self._in_flight: list[tuple] = []  # (ref, values) of reports the agent has not answered yet
        self._sent = 0  # metric values handed to the agent
        self._closed = False
        agent.open.remote(tracking, trial_id, trial_name, params, tags, restored)

    def log_metrics(self, metrics: dict, step: int) -> None:
        values = metric_values(metrics)
        self._in_flight.append((self.agent.log_metrics.remote(self.trial_id, metrics, step), values))
        self._sent += values

    def counts(self) -> dict:
        if self._in_flight:
            done = set(ray.wait([r for r, _ in self._in_flight], num_returns=len(self._in_flight), timeout=0)[0])
            for ref in [r for r, _ in self._in_flight if r in done]:  # in the order sent: the last is the newest
                try:
                    self._counts = ray.get(ref)
                except Exception:  # the agent died: nothing it held is known to be in MLflow
                    self._counts = {UNLOGGED_KEY: self._sent, HELD_KEY: 0}
            self._in_flight = [x for x in self._in_flight if x[0] not in done]
        return {UNLOGGED_KEY: self._counts[UNLOGGED_KEY],
                HELD_KEY: self._counts[HELD_KEY] + sum(v for _, v in self._in_flight)}

    def _wait(self, ref) -> dict:
        self._closed = True
        try:
            return ray.get(ref)
        except Exception:  # the agent died: the driver fills in the metrics from the trial's results
            return {UNLOGGED_KEY: self._sent, HELD_KEY: 0}

    def finish(self, config: dict, final: dict, reliability: dict) -> dict:
        """Returns the counts for the last report (the agent's writing goes on after it)."""
        return self._wait(self.agent.finish.remote(self.trial_id, config, final, reliability))

    def fail(self, tags: dict) -> dict:
        return self._wait(self.agent.fail.remote(self.trial_id, tags))

    def close(self, deadline_s: float = 1.0) -> None:
        if not self._closed:  # a stopped trial: the agent sends what it holds; no need to wait for it
            self._closed = True
            self.agent.close.remote(self.trial_id, deadline_s)


# ---- the driver writes ------------------------------------------------------------------------------------------

class DriverLog:
    """A trial's side when the driver writes its child run: nothing to send but what the driver cannot know (see
    the keys above). Every report says it may lack all its values (HELD_KEY counts them all): only the driver knows
    what it wrote, and if it died before saying, `settle` of a resumed study must look."""

    def __init__(self, tags: dict, restored: list[dict]):
        self._opening = json.dumps({"tags": {k: str(v) for k, v in tags.items()}, "restored": restored})
        self._held = sum(metric_values(r) for r in restored)

    def _counts(self) -> dict:
        counts = {WRITER_KEY: "driver", UNLOGGED_KEY: 0, HELD_KEY: self._held}
        if self._opening is not None:
            counts[OPEN_KEY], self._opening = self._opening, None
        return counts

    def log_metrics(self, metrics: dict, step: int) -> None:
        self._held += metric_values(metrics)

    def counts(self) -> dict:
        return self._counts()

    def finish(self, config: dict, final: dict, reliability: dict) -> dict:
        return {**self._counts(), RELIABILITY_KEY: json.dumps(reliability)}

    def fail(self, tags: dict) -> dict:
        return {**self._counts(), TAGS_KEY: json.dumps({k: str(v) for k, v in tags.items()})}

    def close(self, deadline_s: float = 1.0) -> None:
        pass


# ---- the trial writes itself -------------------------------------------------------------------------------------

class TrialLog:
    """The trial's child run in this process, opened in a background thread so that training does not wait for
    MLflow's imports; reports made before it is open wait here and go out with the first batch after."""

    def __init__(self, tracking: dict, trial_id: str, trial_name: str, params: dict, tags: dict,
                 restored: list[dict]):
        self.child = None
        self.restored = restored
        self._early: list[tuple[dict, int]] = []
        self._opening = Future()
        threading.Thread(target=self._open, args=(tracking, trial_id, trial_name, params, tags), daemon=True,
                         name="mlflow-child-run").start()

    def _open(self, tracking, trial_id, trial_name, params, tags) -> None:
        try:
            from trainables.child_run import ChildRun
            child = ChildRun(tracking, trial_id, trial_name, params, tags=tags)
            import trainables.plots  # noqa: F401  (Pillow, for the reliability diagram at the end)
            self._opening.set_result(child)
        except BaseException as e:
            self._opening.set_exception(e)

    def _ready(self, wait: bool):
        if self.child is None and (wait or self._opening.done()):
            self.child = self._opening.result()
            replay(self.child, self.restored)
            for metrics, step in self._early:
                self.child.log_metrics(metrics, step)
            self._early = []
        return self.child

    def log_metrics(self, metrics: dict, step: int) -> None:
        if self._ready(wait=False) is None:
            self._early.append((dict(metrics), step))
        else:
            self.child.log_metrics(metrics, step)

    def counts(self) -> dict:
        if self.child is None:
            return {UNLOGGED_KEY: 0, HELD_KEY: sum(len(m) for m, _ in self._early)}
        return {UNLOGGED_KEY: self.child.unlogged, HELD_KEY: self.child.held}

    def finish(self, config: dict, final: dict, reliability: dict) -> dict:
        return {UNLOGGED_KEY: finish_child(self._ready(wait=True), config, final, reliability), HELD_KEY: 0}

    def fail(self, tags: dict) -> dict:
        return {UNLOGGED_KEY: fail_child(self._ready(wait=True), tags), HELD_KEY: 0}

    def close(self, deadline_s: float = 1.0) -> None:
        """Send everything held (a second call sends nothing)."""
        self._ready(wait=True).close(deadline_s=deadline_s)


def open_trial_log(study: dict, trial_id: str, trial_name: str, params: dict, tags: dict, restored: list[dict]):
    """The trial's log: written by the driver on the driver's node, through its node's agent where there is one,
    else by the trial itself (the tag `mlflow_writer` on the child run says which)."""
    if driver_writes_here(study.get("name", "")):
        return DriverLog(tags, restored)
    agent = find_agent(study.get("name", ""))
    if agent is not None:
        return AgentLog(agent, study["tracking"], trial_id, trial_name, params, {**tags, WRITER_TAG: "node agent"},
                        restored)
    return TrialLog(study["tracking"], trial_id, trial_name, params, {**tags, WRITER_TAG: "trial"}, restored)
