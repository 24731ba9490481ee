"""The Ray cluster of a study: joining it (or starting a local one on the loopback interface) and the checks a
cluster must pass before any trial starts (GPUs where trials ask for them; storage that every node can reach).

Ray Tune writes each trial's results and checkpoints to `--storage` from the node the trial runs on, and a retried
trial reads its checkpoint back on whichever node takes it, so a local folder that only the driver's machine has
would lose checkpoints (or fail late, in the middle of the study). `check_storage_reachable` finds out before any
trial starts: the driver writes a probe file, every node reads it and writes one of its own, and the driver reads
those back.

Test hook: a node whose environment has `AIKD_STORAGE_PROBE_HIDE=1` probes a private temporary folder instead of
the storage path, exactly what a node with its own local disk at that path would see. On one machine every node
shares the disk, so this is how the tests make one node "remote" (`Cluster.add_node(env_vars=...)`).
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import time
import uuid
from pathlib import Path

from search.client import is_client, parse_address
from search.plan import UsageError
from search.store import HTTP_DEFAULTS

ROOT = Path(__file__).resolve().parents[1]
PROBE_HIDE_ENV = "AIKD_STORAGE_PROBE_HIDE"
PROBE_TIMEOUT_S = 120

# What a study's driver sets for Ray Tune (unless the user has), in one place: `search.study.tune_environment` sets
# them in this process, and `client_env_vars` passes them to a Ray Client head, where Tune runs instead.
TUNE_DEFAULTS = {
    # Tune's own interruption advice (a `Tuner.restore` call, where ours is `--resume`) and its sync warnings
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
    "RAY_DEDUP_LOGS": "0",
    "RAY_AIR_NEW_OUTPUT": "0",  # its experiment box and TensorBoard hint print at verbose=0
    # Tune's automatic loggers include TensorBoard's, a writer thread per trial in the driver whose files nothing
    # reads (MLflow records the metrics): `build_tuner` asks for the JSON and CSV loggers that the report,
    # `--resume` and Tune's own ExperimentAnalysis read.
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
}


def _probe(path: str, token: str, node_id: str) -> dict:
    """Runs on a node: does it see the driver's probe file, and can it leave one for the driver?"""
    root = Path(path)
    if os.environ.get(PROBE_HIDE_ENV) == "1":  # test hook: this node's view of the path is a disk of its own
        root = Path(tempfile.mkdtemp(prefix="aikd-probe-")) / root.name
        root.mkdir()
    p = root / f".probe-{token}"
    seen = p.exists() and p.read_text() == token
    wrote = False
    if root.is_dir():  # never create the folder here: a node-local copy would hide the problem
        try:
            (root / f".probe-{token}-{node_id}").write_text(token)
            wrote = True
        except OSError:
            pass
    return {"seen": seen, "wrote": wrote, "host": socket.gethostname()}


def alive_nodes(ray) -> list[dict]:
    return [n for n in ray.nodes() if n.get("Alive")]


def check_storage_reachable(ray, storage: str, driver_on_a_node: bool = True) -> None:
    """Fail fast when --storage is a local folder that another node cannot see (a probe file per node).

    `driver_on_a_node=False` (a Ray Client driver, `--address ray://`): the driver's machine need not be a node at
    all, and Tune writes the experiment state from the head while the driver reads the study folder for the report,
    so even a one-node cluster is probed."""
    if "://" in storage:
        return  # s3://, gs://, ...: reachable by construction
    nodes = alive_nodes(ray)
    if len(nodes) <= 1 and driver_on_a_node:
        return
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    root = Path(storage)
    root.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    probe = root / f".probe-{token}"
    probe.write_text(token)
    problems = {}
    try:
        task = ray.remote(num_cpus=0, max_retries=0)(_probe)
        refs = {n["NodeID"]: task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                .remote(storage, token, n["NodeID"]) for n in nodes}
        for nid, ref in refs.items():
            host = next((n.get("NodeManagerHostname") or n.get("NodeManagerAddress", "?") for n in nodes
                         if n["NodeID"] == nid), "?")
            try:
                r = ray.get(ref, timeout=PROBE_TIMEOUT_S)
            except Exception as e:  # the node died or could not start a worker: it cannot be trusted either
                problems[nid] = f"host {host}: probe failed ({type(e).__name__})"
                continue
            back = root / f".probe-{token}-{nid}"
            if not r["seen"]:
                problems[nid] = f"host {r['host']}: does not see {probe}"
            elif not (r["wrote"] and back.exists() and back.read_text() == token):
                problems[nid] = f"host {r['host']}: its writes do not reach the driver"
    finally:
        for f in root.glob(f".probe-{token}*"):
            f.unlink(missing_ok=True)
    if problems:
        nid, why = next(iter(problems.items()))
        kind, sharers = (("multi-node", "every node") if driver_on_a_node
                         else ("Ray Client", "every node and this driver"))
        raise UsageError(f"--storage {storage} is not visible from {len(problems)} of {len(nodes)} Ray nodes "
                         f"(node {nid[:12]}, {why}); a {kind} study needs --storage on a file system shared by "
                         f"{sharers} (the same path everywhere) or an s3:// / gs:// URI")


