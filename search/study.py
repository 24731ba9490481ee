"""Running a planned study: Ray (started or joined), the study's MLflow parent run, the phase-1 teachers, the
Tuner (Optuna proposing, ASHA stopping, fractional resources), the summary, and what is left to close.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import signal
import sys
import time
from pathlib import Path

from aikd.config import TrainConfig
from search.plan import Plan, check_dataset
from trainables.protocol import CELL_KEY, STUDY_KEY, study_config


def tune_environment() -> None:
    """Tune's settings for a study (`search.cluster.TUNE_DEFAULTS`: what a user cannot act on stays off the
    console, no logger that nothing reads), Ray's SIGINT handling left to ours, Optuna's per-trial notes off."""
    from search.cluster import TUNE_DEFAULTS
    for k, v in TUNE_DEFAULTS.items():
        os.environ.setdefault(k, v)
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # ours (Interruption) stops Tune the same way
    logging.getLogger("ray.tune.tune").setLevel(logging.CRITICAL)
    import optuna
    optuna.logging.set_verbosity(optuna.logging.ERROR)


class Interruption:
    """SIGINT (Ctrl-C) and SIGTERM (a cluster scheduler's stop) end a study cleanly.

    While Tune runs, the first signal asks Tune to stop the way its own Ctrl-C handler does (its SIGUSR1 handler):
    the trials are stopped where they are, Tune saves the experiment state one last time and `fit()` returns, so
    `--resume` continues the cut-short trials from their checkpoints. A second signal while that happens is
    ignored (the state being written is what makes the study resumable); a third exits at once, leaving the study
    as resumable as after a SIGKILL. Before Tune runs, the first signal stops the start-up
    (KeyboardInterrupt)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, out=print):
        self.out, self.signal, self.count, self.tuning = out, None, 0, False
        self._previous = {}

    def __enter__(self):
        for sig in self.SIGNALS:
            self._previous.setdefault(sig, signal.signal(sig, self._handle))
        return self

    def reinstall(self) -> None:
        """After `ray.init`: Ray's core installs its own SIGTERM handler (it aborts the process), which must not
        win over this one."""
        for sig in self.SIGNALS:
            signal.signal(sig, self._handle)

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False

    @property
    def exit_code(self) -> int:
        return 128 + int(self.signal or signal.SIGINT)

    def _handle(self, sig, frame):
        self.count += 1
        if self.count == 1:
            self.signal = sig
            stop_tune = signal.getsignal(signal.SIGUSR1)
            if self.tuning and callable(stop_tune):
                self.out(f"{signal.Signals(sig).name}: stopping the trials and saving the study's state ...")
                stop_tune(signal.SIGUSR1, frame)
                return
            raise KeyboardInterrupt
        if self.count == 2:
            self.out("still saving the study's state (so that it can be resumed); a third signal quits at once")
            return
        os._exit(self.exit_code)


def resume_command(plan: Plan) -> str:
    return shlex.join(["python", "search/run.py", "--resume", "--name", plan.name, "--storage", plan.storage])


def record_interrupted(plan: Plan, tracking, out) -> tuple[int, int]:
    """After an interrupted `fit()`: which trials Tune's last snapshot holds as unfinished (it resumes them), marked
    so in the Optuna journal (user attribute `interrupted`, the trial stays RUNNING: `--resume` continues it) and,
    through `tracking.close`, in MLflow. Returns (finished, planned) trials."""
    from search.resume import snapshot_trials
    from search.searchers import RAY_TRIAL_ATTR, load_study
    snapshot = snapshot_trials(Path(plan.study_dir))
    cut = {t for t, status in snapshot.items() if status not in ("TERMINATED", "ERROR")}
    journal = Path(plan.study_dir) / "optuna.journal"
    if cut and journal.exists():
        try:
            study = load_study(plan.name, journal)
            for t in study.get_trials(deepcopy=False):
                if t.user_attrs.get(RAY_TRIAL_ATTR) in cut and not t.state.is_finished():
                    study._storage.set_trial_user_attr(t._trial_id, "interrupted", True)
        except Exception as e:  # the journal stays as it is: resume reconciles it anyway
            out(f"warning: could not mark the interrupted trials in the Optuna journal: {e}")
    if tracking is not None:
        tracking.interrupted = sorted(cut)
    return len(snapshot) - len(cut), max(plan.num_samples, len(snapshot))


def _trial_dirname(trial) -> str:
    return f"trial_{trial.trial_id}"


