"""Run a named hyperparameter search: python search/run.py --space aikd_ablation [--dataset digits] ...

Everything is validated before Ray starts (exit 2 and one line naming the problem); then Ray starts (or is
joined), the phase-1 teachers the study needs are trained once as Ray tasks, Ray Tune runs the trials with
Optuna proposing configurations and ASHA stopping weak ones, MLflow records the study, and a summary ends it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python search/run.py` puts search/ first on sys.path, not the project
    sys.path.insert(0, str(ROOT))
if __name__ == "__main__":  # modules that `from search.run import UsageError` must get this file's class
    sys.modules.setdefault("search.run", sys.modules[__name__])

from aikd.config import ConfigError, TrainConfig  # noqa: E402

SMOKE = {"dataset": "digits", "model": "small_cnn", "max_epochs": 2, "num_samples": 4, "max_concurrent": 2,
         "grace_period": 1}
SEARCHERS = ("tpe", "random", "nsga2", "grid")


class UsageError(Exception):
    """Bad input: reported as one line with exit code 2 before anything starts."""


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python search/run.py", description=__doc__.splitlines()[0])
    p.add_argument("--space", help="named search space (see --list-spaces)")
    p.add_argument("--list-spaces", action="store_true", help="list the registered spaces and exit")
    p.add_argument("--dataset", help="dataset (default: the space's; digits runs offline)")
    p.add_argument("--model", help="registered model name")
    p.add_argument("--data-root", help="dataset folder (default $AIKD_DATA or ~/.cache/aikd/data)")
    p.add_argument("--download", action="store_true", help="download a missing dataset once, before the trials")
    p.add_argument("--num-samples", type=int, help="trials for tpe/random searchers (grid: all cells)")
    p.add_argument("--max-epochs", type=int, help="epochs per trial (ASHA's max_t)")
    p.add_argument("--grace-period", type=int, help="ASHA grace period in epochs (default max(1, epochs // 10))")
    p.add_argument("--reduction-factor", type=float, default=3.0, help="ASHA reduction factor (default 3)")
    p.add_argument("--searcher", choices=SEARCHERS, help="default: the space's")
    p.add_argument("--scheduler", choices=("asha", "none"), help="default: the space's")
    p.add_argument("--seeds", type=int, default=1, help="train each configuration with K seeds (1..K), "
                                                        "reported as mean +/- std")
    p.add_argument("--gpus-per-trial", type=float, help="0, a whole number or 1/k (default 0.25 with GPUs, else 0)")
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    p.add_argument("--num-gpus", type=int, help="GPUs a local Ray cluster declares (default: those detected)")
    p.add_argument("--num-cpus", type=int, help="CPUs a local Ray cluster declares (default: all)")
    p.add_argument("--max-concurrent", type=int, help="at most this many trials at once")
    p.add_argument("--no-reuse-actors", dest="reuse_actors", action="store_false",
                   help="start a fresh worker process per trial (default: a finished trial's worker takes the next "
                        "trial, saving the process start and imports, several seconds per trial)")
    p.add_argument("--max-failures", type=int, default=2, help="retries of a crashed trial from its checkpoint")
    p.add_argument("--checkpoint-every", type=int, help="checkpoint a trial every K epochs (default 1), and always at "
                                                        "ASHA's decision epochs and the last")
    p.add_argument("--address", help="join a running Ray cluster: auto, host:port or ray://host:port")
    p.add_argument("--storage", default="studies", help="study folder root (shared FS or s3://, gs:// on clusters)")
    p.add_argument("--name", help="study name (default SPACE-DATE-TIME)")
    p.add_argument("--resume", action="store_true", help="resume the study --name after an interruption")
    p.add_argument("--mlflow-uri", help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    p.add_argument("--experiment", default="aikd-search", help="MLflow experiment name")
    p.add_argument("--no-tracking", action="store_true", help="run without MLflow")
    p.add_argument("--seed", type=int, default=0, help="searcher seed")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="dotted config override for every trial (repeatable), e.g. method.tau_p=2")
    p.add_argument("--dry-run", action="store_true", help="print the resolved plan and start nothing")
    p.add_argument("--smoke-test", action="store_true", help="digits, small model, 2 epochs, 4 trials")
    p.add_argument("--top", type=int, default=10, help="rows in the summary table")
    args = p.parse_args(argv)
    if args.smoke_test:
        for k, v in SMOKE.items():
            if getattr(args, k) is None:
                setattr(args, k, v)
    return args


# ------------------------------------------------------------------------------------------------------------
# Planning and validation (no Ray here)

@dataclasses.dataclass
class Plan:
    space: object
    base: dict
    searcher: str
    scheduler: str | None
    num_samples: int
    epochs: int
    grace_period: int
    seeds: list
    cpus: float
    gpus: float
    storage: str
    name: str
    study_dir: str
    tracking_uri: str | None
    configs: list  # every grid cell's config, or a sample of TPE configs (validated)
    space_options: dict
    resolved_configs: list  # the same configs as TrainConfig, defaults filled in


def _space_options(args) -> dict:
    opts = {}
    for item in list(args.set):
        if item.startswith("full_grid="):
            opts["full_grid"] = item.split("=", 1)[1]
            args.set.remove(item)
    if args.searcher:
        opts["searcher"] = args.searcher
    return opts


def _load_space(args, options: dict):
    from spaces import get_space, list_spaces
    if not args.space:
        raise UsageError("--space is required (one of: " + ", ".join(list_spaces()) + ")")
    try:
        return get_space(args.space, **options)
    except (KeyError, ValueError) as e:
        raise UsageError(str(e).strip("'\"")) from None


def _check_model(name: str):
    from aikd.models import list_models
    if name not in list_models():
        raise UsageError(f"--model {name!r} is not a registered model; valid: {', '.join(list_models())}")


def _detected_gpus(args) -> int:
    if args.num_gpus is not None:
        return args.num_gpus
    try:
        import torch
        return torch.cuda.device_count()
    except Exception:
        return 0


def _check_dataset(cfg: TrainConfig, download: bool):
    from aikd.data import DatasetNotFoundError, get_dataset
    d = cfg.data
    try:
        get_dataset(d.dataset, root=d.root or None, split="train", download=download)
    except DatasetNotFoundError as e:
        raise UsageError(f"{str(e).splitlines()[0]} (pass --download, or run offline with --dataset digits)") \
            from None


def _check_address_form(address: str) -> None:
    """auto, HOST:PORT (the head's GCS) or ray://HOST:PORT (the head's Ray Client server)."""
    if address != "auto":
        from search.client import parse_address
        try:
            parse_address(address)
        except ValueError as e:
            raise UsageError(f"--address {e}") from None


def build_plan(args) -> Plan:
    from trainables.resources import ResourceError, check_cpus_per_trial, check_gpus_per_trial
    options = _space_options(args)
    space = _load_space(args, options)
    searcher = args.searcher or space.searcher
    if searcher == "grid" and not space.is_grid:
        raise UsageError(f"--searcher grid: space {space.name!r} has continuous parameters; allowed: tpe, random, "
                         "nsga2")
    if space.is_grid and searcher != "grid":
        raise UsageError(f"space {space.name!r} is a grid; its searcher is grid (tpe: the continuous variant, "
                         "where the space has one)")
    scheduler = space.scheduler if args.scheduler is None else (None if args.scheduler == "none" else "asha")
    base = dict(space.base)
    if args.dataset:
        if args.dataset != base.get("data.dataset") and not args.model:
            # the space's model is the paper's choice for the paper's dataset; another dataset brings its own
            # default model from the one table in aikd.config (digits: a small CNN); --model overrides
            base.pop("model.name", None)
            base.pop("model.family", None)
        base["data.dataset"] = args.dataset
    if args.model:
        _check_model(args.model)
        base["model.name"] = args.model
        base.pop("model.family", None)
    if args.data_root:
        base["data.root"] = str(Path(args.data_root).resolve())
    if args.max_epochs is not None:
        if args.max_epochs < 1:
            raise UsageError(f"--max-epochs={args.max_epochs} must be >= 1")
        base["epochs"] = args.max_epochs
    if args.download:
        base["data.download"] = False  # the driver downloads once; trials never do
    try:
        cfg = TrainConfig.from_dict(base, overrides=args.set)
        base = {k: v for k, v in cfg.to_dict().items() if k in set(base) | {o.split("=")[0] for o in args.set}}
        resolved = cfg.resolved()
    except ConfigError as e:
        raise UsageError(str(e)) from None
    if args.seeds < 1:
        raise UsageError(f"--seeds={args.seeds} must be >= 1")
    if getattr(args, "checkpoint_every", None) is not None and args.checkpoint_every < 1:
        raise UsageError(f"--checkpoint-every={args.checkpoint_every} must be >= 1")
    if args.num_samples is not None and args.num_samples < 1:
        raise UsageError(f"--num-samples={args.num_samples} must be >= 1")
    if space.metric.startswith("val_") and resolved.data.val_fraction == 0:
        raise UsageError(f"the search metric {space.metric} needs a validation split: data.val_fraction must be > 0")
    # every config the study will run must be valid: all grid cells, or a sample of the TPE space
    if space.is_grid:
        cells = space.grid_cells()
    else:
        import numpy as np
        rng = np.random.default_rng(0)
        cells = [space.sample(rng) for _ in range(32)]
    configs, resolved_configs = [], []
    for cell in cells:
        flat = {**base, **cell}  # as the trainable merges them: a cell or suggestion wins over the base
        try:
            resolved_configs.append(TrainConfig.from_dict(flat).resolved())
        except ConfigError as e:
            raise UsageError(f"{e} (in cell {cell})") from None
        configs.append(flat)
    for m in {c.model.name for c in resolved_configs}:
        _check_model(m)
    try:
        gpus = check_gpus_per_trial(args.gpus_per_trial if args.gpus_per_trial is not None
                                    else (0.25 if (_detected_gpus(args) and not args.address) else 0.0))
        cpus = check_cpus_per_trial(args.cpus_per_trial)
    except ResourceError as e:
        raise UsageError(str(e)) from None
    if gpus > 0 and not args.address and _detected_gpus(args) == 0:
        raise UsageError(f"--gpus-per-trial={gpus:g} but this machine has no GPU (trials would wait forever); "
                         "use --gpus-per-trial 0, or --address to join a cluster with GPUs")
    if args.address:
        _check_address_form(args.address)
    epochs = resolved.epochs
    grace = args.grace_period if args.grace_period is not None else max(1, epochs // 10)
    if grace < 1 or grace > epochs:
        raise UsageError(f"--grace-period={grace} must be in [1, {epochs}] (the epochs per trial)")
    if args.reduction_factor <= 1:
        raise UsageError(f"--reduction-factor={args.reduction_factor:g} must be > 1")
    num_samples = len(cells) if space.is_grid else (args.num_samples or space.num_samples)
    name = args.name or f"{space.name}-{datetime.now():%Y%m%d-%H%M%S}"
    storage = args.storage if "://" in args.storage else str(Path(args.storage).resolve())
    study_dir = f"{storage.rstrip('/')}/{name}"
    tracking_uri = None
    if not args.no_tracking:
        from search.store import resolve_tracking_uri
        tracking_uri = resolve_tracking_uri(args.mlflow_uri)
    return Plan(space, base, searcher, scheduler, num_samples, epochs, grace, list(range(1, args.seeds + 1)), cpus,
                gpus, storage, name, study_dir, tracking_uri, configs, options, resolved_configs)


def print_plan(plan: Plan, args, out=print) -> None:
    s = plan.space
    out(f"study       {plan.name}  ({plan.study_dir})")
    out(f"space       {s.name}: {s.description}")
    out(f"base        {json.dumps(plan.base, sort_keys=True)}")
    resolved = plan.resolved_configs
    datasets, models = sorted({c.data.dataset for c in resolved}), sorted({c.model.name for c in resolved})
    out(f"training    {', '.join(datasets)}; model {', '.join(models)}; batch {resolved[0].data.batch_size}, "
        f"lr {resolved[0].optim.lr:g}")
    params = ", ".join(s.outputs()) if s.params else "-"
    out(f"params      {params}")
    kind = f"{plan.num_samples} cells" if s.is_grid else f"{plan.num_samples} samples"
    out(f"search      {plan.searcher} ({kind}) x {len(plan.seeds)} seed(s), metric {s.metric} ({s.mode})")
    sched = (f"ASHA max_t={plan.epochs} grace={plan.grace_period} reduction={args.reduction_factor:g}"
             if plan.scheduler else "none")
    out(f"scheduler   {sched}; epochs per trial {plan.epochs}")
    out(f"resources   {plan.cpus:g} CPU, {plan.gpus:g} GPU per trial; max concurrent "
        f"{args.max_concurrent or 'unlimited'}; workers {'reused' if args.reuse_actors else 'fresh per trial'}; "
        f"ray {'address ' + args.address if args.address else 'local'}")
    out(f"tracking    {plan.tracking_uri or 'off'} (experiment {args.experiment})")


# ------------------------------------------------------------------------------------------------------------
# Running

def _quiet_libraries():
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def _trial_dirname(trial) -> str:
    return f"trial_{trial.trial_id}"


def _init_ray(args):
    _quiet_libraries()
    import ray
    env = {"env_vars": {"PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}}
    if "AIKD_MLFLOW_FLUSH_S" in os.environ:  # how often trials send metrics: set on the driver, holds on every node
        env["env_vars"]["AIKD_MLFLOW_FLUSH_S"] = os.environ["AIKD_MLFLOW_FLUSH_S"]
    if args.address:
        if args.address.startswith("ray://"):  # Tune and its callbacks run on the head: give them this environment
            env["env_vars"].update(_client_env_vars())
        try:
            _check_reachable(args.address)
            _join(ray, args.address, env)
        except ImportError as e:  # ray:// without the Ray Client extra
            raise UsageError(f"--address {args.address}: Ray Client needs `pip install \"ray[client]\"` ({e})") \
                from None
        except (ConnectionError, ValueError, RuntimeError) as e:  # unreachable, no cluster, version mismatch, ...
            raise UsageError(f"--address {args.address}: cannot join the Ray cluster: {str(e).splitlines()[0]}") \
                from None
    else:
        _keep_ray_on_loopback()
        ray.init(address="local", num_cpus=args.num_cpus, num_gpus=args.num_gpus, include_dashboard=False,
                 runtime_env=env, log_to_driver=False, _node_ip_address="127.0.0.1")
    return ray


def _join(ray, address: str, env: dict, attempts: int = 3) -> None:
    """ray.init on a running cluster. A Ray Client server sometimes fails to start the per-connection server on a
    loaded head ("Initialization failure from server"); a second connection normally works, so try a few times."""
    for i in range(attempts):
        try:
            ray.init(address=address, runtime_env=env, log_to_driver=False)
            return
        except ConnectionAbortedError as e:
            if not address.startswith("ray://") or i == attempts - 1:
                raise
            ray.shutdown()
            print(f"warning: Ray Client connection failed ({str(e).splitlines()[-1][:200]}); retrying",
                  file=sys.stderr)
            time.sleep(2.0 * (i + 1))


def _client_env_vars() -> dict:
    """With ray:// the Tuner runs in an actor on the head (ray/tune/tuner.py), which sees the job's runtime_env, not
    this process's environment: the variables this driver sets for Tune and for MLflow go there too."""
    from trainables.trial_log import HTTP_DEFAULTS
    wanted = {"TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0", "RAY_DEDUP_LOGS": "0",
              **HTTP_DEFAULTS}
    return {k: os.environ.get(k, v) for k, v in wanted.items()}