def connect(args):
    """Join the cluster `--address` names, or start a local Ray that listens on 127.0.0.1 only; returns `ray`.
    Every worker gets the project on its path (trials import `trainables`, `aikd`)."""
    import ray
    env = {"env_vars": {"PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}}
    if args.address:
        if args.address.startswith("ray://"):  # Tune and its callbacks run on the head: give them this environment
            env["env_vars"].update(client_env_vars())
        try:
            check_reachable(args.address)
            join(ray, args.address, env)
        except ImportError as e:  # ray:// without the Ray Client extra
            raise UsageError(f"--address {args.address}: Ray Client needs `pip install \"ray[client]\"` ({e})") \
                from None
        except (ConnectionError, ValueError, RuntimeError) as e:  # unreachable, no cluster, version mismatch, ...
            raise UsageError(f"--address {args.address}: cannot join the Ray cluster: {str(e).splitlines()[0]}") \
                from None
    else:
        keep_ray_on_loopback()
        # A new local Ray boots one idle task worker per CPU for its first driver. A study's trials are actors in
        # placement groups, which start workers of their own, so those would only take CPU while the study starts.
        os.environ.setdefault("RAY_prestart_worker_first_driver", "0")  # read by the raylet
        ray.init(address="local", num_cpus=args.num_cpus, num_gpus=args.num_gpus, include_dashboard=False,
                 runtime_env=env, log_to_driver=False, _node_ip_address="127.0.0.1")
    return ray


def join(ray, address: str, env: dict, attempts: int = 3) -> None:
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


def client_env_vars() -> dict:
    """With ray:// the Tuner runs in an actor on the head (ray/tune/tuner.py), which sees the job's runtime_env, not
    this process's environment: the variables this driver sets for Tune and for MLflow go there too."""
    wanted = {**TUNE_DEFAULTS, "AIKD_MLFLOW_FLUSH_S": "10", **HTTP_DEFAULTS}
    return {k: os.environ.get(k, v) for k, v in wanted.items()}


def check_reachable(address: str, timeout_s: float = 10.0) -> None:
    """ray.init waits for an unreachable GCS (or Ray Client server) for minutes: try the port Ray will dial first."""
    target = address
    if not address.startswith("ray://"):
        from ray._private.services import canonicalize_bootstrap_address
        target = canonicalize_bootstrap_address(address) or address  # auto: RAY_ADDRESS or the last `ray start`
    try:
        socket.create_connection(parse_address(target), timeout=timeout_s).close()
    except (OSError, ValueError) as e:
        raise ConnectionError(f"nothing answers at {target} ({e})") from None


def keep_ray_on_loopback():
    """Ray turns 127.0.0.1 into this machine's routable address (and its GCS and raylet then listen on every
    interface) unless its cluster mode is off. A local study needs no other node: keep every Ray port on 127.0.0.1.
    To let other machines join, start Ray yourself (`ray start --head --node-ip-address=...`) and pass --address."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # for the processes Ray starts
    from ray._private import ray_constants
    ray_constants.ENABLE_RAY_CLUSTER = False  # this process has read the variable already


def cluster_checks(ray, plan) -> None:
    """What the study needs of the cluster it joined: GPUs if trials ask for them, storage every node sees."""
    gpus = ray.cluster_resources().get("GPU", 0)
    if plan.gpus > 0 and gpus == 0:
        raise UsageError(f"--gpus-per-trial={plan.gpus:g} but the Ray cluster has no GPU; use --gpus-per-trial 0")
    check_storage_reachable(ray, plan.storage, driver_on_a_node=not is_client())


def trial_slots(cluster: dict, cpus: float, gpus: float) -> int:
    """How many trials the cluster can hold at once (summed over nodes; at least 1)."""
    slots = cluster.get("CPU", 0) // cpus
    if gpus > 0:
        slots = min(slots, round(cluster.get("GPU", 0) / gpus, 6) // 1)
    return max(1, int(slots))