def param_space(plan: Plan) -> dict:
    """The config every trial gets (trainables/protocol.py); a grid study's cells are Tune's grid."""
    from ray import tune

    from search.plan import study_schedule
    schedule = study_schedule(plan.checkpoint_every, plan.epochs, plan.grace_period if plan.scheduler else None,
                              plan.reduction_factor)
    ps = {STUDY_KEY: study_config(plan.base, plan.seeds, plan.name, plan.metric, **schedule)}
    if plan.space.is_grid:
        ps[CELL_KEY] = tune.grid_search(plan.space.grid_cells())
    return ps


def study_params(plan: Plan, args) -> dict:
    """The parent run's params."""
    return {"space": plan.space.name, "protocol": plan.space.protocol, "searcher": plan.searcher,
            "scheduler": plan.scheduler or "none",
            "seeds": plan.seeds, "num_samples": plan.num_samples, "epochs": plan.epochs,
            "grace_period": plan.grace_period, "reduction_factor": args.reduction_factor,
            "metric": ",".join(plan.metrics), "mode": ",".join(plan.modes),
            "cpus_per_trial": plan.cpus, "gpus_per_trial": plan.gpus,
            **{f"base.{k}": v for k, v in plan.base.items()}}


def write_study_json(plan: Plan, args, parent_run_id: str | None) -> None:
    """What `--resume` and `search/report.py` read back: the plan and the original command."""
    Path(plan.study_dir, "study.json").write_text(json.dumps(
        {"name": plan.name, "space": plan.space.name, "space_options": plan.space_options,
         "protocol": plan.space.protocol,
         "searcher": plan.searcher, "base": plan.base, "seeds": plan.seeds, "epochs": plan.epochs,
         "metrics": plan.metrics, "modes": plan.modes,
         "tracking_uri": plan.tracking_uri, "experiment": args.experiment, "parent_run_id": parent_run_id,
         "argv": getattr(args, "argv", None) or sys.argv}, indent=1))


def warm_start(plan: Plan, journal: Path, out) -> list[dict]:
    """The raw points the searcher tries first; a study of the same dataset seeds the new study's history instead
    (its trials are added to the journal before the searcher loads it)."""
    import optuna

    from search.searchers import journal_storage, seed_from_study, warm_start_points
    ws = plan.warm_start
    if ws["kind"] == "paper":
        return warm_start_points(plan.space).points
    if ws["kind"] != "study":
        return []
    ours = None
    if ws["same_dataset"]:
        ours = optuna.create_study(study_name=plan.name, storage=journal_storage(journal), load_if_exists=True,
                                   directions=["minimize" if m == "min" else "maximize" for m in plan.modes])
        ours.set_metric_names(list(plan.metrics))
    seeded = seed_from_study(plan.space, ours, ws["journal"], ws["name"], ws["same_dataset"])
    out(f"warm start: {seeded.seeded} trials of study {ws['name']} seed the history; "
        f"{len(seeded.points)} of its configurations go first")
    return seeded.points


def build_tuner(plan: Plan, args, callbacks: list, tracking, out):
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from search.searchers import make_optuna_search
    from trainables.entry import run_trial
    from trainables.resources import with_trial_resources
    trainable = with_trial_resources(run_trial, plan.cpus, plan.gpus)
    if args.resume:
        from search.resume import restore_tuner
        return restore_tuner(plan, trainable, tracking=tracking, out=out)
    search_alg = None
    if plan.searcher != "grid":
        journal = Path(plan.study_dir) / "optuna.journal"
        points = warm_start(plan, journal, out)
        one = len(plan.metrics) == 1
        search_alg = make_optuna_search(plan.space, plan.searcher, args.seed, plan.name, journal, plan.epochs,
                                        num_samples=plan.num_samples, metric=plan.metric if one else plan.metrics,
                                        mode=plan.mode if one else plan.modes, points_to_evaluate=points or None)
    scheduler = None
    if plan.scheduler == "asha":
        scheduler = ASHAScheduler(time_attr="epoch", metric=plan.metric, mode=plan.mode,
                                  max_t=plan.epochs, grace_period=plan.grace_period,
                                  reduction_factor=args.reduction_factor)
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    from search.trial_logs import KeepLogsOnRetry
    loggers = [JsonLoggerCallback(), CSVLoggerCallback(), KeepLogsOnRetry()]
    run_config = tune.RunConfig(
        name=plan.name, storage_path=plan.storage, callbacks=[*callbacks, *loggers],
        verbose=0,
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        failure_config=tune.FailureConfig(max_failures=args.max_failures))
    return tune.Tuner(
        trainable, param_space=param_space(plan),
        tune_config=tune.TuneConfig(search_alg=search_alg, scheduler=scheduler,
                                    num_samples=plan.num_samples if search_alg else 1,
                                    max_concurrent_trials=args.max_concurrent, reuse_actors=args.reuse_actors,
                                    trial_dirname_creator=_trial_dirname),
        run_config=run_config)