def _check_reachable(address: str, timeout_s: float = 10.0) -> None:
    """ray.init waits for an unreachable GCS (or Ray Client server) for minutes: try the port Ray will dial first."""
    import socket

    from search.client import parse_address
    target = address
    if not address.startswith("ray://"):
        from ray._private.services import canonicalize_bootstrap_address
        target = canonicalize_bootstrap_address(address) or address  # auto: RAY_ADDRESS or the last `ray start`
    try:
        socket.create_connection(parse_address(target), timeout=timeout_s).close()
    except (OSError, ValueError) as e:
        raise ConnectionError(f"nothing answers at {target} ({e})") from None


def _keep_ray_on_loopback():
    """Ray turns 127.0.0.1 into this machine's routable address (and its GCS and raylet then listen on every
    interface) unless its cluster mode is off. A local study needs no other node: keep every Ray port on 127.0.0.1.
    To let other machines join, start Ray yourself (`ray start --head --node-ip-address=...`) and pass --address."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # for the processes Ray starts
    from ray._private import ray_constants
    ray_constants.ENABLE_RAY_CLUSTER = False  # this process has read the variable already


def _cluster_checks(ray, plan: Plan):
    gpus = ray.cluster_resources().get("GPU", 0)
    if plan.gpus > 0 and gpus == 0:
        raise UsageError(f"--gpus-per-trial={plan.gpus:g} but the Ray cluster has no GPU; use --gpus-per-trial 0")
    from search.client import is_client
    from search.cluster import check_storage_reachable
    check_storage_reachable(ray, plan.storage, driver_on_a_node=not is_client())


def _param_space(plan: Plan, tracking_info: dict | None, args=None) -> dict:
    from ray import tune

    from trainables.checkpoints import study_schedule
    study = {"base": plan.base, "seeds": plan.seeds, "tracking": tracking_info, "name": plan.name,
             "metric": plan.space.metric,
             **study_schedule(getattr(args, "checkpoint_every", None), plan.epochs,
                              plan.grace_period if plan.scheduler == "asha" else None,
                              getattr(args, "reduction_factor", 3.0))}
    ps = {"_study": study}
    if plan.space.is_grid:
        ps["cell"] = tune.grid_search(plan.space.grid_cells())
    return ps


def run_study(args, plan: Plan, out=print) -> int:
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from search.client import RELAY_PREFIX, DriverRelay, RelayListener, TuneEnvironment, is_client
    from search.searchers import make_optuna_search
    from search.store import import_tracking_in_background

    study_dir = Path(plan.study_dir)
    local = "://" not in plan.study_dir
    if local:
        study_dir.mkdir(parents=True, exist_ok=True)
    # While Ray starts, and only then: this thread must be the only one importing MLflow (or SQLAlchemy), since two
    # threads importing the same package can each see the other's half-initialised modules.
    importing = import_tracking_in_background(plan.tracking_uri) if plan.tracking_uri else None
    ray = _init_ray(args)
    from trainables.trial_log import announce_driver_node, drain_agents, start_agents
    tracking, agents, status = None, [], "FAILED"
    try:
        if plan.tracking_uri:
            # This driver writes the MLflow runs of the trials on its own node (with Ray Client it is on no node:
            # every node gets an agent). The other nodes' agents import MLflow while this driver checks the cluster
            # and creates the parent run.
            driver_node = None if is_client() else announce_driver_node(plan.name)
            agents = start_agents(plan.name, skip_node=driver_node)
        if importing is not None:
            importing.join()
        from search.tracking import ProgressCallback, StudyTracking, TrialStatusCallback
        from search.trial_writer import drain_driver_writer, driver_writer
        from trainables.kd import run_trial
        from trainables.resources import trial_slots, with_trial_resources
        from trainables.teachers import pretrain_teachers
        _cluster_checks(ray, plan)
        # Tune keeps one pending trial at a time behind a searcher unless told otherwise, so trials would start one
        # by one, each waiting for the previous worker process to boot: let it stage as many as the cluster holds.
        os.environ.setdefault("TUNE_MAX_PENDING_TRIALS_PG",
                              str(trial_slots(ray.cluster_resources(), plan.cpus, plan.gpus)))
        if args.download:
            out("downloading the dataset once on the driver ...")
            _check_dataset(TrainConfig.from_dict({**plan.base, "data.download": True}).resolved(), download=True)
        tracking_info = None
        if plan.tracking_uri:
            tracking = StudyTracking(plan.tracking_uri, plan.name, args.experiment,
                                     artifact_root=Path.cwd() / "mlartifacts")
            params = {"space": plan.space.name, "searcher": plan.searcher, "scheduler": plan.scheduler or "none",
                      "seeds": plan.seeds, "num_samples": plan.num_samples, "epochs": plan.epochs,
                      "grace_period": plan.grace_period, "reduction_factor": args.reduction_factor,
                      "cpus_per_trial": plan.cpus, "gpus_per_trial": plan.gpus,
                      **{f"base.{k}": v for k, v in plan.base.items()}}
            tracking.start_parent(params, {"space": plan.space.name, "study_dir": plan.study_dir})
            tracking_info = tracking.trial_info()
            driver_writer(tracking)  # this tracker writes the trials' runs, also through Tune's restored callbacks
            out(f"MLflow: parent run {tracking.parent_run_id} in experiment {args.experiment!r} at "
                f"{plan.tracking_uri}")
        if local:
            (study_dir / "study.json").write_text(json.dumps(
                {"name": plan.name, "space": plan.space.name, "space_options": plan.space_options,
                 "searcher": plan.searcher, "base": plan.base,
                 "seeds": plan.seeds, "epochs": plan.epochs, "tracking_uri": plan.tracking_uri,
                 "experiment": args.experiment, "parent_run_id": tracking and tracking.parent_run_id,
                 "argv": getattr(args, "argv", None) or sys.argv}, indent=1))
        teachers = pretrain_teachers(plan.configs, plan.cpus, plan.gpus, log=out, check_here=not is_client())
        if teachers:
            out(f"phase-1 teachers ready: {len(teachers)}")

        search_alg = None
        if plan.searcher != "grid":
            search_alg = make_optuna_search(plan.space, plan.searcher, args.seed, plan.name,
                                            study_dir / "optuna.journal", plan.epochs, num_samples=plan.num_samples)
        scheduler = None
        if plan.scheduler == "asha":
            scheduler = ASHAScheduler(time_attr="epoch", metric=plan.space.metric, mode=plan.space.mode,
                                      max_t=plan.epochs, grace_period=plan.grace_period,
                                      reduction_factor=args.reduction_factor)
        # With ray:// Tune runs these callbacks in an actor on the head (search/client.py): what they print and
        # count comes back to this driver through the relay.
        client = is_client()
        relay = DriverRelay(RELAY_PREFIX + plan.name) if client else None
        progress = ProgressCallback(plan.space.metric, plan.space.mode, plan.epochs, out=print if client else out,
                                    relay=relay)
        callbacks = [progress]
        if tracking:
            callbacks.append(TrialStatusCallback(tracking, plan.epochs, relay=relay))
        if client:
            callbacks.append(TuneEnvironment({"TUNE_MAX_PENDING_TRIALS_PG": os.environ["TUNE_MAX_PENDING_TRIALS_PG"]}))
        trainable = with_trial_resources(run_trial, plan.cpus, plan.gpus)
        run_config = tune.RunConfig(
            name=plan.name, storage_path=plan.storage, callbacks=callbacks, verbose=0,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            failure_config=tune.FailureConfig(max_failures=args.max_failures))
        if args.resume:
            from search.resume import restore_tuner
            tuner = restore_tuner(plan, trainable, search_alg, tracking=tracking, out=out)
        else:
            tuner = tune.Tuner(
                trainable, param_space=_param_space(plan, tracking_info, args),
                tune_config=tune.TuneConfig(search_alg=search_alg, scheduler=scheduler,
                                            num_samples=plan.num_samples if search_alg else 1,
                                            max_concurrent_trials=args.max_concurrent,
                                            reuse_actors=args.reuse_actors,
                                            trial_dirname_creator=_trial_dirname),
                run_config=run_config)
        t0 = time.time()
        if client:
            def relayed(kind, value):
                if kind == "line":
                    out(value)
                elif kind == "peak":
                    progress.peak_concurrent = max(progress.peak_concurrent, int(value))
                elif kind == "deferred" and tracking:
                    tracking.deferred = [tuple(u) for u in value]

            with RelayListener(RELAY_PREFIX + plan.name, relayed):
                results = tuner.fit()
        else:
            results = tuner.fit()
        out(f"study finished in {time.time() - t0:.0f}s; at most {progress.peak_concurrent} trials ran at once")
        # what the writers hold, before settle looks for what MLflow lacks
        closed = {**drain_agents(agents), **drain_driver_writer(plan.name)}
        from search.report import summarize
        summarize(plan, results, tracking, args, out=out)
        if tracking:  # statuses kept during a server outage, metrics the workers could not send
            tracking.settle(plan.study_dir, out=out, closed=closed)
        status = "FINISHED"
        return 0
    except KeyboardInterrupt:
        status = "KILLED"
        out("interrupted: finished trials are kept; resume with --resume --name " + plan.name)
        return 130
    finally:
        if plan.tracking_uri and status != "FINISHED":  # interrupted or failed: keep the stopped trials' last batches
            try:
                drain_agents(agents, deadline_s=2.0)
                if tracking:  # (MLflow is imported by then)
                    from search.trial_writer import drain_driver_writer
                    drain_driver_writer(plan.name, deadline_s=2.0)
            except BaseException as e:
                out(f"warning: could not drain the MLflow writers: {e!r}")
        if tracking:
            try:
                tracking.close(status)
            except Exception as e:  # the server may be gone; the study's results are on disk regardless
                out(f"warning: could not close the MLflow runs: {e}")
        ray.shutdown()


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.list_spaces:
        from spaces import get_space, list_spaces
        for name in list_spaces():
            s = get_space(name)
            print(f"{name:18s} {s.searcher:5s} {s.num_samples:3d}  {s.description}")
        return 0
    try:
        if args.resume and not args.name:
            raise UsageError("--resume needs --name STUDY (the folder under --storage)")
        if args.resume:
            from search.resume import args_from_study
            args = args_from_study(args)
        plan = build_plan(args)
        data_note = "present"
        for cfg in {json.dumps(dataclasses.asdict(c.data), sort_keys=True, default=str): c
                    for c in plan.resolved_configs}.values():
            try:
                if not args.download:
                    _check_dataset(cfg, download=False)
            except UsageError as e:
                if not args.dry_run:
                    raise
                data_note = f"MISSING: {e}"
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print_plan(plan, args)
    print(f"data        {data_note}")
    if args.dry_run:
        print(f"dry run: {plan.num_samples * len(plan.seeds)} training runs planned; nothing started")
        return 0
    try:
        return run_study(args, plan)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def exit_without_teardown(code: int) -> None:
    """Exit once everything is written, skipping the interpreter's teardown: with Ray, torch and MLflow loaded it
    spends 3-4 s in C-level destructors (no Python frame runs then), after the study has ended and Ray has stopped.
    The atexit handlers still run, and the output is flushed."""
    import atexit
    try:
        atexit._run_exitfuncs()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    exit_without_teardown(main())