def open_tracking(plan: Plan, args):
    """The study's MLflow store and experiment (a new SQLite store's schema is made here: seconds)."""
    from search.tracking import StudyTracking
    return StudyTracking(plan.tracking_uri, plan.name, args.experiment, artifact_root=Path.cwd() / "mlartifacts")


def run_study(args, plan: Plan, out=print) -> int:
    from search.cluster import cluster_checks, connect
    from search.store import InBackground, import_tracking

    local = "://" not in plan.study_dir
    if local:
        Path(plan.study_dir).mkdir(parents=True, exist_ok=True)
    # While Ray starts, and only then: this thread must be the only one importing MLflow (or SQLAlchemy), since two
    # threads importing the same package can each see the other's half-initialised modules. A local cluster's
    # study has had all its input checked by now, so its store is opened meanwhile too; joining a cluster can
    # still fail on bad input (an unreachable address, no GPU there), before which no store may be made.
    opening = None
    if plan.tracking_uri:
        opening = InBackground((lambda: import_tracking(plan.tracking_uri)) if args.address
                               else (lambda: open_tracking(plan, args)), "mlflow-open")
    tune_environment()
    stop = Interruption(out)
    stop.__enter__()
    tracking, status, ray, stopping = None, "FAILED", None, None
    try:
        ray = connect(args)
        stop.reinstall()
        opened = opening.result() if opening is not None else None
        from search.client import RELAY_PREFIX, DriverRelay, RelayListener, TuneEnvironment, is_client
        from search.cluster import trial_slots
        from search.prefetch import ImportPlottingEarly, wait_for_plotting
        from search.progress import ProgressCallback
        from search.tracking import TrackingCallback, drain_writer, writer_for
        from trainables.teachers import pretrain_teachers
        if plan.gpus_auto:  # one trial's configuration (the study's first: its model and batch) on this GPU
            plan.gpus, notice = auto_gpus_per_trial(plan.resolved_configs[0])
            out(notice)
        cluster_checks(ray, plan)
        # Tune keeps one pending trial at a time behind a searcher unless told otherwise, so trials would start one
        # by one, each waiting for the previous worker process to boot: let it stage as many as the cluster holds.
        os.environ.setdefault("TUNE_MAX_PENDING_TRIALS_PG",
                              str(trial_slots(ray.cluster_resources(), plan.cpus, plan.gpus)))
        if args.download:
            out("downloading the dataset once on the driver ...")
            check_dataset(TrainConfig.from_dict({**plan.base, "data.download": True}).resolved(), download=True)
        if plan.tracking_uri:
            tracking = opened if opened is not None else open_tracking(plan, args)
            tracking.start_parent(study_params(plan, args), {"space": plan.space.name, "study_dir": plan.study_dir})
            writer_for(tracking)  # this tracker writes the trials' runs, also through Tune's restored callbacks
            out(f"MLflow: parent run {tracking.parent_run_id} in experiment {args.experiment!r} at "
                f"{plan.tracking_uri}")
        if local:
            write_study_json(plan, args, tracking and tracking.parent_run_id)
        teachers = pretrain_teachers(plan.configs, plan.cpus, plan.gpus, log=out, check_here=not is_client())
        if teachers:
            out(f"phase-1 teachers ready: {len(teachers)}")
        # With ray:// Tune runs the callbacks in an actor on the head (search/client.py): what they print and
        # count comes back to this driver through the relay.
        client = is_client()
        relay = DriverRelay(RELAY_PREFIX + plan.name) if client else None
        progress = ProgressCallback(plan.metric, plan.mode, plan.epochs, out=print if client else out,
                                    relay=relay)
        callbacks = [progress]
        if tracking:
            callbacks.append(TrackingCallback(tracking, plan.epochs, relay=relay))
        if client:
            callbacks.append(TuneEnvironment({"TUNE_MAX_PENDING_TRIALS_PG": os.environ["TUNE_MAX_PENDING_TRIALS_PG"]}))
        else:  # (with ray:// the callbacks run on the head; the report is drawn here)
            callbacks.append(ImportPlottingEarly())
        tuner = build_tuner(plan, args, callbacks, tracking, out)
        t0 = time.time()
        missed = {}
        stop.tuning = True
        if client:
            def relayed(kind, value):
                if kind == "line":
                    out(value)
                elif kind == "peak":
                    progress.peak_concurrent = max(progress.peak_concurrent, int(value))
                elif kind == "deferred" and tracking:
                    tracking.deferred = [tuple(u) for u in value]
                elif kind == "missed":
                    missed.update(value)

            with RelayListener(RELAY_PREFIX + plan.name, relayed):
                results = tuner.fit()
        else:
            results = tuner.fit()
        stop.tuning = False
        # Ray is not needed past this point: it stops (mostly waiting for its processes) while the summary, the
        # report and MLflow's closing run
        stopping = InBackground(ray.shutdown, "ray-shutdown")
        if stop.signal is None:
            out(f"study finished in {time.time() - t0:.0f}s; at most {progress.peak_concurrent} trials ran at once")
        else:
            finished, planned = record_interrupted(plan, tracking, out)
        if tracking:  # what the writer holds, before settle looks for what MLflow lacks
            missed.update(drain_writer(plan.name))
        wait_for_plotting()  # (importing the report while the thread is inside pyplot fails)
        from search.report import summarize
        summarize(plan, results, tracking, args, out=out)
        if tracking:  # statuses kept during a server outage, metrics the writer could not send
            tracking.settle(plan.study_dir, out=out, closed=missed)
        if stop.signal is not None:
            status = "KILLED"
            out(f"interrupted after {finished} of {planned} trials ({signal.Signals(stop.signal).name}); "
                f"the others continue from their checkpoints with: {resume_command(plan)}")
            return stop.exit_code
        status = "FINISHED"
        return 0
    except KeyboardInterrupt:  # before Tune ran (start-up), or Ray Client's fit
        status = "KILLED"
        can_resume = (Path(plan.study_dir) / "tuner.pkl").exists()
        out("interrupted " + (f"; resume with: {resume_command(plan)}" if can_resume
                              else "before any trial started; nothing to resume"))
        return stop.exit_code
    finally:
        if tracking:
            _close_tracking(tracking, plan, status, out)
        if stopping is not None:
            stopping.result()
        elif ray is not None:
            ray.shutdown()
        stop.__exit__(None, None, None)


def _close_tracking(tracking, plan: Plan, status: str, out) -> None:
    from search.tracking import drain_writer
    try:
        if status != "FINISHED":  # interrupted or failed: keep the stopped trials' last batches
            drain_writer(plan.name, deadline_s=2.0)
        tracking.close(status)
    except BaseException as e:  # the server may be gone; the study's results are on disk regardless
        out(f"warning: could not close the MLflow runs: {e!r}")


def auto_gpus_per_trial(cfg, steps: int = 40, margin: float = 0.8) -> tuple[float, str]:
    """`--gpus-per-trial auto`: (GPUs per trial, the one line to print), decided before any trial starts.

    Without a visible GPU: 0 (trials run on CPUs). Otherwise `cfg` (a trial's configuration: the largest model
    and batch of the study is the safe one to pass) is probed on this process's first GPU for `steps` steps, and
    `choose_gpu_fraction` turns its memory held (the caching allocator's peak, which is what the other trials
    sharing the GPU cannot use) and its throughput alone into 1/k, assuming k trials fill the time one leaves
    the GPU idle (`aikd.probe.estimate_throughput`). The probe leaves this process a CUDA context, no memory."""
    import torch

    from aikd.probe import choose_gpu_fraction, probe
    if not torch.cuda.is_available():
        return 0.0, "--gpus-per-trial auto: no GPU visible here, so 0 GPUs per trial (trials run on CPUs)"
    r = probe(cfg, steps, "cuda")
    fraction, k, reason = choose_gpu_fraction(r["peak_reserved_bytes"], r["total_bytes"], {1: r["images_per_s"]},
                                              margin=margin, busy_fraction=r["gpu_busy_fraction"])
    busy = "n/a" if r["gpu_busy_fraction"] is None else f"{r['gpu_busy_fraction']:.0%}"
    return fraction, (f"--gpus-per-trial auto: {fraction:g} on {r['device']} ({reason}; probe: {r['steps']} steps, "
                      f"{r['images_per_s']:,.0f} img/s alone, GPU busy {busy})")
